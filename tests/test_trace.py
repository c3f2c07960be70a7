import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffcli.plan.items import PromptLine
from diffcli.plan.presets import Preset
from diffcli.run.commands import run_generation
from tests.test_cli import invoke


def trace(model, tmp_path, prompt=None, **kw):
    base = dict(model=str(model), steps=8, every=3, seed=0, num_images=2, batch_size=2, device="cpu",
                output=str(tmp_path / "t"), animation="gif")
    lines = [PromptLine(prompt)] if prompt is not None else None
    return run_generation("denoise-trace", Preset(**{**base, **kw}), None, lines).to_dict()


@pytest.mark.parametrize("scheduler,steps,every,expected", [
    ("ddpm", 8, 3, [3, 6, 8]), ("ddim", 20, 5, [5, 10, 15, 20]), ("heun", 6, 2, [2, 4, 6]),
    ("kdpm2-a", 5, 4, [4, 5]), ("pndm", 7, 7, [7]), ("dpm++sde", 4, 1, [1, 2, 3, 4]),
])
def test_frame_steps_for_schedulers(tiny_ddpm, tmp_path, scheduler, steps, every, expected):
    report = trace(tiny_ddpm, tmp_path, scheduler=scheduler, steps=steps, every=every, num_images=1, animation="none")
    assert [f["step"] for f in report["frames"]] == expected
    assert all(f["kind"] == "x_t" for f in report["frames"])
    assert report["animations"] == [] and len(report["sheets"]) == 1


@pytest.mark.parametrize("scheduler", ["ddim", "pndm", "unipc", "euler"])  # pndm/unipc: x0 from the noise schedule
def test_x0_frames_with_and_without_pred_original_sample(tiny_ddpm, tmp_path, scheduler):
    report = trace(tiny_ddpm, tmp_path, scheduler=scheduler, show="both", num_images=1)
    x0 = [f for f in report["frames"] if f["kind"] == "x0"]
    assert [f["step"] for f in x0] == [3, 6, 8]
    for frame in x0:
        assert np.asarray(Image.open(frame["path"])).shape == (8, 8, 3)


def test_last_frame_is_final_image_and_animation_frames(tiny_ddpm, tmp_path):
    report = trace(tiny_ddpm, tmp_path, scheduler="euler-a")
    for entry in report["images"]:
        last = [f for f in report["frames"] if f["image_index"] == entry["index"] and f["step"] == 8][0]
        assert np.array_equal(np.asarray(Image.open(last["path"])), np.asarray(Image.open(entry["path"])))
    gif = Image.open(report["animations"][0]["path"])
    assert gif.n_frames == 3
    sheet = Image.open(report["sheets"][0]["path"])
    assert sheet.width > 3 * 96


def test_webp_animation_and_txt2img_trace(tiny_sd, tmp_path):
    report = trace(tiny_sd, tmp_path, prompt="a cat", steps=4, every=2, animation="webp", num_images=1,
                   guidance_scale=3.0)
    assert [f["step"] for f in report["frames"]] == [2, 4]
    webp = Image.open(report["animations"][0]["path"])
    assert webp.format == "WEBP" and webp.n_frames == 2


def test_frames_are_streamed_not_kept(tiny_ddpm, tmp_path):
    """A whole trace run: every frame reaches its file, and no frame is kept after the run."""
    report = trace(tiny_ddpm, tmp_path, steps=60, every=1, num_images=1, animation="none")
    assert [f["step"] for f in report["frames"]] == list(range(1, 61))
    assert all(Path(f["path"]).is_file() for f in report["frames"])


class CountingSlots:
    """The frame sink's semaphore, counting how often the producer asked for a slot."""

    def __init__(self, real):
        self.real, self.attempts = real, 0

    def acquire(self, *args, **kwargs):
        self.attempts += 1
        return self.real.acquire(*args, **kwargs)

    def release(self):
        self.real.release()


