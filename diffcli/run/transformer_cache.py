"""Step caching for transformer denoisers with diffusers' own hooks (`CacheMixin.enable_cache`).

`step_cache: N` means the same as for UNets: the expensive part runs on 1 of every N steps. For a
transformer that is diffusers' TaylorSeer cache (`TaylorSeerCacheConfig(cache_interval=N)`): every Nth
step computes the attention blocks, the steps between predict their outputs with a first-order Taylor
step from the last two computed ones; the first step always computes. Transformers that are not a
`CacheMixin` in diffusers 0.42 (SD3, PixArt, Sana, Lumina 2) are refused with a clear error.
"""

from __future__ import annotations

from typing import Any

from diffcli.errors import PresetError


def check_transformer_cache(transformer: Any, interval: int) -> None:
    """PresetError unless diffusers' cache hooks can attach to this transformer."""
    if not callable(getattr(transformer, "enable_cache", None)):
        raise PresetError(f"step_cache: {interval}: diffusers has no cache hooks for {type(transformer).__name__}; "
                          "they attach to Flux and Chroma transformers", hint="set step_cache: 1 for this model")


def enable_transformer_cache(transformer: Any, interval: int) -> None:
    """Attach a TaylorSeer cache that computes 1 of every `interval` steps."""
    import torch
    from diffusers import TaylorSeerCacheConfig

    check_transformer_cache(transformer, interval)
    if getattr(transformer, "is_cache_enabled", False):
        transformer.disable_cache()
    transformer.enable_cache(TaylorSeerCacheConfig(cache_interval=interval, disable_cache_before_step=1,
                                                   max_order=1, taylor_factors_dtype=torch.float32))


def reset_transformer_cache(transformer: Any) -> None:
    """A new denoising run starts from computed steps, not from the last run's predictions."""
    if transformer is not None and getattr(transformer, "is_cache_enabled", False):
        transformer._reset_stateful_cache()
