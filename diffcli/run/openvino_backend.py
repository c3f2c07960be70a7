"""OpenVINO backend: the pipeline's UNet converted with OpenVINO's converter and run by its CPU plugin.

`use_openvino(pipe, preset, device)` swaps `pipe.unet` for `OpenVINOUNet`, a torch module that
keeps the UNet's `config`, `dtype` and `device` and answers each call from an OpenVINO model
compiled for that call's static shapes (batch with CFG, latent size, text length). The
pipeline's own loop, scheduler and callbacks run unchanged. The UNet's dtype picks OpenVINO's
inference precision (`dtype: bfloat16` → bf16, which uses AMX/AVX-512 BF16 where the CPU has it);
the conversion itself always traces float32 weights. Converted models are cached on disk
(`ov_cache.py`), so each shape is converted once per model and library versions. Imported only
for `backend: openvino`: the torch path never imports openvino.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from diffcli.errors import ModelError, PresetError

SUPPORTED = ("UNet2DConditionModel", "UNet2DModel")
PRECISIONS = {torch.float32: ("f32", "FP32"), torch.bfloat16: ("bf16", "BF16"), torch.float16: ("f16", "FP16")}
STATS = {"conversions": 0, "disk_hits": 0, "compile_s": 0.0}  # this process's counts (tests, benchmarks)


def import_openvino() -> Any:
    """The `openvino` module, or a PresetError saying how to install it."""
    try:
        import openvino
    except ImportError as err:
        raise PresetError(f"backend: openvino: the openvino package cannot be imported ({err})",
                          hint='pip install "diffcli[openvino]", or set backend: torch') from None
    return openvino


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


def inference_precision(ov: Any, dtype: Any) -> str:
    """OpenVINO's INFERENCE_PRECISION_HINT for a UNet of this dtype, or a PresetError if this CPU lacks it."""
    hint, capability = PRECISIONS.get(dtype, (None, None))
    if hint is None:
        raise PresetError(f"backend: openvino: runs float32, bfloat16 or float16, not {dtype}",
                          hint="set dtype: float32")
    available = cpu_capabilities(ov)
    if capability not in available:
        raise PresetError(f"backend: openvino: this CPU has no {capability} inference "
                          f"(OpenVINO lists {', '.join(available)})", hint="set dtype: float32")
    return hint


def cpu_capabilities(ov: Any) -> list[str]:
    """What OpenVINO's CPU plugin can compute on this machine (FP32, BF16, FP16, INT8, ...)."""
    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def use_openvino(pipe: Any, preset: Any, device: Any) -> "OpenVINOUNet":
    """Replace `pipe.unet` with the OpenVINO-backed module (conversion happens at its first call)."""
    unet = check_openvino(pipe, preset, device)
    inference_precision(import_openvino(), unet.dtype)
    shim = OpenVINOUNet(unet, source={"model": preset.model, "revision": preset.revision, "variant": preset.variant})
    pipe.unet = shim
    return shim


class OpenVINOUNet(torch.nn.Module):
    """A UNet stand-in: same `config`/`dtype`/`device`, forward answered by compiled OpenVINO models."""

    def __init__(self, unet: Any, source: dict[str, Any]) -> None:
        super().__init__()
        self.original = unet.eval()
        self.config = unet.config
        self.conditional = type(unet).__name__ == "UNet2DConditionModel"
        self.source = source
        self._compiled: dict[tuple[Any, ...], Any] = {}

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
        inputs = [_array(sample), np.asarray(_timestep(timestep), dtype=np.float32)]
        if self.conditional:
            inputs.append(_array(encoder_hidden_states))
        compiled = self._model_for(inputs)
        out = torch.from_numpy(compiled(inputs)[0]).to(sample.dtype)
        if not return_dict:
            return (out,)
        if self.conditional:
            from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

            return UNet2DConditionOutput(sample=out)
        from diffusers.models.unets.unet_2d import UNet2DOutput

        return UNet2DOutput(sample=out)

    def example_inputs(self, batch: int, height: int, width: int, text_length: int = 77) -> list[np.ndarray]:
        """Zero inputs of a call's shapes (latent height/width; batch with CFG), for `prepare` ahead of a run."""
        inputs = [np.zeros((batch, self.config.in_channels, height, width), np.float32), np.asarray(999.0, np.float32)]
        if self.conditional:
            inputs.append(np.zeros((batch, text_length, self.config.cross_attention_dim), np.float32))
        return inputs

    def prepare(self, inputs: list[np.ndarray], model: Any = None) -> Any:
        """Compile for these inputs' shapes: `model` when given (not cached), else the UNet read from the disk
        cache or converted (and cached)."""
        from diffcli.run.ov_cache import cache_key, compile_cached, load_or_convert

        ov = import_openvino()
        shapes = tuple(tuple(a.shape) for a in inputs)
        xml = None
        if model is None:
            key = cache_key(self.original, self.source, shapes, ov.__version__)
            model, converted, xml = load_or_convert(ov, key, lambda: self.convert(inputs))
            STATS["conversions" if converted else "disk_hits"] += 1
        started = time.perf_counter()
        self._compiled[shapes] = compile_cached(ov, model, xml, {
            "INFERENCE_PRECISION_HINT": inference_precision(ov, self.dtype),
            "INFERENCE_NUM_THREADS": torch.get_num_threads()})
        STATS["compile_s"] += time.perf_counter() - started
        return self._compiled[shapes]

    def _model_for(self, inputs: list[np.ndarray]) -> Any:
        compiled = self._compiled.get(tuple(tuple(a.shape) for a in inputs))
        return compiled if compiled is not None else self.prepare(inputs)

    def convert(self, inputs: list[np.ndarray]) -> Any:
        """The UNet as an OpenVINO model with these inputs' static shapes (not cached), traced in float32."""
        import copy
        import warnings

        ov = import_openvino()
        example = tuple(torch.from_numpy(a) for a in inputs)
        specs = [(list(a.shape), ov.Type.f32) for a in inputs]
        unet = self.original if self.dtype == torch.float32 else copy.deepcopy(self.original).float()
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # tracer warnings about Python branches on shapes: shapes are static
                return ov.convert_model(_Traceable(unet, self.conditional), example_input=example, input=specs)
        except Exception as err:  # noqa: BLE001 - the converter raises many kinds; one line for the user
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise ModelError(f"backend: openvino: cannot convert the UNet: {first}",
                             hint="use backend: torch for this model") from None


class _Traceable(torch.nn.Module):
    """The UNet with tensor-only inputs and output, for the converter."""

    def __init__(self, unet: Any, conditional: bool) -> None:
        super().__init__()
        self.unet, self.conditional = unet, conditional

    def forward(self, sample: Any, timestep: Any, *context: Any) -> Any:
        if self.conditional:
            return self.unet(sample, timestep, context[0], return_dict=False)[0]
        return self.unet(sample, timestep, return_dict=False)[0]


def _array(tensor: Any) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().to("cpu", torch.float32).numpy())


def _timestep(timestep: Any) -> float:
    """One timestep for the whole batch (the converted model takes a scalar)."""
    values = torch.as_tensor(timestep).flatten()
    if values.numel() == 0 or not bool((values == values[0]).all()):
        raise PresetError("backend: openvino: the pipeline passes per-image timesteps, which the converted UNet "
                          "does not take", hint="use backend: torch for this model")
    return float(values[0])
