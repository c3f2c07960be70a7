"""`diffcli gallery`: what the page holds, incremental rebuilds, untrusted files, errors.

The page itself is driven in headless Chromium by tests/test_gallery_browser.py, on the same `outputs` folder."""

from __future__ import annotations

import json
import os
import shlex
from html import escape
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffcli.sinks.gallery import GALLERY_DIR, build_gallery, update_gallery
from diffcli.sinks.gallery_html import url
from diffcli.sinks.gallery_read import read_image
from diffcli.sinks.metadata import a1111_parameters, diffcli_chunk

XSS = "<script>window.__pwned = 1; alert(1)</script>"
ATTR = "\" onmouseover=\"window.__pwned=2\" x='><img src=x onerror=\"window.__pwned=3\">"
NEGATIVE = "</script><!-- blurry"
ODD_NAME = "odd #1 ?&'\"<b> café.png"
GRID_AXES = {"axes": [{"key": "scheduler", "values": ["ddim", "euler"]}, {"key": "steps", "values": [10, 20]}]}
CARDS = 9  # the `outputs` fixture: everything but the trace's sheet/animation/frames gets a card


def png(path: Path, size: tuple[int, int] = (16, 16), color: str = "gray", prompt: str | None = None,
        negative: str | None = None, seed: int = 0, chunks: dict[str, str] | None = None, replay: bool = True) -> Path:
    """A real PNG with diffcli's A1111 `parameters` chunk (and its `diffcli` replay chunk)."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    fields = {"Steps": 20, "Sampler": "DDIM", "CFG scale": 7, "Seed": seed, "Size": f"{size[0]}x{size[1]}",
              "Model": "digits", "Version": "diffcli 0.1.0"}
    texts = {"parameters": a1111_parameters(prompt, negative, fields), **(chunks or {})}
    if replay:
        texts["diffcli"] = diffcli_chunk({"task": "txt2img" if prompt else "unconditional",
                                          "preset": {"model": "digits", "seed": seed, "steps": 20, "prompt": prompt,
                                                     "negative_prompt": negative}})
    for key, value in texts.items():
        info.add_itxt(key, value) if not value.isascii() else info.add_text(key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, pnginfo=info)
    return path


def animation(path: Path, fmt: str) -> Path:
    from PIL import Image

    frames = [Image.new("RGB", (32, 16), color) for color in ("black", "white", "red")]
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    """A folder like diffcli's outputs, with hostile prompts and names mixed in."""
    out = tmp_path / "out"
    png(out / "0000-s0.png", color="red", prompt="a red circle", seed=0)
    png(out / "0001-s1.png", color="blue", prompt=XSS, negative=NEGATIVE, seed=1)
    png(out / "0002-s2.png", color="green", prompt=ATTR, seed=2)
    png(out / "0003-s3.png", color="white", seed=3)  # unconditional, with a trace:
    png(out / "0003-s3-sheet.png", size=(64, 24), replay=False)
    animation(out / "0003-s3-trace.gif", "GIF")
    png(out / "frames" / "0003-s3-step0001-t0999-xt.png", replay=False)
    png(out / "frames" / "0003-s3-step0002-t0500-xt.png", replay=False)
    png(out / "frames" / "0099-s99-step0001-t0999-xt.png", replay=False)  # its final image is gone
    png(out / "grid.png", size=(40, 40), replay=False, chunks={"diffcli-grid": json.dumps(GRID_AXES)})
    png(out / "big.png", size=(600, 400), color="orange", prompt="a wide landscape", seed=5)
    png(out / "sub" / ODD_NAME, color="purple", replay=False, prompt="odd name")
    animation(out / "anim.webp", "WEBP")
    (out / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    png(out / ".diffcli-tmp-123-abc-0004-s4.png")  # a write in flight: never shown
    (out / "notes.txt").write_text("not an image")
    return out


def test_page_lists_every_image_with_its_metadata(outputs):
    report = build_gallery(outputs)
    page = (outputs / "index.html").read_text("utf-8")
    assert report.to_dict()["status"] == "ok"
    assert (report.images, report.frames_grouped, report.frames_left_out, report.broken) == (CARDS, 2, 1, 1)
    assert page.count('<article class="card"') == CARDS
    for text in ("a red circle", "<dt>Sampler</dt> <dd>DDIM</dd>", "<dt>CFG scale</dt> <dd>7</dd>",
                 "<dt>Size</dt> <dd>16x16</dd>", "<dt>Model</dt> <dd>digits</dd>", "<b>scheduler</b> ddim · euler",
                 "<b>steps</b> 10 · 20", "2 frames in frames/", 'data-sheet="0003-s3-sheet.png"',
                 'data-anim="0003-s3-trace.gif"', "unreadable image", "3 denoising frames not shown one by one"):
        assert text in page, text
    assert escape("diffcli replay " + shlex.quote(str(outputs.resolve() / "0000-s0.png"))) in page
    assert escape("diffcli replay " + shlex.quote(str(outputs.resolve() / "0001-s1.png"))) in page
    assert "tmp-123" not in page and "notes.txt" not in page
    thumbs = list((outputs / GALLERY_DIR / "thumbs").iterdir())
    assert len(thumbs) == 1 and f'src=".gallery/thumbs/{thumbs[0].name}"' in page


def test_exact_prompt_from_the_diffcli_chunk(tmp_path):
    record = read_image(png(tmp_path / "x.png", prompt="line one\nline two", negative="no\nthanks"))
    assert (record["prompt"], record["negative_prompt"]) == ("line one\nline two", "no\nthanks")
    assert read_image(png(tmp_path / "y.png", prompt="line one\nline two", replay=False))["prompt"] == "line one line two"


def test_read_image_fields(outputs):
    record = read_image(outputs / "0001-s1.png")
    assert record["prompt"] == XSS and record["negative_prompt"] == NEGATIVE
    assert {key: record[key] for key in ("seed", "steps", "scheduler", "guidance", "size", "model")} == {
        "seed": "1", "steps": "20", "scheduler": "DDIM", "guidance": "7", "size": "16x16", "model": "digits"}
    assert record["replayable"] is True and record["animated"] is False
    assert read_image(outputs / "anim.webp")["animated"] is True
    assert read_image(outputs / "grid.png")["axes"] == [{"key": "scheduler", "values": ["ddim", "euler"]},
                                                        {"key": "steps", "values": ["10", "20"]}]


def test_untrusted_text_is_escaped_and_paths_encoded(outputs):
    build_gallery(outputs)
    page = (outputs / "index.html").read_text("utf-8")
    for hostile in (XSS, ATTR, NEGATIVE, ODD_NAME):
        assert hostile not in page
    assert escape(XSS) in page and escape(ATTR) in page and escape(NEGATIVE) in page
    assert page.count("<script") == 1 and page.count("</script>") == 1 and "<!--" not in page
    assert 'src="sub/odd%20%231%20%3F%26%27%22%3Cb%3E%20caf%C3%A9.png"' in page
    assert url("javascript:alert(1).png") == "javascript%3Aalert%281%29.png"


def test_rebuild_reads_only_new_or_changed_files(outputs):
    first = build_gallery(outputs)
    assert first.read == 11 and first.written
    again = build_gallery(outputs)
    assert (again.read, again.cached, again.written) == (0, 11, False)
    png(outputs / "0005-s5.png", prompt="a new square", seed=5)
    (outputs / "0000-s0.png").unlink()
    stat = (outputs / "grid.png").stat()
    os.utime(outputs / "grid.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1000))
    changed = build_gallery(outputs)
    page = (outputs / "index.html").read_text("utf-8")
    assert (changed.read, changed.images, changed.written) == (2, CARDS, True)
    assert "a new square" in page and "a red circle" not in page
    (outputs / "big.png").unlink()
    build_gallery(outputs)
    assert list((outputs / GALLERY_DIR / "thumbs").iterdir()) == []  # its thumbnail went with it


@pytest.mark.parametrize("chunks", [
    {"diffcli": "[]"}, {"diffcli": '{"preset": 5, "task": ["x"]}'}, {"diffcli": "{not json"},
    {"diffcli": "[" * 100_000}, {"diffcli": '{"preset": {"seed": {"a": 1}, "prompt": null, "width": true}}'},
    {"parameters": 'p\nSteps: "20, Seed: 1'}, {"parameters": "just a prompt"}, {"parameters": "\n\n\n"},
    {"parameters": "x\nNegative prompt:\nSampler: \"\\ud800\", Seed: 1\x00"},
    {"diffcli-grid": '{"axes": "x"}'}, {"diffcli-grid": '{"axes": [{"key": {"a": 1}}, 3, {"key": "k", "values": 7}]}'},
    {"parameters": "a" * 900_000},
])
def test_odd_metadata_never_crashes(tmp_path, chunks):
    png(tmp_path / "x.png", replay=False)
    png(tmp_path / "grid-odd.png", replay=False, chunks=chunks)
    report = build_gallery(tmp_path)
    assert (report.images, report.broken) == (2, 0)
    assert len((tmp_path / "index.html").read_text("utf-8")) < 100_000  # values are bounded


def test_decompression_bomb_is_a_card(tmp_path, monkeypatch):
    from PIL import Image

    png(tmp_path / "huge.png", size=(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels: over twice the limit
    report = build_gallery(tmp_path)
    assert report.broken == 1 and "too many pixels" in (tmp_path / "index.html").read_text("utf-8")


def test_tampered_cache_is_harmless(outputs):
    build_gallery(outputs)
    cache_path = outputs / GALLERY_DIR / "index.json"
    cache = json.loads(cache_path.read_text())
    cache["files"]["0000-s0.png"]["record"] = {"width": "x", "thumb": "../../evil.webp", "prompt": ["list"],
                                               "axes": "no", "replayable": "yes", "frames": "lots"}
    cache_path.write_text(json.dumps(cache))
    assert build_gallery(outputs).images == CARDS
    page = (outputs / "index.html").read_text("utf-8")
    assert "evil" not in page and "a red circle" not in page
    cache_path.write_text("{garbage")
    assert build_gallery(outputs).read == 11


def test_cli_json_and_errors(outputs, tmp_path):
    from diffcli.cli.app import app

    runner = CliRunner()
    result = runner.invoke(app, ["gallery", str(outputs), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["status"], document["images"], document["gallery"]) == ("ok", CARDS, str(outputs / "index.html"))
    assert runner.invoke(app, ["gallery", str(outputs)]).stdout.strip() == str(outputs / "index.html")
    missing = runner.invoke(app, ["gallery", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "Error: folder not found" in missing.stderr
    assert runner.invoke(app, ["gallery", str(outputs / "0000-s0.png")]).exit_code == 2
    blocked = tmp_path / "blocked"
    (blocked / "index.html").mkdir(parents=True)  # index.html cannot be replaced by a file
    png(blocked / "a.png")
    failed = runner.invoke(app, ["gallery", str(blocked), "--json"])
    assert failed.exit_code == 4 and json.loads(failed.stdout)["error"]["exit_code"] == 4
    assert update_gallery(outputs) == outputs / "index.html"
