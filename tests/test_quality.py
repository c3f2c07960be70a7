"""The shipped models meet the quality bar (slow: real sampling with the shipped weights)."""

from pathlib import Path

import pytest

from diffcli.plan.presets import resolve


@pytest.mark.slow
def test_digits_quality():
    from diffcli.builtin.quality import digits_quality

    preset = resolve("digits", None).preset
    result = digits_quality(Path(preset.model), count=256, steps=preset.steps, scheduler=preset.scheduler)
    assert result["confident_share"] >= 0.85, result
    assert 0.04 <= result["min_class_share"] and result["max_class_share"] <= 0.20, result


@pytest.mark.slow
def test_digits_text_follows_prompts_and_guidance_matters():
    from diffcli.builtin.quality import digits_text_quality

    preset = resolve("digits-text", None).preset
    guided = digits_text_quality(Path(preset.model), preset.guidance_scale, steps=preset.steps,
                                 scheduler=preset.scheduler)
    assert guided["min_accuracy"] >= 0.90, guided["accuracy"]
    unguided = digits_text_quality(Path(preset.model), 1.0, steps=preset.steps, scheduler=preset.scheduler)
    assert unguided["mean_accuracy"] < guided["mean_accuracy"], (unguided["accuracy"], guided["accuracy"])
    assert unguided["mean_confident_correct"] < guided["mean_confident_correct"]


@pytest.mark.slow
def test_headline_command_offline():
    from tests.conftest import run_cli

    result = run_cli("txt2img", "a handwritten digit 7", "--preset", "digits-text", "--offline", "-o", "out", "--json")
    assert result.returncode == 0, result.stderr
    import json

    from diffcli.builtin.digits import classify, train_classifier
    import numpy as np
    from PIL import Image

    doc = json.loads(result.stdout)
    pixels = np.stack([np.asarray(Image.open(i["path"])) for i in doc["images"]])
    classifier, _ = train_classifier()
    predicted, _ = classify(classifier, pixels)
    assert list(predicted) == [7] * len(doc["images"])
