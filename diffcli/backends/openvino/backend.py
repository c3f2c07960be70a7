"""OpenVINO backend: the pipeline's denoiser (UNet or transformer) and VAE decoder run by OpenVINO's CPU plugin.

`use_openvino(pipe, preset, device)` swaps the denoiser its family names (`pipe.unet` or `pipe.transformer`) for
`OpenVINODenoiser`, a torch module that keeps the denoiser's `config`, `dtype` and `device` and answers each
call from an OpenVINO model compiled for that call's static shapes (batch with CFG, latent size, text length):
the family adapter (`Family.openvino_inputs`) names the tensors the converted model takes, and a family that
cannot be converted is refused before any conversion (`Family.check_openvino`). An `AutoencoderKL`'s `decode`
is answered the same way (`OpenVINODecoder`; the encoder stays in torch, and so does the whole VAE under
`vae_tiling`/`vae_slicing`). The pipeline's own loop, scheduler and callbacks run unchanged. Each module's dtype
picks OpenVINO's inference precision (`dtype: bfloat16` → bf16, which uses AMX/AVX-512 BF16 where the CPU has
it). Converted models are cached on disk (`cache.py`). Imported only for `backend: openvino`: the torch path
never imports openvino.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from diffcli.backends.openvino.convert import Converted, as_array, import_openvino, inference_precision
from diffcli.errors import PresetError
from diffcli.families.base import Family
from diffcli.families.registry import family_for

OUTPUTS = {"UNet2DConditionModel": ("diffusers.models.unets.unet_2d_condition", "UNet2DConditionOutput"),
           "UNet2DModel": ("diffusers.models.unets.unet_2d", "UNet2DOutput")}
TRANSFORMER_OUTPUT = ("diffusers.models.modeling_outputs", "Transformer2DModelOutput")


def check_openvino(pipe: Any, preset: Any, device: Any) -> tuple[Family, str, Any]:
    """(family, attribute, denoiser) to convert, or a PresetError saying why this run cannot use OpenVINO."""
    family = family_for(type(pipe).__name__)
    attribute = family.denoiser if getattr(pipe, family.denoiser, None) is not None else \
        next((name for name in ("unet", "transformer") if getattr(pipe, name, None) is not None), family.denoiser)
    denoiser = getattr(pipe, attribute, None)
    family.check_openvino(type(denoiser).__name__ if denoiser is not None else "no denoiser",
                          dict(getattr(denoiser, "config", None) or {}))
    refusals = [
        (device.type != "cpu", f"runs on the CPU (device is {device.type})"),
        (preset.compile != "none", "replaces torch.compile (set compile: none)"),
        (bool(preset.loras), "cannot follow LoRA weights (the converted denoiser has fixed weights)"),
        (preset.step_cache > 1, "runs the whole denoiser each call (set step_cache: 1)"),
        (bool(preset.controlnet), "takes no ControlNet (the converted denoiser has no inputs for its residuals)"),
    ]
    for refused, why in refusals:
        if refused:
            raise PresetError(f"backend: openvino: {why}", hint="use backend: torch for this run")
    return family, attribute, denoiser


def use_openvino(pipe: Any, preset: Any, device: Any) -> "OpenVINODenoiser":
    """Replace the pipeline's denoiser (and an AutoencoderKL's `decode`) with OpenVINO-backed stand-ins; each
    converts at its first call."""
    family, attribute, denoiser = check_openvino(pipe, preset, device)
    ov = import_openvino()
    inference_precision(ov, denoiser.dtype)
    source = {"model": preset.model, "revision": preset.revision, "variant": preset.variant}
    shim = OpenVINODenoiser(denoiser, family, attribute, source)
    setattr(pipe, attribute, shim)
    vae = getattr(pipe, "vae", None)
    if type(vae).__name__ == "AutoencoderKL" and not (preset.vae_tiling or preset.vae_slicing):
        inference_precision(ov, vae.dtype)
        vae.decode = OpenVINODecoder(vae, source)  # an instance attribute: the class's method is untouched
    return shim


class OpenVINODenoiser(torch.nn.Module):
    """A denoiser stand-in: same `config`/`dtype`/`device`, called as the pipeline calls the torch module
    (positional or keyword arguments, `return_dict`), answered by compiled OpenVINO models."""

    def __init__(self, denoiser: Any, family: Family, part: str, source: dict[str, Any]) -> None:
        super().__init__()
        self.original = denoiser.eval()
        self.config = denoiser.config
        self.family, self.source = family, source
        shapes = family.openvino_inputs(dict(denoiser.config), 1, 2, 2, 1)
        self.names = tuple(shapes)
        self.scalars = {name for name, shape in shapes.items() if shape == ()}  # a UNet's one timestep per call
        self.signature = inspect.signature(self.original.forward)
        self.output = OUTPUTS.get(type(denoiser).__name__, TRANSFORMER_OUTPUT)
        self.runner = Converted(self.original, lambda module: _Traceable(module, self.names), part, source,
                                self.names)

    @property
    def dtype(self) -> Any:
        return self.original.dtype

    @property
    def device(self) -> Any:
        return self.original.device

    def cache_context(self, name: str) -> Any:
        """The torch module's own (Flux and Chroma pipelines name their calls; no hooks are attached here)."""
        return self.original.cache_context(name)

    def forward(self, *args: Any, return_dict: bool = True, **kwargs: Any) -> Any:
        arguments = self.signature.bind(*args, **kwargs).arguments
        unused = [name for name, value in arguments.items() if name not in self.names and not _empty(value)]
        absent = [name for name in self.names if arguments.get(name) is None]
        if unused or absent:
            what = f"passes {', '.join(unused)}" if unused else f"passes no {', '.join(absent)}"
            raise PresetError(f"backend: openvino: the pipeline {what} to its {type(self.original).__name__}, "
                              "which the converted model does not take", hint="use backend: torch for this model")
        first = arguments[self.names[0]]
        out = self.runner([_scalar(name, arguments[name]) if name in self.scalars
                           else as_array(torch.as_tensor(arguments[name])) for name in self.names])
        out = torch.from_numpy(out).to(first.dtype)
        if not return_dict:
            return (out,)
        import importlib

        module, name = self.output
        return getattr(importlib.import_module(module), name)(sample=out)

    def example_inputs(self, batch: int, height: int, width: int, text_length: int = 77) -> list[Any]:
        """Zero inputs of one call's shapes (latent height/width; batch with CFG; the prompt embeddings' length),
        as the family names them, for `runner.prepare` ahead of a run."""
        import numpy as np

        shapes = self.family.openvino_inputs(dict(self.config), batch, height, width, text_length)
        return [np.zeros(shape, np.float32) for shape in shapes.values()]


