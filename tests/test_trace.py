import json

import numpy as np
import pytest
from PIL import Image

from diffcli.run.commands import run_trace
from diffcli.run.generate import Options
from diffcli.plan.presets import Preset
from tests.test_cli import invoke


def trace(model, tmp_path, **kw):
    base = dict(model=str(model), steps=8, every=3, seed=0, num_images=2, batch_size=2, device="cpu",
                output=str(tmp_path / "t"), animation="gif")
    preset = Preset(**{**base, **kw})
    kinds = ("x_t", "x0") if preset.show == "both" else (preset.show,)
    return run_trace(preset, Options("denoise-trace", quiet=True, frames=True, frame_kinds=kinds))


@pytest.mark.parametrize("scheduler,steps,every,expected", [
    ("ddpm", 8, 3, [3, 6, 8]), ("ddim", 20, 5, [5, 10, 15, 20]), ("heun", 6, 2, [2, 4, 6]),
    ("kdpm2-a", 5, 4, [4, 5]), ("pndm", 7, 7, [7]), ("dpm++sde", 4, 1, [1, 2, 3, 4]),
])
def test_frame_steps_for_schedulers(tiny_ddpm, tmp_path, scheduler, steps, every, expected):
    report = trace(tiny_ddpm, tmp_path, scheduler=scheduler, steps=steps, every=every, num_images=1, animation="none")
    assert [f["step"] for f in report.frames] == expected
    assert all(f["kind"] == "x_t" for f in report.frames)
    assert report.extra["animations"] == [] and len(report.extra["sheets"]) == 1


@pytest.mark.parametrize("scheduler", ["ddim", "pndm", "unipc", "euler"])  # pndm/unipc: x0 from the noise schedule
def test_x0_frames_with_and_without_pred_original_sample(tiny_ddpm, tmp_path, scheduler):
    report = trace(tiny_ddpm, tmp_path, scheduler=scheduler, show="both", num_images=1)
    x0 = [f for f in report.frames if f["kind"] == "x0"]
    assert [f["step"] for f in x0] == [3, 6, 8]
    for frame in x0:
        assert np.asarray(Image.open(frame["path"])).shape == (8, 8, 3)


def test_last_frame_is_final_image_and_animation_frames(tiny_ddpm, tmp_path):
    report = trace(tiny_ddpm, tmp_path, scheduler="euler-a")
    for entry in report.images:
        last = [f for f in report.frames if f["image_index"] == entry["index"] and f["step"] == 8][0]
        assert np.array_equal(np.asarray(Image.open(last["path"])), np.asarray(Image.open(entry["path"])))
    gif = Image.open(report.extra["animations"][0]["path"])
    assert gif.n_frames == 3
    sheet = Image.open(report.extra["sheets"][0]["path"])
    assert sheet.width > 3 * 96


def test_webp_animation_and_txt2img_trace(tiny_sd, tmp_path):
    report = trace(tiny_sd, tmp_path, prompt="a cat", steps=4, every=2, animation="webp", num_images=1,
                   guidance_scale=3.0)
    assert [f["step"] for f in report.frames] == [2, 4]
    webp = Image.open(report.extra["animations"][0]["path"])
    assert webp.format == "WEBP" and webp.n_frames == 2


def test_frames_are_streamed_not_kept(tiny_ddpm, tmp_path, monkeypatch):
    """The frame sink keeps no pixels: at most `max_pending` frames wait for the writer."""
    import diffcli.frames as frames

    alive, peak = [0], [0]

    def counting_submit(self, step, kind, pixels):
        alive[0] += len(pixels)
        peak[0] = max(peak[0], self._pool._work_queue.qsize())
        return real_submit(self, step, kind, pixels)

    real_submit = frames.FrameSink._submit
    monkeypatch.setattr(frames.FrameSink, "_submit", counting_submit)
    report = trace(tiny_ddpm, tmp_path, steps=60, every=1, num_images=1, animation="none")
    assert len(report.frames) == 60 and alive[0] == 60
    assert peak[0] <= 4


def test_cli_json_report_and_usage_errors(tmp_path):
    result = invoke("denoise-trace", "--preset", "digits", "-n", "1", "--steps", "4", "--every", "2", "--show", "both",
                    "-o", str(tmp_path / "o"), "--json", "--quiet")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {(f["step"], f["kind"]) for f in doc["frames"]} == {(2, "x_t"), (4, "x_t"), (2, "x0"), (4, "x0")}
    assert all({"path", "step", "timestep", "image_index", "kind"} <= set(f) for f in doc["frames"])
    assert doc["sheets"][0]["path"].endswith("-sheet.png") and doc["animations"][0]["path"].endswith(".gif")
    bad = invoke("denoise-trace", "--every", "0")
    assert bad.exit_code == 2 and "every: expected an integer >= 1" in bad.stderr
    bad = invoke("denoise-trace", "--show", "noise")
    assert bad.exit_code == 2 and "show: expected one of" in bad.stderr
    bad = invoke("denoise-trace", "--preset", "digits-text")
    assert bad.exit_code == 2 and "--prompt" in bad.stderr
