"""`diffcli gallery` on 10,000 images: cold build, warm rebuild, and an incremental update.

    python bench/gallery.py                 # 10,000 16x16 PNGs with diffcli metadata, 3 repetitions
    python bench/gallery.py --images 2000   # smaller
    python bench/gallery.py --browser       # plus page load and filter time in headless Chromium

Cases (medians over the repetitions; the images are made once, in a temporary folder):
  cold         no cache: every file is opened and its metadata read, index.html written
  warm         nothing changed: stat every file, render the page, compare it with the one on disk
  incremental  10 images added and 10 removed since the last build
  cli-warm     `python -m diffcli gallery DIR --json` as a whole process (startup included), nothing changed
  --browser    also: the page's load time and one filter keystroke in headless Chromium
Prints a table and writes bench/results/gallery.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from diffcli.sinks.gallery import GALLERY_DIR, INDEX, build_gallery  # noqa: E402
from diffcli.sinks.metadata import a1111_parameters, diffcli_chunk  # noqa: E402

PER_FOLDER = 1000  # like runs of 1,000 images each


def make_images(folder: Path, count: int, start: int = 0) -> list[Path]:
    """`count` 16x16 PNGs with the A1111 and diffcli chunks a txt2img run writes."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    paths = []
    for i in range(start, start + count):
        prompt = f"a handwritten digit {i % 10}, sample {i}"
        fields = {"Steps": 25, "Sampler": "ddim", "CFG scale": 7.5, "Seed": i, "Size": "16x16",
                  "Model": "digits-text", "Version": "diffcli 0.1.0"}
        info = PngInfo()
        info.add_text("parameters", a1111_parameters(prompt, "blurry", fields))
        info.add_text("diffcli", diffcli_chunk({"task": "txt2img", "preset": {"model": "digits-text", "seed": i,
                                                                          "steps": 25, "prompt": prompt}}))
        path = folder / f"run{i // PER_FOLDER:03d}" / f"{i:05d}-s{i}-a-handwritten-digit.png"
        path.parent.mkdir(exist_ok=True)
        Image.new("L", (16, 16), (i * 37) % 256).save(path, pnginfo=info)
        paths.append(path)
    return paths


def timed(func) -> tuple[float, object]:
    started = time.perf_counter()
    result = func()
    return time.perf_counter() - started, result


BROWSER_JS = """
const box = document.getElementById('filter');
const run = (text) => { const t0 = performance.now(); box.value = text; box.dispatchEvent(new Event('input'));
                        void document.body.offsetHeight;  // include the style and layout work
                        const shown = document.querySelectorAll('.card:not([hidden])').length;
                        return [performance.now() - t0, shown]; };
const nav = performance.getEntriesByType('navigation')[0];
return {load_ms: nav.loadEventEnd, dom_ms: nav.domContentLoadedEventEnd,
        filter: run('sample 4242'), clear: run('')};
"""


def browser_timings(index: Path) -> dict:
    """Page load and one filter keystroke in headless Chromium (Selenium + Debian chromium-driver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        driver.get(index.as_uri())
        result = driver.execute_script(BROWSER_JS)
    finally:
        driver.quit()
    return {"browser_load_ms": round(result["load_ms"]), "browser_dom_ms": round(result["dom_ms"]),
            "browser_filter_ms": round(result["filter"][0]), "browser_filter_shown": result["filter"][1],
            "browser_clear_ms": round(result["clear"][0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--browser", action="store_true", help="also time the page in headless Chromium")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="diffcli-gallery-bench-"))
    try:
        seconds, paths = timed(lambda: make_images(folder, args.images))
        print(f"made {args.images} PNGs in {seconds:.1f} s under {folder}", file=sys.stderr)
        cold, warm, incremental, cli = [], [], [], []
        extra = args.images
        for _ in range(args.reps):
            shutil.rmtree(folder / GALLERY_DIR, ignore_errors=True)
            (folder / INDEX).unlink(missing_ok=True)
            seconds, report = timed(lambda: build_gallery(folder))
            assert report.read == args.images and report.images == args.images, report
            cold.append(seconds)
            seconds, report = timed(lambda: build_gallery(folder))
            assert report.read == 0 and not report.written, report
            warm.append(seconds)
            for path in paths[:10]:
                path.unlink()
            paths = paths[10:] + make_images(folder, 10, start=extra)
            extra += 10
            seconds, report = timed(lambda: build_gallery(folder))
            assert report.read == 10 and report.images == args.images, report
            incremental.append(seconds)
            started = time.perf_counter()
            result = subprocess.run([sys.executable, "-m", "diffcli", "gallery", str(folder), "--json"],
                                    capture_output=True, text=True, cwd=REPO,
                                    env={**os.environ, "PYTHONPATH": str(REPO)})
            cli.append(time.perf_counter() - started)
            if result.returncode != 0:
                raise SystemExit(f"diffcli gallery failed: {result.stderr[-2000:]}")
        browser = browser_timings(folder / INDEX) if args.browser else {}
        page_mb = (folder / INDEX).stat().st_size / 1e6
        cache_mb = (folder / GALLERY_DIR / "index.json").stat().st_size / 1e6
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    results = {"images": args.images, "reps": args.reps, "cold_s": statistics.median(cold),
               "warm_s": statistics.median(warm), "incremental_s": statistics.median(incremental),
               "cli_warm_s": statistics.median(cli), "index_html_mb": round(page_mb, 2),
               "cache_mb": round(cache_mb, 2), **browser, "cpus": os.cpu_count()}
    for key, value in results.items():
        print(f"{key:>14}  {value:.3f}" if isinstance(value, float) else f"{key:>14}  {value}")
    out = REPO / "bench" / "results" / "gallery.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
