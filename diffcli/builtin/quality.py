"""Quality of the built-in digit models, judged by a digit classifier (needs scikit-learn).

Used by `bench/quality.py` and the slow tests; samples through the same code paths as the CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffcli.plan.presets import Preset


def _pipeline(model: Path, device: str, scheduler: str | None) -> Any:
    from diffcli.run.pipelines import load_pipeline

    return load_pipeline(Preset(model=str(model), device=device, scheduler=scheduler), None).pipe


def digits_quality(model: Path, count: int = 256, steps: int = 50, scheduler: str | None = "ddim",
                   device: str = "cpu", seed: int = 0, batch: int = 256) -> dict[str, Any]:
    """Share of `count` samples classified with confidence >= 0.8, and the class histogram."""
    import numpy as np
    import torch

    from diffcli.builtin.digits import classify, train_classifier
    from diffcli.sinks.pixels import to_uint8
    from diffcli.run.sampling import sample_unconditional

    pipe = _pipeline(model, device, scheduler)
    pixels = []
    for first in range(0, count, batch):
        generators = [torch.Generator("cpu").manual_seed(seed + i) for i in range(first, min(count, first + batch))]
        pixels.append(to_uint8(sample_unconditional(pipe, steps, generators, None)))
    pixels = np.concatenate(pixels)
    classifier, holdout = train_classifier(holdout=0.2)
    classifier, _ = train_classifier()
    predicted, confidence = classify(classifier, pixels)
    shares = np.bincount(predicted, minlength=10) / len(predicted)
    return {"model": str(model), "samples": count, "steps": steps, "scheduler": scheduler,
            "confident_share": float((confidence >= 0.8).mean()), "class_shares": [round(float(s), 4) for s in shares],
            "min_class_share": float(shares.min()), "max_class_share": float(shares.max()),
            "real_digits_confident_share_heldout": holdout, "pixels": pixels}


def digits_text_quality(model: Path, guidance: float, per_digit: int = 32, steps: int = 50,
                        scheduler: str | None = None, device: str = "cpu", seed: int = 0,
                        prompt_form: str = "a handwritten digit {n}") -> dict[str, Any]:
    """Per-digit accuracy of prompted samples at one guidance scale."""
    import numpy as np
    import torch

    from diffcli.builtin.digits import WORDS, classify, train_classifier
    from diffcli.sinks.pixels import to_uint8

    pipe = _pipeline(model, device, scheduler)
    classifier, _ = train_classifier()
    accuracy, confident, samples = [], [], []
    for digit in range(10):
        prompt = prompt_form.format(n=digit, w=WORDS[digit])
        generators = [torch.Generator("cpu").manual_seed(seed + i) for i in range(per_digit)]
        with torch.inference_mode():
            images = pipe([prompt] * per_digit, num_inference_steps=steps, guidance_scale=guidance,
                          generator=generators, output_type="np").images
        pixels = to_uint8(images)
        predicted, confidence = classify(classifier, pixels)
        accuracy.append(float((predicted == digit).mean()))
        confident.append(float(((predicted == digit) & (confidence >= 0.8)).mean()))
        samples.append(pixels[:8])
    return {"model": str(model), "guidance_scale": guidance, "steps": steps, "per_digit": per_digit,
            "accuracy": [round(a, 4) for a in accuracy], "min_accuracy": min(accuracy),
            "mean_accuracy": float(np.mean(accuracy)),
            "mean_confident_correct": float(np.mean(confident)), "pixels": np.concatenate(samples)}


def contact_sheet(pixels: Any, columns: int, scale: int = 4) -> Any:
    """uint8 N×H×W[×C] images → one PIL grid image, each scaled `scale`× (nearest)."""
    import numpy as np
    from PIL import Image

    if pixels.ndim == 4:
        pixels = pixels[..., 0] if pixels.shape[-1] == 1 else pixels.mean(-1).astype(np.uint8)
    count, height, width = pixels.shape
    rows = -(-count // columns)
    sheet = np.zeros((rows * (height + 1) + 1, columns * (width + 1) + 1), dtype=np.uint8)
    for i, image in enumerate(pixels):
        r, c = divmod(i, columns)
        sheet[1 + r * (height + 1): 1 + r * (height + 1) + height, 1 + c * (width + 1): 1 + c * (width + 1) + width] = image
    grid = Image.fromarray(sheet, mode="L")
    return grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST)
