"""Speed and memory levers (preset keys) applied the current diffusers way."""

from __future__ import annotations

from typing import Any

from diffcli.errors import PresetError
from diffcli.plan.presets import Preset


def denoiser_of(pipe: Any) -> Any:
    """The pipeline's denoising network (`unet`, or `transformer` for DiT pipelines)."""
    return getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)


def apply_levers(pipe: Any, preset: Preset, device: Any) -> None:
    """Apply channels_last, attention backend, VAE tiling/slicing, CPU offload, step caching, backend, compile."""
    import torch

    denoiser = denoiser_of(pipe)
    vae = getattr(pipe, "vae", None)
    if preset.channels_last and denoiser is not None:
        denoiser.to(memory_format=torch.channels_last)
    if preset.attention_backend:
        if getattr(pipe, "transformer", None) is None:
            raise PresetError(f"attention_backend: {preset.attention_backend}: only transformer pipelines use it "
                              "(a UNet's attention processors call PyTorch SDPA directly)",
                              hint="drop attention_backend for this model")
        try:
            denoiser.set_attention_backend(preset.attention_backend)
        except (ValueError, RuntimeError, AttributeError, ImportError) as err:
            raise PresetError(f"attention_backend: {preset.attention_backend}: {str(err).splitlines()[0]}") from None
    for key, method in (("vae_tiling", "enable_tiling"), ("vae_slicing", "enable_slicing")):
        if getattr(preset, key):
            if vae is None or not hasattr(vae, method):
                raise PresetError(f"{key}: this pipeline has no VAE that supports it")
            getattr(vae, method)()
    if preset.cpu_offload != "none":
        if device.type == "cpu":
            raise PresetError(f"cpu_offload: {preset.cpu_offload}: needs an accelerator (device is cpu)",
                              hint="set cpu_offload: none on CPU")
        method = "enable_model_cpu_offload" if preset.cpu_offload == "model" else "enable_sequential_cpu_offload"
        getattr(pipe, method)(device=device)
    if preset.step_cache > 1:  # after LoRAs; refused with compile (its branching would recompile the graph)
        from diffcli.run.step_cache import enable_step_cache

        if preset.compile != "none":
            raise PresetError(f"step_cache: {preset.step_cache}: not with compile: {preset.compile}",
                              hint="set step_cache: 1 or compile: none")
        if preset.backend == "torch":  # the openvino backend refuses it itself
            enable_step_cache(pipe, preset.step_cache)
    if preset.backend == "openvino":
        from diffcli.backends.openvino.backend import use_openvino

        use_openvino(pipe, preset, device)
    if preset.compile != "none" and denoiser is not None:
        from diffcli.run.caches import use_compile_cache

        use_compile_cache()  # a later process reuses this one's compiled graphs and kernels
        mode = None if preset.compile == "default" else preset.compile
        compiled = torch.compile(denoiser, mode=mode)
        setattr(pipe, "unet" if getattr(pipe, "unet", None) is not None else "transformer", compiled)
