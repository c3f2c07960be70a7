"""Quality of the built-in digit models, judged by `judge` (fitted on digits the generators never saw).

Used by `bench/quality.py` and the slow tests. Models load with the CLI's loader; `digits` samples with
the CLI's own loop, `digits-text` and `digits-flow` call the pipeline with the CLI's per-image generators.
Needs scikit-learn.
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
    """Share of `count` samples the judge classifies with confidence >= 0.8, the class histogram, memorisation."""
    import numpy as np
    import torch

    from diffcli.builtin.judge import CONFIDENT, classify, memorization
    from diffcli.run.sampling import sample_unconditional
    from diffcli.sinks.pixels import to_uint8

    pipe = _pipeline(model, device, scheduler)
    pixels = []
    for first in range(0, count, batch):
        generators = [torch.Generator("cpu").manual_seed(seed + i) for i in range(first, min(count, first + batch))]
        pixels.append(to_uint8(sample_unconditional(pipe, steps, generators, None)))
    pixels = np.concatenate(pixels)
    predicted, confidence = classify(pixels)
    shares = np.bincount(predicted, minlength=10) / len(predicted)
    return {"model": str(model), "samples": count, "steps": steps, "scheduler": scheduler,
            "confident_share": float((confidence >= CONFIDENT).mean()), "class_shares": [round(float(s), 4) for s in shares],
            "min_class_share": float(shares.min()), "max_class_share": float(shares.max()),
            "memorization": memorization(pixels), "pixels": pixels}


def digits_text_quality(model: Path, guidance: float, per_digit: int = 32, steps: int = 50,
                        scheduler: str | None = None, device: str = "cpu", seed: int = 0,
                        prompt_form: str = "a handwritten digit {n}",
                        max_sequence_length: int | None = None) -> dict[str, Any]:
    """Per-digit accuracy (and confident accuracy) of prompted samples at one guidance scale, memorisation.

    One pipeline call for all digits; image i of each digit uses the seed `seed + i`.
    """
    import numpy as np
    import torch

    from diffcli.builtin.digits import WORDS
    from diffcli.builtin.judge import CONFIDENT, classify, memorization
    from diffcli.sinks.pixels import to_uint8

    pipe = _pipeline(model, device, scheduler)
    prompts = [prompt_form.format(n=d, w=WORDS[d]) for d in range(10) for _ in range(per_digit)]
    generators = [torch.Generator("cpu").manual_seed(seed + i) for _ in range(10) for i in range(per_digit)]
    extra = {} if max_sequence_length is None else {"max_sequence_length": max_sequence_length}
    with torch.inference_mode():
        images = pipe(prompts, num_inference_steps=steps, guidance_scale=guidance, generator=generators,
                      output_type="np", **extra).images
    pixels = to_uint8(images)
    predicted, confidence = classify(pixels)
    wanted = np.repeat(np.arange(10), per_digit)
    correct = (predicted == wanted).reshape(10, per_digit)
    confident = (correct & (confidence >= CONFIDENT).reshape(10, per_digit))
    accuracy = [float(a) for a in correct.mean(1)]
    return {"model": str(model), "guidance_scale": guidance, "steps": steps, "per_digit": per_digit,
            "accuracy": [round(a, 4) for a in accuracy], "min_accuracy": min(accuracy),
            "mean_accuracy": float(np.mean(accuracy)),
            "confident_correct": [round(float(c), 4) for c in confident.mean(1)],
            "mean_confident_correct": float(confident.mean()), "mean_confidence": float(confidence.mean()),
            "memorization": memorization(pixels),
            "pixels": pixels.reshape(10, per_digit, *pixels.shape[1:])[:, :8].reshape(-1, *pixels.shape[1:])}


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


def digits_control_quality(model: Path, controlnet: Path, guidance: float, per_digit: int = 20, steps: int = 50,
                           scheduler: str | None = None, device: str = "cpu", seed: int = 0, scale: float = 1.0,
                           prompt_form: str = "a handwritten digit {n}") -> dict[str, Any]:
    """How often the judge reads the digit whose Canny edges steer the image when the prompt names another one.

    The control images are the first `per_digit` training-split images of each digit (the judge never saw them),
    made into edges as `--control canny` makes them; image j of digit d is prompted with digit (d + 1 + j % 9) % 10
    (never d) and seeded `seed + j`. `scale` 0 is digits-text without the ControlNet's effect.
    """
    import numpy as np
    import torch
    from PIL import Image

    from diffcli.builtin.digits import WORDS, load_split, to_model_space
    from diffcli.builtin.judge import CONFIDENT, classify
    from diffcli.plan.control import canny
    from diffcli.run.controlnet import control_pipeline
    from diffcli.run.pipelines import load_pipeline
    from diffcli.sinks.pixels import to_uint8

    preset = Preset(model=str(model), device=device, scheduler=scheduler, controlnet=(str(controlnet),))
    pipe = control_pipeline(load_pipeline(preset, None).pipe, "txt2img")
    images, labels = load_split("train")
    shown, named, prompts, controls, generators = [], [], [], [], []
    for digit in range(10):
        members = np.flatnonzero(labels == digit)[:per_digit]
        pixels = ((to_model_space(images[members])[:, 0] + 1) / 2 * 255).round().clamp(0, 255).byte().numpy()
        for j, source in enumerate(pixels):
            other = (digit + 1 + j % 9) % 10
            shown.append(digit)
            named.append(other)
            prompts.append(prompt_form.format(n=other, w=WORDS[other]))
            controls.append(canny(Image.fromarray(source, "L").convert("RGB")))
            generators.append(torch.Generator("cpu").manual_seed(seed + j))
    with torch.inference_mode():
        made = pipe(prompts, image=controls, num_inference_steps=steps, guidance_scale=guidance, generator=generators,
                    controlnet_conditioning_scale=scale, output_type="np").images
    pixels = to_uint8(made)
    predicted, confidence = classify(pixels)
    shown, named = np.array(shown), np.array(named)
    control = (predicted == shown).reshape(10, -1)
    return {"model": str(model), "controlnet": str(controlnet), "guidance_scale": guidance, "control_scale": scale,
            "steps": steps, "images": len(prompts), "control_digit_share": round(float(control.mean()), 4),
            "control_digit_share_per_digit": [round(float(c), 4) for c in control.mean(1)],
            "confident_control_digit_share": round(float((control.ravel() & (confidence >= CONFIDENT)).mean()), 4),
            "prompt_digit_share": round(float((predicted == named).mean()), 4), "pixels": pixels}
