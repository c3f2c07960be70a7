"""OpenVINO on a transformer denoiser: can OpenVINO's converter take the digits-flow SD3Transformer2DModel, and how
fast is one call against torch fp32 (batch 64: 32 images with CFG)? diffcli's OpenVINO backend converts UNets only;
this measures whether extending it to transformers would pay.

    python bench/openvino_transformer.py [--repeats 20]

Median seconds per call, the same random inputs for both; max |difference| from torch fp32.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]  # bench/openvino.py is not openvino


def main() -> None:
    import numpy as np
    import openvino as ov
    import torch
    from diffusers import SD3Transformer2DModel

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    transformer = SD3Transformer2DModel.from_pretrained(REPO / "models" / "digits-flow" / "transformer").eval()

    class Call(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, x, context, pooled, timestep):  # noqa: ANN001 - traced
            return self.model(hidden_states=x, encoder_hidden_states=context, pooled_projections=pooled,
                              timestep=timestep, return_dict=False)[0]

    call, batch = Call(transformer), 64
    inputs = (torch.randn(batch, 4, 8, 8), torch.randn(batch, 32, 128), torch.randn(batch, 128),
              torch.full((batch,), 500.0))

    def median(function) -> float:
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            function()
            times.append(time.perf_counter() - started)
        return float(np.median(times))

    with torch.no_grad():
        started = time.perf_counter()
        model = ov.convert_model(call, example_input=inputs)
        converted = time.perf_counter() - started
        reference = call(*inputs).numpy()
        torch_s = median(lambda: call(*inputs))
    arrays = [a.numpy() for a in inputs]
    print(f"converted in {converted:.1f} s; torch fp32 {torch_s:.4f} s/call")
    for hint in ("f32", "bf16"):
        compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint})
        difference = float(np.abs(compiled(arrays)[0] - reference).max())
        seconds = median(lambda: compiled(arrays))
        print(f"openvino {hint}: {seconds:.4f} s/call, {torch_s / seconds:.2f}x torch fp32, max |diff| {difference:.4f}")


if __name__ == "__main__":
    main()
