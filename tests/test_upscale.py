"""upscale: pixel contract with diffusers' x4 and x2 upscaler pipelines at two seeds, replay by the source's hash,
VAE tiling on and off, --vary and prompts files, and every bad input refused before loading with one line."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import cached_model
from tests.test_cli import invoke
from tests.test_img2img import _png_header_only, random_image

CPU = ("--device", "cpu", "--quiet", "--json")
PROMPT = "a cat playing bass"
PIPELINES = {4: "StableDiffusionUpscalePipeline", 2: "StableDiffusionLatentUpscalePipeline"}


@pytest.fixture(scope="session")
def tiny_upscaler():
    """`tiny_upscaler(4)` / `tiny_upscaler(2)`: the cached tiny x4 / x2 upscaler (tests/tiny.py)."""
    from tests.tiny import build_tiny_upscaler

    return lambda scale: cached_model(f"tiny-sd-x{scale}-upscaler",
                                      lambda folder: build_tiny_upscaler(folder, scale=scale))


def run_ok(*args):
    result = invoke(*args, *CPU)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def pixels(path):
    with Image.open(path) as image:
        return np.asarray(image, dtype=int)


def plain(folder, scale, tiling=False):
    import diffusers

    pipe = getattr(diffusers, PIPELINES[scale]).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    if tiling:
        pipe.vae.enable_tiling()
    return pipe


def reference(pipe, source, seed, **kwargs):
    image = pipe(PROMPT, image=Image.open(source).convert("RGB"), generator=torch.Generator("cpu").manual_seed(seed),
                 output_type="np", **kwargs).images[0]
    return np.asarray(pipe.image_processor.numpy_to_pil(image[None])[0], dtype=int)


@pytest.mark.parametrize("scale, batch_size", [(4, 1), (4, 2), (2, 2)])
def test_equals_the_plain_upscaler_pipeline_at_two_seeds(tiny_upscaler, tmp_path, scale, batch_size):
    source = random_image(tmp_path / "photo.png", size=(24, 16))
    noise = ("--noise-level", "30") if scale == 4 else ()
    doc = run_ok("upscale", str(source), PROMPT, "--model", str(tiny_upscaler(scale)), "--steps", "3", "--seed", "3",
                 "-n", "2", "-b", str(batch_size), "-g", "5", "--negative-prompt", "blurry", *noise,
                 "-o", str(tmp_path / "out"))
    pipe = plain(tiny_upscaler(scale), scale)
    extra = {"noise_level": 30} if scale == 4 else {}
    assert [os.path.basename(e["path"]) for e in doc["images"]] == [f"0000-s3-photo-x{scale}.png",
                                                                    f"0000-s4-photo-x{scale}.png"]
    for entry in doc["images"]:
        ours = pixels(entry["path"])
        assert ours.shape == (16 * scale, 24 * scale, 3) and (entry["width"], entry["height"]) == (24 * scale,
                                                                                                 16 * scale)
        theirs = reference(pipe, source, entry["seed"], num_inference_steps=3, guidance_scale=5.0,
                           negative_prompt="blurry", **extra)
        assert np.abs(ours - theirs).max() <= 2
        assert entry["upscale"] == {"image": str(source), "scale": scale, "source_width": 24, "source_height": 16,
                                    "noise_level": 30 if scale == 4 else None, "vae_tiling": False}


def test_metadata_and_replay_find_the_source_by_hash(tiny_upscaler, tmp_path):
    import hashlib

    source = random_image(tmp_path / "photo.png", size=(16, 16))
    args = ("upscale", str(source), "--model", str(tiny_upscaler(4)), "--steps", "2", "--seed", "7",
            "--noise-level", "50", "-o", str(tmp_path / "o"))
    doc = run_ok(*args)
    made = doc["images"][0]["path"]
    resumed = run_ok(*args, "--skip-existing")  # the existing file's record is read and agrees
    assert resumed["images"][0]["existing"] is True and resumed["images"][0]["path"] == made
    with Image.open(made) as image:
        parameters, record = image.info["parameters"], json.loads(image.info["diffcli"])
    assert "Postprocess upscale by: 4" in parameters and "Noise level: 50" in parameters
    assert "Source size: 16x16" in parameters and "Size: 64x64" in parameters
    assert record["upscale_image"] == {"name": "photo.png", "sha256": hashlib.sha256(source.read_bytes()).hexdigest()}
    assert record["preset"]["upscale_image"] == str(source) and record["preset"]["noise_level"] == 50
    again = run_ok("replay", made, "-o", str(tmp_path / "r1"))
    assert os.path.basename(again["images"][0]["path"]) == os.path.basename(made)
    assert np.array_equal(pixels(again["images"][0]["path"]), pixels(made))
    kept = tmp_path / "kept.png"
    kept.write_bytes(source.read_bytes())
    random_image(source, size=(16, 16), seed=1)  # the recorded path now holds another image
    changed = invoke("replay", made, "-o", str(tmp_path / "r2"), *CPU)
    assert changed.exit_code == 2 and "--set upscale_image=" in changed.output and "sha256" in changed.output
    assert not (tmp_path / "r2").exists()
    fixed = run_ok("replay", made, "--set", f"upscale_image={kept}", "-o", str(tmp_path / "r3"))
    assert np.array_equal(pixels(fixed["images"][0]["path"]), pixels(made))
    source.write_bytes(kept.read_bytes())
    resized = retag(made, tmp_path / "resized.png", width=1000, height=40)  # an upscale's size is not read
    same = run_ok("replay", str(resized), "-o", str(tmp_path / "r4"))
    assert np.array_equal(pixels(same["images"][0]["path"]), pixels(made))
    for tiling in ("yes", 1, [True]):
        forged = invoke("replay", str(retag(made, tmp_path / "forged.png", vae_tiling=tiling)), "-o",
                        str(tmp_path / "r5"), *CPU)
        assert forged.exit_code == 2 and "vae_tiling: expected true or false" in forged.stderr, forged.output
    assert not (tmp_path / "r5").exists()


def retag(image, to, **changes):
    """A copy of a diffcli PNG whose replay record's preset has `changes` (a forged record)."""
    from PIL.PngImagePlugin import PngInfo

    with Image.open(image) as handle:
        record, pixels_of = json.loads(handle.info["diffcli"]), handle.copy()
    record["preset"].update(changes)
    info = PngInfo()
    info.add_text("diffcli", json.dumps(record))
    pixels_of.save(to, pnginfo=info)
    return to


