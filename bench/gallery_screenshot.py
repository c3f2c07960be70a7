"""docs/gallery.png: a screenshot of `diffcli gallery` on a small demo folder of real outputs.

    python bench/gallery_screenshot.py                    # writes docs/gallery.png
    python bench/gallery_screenshot.py --keep demo/       # and keeps the demo folder

The demo folder is made by the CLI itself on the built-in offline models: digits-text prompts (a
folder per prompt), one denoise-trace of the digits model (its sheet and animation join the card)
and plain digits samples. Needs Debian's chromium and chromium-driver and the selenium package.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from diffcli.sinks.gallery import build_gallery  # noqa: E402

RUNS = (
    ["txt2img", "a handwritten digit 7", "--preset", "digits-text", "-n", "3", "--steps", "25",
     "--seed", "7", "-o", "{out}/txt2img-7"],
    ["txt2img", "a handwritten digit 3", "--preset", "digits-text", "-n", "2", "--steps", "25",
     "--seed", "30", "--negative-prompt", "a handwritten digit 8", "-o", "{out}/txt2img-3"],
    ["denoise-trace", "--preset", "digits", "-n", "1", "--steps", "50", "--every", "5", "--seed", "3",
     "--animation", "gif", "-o", "{out}/trace"],
    ["unconditional", "--preset", "digits", "-n", "4", "--steps", "25", "--seed", "40", "-o", "{out}/unconditional"],
)


def make_demo(out: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for run in RUNS:
        command = [sys.executable, "-m", "diffcli", *(part.format(out=out) for part in run), "--quiet"]
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
        if result.returncode != 0:
            raise SystemExit(f"failed: {' '.join(command)}\n{result.stderr[-2000:]}")


def screenshot(index: Path, target: Path, width: int, height: int) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--hide-scrollbars", f"--window-size={width},{height}", "--force-color-profile=srgb"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        driver.get(index.as_uri())
        driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null))).then(() => done());")
        driver.save_screenshot(str(target))
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "gallery.png")
    parser.add_argument("--keep", type=Path, help="keep the demo folder here")
    parser.add_argument("--size", default="1280x900", help="browser window WIDTHxHEIGHT")
    args = parser.parse_args()
    width, height = (int(part) for part in args.size.split("x"))
    scratch = None if args.keep else Path(tempfile.mkdtemp(prefix="diffcli-gallery-demo-"))
    out = args.keep or scratch / "outputs"
    try:
        make_demo(out)
        report = build_gallery(out)
        screenshot(Path(report.gallery), args.output, width, height)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"{args.output} ({args.output.stat().st_size / 1000:.0f} KB, {report.images} cards)")


if __name__ == "__main__":
    main()
