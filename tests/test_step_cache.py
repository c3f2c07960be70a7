"""Step caching (`step_cache: N`): off is the plain path, on skips the deep blocks on N-1 of every N calls."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from diffcli.errors import PresetError
from diffcli.plan.presets import Preset
from diffcli.run.pipelines import load_pipeline
from diffcli.run.sampling import sample_txt2img, sample_unconditional
from diffcli.run.step_cache import disable_step_cache
from tests.conftest import REPO, run_cli

DIGITS_TEXT = REPO / "models" / "digits-text"


def load(model: Path, **keys):
    return load_pipeline(Preset(model=str(model), device="cpu", **keys), None).pipe


def count_calls(unet) -> dict[str, int]:
    """UNet calls, and full ones: a module inside the mid block runs only on full calls."""
    counts = {"all": 0, "full": 0}
    unet.register_forward_hook(lambda *_: counts.__setitem__("all", counts["all"] + 1))
    unet.mid_block.resnets[0].register_forward_hook(lambda *_: counts.__setitem__("full", counts["full"] + 1))
    return counts


def txt2img(pipe, steps: int = 6, prompts=("a cat", "a red dog")):
    generators = [torch.Generator("cpu").manual_seed(i) for i in range(len(prompts))]
    return sample_txt2img(pipe, {"prompt": list(prompts), "guidance_scale": 7.5, "generator": generators}, steps, None)


def test_off_is_the_plain_diffusers_path(tiny_sd):
    from diffusers import StableDiffusionPipeline

    pipe = load(tiny_sd, step_cache=1)
    assert "forward" not in vars(pipe.unet)  # nothing wrapped
    plain = StableDiffusionPipeline.from_pretrained(tiny_sd)
    plain.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        reference = plain(["a cat", "a red dog"], num_inference_steps=6, guidance_scale=7.5, output_type="np",
                          generator=[torch.Generator("cpu").manual_seed(i) for i in range(2)]).images
    assert np.array_equal(txt2img(pipe), reference)


@pytest.mark.parametrize("interval,steps", [(2, 6), (3, 7), (5, 7)])
def test_full_unet_calls_are_ceil_steps_over_n(tiny_sd, interval, steps):
    pipe = load(tiny_sd, step_cache=interval, scheduler="ddim")  # one UNet call per step
    counts = count_calls(pipe.unet)
    txt2img(pipe, steps)
    assert counts == {"all": steps, "full": math.ceil(steps / interval)}
    txt2img(pipe, steps)  # the next run starts with a full call again
    assert counts == {"all": 2 * steps, "full": 2 * math.ceil(steps / interval)}


def test_extra_scheduler_calls_count_as_calls(tiny_sd):
    """PNDM (PLMS) calls the UNet steps + 1 times, its first timestep twice: one full call in every N calls."""
    pipe = load(tiny_sd, step_cache=2)
    counts = count_calls(pipe.unet)
    txt2img(pipe, 6)
    assert counts == {"all": 7, "full": 4}


@pytest.mark.parametrize("scheduler", ["heun", "kdpm2"])
def test_second_order_steps_are_cached_whole(tiny_sd, scheduler):
    """Heun and KDPM2 call the UNet twice per step (predictor, corrector): with N=2 the calls of every other
    step are full, both of them, instead of every predictor full and every corrector cached."""
    pipe = load(tiny_sd, step_cache=2, scheduler=scheduler)
    flags = []
    cache = pipe.unet._diffcli_step_cache
    original = cache._begin

    def recording(sample, timestep):
        original(sample, timestep)
        flags.append(cache.full)

    cache._begin = recording
    txt2img(pipe, 4)
    assert len(flags) == len(pipe.scheduler.timesteps) == 7  # 2 x 4 - 1 calls
    assert flags == [True, True, False, False, True, True, False]


def test_unconditional_unet2dmodel(tiny_ddpm):
    generators = lambda: [torch.Generator("cpu").manual_seed(i) for i in range(2)]  # noqa: E731
    plain = sample_unconditional(load(tiny_ddpm), 10, generators(), None)
    pipe = load(tiny_ddpm, step_cache=4)
    counts = count_calls(pipe.unet)
    cached = sample_unconditional(pipe, 10, generators(), None)
    assert counts == {"all": 10, "full": 3}
    assert not torch.equal(cached, plain)
    disable_step_cache(pipe.unet)  # restores the UNet's own forward: the plain images again
    assert "forward" not in vars(pipe.unet) and not any("forward" in vars(b) for b in pipe.unet.up_blocks)
    assert torch.equal(sample_unconditional(pipe, 10, generators(), None), plain)


@pytest.mark.slow
def test_cached_steps_change_the_image_but_stay_close():
    """On the trained digits-text model: the same digits, a few grey levels apart."""
    prompts = [f"a handwritten digit {d}" for d in range(10)]
    plain = txt2img(load(DIGITS_TEXT), 20, prompts)
    two = txt2img(load(DIGITS_TEXT, step_cache=2), 20, prompts)
    five = txt2img(load(DIGITS_TEXT, step_cache=5), 20, prompts)
    d2, d5 = np.abs(two - plain).mean(), np.abs(five - plain).mean()
    assert 0 < d2 < 0.02 and d2 < d5 < 0.05, (d2, d5)


def test_works_with_the_frames_sink(tiny_sd, tmp_path):
    from diffcli.plan.items import PromptLine
    from diffcli.run.commands import run_generation

    preset = Preset(model=str(tiny_sd), device="cpu", steps=6, every=2, step_cache=2, output=str(tmp_path / "out"),
                    num_images=2, batch_size=2)
    report = run_generation("txt2img", preset, "txt2img", [PromptLine("a cat")]).to_dict()
    assert len(report["images"]) == 2 and report["preset"]["step_cache"] == 2
    assert len(report["frames"]) == 2 * 3 and all(Path(f["path"]).is_file() for f in report["frames"])


@pytest.fixture(scope="module")
def tiny_dit(tmp_path_factory) -> Path:
    from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    torch.manual_seed(0)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=4, in_channels=4, out_channels=8,
                                        num_layers=1, sample_size=8, patch_size=2, norm_num_groups=2,
                                        num_embeds_ada_norm=10)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4, sample_size=16)
    folder = tmp_path_factory.mktemp("models") / "tiny-dit"
    DiTPipeline(transformer=transformer, vae=vae, scheduler=DDIMScheduler(), id2label={0: "zero"}).save_pretrained(
        folder)
    return folder


def test_refused_for_transformer_pipelines(tiny_dit, tmp_path):
    result = run_cli("txt2img", "a cat", "--model", str(tiny_dit), "--step-cache", "3", "--steps", "2",
                     "-o", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "Error: step_cache: 3: diffusers' cache hooks cannot follow DiTPipeline's DiTTransformer2DModel calls "
        "(set step_cache: 1 for this model)"]
    assert not (tmp_path / "out").exists()


def test_refused_with_compile_and_out_of_range(tiny_sd):
    with pytest.raises(PresetError, match="step_cache: 2: not with compile: default"):
        load(tiny_sd, step_cache=2, compile="default")
    for bad in (0, 11):
        with pytest.raises(PresetError, match="step_cache"):
            Preset(model="x").replace(step_cache=bad)


def test_recorded_and_replayed(tiny_sd, tmp_path):
    """step_cache decides the pixels: the metadata keeps it and replay makes the same image."""
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from diffcli.cli.app import app

    runner = CliRunner()
    made = runner.invoke(app, ["txt2img", "a cat", "--model", str(tiny_sd), "--steps", "5", "--step-cache", "2",
                               "-o", str(tmp_path / "a"), "--json", "-q"], catch_exceptions=False)
    assert made.exit_code == 0, made.output
    image = Path(json.loads(made.stdout)["images"][0]["path"])
    assert json.loads(Image.open(image).info["diffcli"])["preset"]["step_cache"] == 2
    again = runner.invoke(app, ["replay", str(image), "-o", str(tmp_path / "r"), "--json", "-q"],
                          catch_exceptions=False)
    assert again.exit_code == 0, again.output
    replayed = Path(json.loads(again.stdout)["images"][0]["path"])
    assert np.array_equal(np.asarray(Image.open(replayed)), np.asarray(Image.open(image)))
    plain = runner.invoke(app, ["replay", str(image), "--set", "step_cache=1", "-o", str(tmp_path / "p"), "--json",
                                "-q"], catch_exceptions=False)
    assert plain.exit_code == 0, plain.output
    plain_image = Path(json.loads(plain.stdout)["images"][0]["path"])
    assert not np.array_equal(np.asarray(Image.open(plain_image)), np.asarray(Image.open(image)))
