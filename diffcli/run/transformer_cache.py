"""Step caching for transformer denoisers with diffusers' own hooks (TaylorSeer).

`step_cache: N` means the same as for UNets: the expensive part runs on 1 of every N steps. For a
transformer that is diffusers' TaylorSeer cache (`TaylorSeerCacheConfig(cache_interval=N)`): every Nth
step computes the attention blocks, the steps between predict their outputs with a first-order Taylor
step from the last two computed ones; the first step always computes.

Where the hooks attach is the family's business (`Family.cache_hooks`): Flux and Chroma transformers are
a `CacheMixin` and their pipelines name each call's cache context themselves (`enable_cache`); SD3,
PixArt-Sigma and Sana call their transformer once per step (guidance batched), so the hooks are applied
with `apply_taylorseer_cache` and the whole run is one cache context. Families whose pipelines call the
transformer twice per step without naming the calls (Lumina 2) are refused.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from diffcli.errors import PresetError

ONE_CONTEXT = "_diffcli_one_cache_context"


def _config(interval: int) -> Any:
    import torch
    from diffusers import TaylorSeerCacheConfig

    return TaylorSeerCacheConfig(cache_interval=interval, disable_cache_before_step=1, max_order=1,
                                 taylor_factors_dtype=torch.float32)


def enable_transformer_cache(pipe: Any, interval: int) -> None:
    """Attach a TaylorSeer cache that computes 1 of every `interval` steps, as the family allows."""
    from diffcli.families.registry import family_for

    transformer = pipe.transformer
    how = family_for(type(pipe).__name__).cache_hooks
    if how == "mixin" and callable(getattr(transformer, "enable_cache", None)):
        if getattr(transformer, "is_cache_enabled", False):
            transformer.disable_cache()
        transformer.enable_cache(_config(interval))
    elif how == "one-context":
        from diffusers.hooks import apply_taylorseer_cache

        apply_taylorseer_cache(transformer, _config(interval))
        setattr(transformer, ONE_CONTEXT, True)
    else:
        raise PresetError(f"step_cache: {interval}: diffusers' cache hooks cannot follow {type(pipe).__name__}'s "
                          f"{type(transformer).__name__} calls", hint="set step_cache: 1 for this model")


@contextlib.contextmanager
def cache_scope(transformer: Any) -> Iterator[None]:
    """One denoising run: its hook state starts fresh; for one-context families, the run is that context."""
    if transformer is None:
        yield
        return
    from diffusers.hooks import HookRegistry

    if getattr(transformer, ONE_CONTEXT, False) or getattr(transformer, "is_cache_enabled", False):
        HookRegistry.check_if_exists_or_initialize(transformer).reset_stateful_hooks()
    if getattr(transformer, ONE_CONTEXT, False):
        from diffusers.models.cache_utils import CacheMixin

        with CacheMixin.cache_context(transformer, "run"):  # the context manager only sets the hooks' state name
            yield
    else:
        yield
