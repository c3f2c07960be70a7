import json

import numpy as np
import pytest
import torch
from PIL import Image

from diffcli.plan.presets import Preset
from diffcli.run.commands import run_generation
from diffcli.run.pipelines import load_pipeline
from diffcli.sinks.frames import frame_steps
from diffcli.run.sampling import sample_unconditional
from diffcli.plan.schedulers import SCHEDULERS, compatible_names
from diffcli.run.schedulers import build_scheduler


def load(model, scheduler=None):
    return load_pipeline(Preset(model=str(model), scheduler=scheduler, device="cpu"), "unconditional").pipe


@pytest.mark.parametrize("name", [name for name, spec in SCHEDULERS.items() if not spec.flow])
def test_every_scheduler_runs_through_the_own_loop(tiny_ddpm, name):
    pipe = load(tiny_ddpm, name)
    assert type(pipe.scheduler).__name__ == SCHEDULERS[name].class_name
    seen = []
    images = sample_unconditional(pipe, 6, [torch.Generator().manual_seed(0)], seen.append, want_x0=True)
    assert images.shape == (1, 3, 8, 8) and torch.isfinite(images).all()
    complete = [s.step for s in seen if s.complete]
    assert complete == [1, 2, 3, 4, 5, 6], (name, complete, len(seen))
    assert all(s.x0 is not None and torch.isfinite(s.x0).all() for s in seen)
    assert seen[-1].call == len(pipe.scheduler.timesteps)


def test_stochastic_scheduler_is_reproducible_per_seed(tiny_ddpm):
    pipe = load(tiny_ddpm, "euler-a")
    a = sample_unconditional(pipe, 5, [torch.Generator().manual_seed(3)], None)
    b = sample_unconditional(pipe, 5, [torch.Generator().manual_seed(4), torch.Generator().manual_seed(3)], None)
    assert torch.allclose(a[0], b[1], atol=1e-5)
    assert not torch.allclose(b[0], b[1])


def test_compatible_names_cover_the_table(tiny_ddpm):
    noise_prediction = {name for name, spec in SCHEDULERS.items() if not spec.flow}
    assert set(compatible_names(load(tiny_ddpm).scheduler)) == noise_prediction


def test_unknown_scheduler_option_is_a_preset_error(tiny_ddpm):
    from diffcli.errors import PresetError

    with pytest.raises(PresetError, match="not an option of DDIMScheduler"):
        build_scheduler("ddim", load(tiny_ddpm).scheduler, {"etaa": 0.1})


@pytest.mark.parametrize("batch_size", [1, 3])
def test_ddpm_pixel_contract(tiny_ddpm, tmp_path, batch_size):
    from diffusers import DDPMPipeline

    steps, seed = 12, 7
    preset = Preset(model=str(tiny_ddpm), scheduler="ddpm", steps=steps, seed=seed, num_images=3,
                    batch_size=batch_size, device="cpu", output=str(tmp_path / "out"))
    report = run_generation("unconditional", preset, "unconditional")
    assert len(report.images) == 3 and report.to_dict()["output"] == str(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0000-s7.png", "0001-s8.png", "0002-s9.png",
                                                                    "grid-0000-s7.png"]
    assert report.to_dict()["grid"] == str(tmp_path / "out" / "grid-0000-s7.png")
    reference = DDPMPipeline.from_pretrained(tiny_ddpm)
    reference.set_progress_bar_config(disable=True)
    for i, entry in enumerate(report.images):
        assert entry["seed"] == seed + i and f"s{seed + i}" in entry["path"]
        ours = np.asarray(Image.open(entry["path"]).convert("RGB"), dtype=int)
        theirs = np.asarray(reference(generator=torch.Generator("cpu").manual_seed(seed + i),
                                      num_inference_steps=steps).images[0], dtype=int)
        assert np.abs(ours - theirs).max() <= 2


def test_png_metadata_and_frames(tiny_ddpm, tmp_path):
    preset = Preset(model=str(tiny_ddpm), scheduler="ddim", steps=10, every=4, seed=1, num_images=2, batch_size=2,
                    device="cpu", output=str(tmp_path / "o"), show="both")
    report = run_generation("unconditional", preset, "unconditional")
    frames = report.to_dict()["frames"]
    image = Image.open(report.images[0]["path"])
    assert "Steps: 10, Sampler: DDIM" in image.info["parameters"] and "Seed: 1" in image.info["parameters"]
    record = json.loads(image.info["diffcli"])
    assert record["preset"]["seed"] == 1 and record["preset"]["scheduler"] == "ddim"
    steps = sorted((f["image_index"], f["step"], f["kind"]) for f in frames)
    assert steps == sorted((i, s, k) for i in (0, 1) for s in (4, 8, 10) for k in ("x_t", "x0"))
    last = [f for f in frames if f["step"] == 10 and f["kind"] == "x_t" and f["image_index"] == 1][0]
    assert np.array_equal(np.asarray(Image.open(last["path"])), np.asarray(Image.open(report.images[1]["path"])))


@pytest.mark.parametrize("total,every,expected", [(20, 5, [5, 10, 15, 20]), (20, 6, [6, 12, 18, 20]),
                                                  (3, 10, [3]), (1000, 50, list(range(50, 1001, 50)))])
def test_frame_steps(total, every, expected):
    assert frame_steps(total, every) == expected
