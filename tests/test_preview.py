"""--preview: the forming image in a real terminal (tmux), and nothing of it in a pipe, with --json, --quiet or
NO_COLOR; the images written are the same with and without it."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from diffcli.cli.app import app
from tests.conftest import REPO, require_dev_extra, run_cli

require_dev_extra("textual_image")
DIGITS = ["txt2img", "a handwritten digit 7", "--preset", "digits-text", "--seed", "0"]
RUN = [*DIGITS, "--steps", "50", "-n", "4"]  # a batch of four: long enough to catch the live preview mid-run
SGR = re.compile(r"\x1b\[([0-9;]*)m")
HALF = "▀"


def tmux() -> str:
    """tmux, which CI installs (.ci/run): missing is a failure there, a skip on a developer's machine."""
    found = shutil.which("tmux")
    if found is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("tmux is not installed (apt-get install tmux): the preview tests run diffcli in it")
        pytest.skip("tmux is not installed (apt-get install tmux)")
    return found


def in_terminal(folder: Path, args: list[str], env: str = "unset NO_COLOR", timeout: float = 300,
                watch: str | None = None, prefix: str = "") -> tuple[int, str, str, list[str]]:
    """Run `diffcli ARGS` in a detached 120x50 tmux pane (forked from the worker's pre-imported server, see
    tests/forkserver.py `relay`, unless that is off): (exit code, the pane's history with escapes, the same
    as plain text with wrapped lines joined, and the last 50 captures taken while it ran that showed `watch`)."""
    from tests.hostile_runner import _fork_server

    socket = f"diffcli-{uuid.uuid4().hex[:12]}"
    server = None if prefix else _fork_server()  # the pane's diffcli is forked from it, on the pane's terminal
    runner = ["-m", "diffcli"] if server is None else ["-m", "tests.forkserver", server.path]
    command = prefix + " ".join(shlex.quote(a) for a in [sys.executable, *runner, *args])
    script = folder / f"{socket}.sh"
    script.write_text(f"cd {shlex.quote(str(folder))}\n{env}\nexport COLORTERM=truecolor OMP_NUM_THREADS=1 "
                      f"HF_HUB_OFFLINE=1 PYTHONPATH={shlex.quote(str(REPO))}\n"
                      f"echo @@BEGIN\n{command}\necho @@EXIT=$?\nsleep 600\n")
    base = [tmux(), "-L", socket]
    env = {**os.environ, "TERM": os.environ.get("TERM") or "xterm-256color"}
    subprocess.run([*base, "-f", "/dev/null", "new-session", "-d", "-x", "120", "-y", "50", "-s", "t",
                    f"bash {shlex.quote(str(script))}"], check=True, timeout=30, env=env)

    def capture(*flags: str) -> str:
        return subprocess.run([*base, "capture-pane", "-p", *flags, "-t", "t"], capture_output=True, text=True,
                              timeout=30, env=env).stdout

    seen: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        while "@@EXIT=" not in (pane := capture("-e")):
            if watch is not None and watch in SGR.sub("", pane):
                seen = [*seen[-49:], pane]
            assert time.monotonic() < deadline, SGR.sub("", pane)
            time.sleep(0.1)
        colours, plain = capture("-e", "-S", "-"), capture("-J", "-S", "-")
    finally:
        subprocess.run([*base, "kill-server"], capture_output=True, timeout=30, env=env)
    code = int(re.search(r"@@EXIT=(\d+)", plain).group(1))
    return code, colours, plain, seen


def cells(line: str) -> list[tuple[str, tuple, tuple]]:
    """One captured line → (character, foreground RGB, background RGB) per cell."""
    fg = bg = (0, 0, 0)
    out = []
    for match in re.finditer(r"\x1b\[([0-9;]*)m|(.)", line):
        if match.group(2) is not None:
            out.append((match.group(2), fg, bg))
            continue
        parts = [int(p) if p else 0 for p in match.group(1).split(";")]
        i = 0
        while i < len(parts):
            if parts[i] == 0:
                fg = bg = (0, 0, 0)
            if parts[i] in (38, 48) and i + 4 < len(parts) and parts[i + 1] == 2:
                fg, bg = (tuple(parts[i + 2:i + 5]), bg) if parts[i] == 38 else (fg, tuple(parts[i + 2:i + 5]))
                i += 5
                continue
            i += 1
    return out


