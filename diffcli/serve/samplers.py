"""A1111 sampler names ("Euler a", "DPM++ 2M Karras") ↔ diffcli scheduler short names, by the labels
in plan/schedulers.py (the `Sampler:` field diffcli writes into PNG metadata)."""

from __future__ import annotations

from diffcli.plan.schedulers import SCHEDULERS
from diffcli.serve.errors import RequestError

AUTOMATIC = ("", "automatic")
KARRAS = "karras"


def samplers(compatible: list[str]) -> list[tuple[str, str]]:
    """(A1111 label, short name) for every scheduler this model can use."""
    return [(SCHEDULERS[name].label, name) for name in compatible if SCHEDULERS[name].label]


def scheduler_for(sampler: str | None, schedule: str | None, compatible: list[str],
                  field: str = "sampler_name") -> str | None:
    """The short name for an A1111 sampler (and A1111 1.9's separate `scheduler`: Automatic or Karras);
    None keeps the server's scheduler. Unknown names are a 422 listing the ones this model has."""
    schedule_name = (schedule or "").strip().lower()
    if schedule_name not in AUTOMATIC + (KARRAS,):
        raise RequestError(f"scheduler: '{schedule[:40] if schedule else ''}' is not supported (Automatic or Karras)",
                           param="scheduler")
    if sampler is None or not sampler.strip():
        if schedule_name == KARRAS:
            raise RequestError("scheduler: Karras needs a sampler_name", param="scheduler")
        return None
    wanted = sampler.strip()
    if schedule_name == KARRAS and not wanted.lower().endswith(" karras"):
        wanted += " Karras"
    by_label = {label.lower(): name for label, name in samplers(compatible)}
    if wanted.lower() in by_label:
        return by_label[wanted.lower()]
    if wanted in compatible:  # diffcli's own short names work too
        return wanted
    choices = ", ".join(label for label, _ in samplers(compatible))
    raise RequestError(f"{field}: '{wanted[:60]}' is not a sampler this model has (choose from: {choices})",
                       param=field)


def label_of(name: str, default: str) -> str:
    """The A1111 label of a short name ("" → the server's own scheduler's label)."""
    return SCHEDULERS[name].label if name in SCHEDULERS else default
