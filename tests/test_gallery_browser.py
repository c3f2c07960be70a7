"""`diffcli gallery` in a real browser: headless Chromium driven by Selenium (Debian's chromium and
chromium-driver; `playwright install` cannot download a browser here). Fails, never skips, without them."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import pytest

from diffcli.sinks.gallery import build_gallery
from tests.test_gallery import ATTR, CARDS, ODD_NAME, XSS, outputs  # noqa: F401 - `outputs` is the fixture

import os
import shutil

# Debian's chromium and chromium-driver; elsewhere whatever is on PATH (Homebrew's chromedriver, Chrome for
# Testing), or DIFFCLI_CHROMIUM / DIFFCLI_CHROMEDRIVER.
CHROMIUM = (os.environ.get("DIFFCLI_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
            or shutil.which("google-chrome") or "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("DIFFCLI_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
BROWSER_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,900")
INSTALL = ("install it with: apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver; "
           "pip install selenium (part of the dev extra: pip install -e '.[dev]')")


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


def _loaded(driver, root) -> list[tuple[str, int]]:
    """(src, naturalWidth) of every <img> under `root`, once all of them have finished loading."""
    script = "return Array.from(arguments[0].querySelectorAll('img')).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"
    found = _wait(lambda: (lambda all_: all_ if all(done for _, done, _ in all_) else None)(
        driver.execute_script(script, root)), "images to load")
    return [(src, width) for src, _, width in found]


def test_gallery_in_headless_chromium(outputs, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    build_gallery(outputs)
    driver = _browser()
    try:
        driver.get((outputs / "index.html").as_uri())
        driver.execute_script("document.querySelectorAll('img').forEach(i => i.scrollIntoView())")
        images = _loaded(driver, driver.find_element(By.TAG_NAME, "body"))
        assert len(images) == CARDS - 1 and all(width > 0 for _, width in images), images  # broken: no <img>
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
        command = cards[0].find_element(By.CSS_SELECTOR, ".replay code").get_attribute("textContent")
        assert command == "diffcli replay " + shlex.quote(str(outputs.resolve() / "0000-s0.png"))
        (copy := cards[0].find_element(By.CSS_SELECTOR, ".copy")).click()
        _wait(lambda: copy.text == "Copied", "the copy button to confirm")

        # keyboard: Tab reaches the first card, arrows move, Enter opens the viewer, Escape closes it
        box.send_keys(Keys.TAB)
        assert driver.switch_to.active_element == cards[0]
        for _ in range(3):
            driver.switch_to.active_element.send_keys(Keys.ARROW_RIGHT)
        assert driver.switch_to.active_element == cards[3]  # 0003-s3.png, the traced image
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        viewer = driver.find_element(By.ID, "viewer")
        assert driver.execute_script("return arguments[0].open", viewer)
        shown = _loaded(driver, viewer)
        assert [src for src, _ in shown] == ["0003-s3.png", "0003-s3-trace.gif", "0003-s3-sheet.png"]
        assert all(width > 0 for _, width in shown)
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


def test_grid_thumbnails_show_the_whole_grid(tmp_path):
    """Wide, tall and small grids: every card's picture fills its square frame and is letterboxed inside it
    (object-fit: contain), so no row or label is cut off (a 3x3 --vary grid once lost a row)."""
    import json

    from selenium.webdriver.common.by import By

    from tests.test_gallery import GRID_AXES, png

    chunks = {"diffcli-grid": json.dumps(GRID_AXES)}
    for name, size in (("grid-wide.png", (1290, 360)), ("grid-tall.png", (260, 882)), ("grid-small.png", (60, 40)),
                       ("grid-big.png", (900, 800))):
        png(tmp_path / name, size=size, replay=False, chunks=chunks)
    build_gallery(tmp_path)
    driver = _browser()
    try:
        driver.get((tmp_path / "index.html").as_uri())
        driver.execute_script("document.querySelectorAll('img').forEach(i => i.scrollIntoView())")
        assert len(_loaded(driver, driver.find_element(By.TAG_NAME, "body"))) == 4
        boxes = driver.execute_script("""return Array.from(document.querySelectorAll('.card')).map(card => {
            const frame = card.querySelector('.frame').getBoundingClientRect();
            const img = card.querySelector('img'), box = img.getBoundingClientRect();
            return [img.getAttribute('alt'), [frame.left, frame.top, frame.width, frame.height],
                    [box.left, box.top, box.width, box.height], getComputedStyle(img).objectFit]; })""")
        assert len(boxes) == 4
        for alt, frame, box, fit in boxes:
            assert fit == "contain", alt
            assert all(abs(a - b) <= 1 for a, b in zip(frame, box)), (alt, frame, box)  # inside, nothing clipped
    finally:
        driver.quit()
