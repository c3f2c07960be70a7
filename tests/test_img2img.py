"""img2img: pixel contract with diffusers' image-to-image pipeline, strength bounds, the init image rule,
SDEdit on the unconditional digits model, metadata and replay by hash, frames and refusals."""

import hashlib
import json
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_cli import invoke

CPU = ("--device", "cpu", "--quiet", "--json")


def random_image(path, size=(16, 16), seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def digit3(tmp_path_factory):
    """A real handwritten 3 from scikit-learn's held-out digits, as a 16x16 grayscale PNG."""
    from diffcli.builtin.digits import load_split, to_model_space

    images, labels = load_split("heldout")
    x = to_model_space(images[np.flatnonzero(labels == 3)[0]][None])[0, 0]
    pixels = ((x + 1) / 2 * 255).round().clamp(0, 255).byte().numpy()
    path = tmp_path_factory.mktemp("init") / "digit3.png"
    Image.fromarray(pixels, mode="L").save(path)
    return path


def run_ok(*args):
    result = invoke(*args, *CPU)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def pixels(path, mode=None):
    with Image.open(path) as image:
        return np.asarray(image.convert(mode) if mode else image, dtype=np.float64) / 255


@pytest.mark.parametrize("batch_size", [1, 2])
def test_pixel_equal_to_stable_diffusion_img2img(tiny_sd, tmp_path, batch_size):
    from diffusers import StableDiffusionImg2ImgPipeline

    init = random_image(tmp_path / "init.png")
    doc = run_ok("img2img", str(init), "a cat playing bass", "--model", str(tiny_sd), "--steps", "5",
                 "--strength", "0.6", "--seed", "3", "-n", "2", "-b", str(batch_size), "--guidance-scale", "5",
                 "--negative-prompt", "blurry", "-o", str(tmp_path / "out"))
    reference = StableDiffusionImg2ImgPipeline.from_pretrained(tiny_sd)
    reference.set_progress_bar_config(disable=True)
    assert [(e["seed"], e["strength"], e["run_steps"]) for e in doc["images"]] == [(3, 0.6, 3), (4, 0.6, 3)]
    for entry in doc["images"]:
        theirs = reference("a cat playing bass", image=Image.open(init), strength=0.6, num_inference_steps=5,
                           guidance_scale=5.0, negative_prompt="blurry",
                           generator=torch.Generator("cpu").manual_seed(entry["seed"])).images[0]
        ours = Image.open(entry["path"])
        assert ours.size == theirs.size == (16, 16)
        assert np.abs(np.asarray(ours, dtype=int) - np.asarray(theirs, dtype=int)).max() <= 2


def test_image_pipeline_shares_the_loaded_modules(tiny_sd):
    from diffusers import DDIMScheduler

    from diffcli.plan.presets import Preset
    from diffcli.run.img2img import image_pipeline
    from diffcli.run.pipelines import load_pipeline

    pipe = load_pipeline(Preset(model=str(tiny_sd), device="cpu"), "txt2img").pipe
    made = image_pipeline(pipe)
    assert type(made).__name__ == "StableDiffusionImg2ImgPipeline"
    assert made.unet is pipe.unet and made.vae is pipe.vae and made.text_encoder is pipe.text_encoder
    assert image_pipeline(pipe) is made  # made once per loaded pipeline
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)  # e.g. a --vary cell's scheduler
    assert image_pipeline(pipe).scheduler is pipe.scheduler


def test_strength_near_zero_gives_the_init_image_back_and_high_strength_redraws(digit3, tmp_path):
    from diffcli.builtin.judge import classify

    init = pixels(digit3)
    low = run_ok("img2img", str(digit3), "a handwritten digit 8", "--strength", "0.05", "--steps", "20", "-n", "2",
                 "-o", str(tmp_path / "low"))
    assert [e["run_steps"] for e in low["images"]] == [1, 1]  # int(20 x 0.05)
    for entry in low["images"]:
        assert np.abs(pixels(entry["path"]) - init).mean() < 0.02
    high = run_ok("img2img", str(digit3), "a handwritten digit 8", "--strength", "0.9", "--steps", "20", "-n", "4",
                  "-o", str(tmp_path / "high"))
    outs = np.stack([np.asarray(Image.open(e["path"])) for e in high["images"]])
    assert np.abs(outs / 255 - init).mean() > 0.08
    assert (classify(outs)[0] == 8).sum() >= 3  # the 3 became an 8


