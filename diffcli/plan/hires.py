"""Hires fix, planned: the second pass's size, steps, strength and upscaler, checked before loading. No torch.

As A1111 does it: the image is made at width x height, upscaled by the scale (each side
int(side * scale), rounded down to the model's size multiple), and redrawn by an img2img pass
at that size. The final size must stay within the key table's MAX_SIDE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffcli.errors import PresetError
from diffcli.plan.keys import MAX_SIDE

UPSCALER_LABELS = {"lanczos": "Lanczos", "latent": "Latent"}  # A1111's names, for the metadata


@dataclass(frozen=True)
class HiresSpec:
    """The second pass of one item."""

    scale: float
    width: int      # the final size
    height: int
    steps: int      # the img2img pass's num_inference_steps
    strength: float
    upscaler: str   # lanczos | latent

    @property
    def run_steps(self) -> int:
        """The img2img pass's steps that actually run: int(steps * strength), as diffusers does."""
        return min(int(self.steps * self.strength), self.steps)


def hires_spec(preset: Any, size_multiple: int, width: int, height: int, steps: int,
               max_side: int | None = None) -> HiresSpec:
    """The second pass for an item of width x height and `steps` steps; PresetError when it cannot run.
    `max_side`: the largest side the model's denoiser can make, if it has one."""
    scale = float(preset.hires)
    final = [int(side * scale) // size_multiple * size_multiple for side in (width, height)]
    limit = min(MAX_SIDE, max_side or MAX_SIDE)
    if max(final) > limit:
        what = (f"the {limit} pixels a side this model's denoiser can make" if limit < MAX_SIDE
                else f"{MAX_SIDE} pixels a side")
        raise PresetError(f"--hires {scale:g}: {width}x{height} becomes {final[0]}x{final[1]}, more than {what}",
                          hint="use a smaller --hires or a smaller size")
    if final == [width, height]:
        raise PresetError(f"--hires {scale:g}: {width}x{height} stays {width}x{height} (sides are multiples of "
                          f"{size_multiple})", hint="use a larger --hires")
    hires_steps = preset.hires_steps or steps
    spec = HiresSpec(scale=scale, width=final[0], height=final[1], steps=hires_steps,
                     strength=float(preset.hires_strength), upscaler=preset.hires_upscaler)
    if spec.run_steps < 1:
        raise PresetError(f"--hires-strength {spec.strength:g} with {hires_steps} steps runs 0 denoising steps",
                          hint=f"use --hires-strength >= {1 / hires_steps:.3g} or more --hires-steps")
    return spec