def picture_after(pane: str, caption: str) -> tuple[np.ndarray, list[str]]:
    """The half-block picture drawn under `caption` as RGB pixels, and the plain lines that follow it."""
    lines = pane.splitlines()
    plain = [SGR.sub("", line).rstrip() for line in lines]
    start = next(i for i, line in enumerate(plain) if line.startswith(caption)) + 1
    end = start
    while end < len(plain) and plain[end] and set(plain[end]) == {HALF}:
        end += 1
    rows = [[(fg, bg) for ch, fg, bg in cells(line) if ch == HALF] for line in lines[start:end]]
    assert len(rows) >= 2 and len({len(row) for row in rows}) == 1, plain[start - 1:end + 1]
    pixels = np.zeros((2 * len(rows), len(rows[0]), 3), dtype=np.int64)
    for y, row in enumerate(rows):
        for x, (fg, bg) in enumerate(row):
            pixels[2 * y, x], pixels[2 * y + 1, x] = fg, bg
    return pixels, [line for line in plain[end:] if line]


def expected_picture(paths: list[Path], size: tuple[int, int]) -> np.ndarray:
    """What the terminal should show for these images: the batch side by side, scaled as textual-image does."""
    from diffcli.sinks.preview import strip_of

    batch = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in paths])
    return np.asarray(strip_of(batch).resize(size)).astype(np.int64)