def test_unconditional_sdedit_and_the_init_image_rule(digit3, tmp_path):
    """digits (16x16, 1 channel): a 48x16 RGB image, the 3 in its middle third, is cropped to the 3 and made L."""
    wide = np.full((16, 48, 3), 255, dtype=np.uint8)
    wide[:, 16:32] = np.asarray(Image.open(digit3))[..., None]
    Image.fromarray(wide).save(tmp_path / "wide.png")
    doc = run_ok("img2img", str(tmp_path / "wide.png"), "--preset", "digits", "--strength", "0.02", "--steps", "50",
                 "-n", "2", "-o", str(tmp_path / "o"))
    assert [e["run_steps"] for e in doc["images"]] == [1, 1]
    for entry in doc["images"]:
        assert Image.open(entry["path"]).mode == "L"
        assert np.abs(pixels(entry["path"]) - pixels(digit3)).mean() < 0.02
    redrawn = run_ok("img2img", str(digit3), "--preset", "digits", "--strength", "1.0", "--steps", "20", "-n", "2",
                     "-o", str(tmp_path / "full"))
    assert all(np.abs(pixels(e["path"]) - pixels(digit3)).mean() > 0.1 for e in redrawn["images"])


def test_fit_keeps_the_aspect_ratio_and_leaves_matching_sizes_alone(tmp_path):
    from diffcli.plan.init_image import check_init_image, load_init_image

    thirds = np.zeros((16, 48, 3), dtype=np.uint8)
    thirds[:, :16, 0], thirds[:, 16:32, 1], thirds[:, 32:, 2] = 255, 255, 255
    Image.fromarray(thirds).save(tmp_path / "thirds.png")
    sha = check_init_image(str(tmp_path / "thirds.png"))
    fitted = np.asarray(load_init_image(str(tmp_path / "thirds.png"), sha, 16, 16, "RGB"), dtype=int)
    assert fitted.shape == (16, 16, 3) and (fitted[:, 2:14, 1] > 240).all() and (fitted[:, 2:14, [0, 2]] < 15).all()
    tall = np.asarray(load_init_image(str(tmp_path / "thirds.png"), sha, 8, 32, "L"))
    assert tall.shape == (32, 8)  # cover 32 high (96 wide), crop the centre 8 columns: the green third
    same = random_image(tmp_path / "same.png", size=(24, 16))
    out = load_init_image(str(same), check_init_image(str(same)), 24, 16, "RGB")
    assert np.array_equal(np.asarray(out), np.asarray(Image.open(same)))


def test_metadata_and_replay_find_the_init_image_by_hash(digit3, tmp_path):
    init = tmp_path / "digit3.png"
    init.write_bytes(digit3.read_bytes())
    doc = run_ok("img2img", str(init), "a handwritten digit 8", "--strength", "0.6", "--steps", "10", "-n", "1",
                 "-o", str(tmp_path / "o"))
    made = doc["images"][0]["path"]
    with Image.open(made) as image:
        parameters, record = image.info["parameters"], json.loads(image.info["diffcli"])
    assert "Denoising strength: 0.6" in parameters.splitlines()[-1]
    assert record["init_image"] == {"name": "digit3.png", "sha256": hashlib.sha256(init.read_bytes()).hexdigest()}
    assert record["preset"]["strength"] == 0.6 and record["preset"]["init_image"] == str(init)
    again = invoke("replay", made, "-o", str(tmp_path / "r1"), "--device", "cpu")
    assert again.exit_code == 0 and "replaying img2img with model" in again.stderr, again.output
    assert np.array_equal(pixels(next((tmp_path / "r1").iterdir())), pixels(made))
    kept = tmp_path / "kept.png"
    kept.write_bytes(init.read_bytes())
    random_image(init)  # the recorded path now holds another image
    changed = invoke("replay", made, "-o", str(tmp_path / "r2"), *CPU)
    assert changed.exit_code == 2 and "--set init_image=" in changed.output and "sha256" in changed.output
    init.unlink()
    missing = invoke("replay", made, "-o", str(tmp_path / "r3"), *CPU)
    assert missing.exit_code == 2 and "--set init_image=" in missing.output
    fixed = run_ok("replay", made, "--set", f"init_image={kept}", "-o", str(tmp_path / "r4"))
    assert np.array_equal(pixels(fixed["images"][0]["path"]), pixels(made))


