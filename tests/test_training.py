"""`diffcli train` end to end on a few steps and a subset: a standard, loadable pipeline folder."""

import json

from diffusers import DiffusionPipeline

from tests.conftest import run_cli


def test_train_digits_few_steps_then_resume(tmp_path):
    out = tmp_path / "digits"
    result = run_cli("train", "digits", "-o", str(out), "--steps", "4", "--subset", "64", "--batch-size", "8",
                     "--checkpoint-every", "2", "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["steps"] == 4
    pipe = DiffusionPipeline.from_pretrained(out)
    assert type(pipe).__name__ == "DDPMPipeline" and pipe.unet.config.in_channels == 1
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(out.rglob("*.bin"))
    checkpoint = tmp_path / ".digits-checkpoints" / "digits.pt"
    assert checkpoint.is_file()
    resumed = run_cli("train", "digits", "-o", str(out), "--steps", "6", "--subset", "64", "--batch-size", "8",
                      "--checkpoint-every", "2", "--resume", "--json", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    import torch

    assert torch.load(checkpoint, weights_only=True)["step"] == 6


def test_train_digits_text_few_steps(tmp_path):
    out = tmp_path / "dt"
    result = run_cli("train", "digits-text", "-o", str(out), "--steps", "2", "--vae-steps", "2", "--subset", "64",
                     "--batch-size", "8", "--quiet")
    assert result.returncode == 0, result.stderr
    pipe = DiffusionPipeline.from_pretrained(out)
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    ids = pipe.tokenizer("a handwritten digit seven").input_ids
    assert len(ids) == 6  # bos + 4 whole-word tokens + eos
    image = pipe("seven", num_inference_steps=2, output_type="np").images[0]
    assert image.shape == (16, 16, 1)


def test_unknown_target_is_usage_error():
    result = run_cli("train", "faces")
    assert result.returncode == 2 and "unknown training target" in result.stderr