def test_vae_tiling_on_and_off(tiny_upscaler, tmp_path):
    """The tiny x4's VAE tiles above 32 pixels, so a 96x64 output decodes in 6 overlapping tiles: the same size,
    other pixels (blended seams), equal to the plain pipeline after vae.enable_tiling(); the default below the
    threshold is untiled; replay keeps a tiled run tiled."""
    source = random_image(tmp_path / "photo.png", size=(24, 16))
    args = ("upscale", str(source), PROMPT, "--model", str(tiny_upscaler(4)), "--steps", "2", "--seed", "1")
    tiled = run_ok(*args, "--vae-tiling", "-o", str(tmp_path / "on"))["images"][0]
    untiled = run_ok(*args, "--no-vae-tiling", "-o", str(tmp_path / "off"))["images"][0]
    auto = run_ok(*args, "-o", str(tmp_path / "auto"))["images"][0]
    assert tiled["upscale"]["vae_tiling"] is True and untiled["upscale"]["vae_tiling"] is False
    assert auto["upscale"]["vae_tiling"] is False and np.array_equal(pixels(auto["path"]), pixels(untiled["path"]))
    on, off = pixels(tiled["path"]), pixels(untiled["path"])
    assert on.shape == off.shape == (64, 96, 3)
    changed = np.abs(on - off).max(axis=2) > 2
    assert 0.05 < changed.mean() < 1.0  # the decode differs, the image is still the upscale of the same latents
    theirs = reference(plain(tiny_upscaler(4), 4, tiling=True), source, 1, num_inference_steps=2)
    assert np.abs(on - theirs).max() <= 2
    again = run_ok("replay", tiled["path"], "-o", str(tmp_path / "r"))["images"][0]
    assert again["upscale"]["vae_tiling"] is True and np.array_equal(pixels(again["path"]), on)


def test_tiling_rule_and_sizes_are_planned_without_a_model():
    from diffcli.errors import UsageError
    from diffcli.plan.items import Item, ModelFacts
    from diffcli.plan.keys import TILE_ABOVE
    from diffcli.plan.presets import Preset
    from diffcli.plan.upscale import Source, UpscaleFacts, attach_upscale

    facts = ModelFacts(task="txt2img", class_name="StableDiffusionUpscalePipeline", width=512, height=512,
                       size_multiple=8, fixed_size=False, name="x4", family="sd-x4-upscaler",
                       upscale=UpscaleFacts(scale=4, input_multiple=8, noise_level=20, max_noise_level=350))
    item = Item(index=0, seed=0, prompt_index=0, prompt="", negative_prompt="", steps=2, guidance_scale=9.0,
                width=512, height=512, task="txt2img")
    preset = Preset(model="x4", upscale_image="photo.png")
    small = attach_upscale(preset, facts, Source("0" * 64, 256, 128), [item])[0]
    large = attach_upscale(preset, facts, Source("0" * 64, 264, 128), [item])[0]
    assert (small.width, small.height, small.upscale.vae_tiling) == (1024, 512, TILE_ABOVE < 1024)
    assert (large.width, large.upscale.vae_tiling, large.upscale.noise_level) == (1056, True, 20)
    forced = attach_upscale(preset.replace(vae_tiling=False), facts, Source("0" * 64, 264, 128), [item])[0]
    assert forced.upscale.vae_tiling is False
    with pytest.raises(UsageError, match="multiples of 8"):
        attach_upscale(preset, facts, Source("0" * 64, 260, 128), [item])
    with pytest.raises(UsageError, match="becomes 4160x512, more than 4096"):
        attach_upscale(preset, facts, Source("0" * 64, 1040, 128), [item])
    with pytest.raises(UsageError, match="more than this model takes"):
        attach_upscale(preset.replace(noise_level=400), facts, Source("0" * 64, 8, 8), [item])


