"""inpaint: pixel contract with diffusers' inpainting pipelines (9-channel model as loaded, 4-channel latent
masking via from_pipe), masks in any mode, empty/full masks, metadata and replay by hash, --vary and prompts
files, and every bad mask refused before loading with one line."""

import hashlib
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_cli import invoke
from tests.test_img2img import _png_header_only, digit3, random_image  # noqa: F401 (digit3: a fixture)

CPU = ("--device", "cpu", "--quiet", "--json")
PROMPT = "a cat playing bass"


def half_mask(path, size=(16, 16)):
    """White (repaint) on the right half, black (keep) on the left."""
    mask = np.zeros((size[1], size[0]), dtype=np.uint8)
    mask[:, size[0] // 2:] = 255
    Image.fromarray(mask, "L").save(path)
    return path


def run_ok(*args):
    result = invoke(*args, *CPU)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def pixels(path):
    with Image.open(path) as image:
        return np.asarray(image, dtype=int)


def reference_images(pipe, init, mask, seeds, **kwargs):
    pipe.set_progress_bar_config(disable=True)
    return [np.asarray(pipe(PROMPT, image=Image.open(init), mask_image=mask, num_inference_steps=5, guidance_scale=5.0,
                            generator=torch.Generator("cpu").manual_seed(seed), **kwargs).images[0], dtype=int)
            for seed in seeds]


@pytest.mark.parametrize("batch_size, blur", [(1, 0), (2, 2)])
def test_nine_channel_model_equals_the_plain_inpaint_pipeline(tiny_sd_inpaint, tmp_path, batch_size, blur):
    from diffusers import StableDiffusionInpaintPipeline

    init, mask = random_image(tmp_path / "init.png"), half_mask(tmp_path / "mask.png")
    doc = run_ok("inpaint", str(init), str(mask), PROMPT, "--model", str(tiny_sd_inpaint), "--steps", "5",
                 "--strength", "0.6", "--seed", "3", "-n", "2", "-b", str(batch_size), "-g", "5",
                 "--mask-blur", str(blur), "-o", str(tmp_path / "out"))
    reference = StableDiffusionInpaintPipeline.from_pretrained(tiny_sd_inpaint)
    assert reference.unet.config.in_channels == 9
    theirs_mask = reference.mask_processor.blur(Image.open(mask), blur) if blur else Image.open(mask)
    theirs = reference_images(reference, init, theirs_mask, [3, 4], strength=0.6)
    assert [(e["seed"], e["strength"], e["run_steps"]) for e in doc["images"]] == [(3, 0.6, 3), (4, 0.6, 3)]
    for entry, expected in zip(doc["images"], theirs):
        assert entry["mask_image"] == str(mask)
        assert np.abs(pixels(entry["path"]) - expected).max() <= 2


def test_four_channel_model_masks_latents_as_diffusers_does(tiny_sd, tmp_path):
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    from diffcli.plan.presets import Preset
    from diffcli.run.inpaint import inpaint_pipeline
    from diffcli.run.pipelines import load_pipeline

    init, mask = random_image(tmp_path / "init.png"), half_mask(tmp_path / "mask.png")
    doc = run_ok("inpaint", str(init), str(mask), PROMPT, "--model", str(tiny_sd), "--steps", "5", "--strength",
                 "0.8", "--seed", "7", "-n", "2", "-g", "5", "--padding-mask-crop", "2", "-o", str(tmp_path / "o"))
    reference = StableDiffusionInpaintPipeline.from_pipe(StableDiffusionPipeline.from_pretrained(tiny_sd))
    theirs = reference_images(reference, init, Image.open(mask), [7, 8], strength=0.8, padding_mask_crop=2)
    for entry, expected in zip(doc["images"], theirs):
        assert np.abs(pixels(entry["path"]) - expected).max() <= 2
    pipe = load_pipeline(Preset(model=str(tiny_sd), device="cpu"), "txt2img").pipe
    made = inpaint_pipeline(pipe)
    assert type(made).__name__ == "StableDiffusionInpaintPipeline" and made.unet is pipe.unet
    assert made.unet.config.in_channels == 4 and inpaint_pipeline(pipe) is made


def test_mask_modes_read_alike(tmp_path):
    """L, 1-bit, palette and RGBA (transparent = keep) masks of the same shape give the same mask."""
    from diffcli.plan.mask import InpaintSpec, check_mask, load_mask

    shape = np.zeros((16, 16), dtype=np.uint8)
    shape[4:12, 8:] = 255
    Image.fromarray(shape, "L").save(tmp_path / "l.png")
    Image.fromarray(shape, "L").convert("1").save(tmp_path / "one.png")
    Image.fromarray(shape, "L").convert("P").save(tmp_path / "p.png")
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[..., :3] = 255  # white everywhere, but only opaque where the shape is
    rgba[..., 3] = shape
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    masks = []
    for name in ("l", "one", "p", "rgba"):
        path = str(tmp_path / f"{name}.png")
        masks.append(np.asarray(load_mask(InpaintSpec(path, check_mask(path)), 16, 16), dtype=int))
    for mask in masks[1:]:
        assert np.array_equal(mask, masks[0])
    inverted = load_mask(InpaintSpec(str(tmp_path / "l.png"), "", invert_mask=True), 16, 16)
    assert np.array_equal(255 - np.asarray(inverted, dtype=int), masks[0])
    wide = load_mask(InpaintSpec(str(tmp_path / "l.png"), ""), 8, 16)  # cover + centre crop, like the init image
    assert wide.size == (8, 16)


@pytest.mark.parametrize("value, needle", [(0, "all black"), (255, "all white")])
def test_empty_or_full_mask_is_a_warning(tiny_sd, tmp_path, value, needle):
    init = random_image(tmp_path / "init.png")
    Image.new("L", (16, 16), value).save(tmp_path / "mask.png")
    result = invoke("inpaint", str(init), str(tmp_path / "mask.png"), PROMPT, "--model", str(tiny_sd), "--steps",
                    "2", "-n", "1", "--padding-mask-crop", "4", "--device", "cpu", "-o", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    assert needle in result.stderr and "Traceback" not in result.output
    assert len(list((tmp_path / "o").glob("*.png"))) == 1


def test_metadata_and_replay_find_init_and_mask_by_hash(tiny_sd_inpaint, tmp_path):
    init, mask = random_image(tmp_path / "init.png"), half_mask(tmp_path / "mask.png")
    doc = run_ok("inpaint", str(init), str(mask), PROMPT, "--model", str(tiny_sd_inpaint), "--steps", "4",
                 "--strength", "0.75", "--mask-blur", "1", "--invert-mask", "-n", "1", "-o", str(tmp_path / "o"))
    made = doc["images"][0]["path"]
    with Image.open(made) as image:
        parameters, record = image.info["parameters"], json.loads(image.info["diffcli"])
    assert "Denoising strength: 0.75" in parameters and "Mask blur: 1" in parameters
    assert record["mask_image"] == {"name": "mask.png", "sha256": hashlib.sha256(mask.read_bytes()).hexdigest()}
    assert record["preset"]["mask_image"] == str(mask) and record["preset"]["invert_mask"] is True
    again = invoke("replay", made, "-o", str(tmp_path / "r1"), "--device", "cpu")
    assert again.exit_code == 0 and "replaying inpaint with model" in again.stderr, again.output
    assert np.array_equal(pixels(next((tmp_path / "r1").iterdir())), pixels(made))
    kept = tmp_path / "kept.png"
    kept.write_bytes(mask.read_bytes())
    half_mask(mask, size=(8, 8))  # the recorded path now holds another mask
    changed = invoke("replay", made, "-o", str(tmp_path / "r2"), *CPU)
    assert changed.exit_code == 2 and "--set mask_image=" in changed.output and "sha256" in changed.output
    assert not (tmp_path / "r2").exists()
    fixed = run_ok("replay", made, "--set", f"mask_image={kept}", "-o", str(tmp_path / "r3"))
    assert np.array_equal(pixels(fixed["images"][0]["path"]), pixels(made))


def test_vary_strength_and_prompts_file_lines(tiny_sd, tmp_path):
    init, mask = random_image(tmp_path / "init.png"), half_mask(tmp_path / "mask.png")
    varied = run_ok("inpaint", str(init), str(mask), PROMPT, "--model", str(tiny_sd), "--vary", "strength=0.5,1",
                    "--steps", "4", "-n", "1", "-o", str(tmp_path / "v"))
    assert [(e["cell"], e["run_steps"]) for e in varied["images"]] == [({"strength": 0.5}, 2), ({"strength": 1.0}, 4)]
    assert varied["grids"] and all(e["mask_image"] == str(mask) for e in varied["images"])
    lines = tmp_path / "p.jsonl"
    lines.write_text('{"prompt": "a cat", "strength": 0.3}\n{"prompt": "a dog", "strength": 0.9}\n')
    doc = run_ok("inpaint", str(init), str(mask), "--prompts-file", str(lines), "--model", str(tiny_sd), "--steps",
                 "10", "-n", "1", "-o", str(tmp_path / "f"))
    assert [(e["strength"], e["run_steps"]) for e in doc["images"]] == [(0.3, 3), (0.9, 9)]


def _bad_mask(tmp_path, case):
    path = tmp_path / "mask.png"
    if case == "directory":
        path.mkdir()
    elif case == "truncated":
        half_mask(path, size=(64, 64))
        path.write_bytes(path.read_bytes()[:60])
    elif case == "bomb":
        _png_header_only(path, 40000, 40000)
    elif case == "fifo":
        os.mkfifo(path)
    elif case == "text":
        path.write_text("not an image")
    return path  # "missing": never made


@pytest.mark.parametrize("case, needle", [
    ("missing", "not found"), ("directory", "not found"), ("truncated", "not a readable image"),
    ("bomb", "more pixels than"), ("fifo", "not found"), ("text", "not a readable image"),
])
def test_bad_masks_exit_2_with_one_line_before_loading(tiny_sd, tmp_path, case, needle):
    init = random_image(tmp_path / "init.png")
    mask = _bad_mask(tmp_path, case)
    args = ("inpaint", str(init), str(mask), PROMPT, "--model", str(tiny_sd), "--device", "cpu", "-o",
            str(tmp_path / "o"))
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: mask:") and needle in lines[0], result.stderr
    as_json = invoke(*args, "--json")
    assert as_json.exit_code == 2 and needle in json.loads(as_json.stdout)["error"]["message"]
    assert not (tmp_path / "o").exists() and not (tmp_path / "outputs").exists()


def test_refusals_before_loading(tiny_sd_inpaint, tiny_ddpm, tmp_path):
    init, mask = random_image(tmp_path / "init.png"), half_mask(tmp_path / "mask.png")
    txt = invoke("txt2img", PROMPT, "--model", str(tiny_sd_inpaint), *CPU)
    assert txt.exit_code == 2 and "diffcli inpaint" in json.loads(txt.stdout)["error"]["message"] + txt.output
    uncond = invoke("inpaint", str(init), str(mask), "--model", str(tiny_ddpm), *CPU)
    assert uncond.exit_code == 2 and "text-to-image" in uncond.output
    no_init = invoke("txt2img", PROMPT, "--model", str(tiny_sd_inpaint), "--set", f"mask_image={mask}", *CPU)
    assert no_init.exit_code == 2 and "init image" in no_init.output
    bad_blur = invoke("inpaint", str(init), str(mask), PROMPT, "--mask-blur", "100", *CPU)
    assert bad_blur.exit_code == 2 and "--mask-blur" in bad_blur.output
    assert not (tmp_path / "outputs").exists()


def test_families_without_an_inpainting_pipeline_are_refused():
    from diffcli.errors import UsageError
    from diffcli.plan.items import ModelFacts
    from diffcli.plan.presets import Preset
    from diffcli.plan.attach import Inputs, attach_mask

    facts = ModelFacts(task="txt2img", class_name="PixArtSigmaPipeline", width=16, height=16, size_multiple=8,
                       fixed_size=False, name="x", family="pixart-sigma", inpaint=False)
    with pytest.raises(UsageError, match="no working inpainting pipeline for PixArtSigmaPipeline"):
        attach_mask(Preset(model="x", init_image="i.png", mask_image="m.png"), facts, Inputs(), [])
    from diffcli.families.registry import family_for

    assert family_for("FluxPipeline").inpaint == "FluxInpaintPipeline" and family_for("ChromaPipeline").inpaint is None
    assert family_for("PixArtSigmaPipeline").inpaint is None and family_for("PixArtSigmaPipeline").img2img is None
    assert family_for("StableDiffusion3Pipeline").inpaint == "StableDiffusion3InpaintPipeline"
    assert family_for("StableDiffusionXLInpaintPipeline").name == "sdxl"


@pytest.mark.slow
def test_digits_text_repaints_the_open_half_of_a_3_into_an_8(digit3, tmp_path):
    """The built-in digits-text model, a real 3 and a mask over its left half: the judge reads 8s, and the kept
    right half stays close to the 3."""
    from diffcli.builtin.judge import classify

    init = digit3
    left = np.zeros((16, 16), dtype=np.uint8)
    left[:, :8] = 255
    Image.fromarray(left, "L").save(tmp_path / "left.png")
    doc = run_ok("inpaint", str(init), str(tmp_path / "left.png"), "a handwritten digit 8", "--preset", "digits-text",
                 "--strength", "1", "-n", "8", "-o", str(tmp_path / "o"))
    outs = np.stack([pixels(e["path"]) for e in doc["images"]])
    assert (classify(outs.astype(np.uint8))[0] == 8).sum() >= 6
    kept = np.abs(outs[:, :, 8:] - pixels(init)[None, :, 8:]).mean()
    assert kept < np.abs(outs[:, :, :8] - pixels(init)[None, :, :8]).mean()


def test_flux_uses_its_inpainting_pipeline_and_sd3_chroma_refuse_in_one_line(tiny_family, tmp_path):
    """Flux: FluxInpaintPipeline.from_pipe, pixel-equal. The tiny SD3 has 4 latent channels, which diffusers'
    SD3 inpainting pipeline refuses when called (exit 3, one line); Chroma's is broken in diffusers (exit 2)."""
    import diffusers

    folder, pipeline = tiny_family("flux"), "FluxInpaintPipeline"
    init, mask = random_image(tmp_path / "init.png", size=(32, 32)), half_mask(tmp_path / "mask.png", (32, 32))
    for family, code in (("sd3", 3), ("chroma", 2)):
        result = invoke("inpaint", str(init), str(mask), "a cat", "--model", str(tiny_family(family)), "--steps", "2",
                        "--width", "32", "--height", "32", "--device", "cpu", "-o", str(tmp_path / family))
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == code and len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        assert "internal error" not in lines[0] and not list(tmp_path.glob(f"{family}/*.png"))
    doc = run_ok("inpaint", str(init), str(mask), "a cat", "--model", str(folder), "--steps", "3", "--width", "32",
                 "--height", "32", "--strength", "0.8", "--seed", "5", "-n", "2", "-o", str(tmp_path / "o"))
    plain = diffusers.DiffusionPipeline.from_pretrained(folder)
    reference = getattr(diffusers, pipeline).from_pipe(plain)
    reference.set_progress_bar_config(disable=True)
    for entry in doc["images"]:
        theirs = reference("a cat", image=Image.open(init), mask_image=Image.open(mask), strength=0.8, width=32,
                           height=32, num_inference_steps=3,
                           generator=torch.Generator("cpu").manual_seed(entry["seed"])).images[0]
        assert np.abs(pixels(entry["path"]) - np.asarray(theirs, dtype=int)).max() <= 2


@pytest.mark.parametrize("seed", [5, 11])
def test_sd3_with_16_latent_channels_equals_its_inpainting_pipeline(tiny_family, tmp_path, seed):
    """SD3 (16 latent channels): StableDiffusion3InpaintPipeline.from_pipe, pixel-equal at seed + i."""
    import diffusers

    folder = tiny_family("sd3-16")
    init, mask = random_image(tmp_path / "init.png", size=(32, 32)), half_mask(tmp_path / "mask.png", (32, 32))
    doc = run_ok("inpaint", str(init), str(mask), "a cat", "--model", str(folder), "--steps", "3", "--width", "32",
                 "--height", "32", "--strength", "0.8", "--seed", str(seed), "-n", "2", "-o", str(tmp_path / "o"))
    reference = diffusers.StableDiffusion3InpaintPipeline.from_pretrained(folder)
    reference.set_progress_bar_config(disable=True)
    assert [entry["seed"] for entry in doc["images"]] == [seed, seed + 1]
    for i, entry in enumerate(doc["images"]):
        theirs = reference("a cat", image=Image.open(init), mask_image=Image.open(mask), strength=0.8, width=32,
                           height=32, num_inference_steps=3,
                           generator=torch.Generator("cpu").manual_seed(seed + i)).images[0]
        assert np.abs(pixels(entry["path"]) - np.asarray(theirs, dtype=int)).max() <= 2


def test_padding_mask_crop_on_a_greyscale_model_is_refused_before_loading(tmp_path):
    """diffusers' crop path makes RGB images: on digits-text (1 channel) it crashed in the model; now exit 2."""
    Image.new("L", (16, 16), 0).save(tmp_path / "i.png")
    mask = Image.new("L", (16, 16), 0)
    mask.paste(255, (0, 0, 8, 16))
    mask.save(tmp_path / "m.png")
    result = invoke("inpaint", str(tmp_path / "i.png"), str(tmp_path / "m.png"), "a handwritten digit 8",
                    "--preset", "digits-text", "--padding-mask-crop", "2", "-o", str(tmp_path / "out"))
    assert result.exit_code == 2 and "--padding-mask-crop" in result.output and "1-channel" in result.output
    assert not (tmp_path / "out").exists()
