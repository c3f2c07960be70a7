"""OpenVINO backend: the pipeline's UNet and VAE decoder run by OpenVINO's CPU plugin.

`use_openvino(pipe, preset, device)` swaps `pipe.unet` for `OpenVINOUNet`, a torch module that
keeps the UNet's `config`, `dtype` and `device` and answers each call from an OpenVINO model
compiled for that call's static shapes (batch with CFG, latent size, text length), and answers
an `AutoencoderKL`'s `decode` the same way (`OpenVINODecoder`; the encoder stays in torch, and
so does the whole VAE under `vae_tiling`/`vae_slicing`). The pipeline's own loop, scheduler and
callbacks run unchanged. Each module's dtype picks OpenVINO's inference precision (`dtype:
bfloat16` → bf16, which uses AMX/AVX-512 BF16 where the CPU has it). Converted models are cached
on disk (`cache.py`). Imported only for `backend: openvino`: the torch path never imports openvino.
"""

from __future__ import annotations

from typing import Any

import torch

from diffcli.errors import PresetError
from diffcli.backends.openvino.convert import Converted, as_array, import_openvino, inference_precision

SUPPORTED = ("UNet2DConditionModel", "UNet2DModel")


def check_openvino(pipe: Any, preset: Any, device: Any) -> Any:
    """The UNet to convert, or a PresetError saying why this run cannot use the OpenVINO backend."""
    unet = getattr(pipe, "unet", None)
    name = type(unet).__name__ if unet is not None else type(getattr(pipe, "transformer", None)).__name__
    refusals = [
        (unet is None or name not in SUPPORTED, f"supports {' and '.join(SUPPORTED)} denoisers, not {name}"),
        (device.type != "cpu", f"runs on the CPU (device is {device.type})"),
        (preset.compile != "none", "replaces torch.compile (set compile: none)"),
        (bool(preset.loras), "cannot follow LoRA weights (the converted UNet has fixed weights)"),
        (preset.step_cache > 1, "runs the whole UNet each call (set step_cache: 1)"),
    ]
    config = getattr(unet, "config", {}) or {}
    extra = [k for k in ("addition_embed_type", "class_embed_type", "time_cond_proj_dim", "num_class_embeds",
                         "encoder_hid_dim_type") if config.get(k) is not None]
    refusals.append((bool(extra), f"takes no UNet with {', '.join(extra)} (extra conditioning inputs)"))
    for refused, why in refusals:
        if refused:
            raise PresetError(f"backend: openvino: {why}", hint="use backend: torch for this run")
    return unet


def use_openvino(pipe: Any, preset: Any, device: Any) -> "OpenVINOUNet":
    """Replace `pipe.unet` (and an AutoencoderKL's `decode`) with OpenVINO-backed stand-ins; each converts
    at its first call."""
    unet = check_openvino(pipe, preset, device)
    ov = import_openvino()
    inference_precision(ov, unet.dtype)
    source = {"model": preset.model, "revision": preset.revision, "variant": preset.variant}
    shim = OpenVINOUNet(unet, source)
    pipe.unet = shim
    vae = getattr(pipe, "vae", None)
    if type(vae).__name__ == "AutoencoderKL" and not (preset.vae_tiling or preset.vae_slicing):
        inference_precision(ov, vae.dtype)
        vae.decode = OpenVINODecoder(vae, source)  # an instance attribute: the class's method is untouched
    return shim


class OpenVINOUNet(torch.nn.Module):
    """A UNet stand-in: same `config`/`dtype`/`device`, forward answered by compiled OpenVINO models."""

    def __init__(self, unet: Any, source: dict[str, Any]) -> None:
        super().__init__()
        self.original = unet.eval()
        self.config = unet.config
        self.conditional = type(unet).__name__ == "UNet2DConditionModel"
        self.source = source
        self.runner = Converted(self.original, lambda module: _TraceableUNet(module, self.conditional), "unet",
                                source)

    @property
    def dtype(self) -> Any:
        return self.original.dtype

    @property
    def device(self) -> Any:
        return self.original.device

    def forward(self, sample: Any, timestep: Any, encoder_hidden_states: Any = None, *args: Any,
                return_dict: bool = True, **kwargs: Any) -> Any:
        unused = [k for k, v in kwargs.items() if v not in (None, {}) and k != "class_labels"] + (
            ["positional arguments"] if args else [])
        if unused or kwargs.get("class_labels") is not None:
            raise PresetError(f"backend: openvino: the pipeline passes {', '.join(unused or ['class_labels'])} "
                              "to its UNet, which the converted UNet does not take",
                              hint="use backend: torch for this model")
        import numpy as np

        inputs = [as_array(sample), np.asarray(_timestep(timestep), dtype=np.float32)]
        if self.conditional:
            inputs.append(as_array(encoder_hidden_states))
        out = torch.from_numpy(self.runner(inputs)).to(sample.dtype)
        if not return_dict:
            return (out,)
        if self.conditional:
            from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

            return UNet2DConditionOutput(sample=out)
        from diffusers.models.unets.unet_2d import UNet2DOutput

        return UNet2DOutput(sample=out)

    def example_inputs(self, batch: int, height: int, width: int, text_length: int = 77) -> list[Any]:
        """Zero inputs of a call's shapes (latent height/width; batch with CFG), for `runner.prepare` ahead of
        a run."""
        import numpy as np

        inputs = [np.zeros((batch, self.config.in_channels, height, width), np.float32), np.asarray(999.0, np.float32)]
        if self.conditional:
            inputs.append(np.zeros((batch, text_length, self.config.cross_attention_dim), np.float32))
        return inputs


class OpenVINODecoder:
    """An AutoencoderKL's `decode(z, return_dict=True, generator=None)` answered by compiled OpenVINO models."""

    def __init__(self, vae: Any, source: dict[str, Any]) -> None:
        self.runner = Converted(vae, _TraceableDecoder, "vae_decoder", source)

    def __call__(self, z: Any, return_dict: bool = True, generator: Any = None) -> Any:
        out = torch.from_numpy(self.runner([as_array(z)])).to(z.dtype)
        if not return_dict:
            return (out,)
        from diffusers.models.autoencoders.vae import DecoderOutput

        return DecoderOutput(sample=out)


class _TraceableUNet(torch.nn.Module):
    """The UNet with tensor-only inputs and output, for the converter."""

    def __init__(self, unet: Any, conditional: bool) -> None:
        super().__init__()
        self.unet, self.conditional = unet, conditional

    def forward(self, sample: Any, timestep: Any, *context: Any) -> Any:
        if self.conditional:
            return self.unet(sample, timestep, context[0], return_dict=False)[0]
        return self.unet(sample, timestep, return_dict=False)[0]


class _TraceableDecoder(torch.nn.Module):
    """The VAE's decoder path (`post_quant_conv` + decoder), for the converter."""

    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, z: Any) -> Any:
        return type(self.vae).decode(self.vae, z, return_dict=False)[0]


def _timestep(timestep: Any) -> float:
    """One timestep for the whole batch (the converted model takes a scalar)."""
    values = torch.as_tensor(timestep).flatten()
    if values.numel() == 0 or not bool((values == values[0]).all()):
        raise PresetError("backend: openvino: the pipeline passes per-image timesteps, which the converted UNet "
                          "does not take", hint="use backend: torch for this model")
    return float(values[0])
