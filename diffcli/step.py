"""The per-step record the sampler yields and the sinks read (below both)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Step:
    """One scheduler call of a batch: `step` counts complete denoising steps from 1."""

    step: int
    total_steps: int
    call: int
    total_calls: int
    timestep: float
    sample: Any
    x0: Any
    complete: bool
