"""Running one torch module through OpenVINO: converted (or read from the disk cache) and compiled per input shapes.

`Converted(module, traceable, part, source, names)` is called with a list of float32 arrays (the inputs `names`
says, in order) and returns the model's first output; each new set of input shapes is converted once
(`openvino.convert_model`, static shapes, traced in float32 even when the module is not) and compiled at the
inference precision that the module's dtype names (`PRECISIONS`), with torch's thread count.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

from diffcli.errors import ModelError, PresetError

PRECISIONS = {torch.float32: ("f32", "FP32"), torch.bfloat16: ("bf16", "BF16"), torch.float16: ("f16", "FP16")}
STATS = {"conversions": 0, "disk_hits": 0, "compile_s": 0.0}  # this process's counts (tests, benchmarks)


def import_openvino() -> Any:
    """The `openvino` module, or a PresetError saying how to install it."""
    try:
        import openvino
    except ImportError as err:
        raise PresetError(f"backend: openvino: the openvino package cannot be imported ({err})",
                          hint='in your diffcli clone: pip install -e ".[openvino]", or set backend: torch') from None
    return openvino


def cpu_capabilities(ov: Any) -> list[str]:
    """What OpenVINO's CPU plugin can compute on this machine (FP32, BF16, FP16, INT8, ...)."""
    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def inference_precision(ov: Any, dtype: Any) -> str:
    """OpenVINO's INFERENCE_PRECISION_HINT for a module of this dtype, or a PresetError if this CPU lacks it."""
    hint, capability = PRECISIONS.get(dtype, (None, None))
    if hint is None:
        raise PresetError(f"backend: openvino: runs float32, bfloat16 or float16, not {dtype}",
                          hint="set dtype: float32")
    available = cpu_capabilities(ov)
    if capability not in available:
        raise PresetError(f"backend: openvino: this CPU has no {capability} inference "
                          f"(OpenVINO lists {', '.join(available)})", hint="set dtype: float32")
    return hint


class Converted:
    """`module` as OpenVINO models, one per set of input shapes (see the module docstring)."""

    def __init__(self, module: Any, traceable: Callable[[Any], torch.nn.Module], part: str,
                 source: dict[str, Any], names: tuple[str, ...] = ()) -> None:
        self.module, self.traceable, self.part, self.source, self.names = module, traceable, part, source, names
        self.compiled: dict[tuple[Any, ...], Any] = {}

    def __call__(self, inputs: list[np.ndarray]) -> np.ndarray:
        compiled = self.compiled.get(tuple(tuple(a.shape) for a in inputs))
        return (compiled if compiled is not None else self.prepare(inputs))(inputs)[0]

    def prepare(self, inputs: list[np.ndarray], model: Any = None) -> Any:
        """Compile for these inputs' shapes: `model` when given (not cached), else the model read from the
        disk cache or converted (and cached)."""
        from diffcli.backends.openvino.cache import cache_key, compile_cached, load_or_convert

        ov = import_openvino()
        shapes = tuple(tuple(a.shape) for a in inputs)
        xml = None
        if model is None:
            key = cache_key(self.module, self.source, self.part, shapes, ov.__version__, self.names)
            model, converted, xml = load_or_convert(ov, key, lambda: self.convert(inputs))
            STATS["conversions" if converted else "disk_hits"] += 1
        started = time.perf_counter()
        self.compiled[shapes] = compile_cached(ov, model, xml, {
            "INFERENCE_PRECISION_HINT": inference_precision(ov, self.module.dtype),
            "INFERENCE_NUM_THREADS": torch.get_num_threads()})
        STATS["compile_s"] += time.perf_counter() - started
        return self.compiled[shapes]

    def convert(self, inputs: list[np.ndarray]) -> Any:
        """The module as an OpenVINO model with these inputs' static shapes (not cached), traced in float32.

        A module in another dtype is cast to float32 in place for the trace and cast back tensor by tensor
        afterwards (exact: bfloat16 and float16 values are float32 values); no copy of the weights is made.
        """
        import warnings

        ov = import_openvino()
        example = tuple(torch.from_numpy(a) for a in inputs)
        specs = [(list(a.shape), ov.Type.f32) for a in inputs]
        tensors = [*self.module.parameters(), *self.module.buffers()]
        dtypes = [t.dtype for t in tensors]
        try:
            if any(dtype != torch.float32 for dtype in dtypes):
                self.module.float()
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # tracer warnings about Python branches on shapes: shapes are static
                return ov.convert_model(self.traceable(self.module), example_input=example, input=specs)
        except Exception as err:  # noqa: BLE001 - the converter raises many kinds; one line for the user
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise ModelError(f"backend: openvino: cannot convert the {self.part.replace('_', ' ')}: {first}",
                             hint="use backend: torch for this model") from None
        finally:
            with torch.no_grad():
                for tensor, dtype in zip(tensors, dtypes):
                    if tensor.dtype != dtype:
                        tensor.data = tensor.data.to(dtype)


def as_array(tensor: Any) -> np.ndarray:
    """A tensor as a contiguous float32 array (the converted models' input type)."""
    return np.ascontiguousarray(tensor.detach().to("cpu", torch.float32).numpy())