def test_frames_count_the_steps_that_run(digit3, tmp_path):
    doc = run_ok("denoise-trace", "--preset", "digits", "--init-image", str(digit3), "--strength", "0.5",
                 "--steps", "10", "--every", "2", "-n", "1", "-o", str(tmp_path / "t"))
    assert sorted(f["step"] for f in doc["frames"]) == [2, 4, 5]  # 5 of the 10 steps run
    assert len(doc["sheets"]) == 1 and doc["images"][0]["run_steps"] == 5


def test_prompts_file_lines_and_vary_set_the_strength(digit3, tmp_path):
    lines = tmp_path / "p.jsonl"
    lines.write_text('{"prompt": "a handwritten digit 8", "strength": 0.3}\n'
                     '{"prompt": "a handwritten digit 8", "strength": 0.9}\n')
    doc = run_ok("img2img", str(digit3), "--prompts-file", str(lines), "--steps", "10", "-n", "1",
                 "-o", str(tmp_path / "f"))
    assert [(e["strength"], e["run_steps"]) for e in doc["images"]] == [(0.3, 3), (0.9, 9)]
    varied = run_ok("img2img", str(digit3), "a handwritten digit 8", "--vary", "strength=0.5,1", "--steps", "4",
                    "-n", "1", "-o", str(tmp_path / "v"))
    assert [e["run_steps"] for e in varied["images"]] == [2, 4]
    refused = invoke("txt2img", "a handwritten digit 8", "--vary", "strength=0.5,1", *CPU)
    assert refused.exit_code == 2 and "init image" in refused.output


def _png_header_only(path, width, height):
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data
                                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("case, needle", [
    ("strength-zero-steps", "--strength"), ("strength-zero", "--strength"), ("strength-above-one", "--strength"),
    ("missing", "not found"), ("text", "not a readable image"), ("gif", "GIF"), ("huge", "pixels"),
    ("bomb", "more pixels than"),
])
def test_refusals_exit_2_before_loading(digit3, tmp_path, case, needle):
    init, extra = str(digit3), []
    if case == "strength-zero-steps":
        extra = ["--strength", "0.04", "--steps", "20"]  # int(20 x 0.04) = 0 steps
    elif case == "strength-zero":
        extra = ["--strength", "0"]
    elif case == "strength-above-one":
        extra = ["--strength", "1.5"]
    elif case == "missing":
        init = str(tmp_path / "nope.png")
    elif case == "text":
        (tmp_path / "x.png").write_text("not an image")
        init = str(tmp_path / "x.png")
    elif case == "gif":
        Image.new("L", (16, 16)).save(tmp_path / "x.gif")
        init = str(tmp_path / "x.gif")
    elif case == "huge":
        init = str(_png_header_only(tmp_path / "huge.png", 10000, 10000))
    else:
        init = str(_png_header_only(tmp_path / "bomb.png", 40000, 40000))
    result = invoke("img2img", init, "a handwritten digit 8", *extra, "-o", str(tmp_path / "o"), *CPU)
    assert result.exit_code == 2, result.output
    assert needle in json.loads(result.stdout)["error"]["message"]
    assert not (tmp_path / "o").exists()
