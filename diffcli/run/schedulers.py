"""Building the scheduler a preset names from the model's own scheduler config (`from_config`)."""

from __future__ import annotations

import inspect
from typing import Any

from diffcli.errors import PresetError
from diffcli.plan.schedulers import SCHEDULERS, compatible_names


def compatible_for(current: Any, family: Any = None) -> list[str]:
    """Compatible short names (`compatible_names`) whose `set_timesteps` takes what the family's pipeline
    passes it (Flux and Lumina 2 pass their own sigmas and a shift mu)."""
    import diffusers

    names = compatible_names(current)
    if family is None:
        return names
    needed = family.timestep_kwargs(2, dict(current.config))
    return [name for name in names if not refused_kwargs(getattr(diffusers, SCHEDULERS[name].class_name), needed)]


def refused_kwargs(scheduler: Any, kwargs: dict[str, Any]) -> list[str]:
    """The `set_timesteps` keyword arguments a scheduler (class or instance) does not take."""
    accepted = set(inspect.signature(scheduler.set_timesteps).parameters)
    return [name for name in kwargs if name not in accepted]


def build_scheduler(name: str | None, current: Any, options: dict[str, Any], family: Any = None) -> Any:
    """The scheduler for `name` built from the model's own scheduler config.

    `name=None` keeps the model's scheduler (options, if any, are applied to it).
    """
    import diffusers

    if name is None:
        cls, fixed = type(current), {}
    else:
        spec = SCHEDULERS[name]
        if name not in compatible_names(current):
            raise PresetError(
                f"scheduler: '{name}' is not compatible with this model's {type(current).__name__}",
                hint=f"compatible: {', '.join(compatible_for(current, family)) or 'none'}",
            )
        cls, fixed = getattr(diffusers, spec.class_name), dict(spec.options)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        from diffcli.plan.suggest import suggest

        raise PresetError(
            f"scheduler_options: {unknown[0]}: not an option of {cls.__name__}{suggest(unknown[0], sorted(accepted))}"
        )
    if not fixed and not options and name is None:
        return current
    fixed.update(_carried_shift(current, cls, accepted))
    try:
        return cls.from_config(current.config, **{**fixed, **options})
    except ImportError as err:
        raise PresetError(f"scheduler: {name}: {err}".splitlines()[0]) from None
    except (ValueError, TypeError, NotImplementedError) as err:
        raise PresetError(f"scheduler_options: {cls.__name__} rejected the options: {err}".splitlines()[0]) from None


def _carried_shift(current: Any, cls: type, accepted: set[str]) -> dict[str, Any]:
    """A flow model's timestep shift, carried across classes that name it differently (`shift`, `flow_shift`)."""
    config = dict(current.config)
    shift = config.get("shift", config.get("flow_shift"))
    if not isinstance(shift, (int, float)) or not (config.get("use_flow_sigmas") or "shift" in config):
        return {}
    for name in ("shift", "flow_shift"):
        if name in accepted and name not in config:
            return {name: shift}
    return {}


def check_schedule(config: dict[str, Any], name: str | None, options: dict[str, Any], steps: set[int],
                   family: Any = None) -> None:
    """Before any weights load: build the scheduler and make each requested number of steps.

    Bad `scheduler_options` (zero timesteps, betas of the wrong length) and step counts the
    scheduler cannot make become a PresetError naming the key. Timesteps are set the way the family's
    pipeline sets them (Flux passes its own sigmas and a shift `mu`).
    """
    import math
    import warnings

    import diffusers

    class_name = str(config.get("_class_name", ""))
    cls = getattr(diffusers, class_name, None)
    if cls is None or not isinstance(cls, type) or not issubclass(cls, diffusers.SchedulerMixin):
        raise PresetError(f"the model's scheduler class '{class_name[:60]}' is not a diffusers scheduler")
    where = "scheduler_options" if options else "steps"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            current = cls.from_config(config)
            scheduler = build_scheduler(name, current, options, family)
    except PresetError:
        raise
    except Exception as err:  # noqa: BLE001 - any constructor failure means these options are wrong
        raise PresetError(f"{where}: {type(err).__name__}: {_first_line(err)}") from None
    betas = getattr(scheduler, "alphas_cumprod", None)
    if betas is not None and (len(betas) == 0 or not all(math.isfinite(float(b)) for b in betas[:: max(1, len(betas) // 64)])):
        raise PresetError(f"{where}: the noise schedule is empty or not finite")
    for count in sorted(steps):
        extra = family.timestep_kwargs(count, dict(scheduler.config)) if family is not None else {}
        _check_timestep_kwargs(scheduler, extra, family)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scheduler.set_timesteps(count, **extra)
            made = len(scheduler.timesteps)
        except Exception as err:  # noqa: BLE001 - e.g. more steps than training timesteps
            train = scheduler.config.get("num_train_timesteps")
            limit = f" (the model was trained with {train} timesteps)" if train else ""
            raise PresetError(f"steps: {type(scheduler).__name__} cannot make {count} steps{limit}: "
                              f"{_first_line(err) or type(err).__name__}", hint="use fewer --steps") from None
        if made == 0:
            raise PresetError(f"steps: {type(scheduler).__name__} made no timesteps for {count} steps")
        _dry_run(scheduler, count, where, extra)


def _check_timestep_kwargs(scheduler: Any, extra: dict[str, Any], family: Any) -> None:
    """The pipeline passes `sigmas`/`mu` to set_timesteps: a scheduler that takes neither cannot run in it."""
    refused = refused_kwargs(scheduler, extra)
    if refused:
        pipelines = "/".join(family.pipelines) if family is not None else "this pipeline"
        raise PresetError(f"scheduler: {type(scheduler).__name__} cannot take the {' and '.join(refused)} that "
                          f"{pipelines} passes to set_timesteps",
                         hint=f"compatible here: {', '.join(compatible_for(scheduler, family)) or 'none'}")


def _dry_run(scheduler: Any, count: int, where: str, extra: dict[str, Any] | None = None) -> None:
    """Step the scheduler through every timestep on a 2x2 zero sample: failures show before loading."""
    import copy
    import warnings

    import torch

    scheduler = copy.deepcopy(scheduler)
    sample = torch.zeros(1, 1, 2, 2)
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            scheduler.set_timesteps(count, **(extra or {}))
            sample = sample * getattr(scheduler, "init_noise_sigma", 1.0)  # flow schedulers start at pure noise
            for timestep in scheduler.timesteps:
                scale = getattr(scheduler, "scale_model_input", None)  # flow schedulers have none
                model_input = scale(sample, timestep) if scale is not None else sample
                sample = scheduler.step(torch.zeros_like(model_input), timestep, sample).prev_sample
    except Exception as err:  # noqa: BLE001 - the same failure would end the real run
        raise PresetError(f"{where}: {type(scheduler).__name__} fails at {count} steps: "
                          f"{type(err).__name__} {_first_line(err)}".rstrip(),
                          hint="try another --scheduler or other scheduler_options") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else ""