class OpenVINODecoder:
    """An AutoencoderKL's `decode(z, return_dict=True, generator=None)` answered by compiled OpenVINO models."""

    def __init__(self, vae: Any, source: dict[str, Any]) -> None:
        self.runner = Converted(vae, _TraceableDecoder, "vae_decoder", source, ("z",))

    def __call__(self, z: Any, return_dict: bool = True, generator: Any = None) -> Any:
        out = torch.from_numpy(self.runner([as_array(z)])).to(z.dtype)
        if not return_dict:
            return (out,)
        from diffusers.models.autoencoders.vae import DecoderOutput

        return DecoderOutput(sample=out)


class _Traceable(torch.nn.Module):
    """The denoiser with the family's tensors as positional inputs and one tensor out, for the converter."""

    def __init__(self, denoiser: Any, names: tuple[str, ...]) -> None:
        super().__init__()
        self.denoiser, self.names = denoiser, names

    def forward(self, *inputs: Any) -> Any:
        return self.denoiser(**dict(zip(self.names, inputs)), return_dict=False)[0]


class _TraceableDecoder(torch.nn.Module):
    """The VAE's decoder path (`post_quant_conv` + decoder), for the converter."""

    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, z: Any) -> Any:
        return type(self.vae).decode(self.vae, z, return_dict=False)[0]


def _scalar(name: str, value: Any) -> Any:
    """An input the family declares as one value per call (shape ()): the pipeline's tensor of equal values, as that
    value (SD pipelines pass a UNet's timestep as one value or a tensor of one)."""
    import numpy as np

    values = torch.as_tensor(value).flatten()
    if values.numel() == 0 or not bool((values == values[0]).all()):
        raise PresetError(f"backend: openvino: the pipeline passes per-image values of {name}, which the converted "
                          "model takes as one value", hint="use backend: torch for this model")
    return np.asarray(float(values[0]), dtype=np.float32)


def _empty(value: Any) -> bool:
    """An argument the converted model may ignore: None, False, or a dict of such (Flux's `{}`, PixArt-Sigma's
    `added_cond_kwargs` of Nones)."""
    if isinstance(value, dict):
        return all(_empty(v) for v in value.values())
    return value is None or value is False
