"""Sampler: runs the denoising loop and reports each step as a `Step` to a callback.

Two drivers share one `StepTracker`: our own loop for unconditional models (diffusers'
DDPMPipeline breaks or degrades with many schedulers) and the pipeline's own
`__call__` with `callback_on_step_end` for text-to-image pipelines.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from diffcli.families.base import Family
from diffcli.families.unet import OTHER
from diffcli.step import Step


StepCallback = Callable[[Step], None]


class StepTracker:
    """Wraps `scheduler.step` to see each call's output; counts complete steps.

    Second-order schedulers (Heun, KDPM2, DPM++ SDE) call the model twice per step and
    say so with `state_in_first_order`; PNDM's Runge-Kutta warm-up makes extra calls
    too: its calls are spread evenly over the requested steps.
    """

    def __init__(self, scheduler: Any, steps: int, on_step: StepCallback | None, want_x0: bool,
                 skip_calls: int = 0, family: Family = OTHER, unpack: Callable[[Any], Any] | None = None) -> None:
        self.scheduler = scheduler
        self.family = family
        self.unpack = unpack or (lambda latents: latents)  # packed latents (Flux) → (B, C, h, w) for the sinks
        self.steps = steps
        self.skip_calls = skip_calls  # img2img: the schedule's first calls, which never run
        self.on_step = on_step
        self.want_x0 = want_x0
        self.calls = 0
        self.done = 0
        self._last: tuple[Any, Any, Any, Any] | None = None
        self._original = scheduler.step
        if on_step is not None:
            scheduler.step = self._step

    def _step(self, model_output: Any, timestep: Any, sample: Any, *args: Any, **kwargs: Any) -> Any:
        out = self._original(model_output, timestep, sample, *args, **kwargs)
        self._last = (model_output, timestep, sample, out)
        return out

    def close(self) -> None:
        """Restore the scheduler's own `step`."""
        if "step" in vars(self.scheduler):
            del self.scheduler.step

    def after_call(self, sample: Any) -> None:
        """Called after each scheduler step with the new sample."""
        if self.on_step is None:
            return
        self.calls += 1
        total_calls = max(len(self.scheduler.timesteps) - self.skip_calls, 1)
        before = self.done
        if hasattr(self.scheduler, "state_in_first_order"):
            if self.scheduler.state_in_first_order or self.calls >= total_calls:
                self.done += 1
        else:
            self.done = (self.calls * self.steps) // max(total_calls, 1)
        self.done = min(self.done, self.steps)
        model_output, timestep, sample_in, out = self._last if self._last else (None, 0, None, None)
        x0 = None
        if self.want_x0 and out is not None:
            x0 = getattr(out, "pred_original_sample", None)
            if x0 is None:
                x0 = self.family.estimate_x0(self.scheduler, model_output, timestep, sample_in)
            x0 = self.unpack(x0)
        self.on_step(Step(
            step=self.done, total_steps=self.steps, call=self.calls, total_calls=total_calls,
            timestep=float(timestep), sample=self.unpack(sample), x0=x0, complete=self.done > before,
        ))


def _accepts(func: Any, name: str) -> bool:
    return name in inspect.signature(func).parameters