def live_preview_drawn(capture: str) -> bool:
    """An unfinished step's x0 picture, whole, above the two bars."""
    caption = re.search(r"images 1-4: step (\d+)/50", SGR.sub("", capture))
    try:
        _, below = picture_after(capture, caption.group(0))
    except (AssertionError, AttributeError, StopIteration):
        return False
    return int(caption.group(1)) < 50 and below[0].startswith("images ") and below[1].startswith("steps (images 1-4)")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The same run without --preview, in a pipe."""
    folder = tmp_path_factory.mktemp("reference")
    done = run_cli(*RUN, "-o", str(folder / "out"), cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder / "out", done


@pytest.mark.slow
def test_the_terminal_shows_the_image_forming_then_the_final_images(tmp_path, reference):
    code, pane, plain, seen = in_terminal(tmp_path, [*RUN, "--preview", "-o", "out"], watch=": step ")
    assert code == 0, plain
    pngs = sorted((tmp_path / "out").glob("0000-s*.png"))
    assert len(pngs) == 4
    assert [p.read_bytes() for p in pngs] == [(reference[0] / p.name).read_bytes() for p in pngs]  # same files
    # while it ran: an x0 preview of an unfinished step above the bars
    assert seen, "no live preview was seen while the run went on"
    assert any(live_preview_drawn(capture) for capture in seen), SGR.sub("", seen[-1])  # any: one may be mid-redraw
    # at the end: the final images, equal to the PNGs written, kept above the finished bars and the paths
    shown, below = picture_after(pane, "images 1-4: final")
    want = expected_picture(pngs, (shown.shape[1], shown.shape[0]))
    assert np.abs(shown - want).max() <= 2
    assert below[0].startswith("images ") and "4/4" in below[0] and below[1].startswith("steps (images 1-4)")
    assert below[2:6] == [f"out/{p.name}" for p in pngs]
    # nothing garbled: every line is a caption, a row of the picture, a bar, a path or the marker
    for line in (SGR.sub("", line).rstrip() for line in pane.splitlines()):
        assert (not line or set(line) == {HALF} or line.startswith(("@@", "images ", "steps ", "out/", "grid: ",
                                                                     "wrote to "))), line


@pytest.mark.slow
def test_a_pipe_gets_nothing_of_the_preview(tmp_path, reference):
    done = run_cli(*RUN, "--preview", "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.replace(str(tmp_path / "out"), "OUT") == reference[1].stdout.replace(str(reference[0]), "OUT")
    assert "\x1b" not in done.stderr and HALF not in done.stderr
    timing = re.compile(r"\(\d+\.\d+s\)")
    assert (timing.sub("", done.stderr).replace(str(tmp_path / "out"), "OUT")
            == timing.sub("", reference[1].stderr).replace(str(reference[0]), "OUT"))
    for png in reference[0].glob("*.png"):
        assert (tmp_path / "out" / png.name).read_bytes() == png.read_bytes()


@pytest.mark.slow
def test_json_in_a_terminal_is_one_document_and_no_preview(tmp_path):
    code, pane, plain, _ = in_terminal(tmp_path, [*DIGITS, "--steps", "10", "-n", "1", "--preview", "--json",
                                                  "-o", "out"])
    assert code == 0, plain
    assert HALF not in pane
    body = plain.split("@@BEGIN\n", 1)[1].split("@@EXIT=", 1)[0]
    doc = json.loads(body)
    assert doc["status"] == "ok" and len(doc["images"]) == 1


@pytest.mark.slow
def test_quiet_in_a_terminal_prints_only_the_paths(tmp_path):
    code, pane, plain, _ = in_terminal(tmp_path, [*DIGITS, "--steps", "10", "-n", "1", "--preview", "--quiet",
                                                  "-o", "out"])
    assert code == 0, plain
    assert HALF not in pane
    body = plain.split("@@BEGIN\n", 1)[1].split("@@EXIT=", 1)[0]
    assert body.splitlines() == ["out/0000-s0-a-handwritten-digit-7.png"]


@pytest.mark.slow
def test_no_color_turns_the_preview_off_with_a_warning(tmp_path):
    code, pane, plain, _ = in_terminal(tmp_path, [*DIGITS, "--steps", "10", "-n", "1", "--preview", "-o", "out"],
                                       env="export NO_COLOR=1")
    assert code == 0, plain
    assert HALF not in pane
    assert "Warning: --preview is off: NO_COLOR is set" in plain
    assert "out/0000-s0-a-handwritten-digit-7.png" in plain


@pytest.mark.slow
def test_a_background_job_in_a_terminal_gets_no_preview_and_is_not_stopped(tmp_path):
    """Under `timeout` (its own process group, not the terminal's foreground one) a terminal query would stop
    the process (SIGTTOU/SIGTTIN): the preview stays off and the run finishes. A new interpreter: the pane's
    terminal must be its controlling terminal."""
    code, pane, plain, _ = in_terminal(tmp_path, [*DIGITS, "--steps", "4", "-n", "1", "--preview-every", "1",
                                                  "-o", "out"], prefix="timeout -k 5 120 ")
    assert code == 0, plain
    assert HALF not in pane and "out/0000-s0-a-handwritten-digit-7.png" in plain


@pytest.mark.parametrize("args,message", [
    (["--preview"], 'Error: --preview needs the \'preview\' extra (textual-image): pip install -e ".[preview]"'),
    (["--preview-every", "3"], "Error: --preview needs the 'preview' extra"),
    (["--preview-every", "0"], "Error: --preview-every: expected an integer >= 1, got 0"),
])
def test_preview_refusals_are_one_line_exit_2(monkeypatch, args, message):
    monkeypatch.setitem(sys.modules, "textual_image", None)  # as if the extra were not installed
    result = CliRunner().invoke(app, [*DIGITS, *args, "--json"], env={"COLUMNS": "120"})
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines
    assert json.loads(result.stdout)["status"] == "error"


class FakeBars:
    """The progress sink's surface the preview uses, recording what it was given."""

    def __init__(self) -> None:
        import io

        from rich.console import Console

        self.console = Console(file=io.StringIO(), width=120, height=50, force_terminal=True, color_system="truecolor")
        self.shown: list = []
        self.printed: list = []
        self.refresh_per_second = 10.0

    def show_above(self, renderable) -> None:
        self.shown.append(renderable)

    def print_above(self, renderable) -> None:
        self.printed.append(renderable)


def caption(renderable) -> str:
    return str(renderable.renderables[0])


def test_previews_come_every_n_complete_steps_and_the_final_images_are_printed(monkeypatch):
    import torch

    from diffcli.plan.items import Item
    from diffcli.sinks import preview
    from diffcli.sinks.base import RunInfo
    from diffcli.step import Step

    batch = [Item.__new__(Item), Item.__new__(Item)]
    for number, item in enumerate(batch):
        object.__setattr__(item, "index", number)
    x0 = torch.zeros(2, 1, 16, 16)

    def run(every, gap: float) -> FakeBars:
        monkeypatch.setattr(preview, "MIN_GAP_S", gap)
        monkeypatch.setattr(preview, "COST_SHARE", 0)
        bars = FakeBars()
        sink = preview.PreviewSink(every, bars)
        assert bars.refresh_per_second == preview.REDRAWS
        sink.start(RunInfo(command="unconditional", task="unconditional", preset=None, folder=None, total=2))
        for call in range(1, 33):  # 16 steps, two calls each (a second-order scheduler): complete steps count
            sink.on_step(batch, Step(step=(call + 1) // 2, total_steps=16, call=call, total_calls=32, timestep=0.0,
                                     sample=x0, x0=x0, complete=call % 2 == 0))
        sink.on_images(batch, np.full((2, 16, 16, 1), 255, dtype=np.uint8))
        sink.close(True)
        assert bars.shown[-1] is None and [caption(r) for r in bars.printed] == ["images 1-2: final"]
        return [caption(r) for r in bars.shown[:-2]]

    assert run(None, 0.0) == [f"images 1-2: step {s}/16" for s in (2, 4, 6, 8, 10, 12, 14)]  # steps // 8
    assert run(5, 0.0) == [f"images 1-2: step {s}/16" for s in (5, 10, 15)]
    assert run(1, 60.0) == ["images 1-2: step 1/16"]  # the next would come sooner than MIN_GAP_S


def test_cheap_decode_linear_factors_vae_fallback_and_pixels():
    from types import SimpleNamespace

    import torch

    from diffcli.sinks import pixels

    def vae(channels: int, scaling: float, decoded: list) -> SimpleNamespace:
        def decode(latents, return_dict=False):
            decoded.append(tuple(latents.shape))
            return (torch.zeros(latents.shape[0], 3, latents.shape[2] * 8, latents.shape[3] * 8),)

        config = SimpleNamespace(latent_channels=channels, scaling_factor=scaling, shift_factor=None)
        return SimpleNamespace(config=config, dtype=torch.float32, decode=decode)

    decoded: list = []
    latents = torch.randn(1, 16, 64, 48, generator=torch.Generator().manual_seed(0))
    sd3 = SimpleNamespace(vae=vae(16, 1.5305, decoded))
    rgb = torch.einsum("bchw,cr->brhw", latents, torch.tensor(pixels.SD3_LATENT_RGB))
    rgb = rgb + torch.tensor(pixels.SD3_LATENT_BIAS).view(1, 3, 1, 1)
    assert np.array_equal(pixels.cheap_pixels(sd3, latents, True), pixels.to_uint8((rgb / 2 + 0.5).clamp(0, 1)))
    flux = SimpleNamespace(vae=vae(16, 0.3611, decoded))
    assert pixels.cheap_pixels(flux, latents, True).shape == (1, 64, 48, 3) and decoded == []
    other = SimpleNamespace(vae=vae(16, 0.5, decoded))  # no factors: the VAE on a latent shrunk to 16 a side
    assert pixels.cheap_pixels(other, latents, True).shape == (1, 128, 96, 3) and decoded == [(1, 16, 16, 12)]
    x0 = torch.linspace(-1, 1, 16).view(1, 1, 4, 4)  # pixel-space models: x0 as it is
    assert np.array_equal(pixels.cheap_pixels(None, x0, False)[0, :, :, 0].ravel(),
                          ((x0.ravel() / 2 + 0.5) * 255).round().numpy().astype(np.uint8))
