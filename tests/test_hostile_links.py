"""Hostile input battery: links, caches and existing files inside the output folder (hostile-findings-2.md 1-8 and
the gallery's file links). Nothing outside the output folder is written, renamed or deleted, whatever is a link
inside it; every read of a file diffcli did not just write is bounded. Each case runs with --json
(tests/hostile_runner.py) unless it needs more than one process or a memory limit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.hostile_runner import Case, fill, pngs, run, run_case
from tests.test_hostile_outputs import OUT, dead_pid, folders, link, touch

GALLERY = ["gallery", "{dir}/out"]
VARY = ["txt2img", "a cat", "--model", "{sd}", "--steps", "1", "--vary", "scheduler=ddim,euler", "--vary", "steps=1,2",
        "--skip-existing", "-o", "{dir}/out", "--quiet"]
CELLS = ["0000-ddim-1-s0-a-cat.png", "0001-ddim-2-s0-a-cat.png", "0002-euler-1-s0-a-cat.png",
         "0003-euler-2-s0-a-cat.png"]


def image(name: str, size: int = 64, prompt: str = "a cat") -> Callable[[Path], None]:
    """A noisy RGB PNG (a thumbnail is made above 384 px) with a diffcli-like `parameters` chunk."""
    def prepare(folder: Path) -> None:
        import numpy as np
        from PIL import Image
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("parameters", f"{prompt}\nSteps: 2, Seed: 1")
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(size).integers(0, 255, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path, pnginfo=info)
    return prepare


def steps(*prepares: Callable[[Path], None]) -> Callable[[Path], None]:
    return lambda folder: [prepare(folder) for prepare in prepares] and None


def victim(folder: Path) -> None:
    (folder / "victim").mkdir()
    (folder / "victim" / "keep.txt").write_text("mine")


def victim_intact(folder: Path, doc: dict[str, Any]) -> None:
    assert sorted(os.listdir(folder / "victim")) == ["keep.txt"], os.listdir(folder / "victim")


def bomb_png(path: Path, side: int = 20000) -> None:
    """A 1-bit greyscale PNG of side² pixels, all zero: about 50 KB on disk."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = zlib.compress(b"\0" * ((side // 8 + 1) * side), 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def no_secret(folder: Path, doc: dict[str, Any]) -> None:
    assert "SECRET" not in (folder / "out" / "index.html").read_text(), "read a file outside the folder"


LINK_CASES = [
    Case("gallery-thumbs-link-outside", GALLERY, 4, "is a symbolic link",
         prepare=steps(victim, image("out/a.png", 400), lambda f: (f / "out" / ".gallery").mkdir(),
                       link("out/.gallery/thumbs", "{dir}/victim")), check=victim_intact),
    Case("gallery-state-link-outside", GALLERY, 4, "is a symbolic link",
         prepare=steps(victim, image("out/a.png", 400), link("out/.gallery", "{dir}/victim")), check=victim_intact),
    Case("gallery-cache-fifo", GALLERY, 0, "index.html", seconds=30,
         prepare=steps(image("out/a.png"), lambda f: (f / "out" / ".gallery").mkdir(),
                       lambda f: os.mkfifo(f / "out" / ".gallery" / "index.json"))),
    Case("gallery-cache-link-passwd", GALLERY, 0, "index.html",
         prepare=steps(image("out/a.png"), lambda f: (f / "out" / ".gallery").mkdir(),
                       link("out/.gallery/index.json", "/etc/passwd"))),
    Case("gallery-file-link-outside", GALLERY, 0, "index.html",
         prepare=steps(image("outside.png", prompt="SECRET"), image("out/a.png"),
                       link("out/b.png", "{dir}/outside.png")), check=no_secret),
    Case("gallery-cache-tampered", GALLERY, 0, "index.html", prepare=steps(
        image("out/a.png"), lambda f: (f / "out" / ".gallery").mkdir(),
        touch("out/.gallery/index.json", content=json.dumps({"version": 2, "files": {"a.png": {
            "size": 1, "mtime_ns": 1, "record": {"thumb": "../../etc/passwd", "prompt": "</script>"}}}}).encode()))),
    Case("gallery-hostile-names", GALLERY, 0, "index.html",
         prepare=steps(image('out/"><img src=x onerror=alert(1)>.png', prompt="</script><script>alert(1)</script>"),
                       image("out/$(touch x).png"))),
    Case("vary-cell-name-is-folder", VARY, 4, CELLS[1], prepare=folders("out/" + CELLS[1]), seconds=180),
    Case("vary-names-stay-inside", ["txt2img", "a cat", "--model", "{sd}", "--steps", "1", "--vary",
                                    "prompt=../../x,/etc/passwd,..,CON", "-o", "{dir}/out", "--quiet"], 0, seconds=180),
    Case("vary-value-nan", VARY[:6] + ["--vary", "guidance_scale=nan,1"] + VARY[-3:], 2, "guidance_scale"),
]