def test_vary_noise_level_and_prompts_file_lines(tiny_upscaler, tmp_path):
    source = random_image(tmp_path / "photo.png", size=(16, 16))
    varied = run_ok("upscale", str(source), "--model", str(tiny_upscaler(4)), "--vary", "noise_level=0,90",
                    "--steps", "2", "-o", str(tmp_path / "v"))
    assert [(e["cell"], e["upscale"]["noise_level"]) for e in varied["images"]] == [({"noise_level": 0}, 0),
                                                                                   ({"noise_level": 90}, 90)]
    assert varied["grids"] and not np.array_equal(*(pixels(e["path"]) for e in varied["images"]))
    lines = tmp_path / "p.jsonl"
    lines.write_text('{"prompt": "a cat", "seed": 5}\n{"prompt": "a dog"}\n')
    doc = run_ok("upscale", str(source), "--prompts-file", str(lines), "--model", str(tiny_upscaler(2)), "--steps",
                 "2", "-o", str(tmp_path / "f"))
    assert [(os.path.basename(e["path"]), e["prompt"]) for e in doc["images"]] == [
        ("0000-s5-photo-x2.png", "a cat"), ("0001-s0-photo-x2.png", "a dog")]


def _bad_source(tmp_path, case):
    path = tmp_path / "photo.png"
    if case == "directory":
        path.mkdir()
    elif case == "bomb":
        _png_header_only(path, 40000, 40000)
    elif case == "text":
        path.write_text("not an image")
    elif case == "odd-size":
        random_image(path, size=(18, 16))
    elif case == "too-large":
        random_image(path, size=(1028, 4))
    return path  # "missing": never made


@pytest.mark.parametrize("case, needle", [
    ("missing", "image: image not found"), ("directory", "image: image not found"), ("bomb", "more pixels than"),
    ("text", "not a readable image"), ("odd-size", "18x16: the x4 upscaler takes sides that are multiples of 4"),
    ("too-large", "1028x4 becomes 4112x16, more than 4096 pixels a side"),
])
def test_bad_sources_exit_2_with_one_line_before_loading(tiny_upscaler, tmp_path, case, needle):
    source = _bad_source(tmp_path, case)
    args = ("upscale", str(source), "--model", str(tiny_upscaler(4)), "--device", "cpu", "-o", str(tmp_path / "o"))
    result = invoke(*args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert needle in lines[0]
    as_json = invoke(*args, "--json")
    assert as_json.exit_code == 2 and needle in json.loads(as_json.stdout)["error"]["message"]
    assert not (tmp_path / "o").exists() and not (tmp_path / "outputs").exists()


def test_wrong_model_kinds_and_settings_are_refused_before_loading(tiny_upscaler, tiny_sd, tiny_ddpm, tmp_path):
    source = random_image(tmp_path / "photo.png", size=(16, 16))
    cases = [
        (("upscale", str(source), "--model", str(tiny_sd)), "is a StableDiffusionPipeline (text-to-image model), "
                                                            "not an upscaler"),
        (("upscale", str(source), "--model", str(tiny_ddpm)), "is a DDPMPipeline (unconditional model)"),
        (("upscale", str(source)), "upscale needs an upscaler model"),
        (("txt2img", PROMPT, "--model", str(tiny_upscaler(4))), "x4 upscaler (StableDiffusionUpscalePipeline): it "
                                                               "needs an image"),
        (("img2img", str(source), PROMPT, "--model", str(tiny_upscaler(2))), "x2 upscaler"),
        (("upscale", str(source), "--model", str(tiny_upscaler(2)), "--noise-level", "5"), "x2 upscaler takes none"),
        (("upscale", str(source), "--model", str(tiny_upscaler(4)), "--noise-level", "100"), "more than this model takes (99"),
        (("upscale", str(source), "--model", str(tiny_upscaler(2)), "--scheduler", "ddim"), "needs euler or lms"),
        (("upscale", str(source), "--model", str(tiny_upscaler(4)), "--set", "width=32"), "does not apply"),
        (("txt2img", PROMPT, "--model", str(tiny_sd), "--set", "noise_level=5"), "noise_level: for diffcli upscale"),
    ]
    for args, needle in cases:
        result = invoke(*args, "--device", "cpu", "-o", str(tmp_path / "o"))
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and needle in lines[0], (args, result.stderr)
        as_json = invoke(*args, "--device", "cpu", "-o", str(tmp_path / "o"), "--json")
        assert as_json.exit_code == 2 and needle in json.loads(as_json.stdout)["error"]["message"]
    assert "diffcli upscale" in invoke("txt2img", PROMPT, "--model", str(tiny_upscaler(4)), "--json").stdout
    assert not (tmp_path / "o").exists() and not (tmp_path / "outputs").exists()
