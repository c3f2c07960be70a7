"""Step caching (DeepCache): reuse a UNet's deep features on N-1 of every N calls.

On a full call the whole UNet runs and every block deeper than the shallowest level keeps its
output. On a cached call only the time embedding, `conv_in`, the first down block, the last up
block and `conv_out` run: the deeper down blocks, the mid block and every up block but the last
hand back what they returned on the last full call, so the last up block gets the cached deep
feature plus fresh skip connections from the first down block (DeepCache, Ma et al. 2023,
uniform schedule, shallowest branch).

The cache wraps the forward of this UNet instance and of its deep blocks only (no diffusers class
is patched); `disable` restores them. A new denoising run is recognised by a call whose
timestep is larger than the last one, or whose input has another shape; `reset` starts one
explicitly. Diffusers' own cache hooks (`diffusers.hooks`) need a `CacheMixin` model, which
UNet2DConditionModel and UNet2DModel are not (diffusers 0.42).
"""

from __future__ import annotations

from typing import Any, Callable

from diffcli.errors import PresetError

SUPPORTED = ("UNet2DConditionModel", "UNet2DModel")
ATTRIBUTE = "_diffcli_step_cache"


class StepCache:
    """The cache state of one UNet: which call of the run this is, and the deep blocks' last outputs."""

    def __init__(self, unet: Any, interval: int, order: Callable[[], int] = lambda: 1) -> None:
        self.unet = unet
        self.interval = interval
        self.order = order  # UNet calls per step of the current scheduler (2: Heun, KDPM2, DPM++ SDE)
        self.deep = [*list(unet.down_blocks)[1:], *([unet.mid_block] if unet.mid_block is not None else []),
                     *list(unet.up_blocks)[:-1]]
        self.calls = 0  # UNet calls since the run began
        self.full_calls = 0  # totals since enabled (reports, tests)
        self.cached_calls = 0
        self.full = True
        self.outputs: dict[int, Any] = {}
        self.last_timestep: float | None = None
        self.signature: tuple[Any, ...] | None = None
        self._previous: list[tuple[Any, Any]] = []

    def reset(self) -> None:
        """Start a new run: the next call is a full one."""
        self.calls, self.outputs, self.last_timestep, self.signature = 0, {}, None, None

    def install(self) -> None:
        self._previous = [(block, vars(block).get("forward")) for block in [self.unet, *self.deep]]
        original = self.unet.forward
        for index, block in enumerate(self.deep):
            block.forward = self._block_forward(index, block.forward)

        def forward(sample: Any, timestep: Any, *args: Any, **kwargs: Any) -> Any:
            self._begin(sample, timestep)
            return original(sample, timestep, *args, **kwargs)

        self.unet.forward = forward
        setattr(self.unet, ATTRIBUTE, self)

    def remove(self) -> None:
        for block, previous in self._previous:  # an instance forward set before (accelerate hooks) comes back
            if previous is None:
                vars(block).pop("forward", None)
            else:
                block.forward = previous
        vars(self.unet).pop(ATTRIBUTE, None)
        self.outputs = {}

    def _begin(self, sample: Any, timestep: Any) -> None:
        """Decide whether this call is full: the calls of the run's first step, then of every `interval`-th step."""
        value = _first_value(timestep)
        signature = (tuple(sample.shape), sample.dtype, sample.device)
        if signature != self.signature or (value is not None and self.last_timestep is not None
                                           and value > self.last_timestep):
            self.reset()
            self.signature = signature
        self.last_timestep = value
        # whole steps: a second-order step's predictor and corrector are both full or both cached
        self.full = (self.calls // max(1, self.order())) % self.interval == 0
        self.calls += 1
        if self.full:
            self.full_calls += 1
        else:
            self.cached_calls += 1

    def _block_forward(self, index: int, original: Callable[..., Any]) -> Callable[..., Any]:
        def forward(*args: Any, **kwargs: Any) -> Any:
            if self.full or index not in self.outputs:
                self.outputs[index] = original(*args, **kwargs)
            return self.outputs[index]

        return forward


def _first_value(timestep: Any) -> float | None:
    """The (first) timestep as a float; None when it cannot be read."""
    try:
        if hasattr(timestep, "flatten"):
            return float(timestep.flatten()[0]) if timestep.numel() else None
        return float(timestep)
    except (TypeError, ValueError, RuntimeError):  # RuntimeError: a meta tensor has no value
        return None


def check_step_cache(pipe: Any, interval: int) -> Any:
    """The UNet to cache, or a PresetError saying why this pipeline cannot use step caching."""
    if getattr(pipe, "unet", None) is None:
        kind = type(getattr(pipe, "transformer", None)).__name__ if getattr(pipe, "transformer", None) is not None \
            else "no UNet"
        raise PresetError(f"step_cache: {interval}: only UNet pipelines can cache steps (this denoiser: {kind})",
                          hint="set step_cache: 1 for this model")
    unet = pipe.unet
    name = type(unet).__name__
    if name not in SUPPORTED or len(getattr(unet, "down_blocks", ())) < 2 or len(unet.up_blocks) < 2:
        raise PresetError(f"step_cache: {interval}: supports {' and '.join(SUPPORTED)} with two or more "
                          f"down blocks, not {name}", hint="set step_cache: 1 for this model")
    return unet


def enable_step_cache(pipe: Any, interval: int) -> StepCache | None:
    """Cache deep features on N-1 of every N UNet calls (`interval` 1: nothing changes, None returned)."""
    if interval <= 1:
        return None
    if getattr(pipe, "unet", None) is None and getattr(pipe, "transformer", None) is not None:
        from diffcli.run.transformer_cache import enable_transformer_cache

        enable_transformer_cache(pipe, interval)  # diffusers' own hooks
        return None
    unet = check_step_cache(pipe, interval)
    disable_step_cache(unet)
    cache = StepCache(unet, interval, order=lambda: int(getattr(pipe.scheduler, "order", 1) or 1))
    cache.install()
    return cache


def disable_step_cache(unet: Any) -> None:
    """Restore the UNet's own forward and its blocks' (no-op when no cache is installed)."""
    cache = getattr(unet, ATTRIBUTE, None) if unet is not None else None
    if cache is not None:
        cache.remove()


def reset_step_cache(unet: Any) -> None:
    """Begin a new denoising run on this UNet (no-op without a cache)."""
    cache = getattr(unet, ATTRIBUTE, None) if unet is not None else None
    if cache is not None:
        cache.reset()