def sample_unconditional(pipe: Any, steps: int, generators: list[Any], on_step: StepCallback | None,
                         want_x0: bool = False, init: Any = None, strength: float | None = None) -> Any:
    """Denoise a batch (one generator per image) with any compatible scheduler; images in [0, 1].

    With `init` (pixels in [-1, 1]) and `strength` (img2img, SDEdit) the schedule starts at step
    steps - int(steps * strength): the init image gets that timestep's noise (`add_noise`, no
    `init_noise_sigma` scaling, as diffusers' img2img pipelines do) and only the rest run.
    """
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    from diffcli.run.step_cache import reset_step_cache

    unet, scheduler = pipe.unet, pipe.scheduler
    reset_step_cache(unet)  # a new run starts with a full UNet call
    size = unet.config.sample_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    device = pipe._execution_device
    shape = (len(generators), unet.config.in_channels, height, width)
    sample = randn_tensor(shape, generator=generators, device=device, dtype=unet.dtype)
    scheduler.set_timesteps(steps, device=device)
    timesteps, run_steps, skip = scheduler.timesteps, steps, 0
    if init is None:
        sample = sample * scheduler.init_noise_sigma
    else:
        run_steps = min(int(steps * (strength or 0)), steps)
        skip = (steps - run_steps) * scheduler.order
        timesteps = scheduler.timesteps[skip:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(skip)
        sample = scheduler.add_noise(init, sample, timesteps[:1].repeat(len(generators)))
    extra = {"generator": generators} if _accepts(scheduler.step, "generator") else {}
    tracker = StepTracker(scheduler, run_steps, on_step, want_x0, skip_calls=skip)
    try:
        with torch.inference_mode():
            for timestep in timesteps:
                model_input = scheduler.scale_model_input(sample, timestep)
                model_output = unet(model_input, timestep).sample
                sample = scheduler.step(model_output, timestep, sample, **extra).prev_sample
                tracker.after_call(sample)
    finally:
        tracker.close()
    if getattr(pipe, "vqvae", None) is not None:  # latent (LDM) pipelines decode as LDMPipeline does
        from diffcli.sinks.pixels import decode_latents

        return decode_latents(pipe, sample)
    return (sample / 2 + 0.5).clamp(0, 1)


def sample_txt2img(pipe: Any, call_kwargs: dict[str, Any], steps: int, on_step: StepCallback | None,
                   want_x0: bool = False, run_steps: int | None = None, family: Family = OTHER,
                   size: tuple[int, int] | None = None) -> Any:
    """Run a text-to-image pipeline's own loop; images as float numpy in [0, 1] (B, H, W, C).

    `run_steps` (img2img) is how many of the `steps` actually run: the schedule's first calls are skipped.
    """
    import torch

    from diffcli.run.step_cache import reset_step_cache

    reset_step_cache(getattr(pipe, "unet", None))  # a new run starts with a full UNet call
    run_steps = steps if run_steps is None else run_steps
    width, height = size or (call_kwargs.get("width"), call_kwargs.get("height"))
    tracker = StepTracker(pipe.scheduler, run_steps, on_step, want_x0,
                          skip_calls=(steps - run_steps) * pipe.scheduler.order, family=family,
                          unpack=lambda latents: family.unpack(pipe, latents, height, width))
    kwargs = {"output_type": "np", **call_kwargs, "num_inference_steps": steps}  # hires: latents may be asked
    if on_step is not None and _accepts(pipe.__call__, "callback_on_step_end"):
        def callback(_pipe: Any, _index: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            tracker.after_call(tensors["latents"])
            return {}

        kwargs["callback_on_step_end"] = callback
    elif on_step is not None and _accepts(pipe.__call__, "callback"):  # the older call (the upscalers)
        kwargs.update(callback=lambda _step, _timestep, latents: tracker.after_call(latents), callback_steps=1)
    accepted = inspect.signature(pipe.__call__).parameters
    dropped = sorted(k for k in kwargs if k not in accepted and k != "callback_on_step_end")
    if dropped:
        from diffcli.errors import UsageError

        raise UsageError(f"{type(pipe).__name__} does not take {', '.join(dropped)}",
                         hint="drop those settings for this model")
    kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    from diffcli.run.transformer_cache import cache_scope

    try:
        with torch.inference_mode(), cache_scope(getattr(pipe, "transformer", None)):
            result = pipe(**kwargs)
    finally:
        tracker.close()
    return result.images


def sample_batch(pipe: Any, task: str, batch: list[Any], generators: list[Any], on_step: StepCallback | None,
                 want_x0: bool) -> Any:
    """One batch of resolved items (they share steps, guidance and size) → images in [0, 1]."""
    first = batch[0]
    if task == "unconditional":
        if first.strength is not None:  # img2img (SDEdit) from the init image
            from diffcli.run.img2img import pixel_init

            return sample_unconditional(pipe, first.steps, generators, on_step, want_x0,
                                        init=pixel_init(pipe, batch), strength=first.strength)
        return sample_unconditional(pipe, first.steps, generators, on_step, want_x0)
    from diffcli.families.registry import family_for

    family = family_for(type(pipe).__name__)
    kwargs: dict[str, Any] = {"prompt": [item.prompt for item in batch], "guidance_scale": first.guidance_scale,
                              "width": first.width, "height": first.height, "generator": generators}
    if first.negative_prompt:
        kwargs["negative_prompt"] = [item.negative_prompt for item in batch]
    if first.max_sequence_length is not None:
        kwargs["max_sequence_length"] = first.max_sequence_length
    if first.loras:  # this batch's LoRA weights (the adapters were loaded with the pipeline)
        from diffcli.run.loras import set_lora_weights

        set_lora_weights(pipe, first.loras)
    if first.prompt_syntax == "weighted":  # A1111 weights and long prompts, as embeddings
        from diffcli.run.prompt_embeds import weighted_kwargs

        kwargs.update(weighted_kwargs(pipe, kwargs.pop("prompt"), kwargs.pop("negative_prompt", None)))
    if first.upscale is not None:  # upscale: the upscaler as loaded; the source image decides the size
        from diffcli.run.upscale import upscale_kwargs

        kwargs = {k: v for k, v in kwargs.items() if k not in ("width", "height")}
        return sample_txt2img(pipe, {**kwargs, **upscale_kwargs(pipe, batch)}, first.steps, on_step, want_x0,
                              family=family, size=(first.width, first.height))
    from diffcli.run.controlnet import with_control  # with ControlNets: the family's ControlNet pipelines
    from diffcli.run.img2img import image_pipeline, init_images

    if first.inpaint is not None:  # inpaint: the inpainting pipeline on the same modules (or the model's own)
        from diffcli.run.inpaint import inpaint_kwargs, inpaint_pipeline, model_refusals

        kwargs.update(inpaint_kwargs(pipe, batch))
        with model_refusals(pipe):
            return _image_pass(*with_control(inpaint_pipeline(pipe), pipe, "inpaint", kwargs, batch), first.steps,
                               first.run_steps, on_step, want_x0, family)
    if first.strength is not None:  # img2img: diffusers' image-to-image pipeline on the same modules
        kwargs.update(image=init_images(pipe, batch), strength=first.strength)
        return _image_pass(*with_control(image_pipeline(pipe), pipe, "img2img", kwargs, batch), first.steps,
                           first.run_steps, on_step, want_x0, family)
    if first.hires is not None:  # hires fix: txt2img, upscale, then an img2img pass at the new size
        from diffcli.run.hires import first_pass_kwargs, second_pass_kwargs, upscale

        made = sample_txt2img(pipe, {**kwargs, **first_pass_kwargs(batch)}, first.steps, on_step, want_x0,
                              family=family)
        second = second_pass_kwargs(kwargs, upscale(pipe, made, batch), batch)
        return _image_pass(image_pipeline(pipe), second, first.hires.steps, first.hires.run_steps, None, False,
                           family)
    return sample_txt2img(*with_control(pipe, pipe, "txt2img", kwargs, batch), first.steps, on_step, want_x0,
                          family=family)


def _image_pass(image_pipe: Any, kwargs: dict[str, Any], steps: int, run_steps: int, on_step: StepCallback | None,
                want_x0: bool, family: Family) -> Any:
    """An image-to-image or inpainting pipeline's run from `kwargs["image"]` at `kwargs`' width x height."""
    size = (kwargs["width"], kwargs["height"])
    if not _accepts(image_pipe.__call__, "width"):  # SD/SDXL img2img: the image (already fitted) decides the size
        kwargs = {k: v for k, v in kwargs.items() if k not in ("width", "height")}
    images = sample_txt2img(image_pipe, kwargs, steps, on_step, want_x0, run_steps, family, size=size)
    if isinstance(images, list):  # PIL images (inpaint's padding_mask_crop pastes them): floats in [0, 1]
        import numpy as np

        arrays = [np.asarray(image, dtype=np.float32) / 255.0 for image in images]
        images = np.stack([array[..., None] if array.ndim == 2 else array for array in arrays])
    return images
