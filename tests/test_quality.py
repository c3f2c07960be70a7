"""The shipped models meet the quality bar, judged only with real digits they were not trained on.

The judge (diffcli/builtin/judge.py) is fitted once per process on the held-out 20% of scikit-learn's
digits; the generators were trained on the other 80%. Sample counts are kept small for CI while each bar
still resolves (see the constants); README "Quality" gives the figures at full size (`python bench/quality.py`).
"""

import json
from pathlib import Path

import pytest

from diffcli.plan.presets import resolve

DIGITS_SAMPLES = 128  # class shares in steps of 0.8%; the 4% floor is 5 samples
PER_DIGIT = 10  # per guidance scale: one miss in a digit still meets the 90% bar, two do not
# Memorisation bars. Real held-out digits are closer to their nearest training image than the held-out median
# in 50% of cases and than the held-out 5th percentile in 5% (by construction); a model that copies its
# training images approaches 100% on both. Guidance pulls samples towards typical shapes, which also lowers
# the distance (digits-text at guidance 4: 65% / 10% at full size), so the bars sit between that and copying.
CLOSE_BAR, VERY_CLOSE_BAR = 0.75, 0.20


def test_judge_on_real_digits_it_never_saw():
    from diffcli.builtin.digits import load_split
    from diffcli.builtin.judge import judge, judge_report

    report = judge_report()
    cv, train = report["heldout_cv"], report["train_split"]
    assert cv["images"] == 359 and train["images"] == 1438
    # measured: 95.0% / 94.2% (cross-validated within the held-out split), 98.5% / 94.8% (the 80% split)
    assert cv["accuracy"] >= 0.93 and cv["confident_share"] >= 0.90, report
    assert train["accuracy"] >= 0.97 and train["confident_share"] >= 0.92, report
    fitted = judge().calibrated_classifiers_[0].estimator.shape_fit_[0]
    assert fitted == 5 * len(load_split("heldout")[1])  # the held-out images and their four shifts, nothing else


def test_memorisation_measure_flags_copies_of_training_images():
    import numpy as np

    from diffcli.builtin.digits import load_split, to_model_space
    from diffcli.builtin.judge import memorization
    from diffcli.sinks.pixels import to_uint8

    def as_pixels(images):
        return to_uint8((to_model_space(images) + 1) / 2)

    copies = memorization(as_pixels(load_split("train")[0][:200]))
    assert copies["close_share"] == 1.0 and copies["very_close_share"] == 1.0, copies
    real = memorization(as_pixels(load_split("heldout")[0]))
    assert abs(real["close_share"] - 0.5) < 0.03 and abs(real["very_close_share"] - 0.05) < 0.02, real
    assert np.isclose(real["real_close_share"], 0.4986, atol=0.01)


@pytest.mark.slow
def test_digits_quality():
    from diffcli.builtin.quality import digits_quality

    preset = resolve("digits", None).preset
    result = digits_quality(Path(preset.model), count=DIGITS_SAMPLES, steps=preset.steps, scheduler=preset.scheduler)
    result.pop("pixels")
    assert result["confident_share"] >= 0.85, result
    assert 0.04 <= result["min_class_share"] and result["max_class_share"] <= 0.20, result
    memo = result["memorization"]
    assert memo["close_share"] <= CLOSE_BAR and memo["very_close_share"] <= VERY_CLOSE_BAR, memo


@pytest.mark.slow
def test_digits_text_follows_prompts_and_guidance_matters():
    from diffcli.builtin.quality import digits_text_quality

    preset = resolve("digits-text", None).preset
    model = Path(preset.model)
    # 10 DDIM steps, not the preset's 50, to keep the suite fast. At these seeds (2026-12-05) guided: 100% at 20
    # and at 10 steps (confident-correct 96% at both); unguided: 98% / 92% at 20, 94% / 88% at 10
    guided = digits_text_quality(model, preset.guidance_scale, PER_DIGIT, steps=10, scheduler=preset.scheduler)
    assert guided["min_accuracy"] >= 0.90, guided["accuracy"]
    unguided = digits_text_quality(model, 1.0, PER_DIGIT, steps=10, scheduler=preset.scheduler)
    assert unguided["mean_accuracy"] < guided["mean_accuracy"], (unguided["accuracy"], guided["accuracy"])
    assert unguided["mean_confident_correct"] < guided["mean_confident_correct"]
    for result in (guided, unguided):
        memo = result["memorization"]
        assert memo["close_share"] <= CLOSE_BAR and memo["very_close_share"] <= VERY_CLOSE_BAR, memo


@pytest.mark.slow
def test_headline_command_offline():
    import numpy as np
    from PIL import Image

    from diffcli.builtin.judge import classify
    from tests.conftest import run_cli

    result = run_cli("txt2img", "a handwritten digit 7", "--preset", "digits-text", "--offline", "-o", "out", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    pixels = np.stack([np.asarray(Image.open(i["path"])) for i in doc["images"]])
    predicted, _ = classify(pixels)
    assert list(predicted) == [7] * len(doc["images"])


@pytest.mark.slow
def test_digits_flow_draws_every_digit_and_guidance_matters():
    """The flow-matching transformer (SD3 family): 16 seeds per digit, mean accuracy >= 90%, no digit below 70%."""
    from diffcli.builtin.quality import digits_text_quality

    preset = resolve("digits-flow", None).preset
    model = Path(preset.model)
    common = dict(steps=preset.steps, scheduler=preset.scheduler, max_sequence_length=preset.max_sequence_length)
    guided = digits_text_quality(model, preset.guidance_scale, 16, **common)
    assert guided["mean_accuracy"] >= 0.90 and guided["min_accuracy"] >= 0.70, guided["accuracy"]
    unguided = digits_text_quality(model, 1.0, 16, **common)
    assert unguided["mean_confident_correct"] < guided["mean_confident_correct"]
    memo = guided["memorization"]
    assert memo["close_share"] <= CLOSE_BAR and memo["very_close_share"] <= VERY_CLOSE_BAR, memo