def test_frame_writer_is_bounded(tmp_path):
    """With the writer stalled, the denoising side blocks after `max_pending` frames instead of piling them up."""
    import threading
    import time

    import torch

    from diffcli.plan.items import Item
    from diffcli.sinks.base import RunInfo
    from diffcli.sinks.folder import OutputFolder
    from diffcli.sinks.frames import FrameSink
    from diffcli.step import Step

    bound, total = 4, 12
    sink = FrameSink(every=1, kinds=("x_t",), decode="preview", max_pending=bound)
    sink._slots = slots = CountingSlots(sink._slots)
    gate, written = threading.Event(), []
    real_write = sink._write

    def stalled_write(name, pixels, size):
        assert gate.wait(120), "the test never opened the gate"
        real_write(name, pixels, size)
        written.append(name)

    sink._write = stalled_write
    folder = OutputFolder(tmp_path / "o", "denoise-trace")
    sink.start(RunInfo(command="denoise-trace", task="unconditional", preset=None, folder=folder, total=1))
    item = Item(index=0, seed=0, prompt_index=0, prompt="", negative_prompt="", steps=total, guidance_scale=0.0,
                width=8, height=8, task="unconditional")
    done = []

    def produce():
        for step in range(1, total + 1):  # the last step's x_t frame waits for the final image
            sample = torch.full((1, 3, 8, 8), step / total * 2 - 1)
            sink.on_step([item], Step(step, total, step, total, 1000 - step, sample, None, True))
            done.append(step)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        # wait (no timing assumption) until the producer asks for slot bound+1, or finished without blocking
        deadline = time.monotonic() + 120
        while producer.is_alive() and slots.attempts <= bound and time.monotonic() < deadline:
            producer.join(0.01)
        assert producer.is_alive(), f"the producer made all {len(done)} frames while the writer was stalled"
        assert slots.attempts == bound + 1 and slots.real._value == 0
        assert done == list(range(1, bound + 1)) and written == []
        assert len(sink.entries) == bound  # frames accepted: one being written, the rest waiting
    finally:
        gate.set()
    producer.join(60)
    assert not producer.is_alive() and done == list(range(1, total + 1)) and len(sink.entries) == total - 1
    sink.on_images([item], np.zeros((1, 8, 8, 3), dtype=np.uint8))
    frames = sink.close(True)["frames"]
    assert [f["step"] for f in frames] == list(range(1, total + 1)) and len(written) == total
    assert slots.real._value == bound


def test_cli_json_report_and_usage_errors(tmp_path):
    result = invoke("denoise-trace", "--preset", "digits", "-n", "1", "--steps", "4", "--every", "2", "--show", "both",
                    "-o", str(tmp_path / "o"), "--json", "--quiet")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {(f["step"], f["kind"]) for f in doc["frames"]} == {(2, "x_t"), (4, "x_t"), (2, "x0"), (4, "x0")}
    assert all({"path", "step", "timestep", "image_index", "kind"} <= set(f) for f in doc["frames"])
    assert doc["sheets"][0]["path"].endswith("-sheet.png") and doc["animations"][0]["path"].endswith(".gif")
    bad = invoke("denoise-trace", "--every", "0")
    assert bad.exit_code == 2 and "Error: --every: expected an integer >= 1, got 0" in bad.stderr
    bad = invoke("denoise-trace", "--show", "noise")
    assert bad.exit_code == 2 and "Error: --show: expected one of x_t, x0, both" in bad.stderr
    bad = invoke("denoise-trace", "--preset", "digits-text")
    assert bad.exit_code == 2 and "--prompt" in bad.stderr


@pytest.mark.slow
def test_default_trace_is_digits_over_1000_ddpm_steps(tmp_path):
    result = invoke("denoise-trace", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["preset"]["name"] == "digits-trace" and doc["preset"]["scheduler"] == "ddpm"
    assert doc["output"] == str(Path("outputs", "denoise-trace", "0001"))
    assert [(i["seed"], i["steps"]) for i in doc["images"]] == [(0, 1000)]
    assert [f["step"] for f in doc["frames"]] == list(range(50, 1001, 50))
    assert [Path(s["path"]).name for s in doc["sheets"]] == ["0000-s0-sheet.png"]
    assert Image.open(doc["animations"][0]["path"]).n_frames == 20
    assert doc["grid"] is None  # one image: no grid
