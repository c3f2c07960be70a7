"""Hires fix: the final image equals txt2img + upscale + img2img done by hand with plain diffusers (Lanczos and
latent upscalers), A1111 metadata, replay, and bounds refused before loading."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_cli import invoke

CPU = ("--device", "cpu", "--quiet", "--json")
PROMPT = "a cat playing bass"


def run_ok(*args):
    result = invoke(*args, *CPU)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def pixels(path):
    with Image.open(path) as image:
        return np.asarray(image, dtype=int)


def by_hand(model, seed, upscaler):
    """txt2img at 16x16, upscale x2, img2img (strength 0.5, 6 steps) with plain diffusers."""
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    common = dict(guidance_scale=5.0, negative_prompt="blurry")
    if upscaler == "latent":
        latents = pipe(PROMPT, num_inference_steps=4, output_type="latent",
                       generator=torch.Generator("cpu").manual_seed(seed), **common).images
        image = torch.nn.functional.interpolate(latents, size=(16, 16), mode="bilinear")
    else:
        first = pipe(PROMPT, num_inference_steps=4, generator=torch.Generator("cpu").manual_seed(seed), **common)
        image = first.images[0].resize((32, 32), Image.Resampling.LANCZOS)
    second = StableDiffusionImg2ImgPipeline.from_pipe(pipe)
    out = second(PROMPT, image=image, strength=0.5, num_inference_steps=6,
                 generator=torch.Generator("cpu").manual_seed(seed), **common).images[0]
    return np.asarray(out, dtype=int)


@pytest.mark.parametrize("upscaler, batch_size", [("lanczos", 2), ("latent", 1)])
def test_hires_equals_the_two_steps_by_hand(tiny_sd, tmp_path, upscaler, batch_size):
    doc = run_ok("txt2img", PROMPT, "--model", str(tiny_sd), "--steps", "4", "-g", "5", "--negative-prompt", "blurry",
                 "--hires", "2", "--hires-strength", "0.5", "--hires-steps", "6", "--hires-upscaler", upscaler,
                 "--seed", "3", "-n", "2", "-b", str(batch_size), "-o", str(tmp_path / "o"))
    for entry in doc["images"]:
        assert entry["hires"] == {"scale": 2.0, "width": 32, "height": 32, "steps": 6, "strength": 0.5,
                                  "upscaler": upscaler, "run_steps": 3}
        ours = pixels(entry["path"])
        assert ours.shape == (32, 32, 3)
        assert np.abs(ours - by_hand(tiny_sd, entry["seed"], upscaler)).max() <= 2


def test_metadata_and_replay(tiny_sd, tmp_path):
    doc = run_ok("txt2img", PROMPT, "--model", str(tiny_sd), "--steps", "3", "--hires", "1.5", "--seed", "5",
                 "-o", str(tmp_path / "o"))
    made = doc["images"][0]["path"]
    assert Image.open(made).size == (24, 24)
    with Image.open(made) as image:
        parameters = image.info["parameters"].splitlines()[-1]
    for field in ("Size: 16x16", "Hires upscale: 1.5", "Hires steps: 3", "Hires upscaler: Lanczos",
                  "Denoising strength: 0.7"):
        assert field in parameters
    again = run_ok("replay", made, "-o", str(tmp_path / "r"))
    assert np.array_equal(pixels(again["images"][0]["path"]), pixels(made))


@pytest.mark.parametrize("args, needle", [
    (("--hires", "100"), "--hires: expected a number <= 4"),
    (("--hires", "1"), "--hires: expected a number > 1"),
    (("--hires", "1.01"), "stays 16x16"),
    (("--hires", "2", "--width", "4096"), "more than 4096"),
    (("--hires", "2", "--hires-strength", "0"), "--hires-strength: expected a number > 0"),
    (("--hires", "2", "--hires-strength", "0.1", "--hires-steps", "5"), "runs 0 denoising steps"),
])
def test_bounds_are_refused_before_loading(tiny_sd, tmp_path, args, needle):
    result = invoke("txt2img", PROMPT, "--model", str(tiny_sd), *args, "-o", str(tmp_path / "o"), "--device", "cpu")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], result.stderr
    assert not (tmp_path / "o").exists()


def test_refused_where_it_cannot_run(tiny_sd, tiny_ddpm, tmp_path):
    from diffcli.errors import UsageError
    from diffcli.plan.items import ModelFacts
    from diffcli.plan.presets import Preset
    from diffcli.plan.attach import attach_hires

    uncond = invoke("unconditional", "--model", str(tiny_ddpm), "--set", "hires=2", *CPU)
    assert uncond.exit_code == 2 and "text-to-image" in uncond.output
    Image.new("RGB", (16, 16)).save(tmp_path / "i.png")
    img2img = invoke("img2img", str(tmp_path / "i.png"), PROMPT, "--model", str(tiny_sd), "--set", "hires=2", *CPU)
    assert img2img.exit_code == 2 and "txt2img only" in img2img.output
    flux = ModelFacts(task="txt2img", class_name="FluxPipeline", width=256, height=256, size_multiple=16,
                      fixed_size=False, name="x", family="flux")
    with pytest.raises(UsageError, match="UNet models"):
        attach_hires(Preset(model="x", hires=2.0, hires_upscaler="latent"), flux, [])
    pixart = ModelFacts(task="txt2img", class_name="PixArtSigmaPipeline", width=256, height=256, size_multiple=8,
                        fixed_size=False, name="x", family="pixart-sigma", img2img=False)
    with pytest.raises(UsageError, match="no image-to-image pipeline"):
        attach_hires(Preset(model="x", hires=2.0), pixart, [])