@pytest.mark.parametrize("case", LINK_CASES, ids=[case.id for case in LINK_CASES])
def test_hostile_links_and_existing(case: Case, tmp_path: Path, tiny_sd: Path) -> None:
    run_case(case, tmp_path, sd=tiny_sd)


def test_frames_link_is_refused_and_its_target_untouched(tmp_path: Path, tiny_ddpm: Path) -> None:
    """`OUT/frames` → another folder: no frame lands there, and stale-temp cleanup deletes nothing there."""
    from tests.hostile_runner import check_result

    victim(tmp_path)
    stale = tmp_path / "victim" / f".diffcli-tmp-{dead_pid()}-dead-0000-s0.png"
    stale.write_bytes(b"")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "frames").symlink_to(tmp_path / "victim")
    args = ["denoise-trace", *fill(OUT[1:], tmp_path, model=tiny_ddpm), "--every", "1", "--json"]
    check_result(run(args, tmp_path), 4, "is a symbolic link")
    assert sorted(os.listdir(tmp_path / "victim")) == sorted(["keep.txt", stale.name])


def test_gallery_cache_dev_zero_is_not_read(tmp_path: Path) -> None:
    """`.gallery/index.json` → /dev/zero: ignored (bounded, regular files only) under a 1 GB memory limit."""
    import resource

    from tests.hostile_runner import check_result

    image("out/a.png")(tmp_path)
    (tmp_path / "out" / ".gallery").mkdir()
    (tmp_path / "out" / ".gallery" / "index.json").symlink_to("/dev/zero")
    limit = lambda: resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # noqa: E731
    check_result(run(GALLERY[:1] + [str(tmp_path / "out"), "--json"], tmp_path, 60, before_exec=limit), 0)


def test_concurrent_galleries_both_succeed(tmp_path: Path) -> None:
    """Two `diffcli gallery OUT` at once, thumbnails to make: neither prunes the other's temp files."""
    from tests.hostile_runner import check_result, start

    for i in range(12):
        image(f"out/{i:02d}.png", 390 + i)(tmp_path)
    for _ in range(3):
        shutil.rmtree(tmp_path / "out" / ".gallery", ignore_errors=True)
        procs = [start(["gallery", str(tmp_path / "out"), "--json"], tmp_path)  # side by side
                 for _ in range(2)]
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            check_result(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), 0)
    assert len(os.listdir(tmp_path / "out" / ".gallery" / "thumbs")) == 12


def test_existing_image_bomb_gives_a_blank_tile(tmp_path: Path) -> None:
    """A grid's existing image is read with the init image's bounds: a 20000² bomb leaves its tile blank."""
    from diffcli.plan.items import Item
    from diffcli.sinks.axes import grids_from_files
    from diffcli.sinks.folder import OutputFolder

    image("out/b.png")(tmp_path)
    bomb_png(tmp_path / "out" / "a.png")
    items = [Item(index=i, seed=0, prompt_index=0, prompt="a", negative_prompt="", steps=1, guidance_scale=1.0,
                  width=64, height=64, task="txt2img", cell=(("steps", str(i + 1)),)) for i in range(2)]
    paths = {0: str(tmp_path / "out" / "a.png"), 1: str(tmp_path / "out" / "b.png")}
    [grid] = grids_from_files(OutputFolder(tmp_path / "out", "txt2img", "overwrite"), items, paths)
    assert grid["images"] == 1 and pngs(tmp_path / "out", ["grid-0000-s0-a.png"]) == ["grid-0000-s0-a.png"]
