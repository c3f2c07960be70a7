"""Per-batch schedulers: a `--vary` cell's scheduler put on the loaded pipeline, never a reload."""

from __future__ import annotations

from typing import Any

from diffcli.plan.items import Item, frozen_options


class SchedulerSwitch:
    """Gives each batch the scheduler its items name.

    The run's own scheduler is the one the pipeline was loaded with; any other is built fresh
    with `from_config` from the model's own scheduler config, exactly as loading builds one, so
    a cell samples like a plain run with `--scheduler NAME`.
    """

    def __init__(self, pipe: Any, preset: Any, model_config: dict[str, Any] | None) -> None:
        self.pipe = pipe
        self.model_config = model_config
        self.loaded = pipe.scheduler
        self.own = (preset.scheduler or "", frozen_options(dict(preset.scheduler_options)))
        self.current = self.own

    def use(self, item: Item) -> None:
        """Put the item's scheduler on the pipeline (a no-op when it is already there)."""
        wanted = (item.scheduler, item.scheduler_options)
        if wanted == self.current:
            return
        self.pipe.scheduler = self.loaded if wanted == self.own else self._build(item)
        self.current = wanted

    def restore(self) -> None:
        """Put back the scheduler the pipeline was loaded with."""
        if self.pipe.scheduler is not self.loaded:
            self.pipe.scheduler = self.loaded
        self.current = self.own

    def _build(self, item: Item) -> Any:
        import warnings

        import diffusers

        from diffcli.run.schedulers import build_scheduler

        if not self.model_config:
            raise RuntimeError("a per-item scheduler needs the model's scheduler config")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            base = getattr(diffusers, str(self.model_config["_class_name"])).from_config(self.model_config)
            return build_scheduler(item.scheduler or None, base, item.options())
