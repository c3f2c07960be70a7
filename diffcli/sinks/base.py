"""The sink protocol: what the generate loop calls, and what a run tells its sinks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from diffcli.plan.items import Item
from diffcli.sinks.folder import OutputFolder
from diffcli.step import Step


@dataclass
class RunInfo:
    """What sinks need to know about the run they serve."""

    command: str
    task: str
    preset: Any            # the resolved Preset (run-level settings)
    folder: OutputFolder
    total: int             # items this process will make
    pipe: Any = None       # the loaded pipeline (None until loaded)
    model_name: str = ""
    latent: bool = False   # steps carry latents that need decoding for frames
    existing: list[tuple[Item, str]] = field(default_factory=list)  # done items kept (--skip-existing)
    lora_hashes: dict[str, str] = field(default_factory=dict)  # LoRA name → A1111 short hash (files read once)


class Sink(Protocol):
    """Receives a run's events; `close` returns the report entries it produced."""

    def start(self, run: RunInfo) -> None: ...

    def on_step(self, batch: list[Item], step: Step) -> None: ...

    def on_images(self, batch: list[Item], pixels: Any) -> None: ...

    def close(self, completed: bool) -> dict[str, list[dict[str, Any]]]: ...


class Sinks:
    """Fans every event out to a list of sinks, in order."""

    def __init__(self, sinks: list[Any]) -> None:
        self.sinks = sinks

    def start(self, run: RunInfo) -> None:
        for sink in self.sinks:
            sink.start(run)

    def on_step(self, batch: list[Item], step: Step) -> None:
        for sink in self.sinks:
            sink.on_step(batch, step)

    def on_images(self, batch: list[Item], pixels: Any) -> None:
        for sink in self.sinks:
            sink.on_images(batch, pixels)

    def close(self, completed: bool) -> dict[str, list[dict[str, Any]]]:
        """Close every sink (all of them, even if one fails); merged entries; re-raise the first error.

        The entries of the sinks that closed stay in `self.entries` when one fails (the files they
        list were written: the report still names them)."""
        entries: dict[str, list[dict[str, Any]]] = {}
        self.entries = entries
        error: BaseException | None = None
        for sink in self.sinks:
            try:
                for key, values in sink.close(completed).items():
                    entries.setdefault(key, []).extend(values)
            except BaseException as err:  # noqa: BLE001 - closing the others first, then re-raised
                error = error or err
        if error is not None:
            raise error
        return entries
