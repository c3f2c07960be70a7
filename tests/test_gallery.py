"""`diffcli gallery`: what the page holds, incremental rebuilds, untrusted files, errors, and the page
itself driven in headless Chromium (Selenium + Debian's chromium and chromium-driver)."""

from __future__ import annotations

import json
import os
import shlex
import time
from html import escape
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffcli.sinks.gallery import GALLERY_DIR, build_gallery, update_gallery
from diffcli.sinks.gallery_html import url
from diffcli.sinks.gallery_read import read_image
from diffcli.sinks.metadata import a1111_parameters, diffcli_chunk

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
BROWSER_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,900")
INSTALL = ("install it with: apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver; "
           "pip install selenium (part of the dev extra: pip install -e '.[dev]')")
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
                                          "preset": {"model": "digits", "seed": seed, "steps": 20, "prompt": prompt}})
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
    assert document["status"] == "ok" and document["images"] == CARDS
    assert document["gallery"] == str(outputs / "index.html")
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


# ------------------------------------------------------------------ the page in a real browser


def _browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(f"the gallery browser test needs Selenium: {INSTALL}", pytrace=False)
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            pytest.fail(f"the gallery browser test needs {path}: {INSTALL}", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in BROWSER_ARGS:
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def _wait(condition, what: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


IMAGES = "return Array.from(arguments[0].querySelectorAll('img')).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"


def test_gallery_in_headless_chromium(outputs, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    build_gallery(outputs)
    driver = _browser()
    try:
        driver.get((outputs / "index.html").as_uri())
        body = driver.find_element(By.TAG_NAME, "body")
        driver.execute_script("document.querySelectorAll('img').forEach(i => i.scrollIntoView())")
        images = _wait(lambda: (lambda found: found if all(done for _, done, _ in found) else None)(
            driver.execute_script(IMAGES, body)), "images to load")
        assert len(images) == CARDS - 1  # the broken file is a card without <img>
        assert all(width > 0 for _, _, width in images), images
        cards = driver.find_elements(By.CSS_SELECTOR, ".card")
        assert len(cards) == CARDS
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(tmp_path / "gallery.png"))
        assert (tmp_path / "gallery.png").stat().st_size > 10_000

        # hostile prompts are shown as text and never run
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.text
        assert driver.execute_script("return window.__pwned") is None
        texts = [card.text for card in cards]
        assert any(XSS in text for text in texts) and any(ATTR in text for text in texts)
        assert driver.find_elements(By.CSS_SELECTOR, "img[src='x']") == []

        # the filter hides the cards that do not match
        box = driver.find_element(By.ID, "filter")
        assert driver.find_element(By.CSS_SELECTOR, "label[for='filter']").text == "Filter"
        for query, expected in (("circle", ["0000-s0.png"]), ("CAFÉ", [ODD_NAME]), ("euler", ["grid.png"]),
                                ("ddim wide", ["big.png"]), ("", None)):
            box.send_keys(Keys.CONTROL, "a")
            box.send_keys(Keys.BACKSPACE)  # typed, so the page sees an input event (clear() sends none)
            box.send_keys(query)
            shown = [card.text for card in cards if card.is_displayed()]
            if expected is None:
                assert len(shown) == CARDS
            else:
                assert len(shown) == len(expected) and all(name in text for name, text in zip(expected, shown))
                assert driver.find_element(By.ID, "count").text == f"{len(expected)} of {CARDS} shown"

        # the replay command is copyable
        copy = cards[0].find_element(By.CSS_SELECTOR, ".copy")
        command = cards[0].find_element(By.CSS_SELECTOR, ".replay code").get_attribute("textContent")
        assert command == "diffcli replay " + shlex.quote(str(outputs.resolve() / "0000-s0.png"))
        copy.click()
        _wait(lambda: copy.text == "Copied", "the copy button to confirm")

        # keyboard: Tab reaches the first card, arrows move, Enter opens the viewer, Escape closes it
        box.send_keys(Keys.TAB)
        active = driver.switch_to.active_element
        assert active == cards[0]
        for _ in range(3):
            driver.switch_to.active_element.send_keys(Keys.ARROW_RIGHT)
        assert driver.switch_to.active_element == cards[3]  # 0003-s3.png, the traced image
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        viewer = driver.find_element(By.ID, "viewer")
        assert driver.execute_script("return arguments[0].open", viewer)
        shown = _wait(lambda: (lambda found: found if all(done for _, done, _ in found) else None)(
            driver.execute_script(IMAGES, viewer)), "viewer images")
        assert [src for src, _, _ in shown] == ["0003-s3.png", "0003-s3-trace.gif", "0003-s3-sheet.png"]
        assert all(width > 0 for _, _, width in shown)
        assert driver.execute_script("return getComputedStyle(arguments[0].querySelector('img')).imageRendering",
                                     viewer) == "pixelated"
        driver.save_screenshot(str(tmp_path / "gallery-viewer.png"))
        driver.switch_to.active_element.send_keys(Keys.ESCAPE)
        _wait(lambda: not driver.execute_script("return arguments[0].open", viewer), "the viewer to close")
        assert driver.switch_to.active_element == cards[3]
        assert driver.execute_script("return window.__pwned") is None
    finally:
        driver.quit()
    print(f"screenshots: {tmp_path / 'gallery.png'} {tmp_path / 'gallery-viewer.png'}")
