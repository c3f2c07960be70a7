"""Scheduler short names → diffusers scheduler classes, swapped in with `from_config`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SchedulerSpec:
    """A short name for a diffusers scheduler class plus fixed options."""

    name: str
    class_name: str
    options: tuple[tuple[str, Any], ...] = ()
    label: str = ""  # the A1111 "Sampler:" name
    flow: bool = False  # for flow-matching models (the model predicts a velocity; sigmas run from 1 to 0)


FLOW_OPTIONS = (("use_flow_sigmas", True), ("prediction_type", "flow_prediction"))

SCHEDULERS: dict[str, SchedulerSpec] = {
    spec.name: spec
    for spec in (
        SchedulerSpec("ddpm", "DDPMScheduler", label="DDPM"),
        SchedulerSpec("ddim", "DDIMScheduler", label="DDIM"),
        SchedulerSpec("pndm", "PNDMScheduler", label="PLMS"),
        SchedulerSpec("euler", "EulerDiscreteScheduler", label="Euler"),
        SchedulerSpec("euler-a", "EulerAncestralDiscreteScheduler", label="Euler a"),
        SchedulerSpec("heun", "HeunDiscreteScheduler", label="Heun"),
        SchedulerSpec("lms", "LMSDiscreteScheduler", label="LMS"),
        SchedulerSpec("dpm++2m", "DPMSolverMultistepScheduler", label="DPM++ 2M"),
        SchedulerSpec("dpm++2m-karras", "DPMSolverMultistepScheduler", (("use_karras_sigmas", True),),
                      label="DPM++ 2M Karras"),
        SchedulerSpec("dpm++2m-sde-karras", "DPMSolverMultistepScheduler",
                      (("algorithm_type", "sde-dpmsolver++"), ("use_karras_sigmas", True)),
                      label="DPM++ 2M SDE Karras"),
        SchedulerSpec("dpm++sde", "DPMSolverSDEScheduler", label="DPM++ SDE"),
        SchedulerSpec("dpm++2s", "DPMSolverSinglestepScheduler", label="DPM++ 2S"),
        SchedulerSpec("unipc", "UniPCMultistepScheduler", label="UniPC"),
        SchedulerSpec("deis", "DEISMultistepScheduler", label="DEIS"),
        SchedulerSpec("kdpm2", "KDPM2DiscreteScheduler", label="DPM2"),
        SchedulerSpec("kdpm2-a", "KDPM2AncestralDiscreteScheduler", label="DPM2 a"),
        SchedulerSpec("flow-euler", "FlowMatchEulerDiscreteScheduler", label="Euler", flow=True),
        SchedulerSpec("flow-heun", "FlowMatchHeunDiscreteScheduler", label="Heun", flow=True),
        SchedulerSpec("flow-dpm++2m", "DPMSolverMultistepScheduler", FLOW_OPTIONS, label="DPM++ 2M", flow=True),
        SchedulerSpec("flow-unipc", "UniPCMultistepScheduler", FLOW_OPTIONS, label="UniPC", flow=True),
        SchedulerSpec("flow-lcm", "FlowMatchLCMScheduler", label="LCM", flow=True),
    )
}


def check_scheduler_name(name: str) -> None:
    """Raise ValueError (turned into a preset error) for an unknown short name."""
    if name not in SCHEDULERS:
        from diffcli.plan.suggest import suggest

        raise ValueError(f"unknown scheduler '{name}'{suggest(name, list(SCHEDULERS))} "
                         f"(valid: {', '.join(SCHEDULERS)})")


def name_for(scheduler: Any) -> str | None:
    """The short name matching a scheduler instance, if any (fixed options included)."""
    config = dict(scheduler.config)
    flow = is_flow(scheduler)
    for spec in reversed(list(SCHEDULERS.values())):
        if spec.flow != flow:
            continue
        if spec.class_name == type(scheduler).__name__ and all(config.get(k) == v for k, v in spec.options):
            return spec.name
    return None


def label_for(scheduler: Any) -> str:
    """A1111-style sampler label for a scheduler instance."""
    name = name_for(scheduler)
    return SCHEDULERS[name].label if name else type(scheduler).__name__


def is_flow(scheduler: Any) -> bool:
    """A flow-matching scheduler: a FlowMatch* class, or flow sigmas / flow prediction in its config."""
    config = dict(scheduler.config)
    return (type(scheduler).__name__.startswith("FlowMatch") or bool(config.get("use_flow_sigmas"))
            or config.get("prediction_type") == "flow_prediction")


def compatible_names(scheduler: Any) -> list[str]:
    """Short names whose classes can replace this scheduler: diffusers' `compatibles` for noise-prediction
    models, the flow-matching names for flow models (FlowMatch* classes list no `compatibles`)."""
    if is_flow(scheduler):
        return [spec.name for spec in SCHEDULERS.values() if spec.flow]
    classes = {type(scheduler).__name__} | {cls.__name__ for cls in getattr(scheduler, "compatibles", [])}
    return [spec.name for spec in SCHEDULERS.values() if spec.class_name in classes and not spec.flow]
