"""Hostile input battery: `diffcli replay` on images someone else made (a tampered `diffcli` chunk, files
that are not PNGs). The record is untrusted: names come from the resolved item, trust and resource
keys (pickle, network, output, threads, device, dtype) from the user's flags alone, every replayed
value is validated like a preset, and reading is bounded. Each case runs with --json (tests/hostile_runner.py).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.hostile_runner import Case, pngs, run_case

REPLAY = ["replay", "{dir}/in.png", "-o", "{dir}/out"]
SOURCE: list[Path] = []  # the untampered diffcli PNG (set by the fixture)
MODEL: list[Path] = []  # the tiny DDPM folder it was made with


@pytest.fixture(scope="module", autouse=True)
def source(tiny_ddpm: Path, tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    from diffcli.cli.app import app

    folder = tmp_path_factory.mktemp("replay-source")
    made = CliRunner().invoke(app, ["unconditional", "--model", str(tiny_ddpm), "--steps", "2", "--seed", "3",
                                    "-o", str(folder), "-q", "--no-grid"])
    assert made.exit_code == 0, made.output
    SOURCE[:] = [folder / "0000-s3.png"]
    MODEL[:] = [tiny_ddpm]
    return SOURCE[0]


def _record() -> dict[str, Any]:
    from PIL import Image

    with Image.open(SOURCE[0]) as image:
        return json.loads(image.info["diffcli"])


def _write_png(path: Path, text: str, zipped: bool = False) -> None:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("diffcli", text, zip=zipped)
    with Image.open(SOURCE[0]) as image:
        image.save(path, pnginfo=info)


def tamper(change: Callable[[dict[str, Any], Path], Any], zipped: bool = False) -> Callable[[Path], None]:
    """in.png: the source image with its record edited in place by `change`."""
    def prepare(folder: Path) -> None:
        record = _record()
        change(record, folder)
        _write_png(folder / "in.png", json.dumps(record), zipped)
    return prepare


def _in(folder: Path, values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.replace("{dir}", str(folder)) if isinstance(v, str) else v for k, v in values.items()}


def preset(**values: Any) -> Callable[[Path], None]:
    return tamper(lambda record, folder: record["preset"].update(_in(folder, values)))


def top(**values: Any) -> Callable[[Path], None]:
    return tamper(lambda record, folder: record.update(_in(folder, values)))


def raw(text: str) -> Callable[[Path], None]:
    return lambda folder: _write_png(folder / "in.png", text)


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def header_png(width: int, height: int) -> Callable[[Path], None]:
    """A PNG whose header claims width x height (a decompression bomb's header) with a valid record."""
    def prepare(folder: Path) -> None:
        text = b"diffcli\0" + json.dumps(_record()).encode()
        data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                + chunk(b"tEXt", text) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
        (folder / "in.png").write_bytes(data)
    return prepare


def other_format(fmt: str) -> Callable[[Path], None]:
    def prepare(folder: Path) -> None:
        from PIL import Image

        Image.new("RGB", (8, 8)).save(folder / "in.png", format=fmt, comment=json.dumps(_record()).encode())
    return prepare


def file_is(make: Callable[[Path], None]) -> Callable[[Path], None]:
    return lambda folder: make(folder / "in.png")


def pickle_model(folder: Path) -> None:
    """A copy of the tiny model with pickle-only UNet weights, named by a record that says allow_pickle."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(MODEL[0], folder / "model")
    weights = folder / "model" / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), weights.with_suffix(".bin"))
    weights.unlink()
    preset(model="{dir}/model", allow_pickle=True)(folder)


def made(*names: str, **doc_has: Any) -> Callable[[Path, dict[str, Any]], None]:
    """The output folder holds exactly `names` (whole PNGs, nothing else); the document has `doc_has`."""
    def check(folder: Path, doc: dict[str, Any]) -> None:
        assert sorted(os.listdir(folder / "out")) == sorted(names)
        assert pngs(folder / "out") == sorted(names)
        assert {k: doc[k] for k in doc_has} == doc_has
        assert [Path(entry["path"]).name for entry in doc["images"]] == [n for n in names if not n.startswith("grid")]
    return check


def in_default_folder(folder: Path, doc: dict[str, Any]) -> None:
    assert pngs(folder / "outputs" / "replay" / "0001") == ["0000-s3.png"]
    assert doc["images"][0]["path"] == os.path.join("outputs", "replay", "0001", "0000-s3.png")


EVERY_PATH = {"stem": "../../evil", "name": "/tmp/evil", "output": "{dir}/elsewhere", "model_name": "../evil",
              "path": "{dir}/evil.png", "folder": ".."}
DEEP = '{"preset": ' + "[" * 100_000 + "]" * 100_000 + "}"
OK = dict(code=0, check=made("0000-s3.png"))

CASES = [
    # names, paths and trust keys in the record are ignored: the flags and the resolved item decide
    Case("untampered", REPLAY, 0, prepare=preset(), check=made("0000-s3.png", status="ok")),
    Case("stem-absolute", REPLAY, prepare=top(stem="{dir}/evil"), **OK),
    Case("stem-dotdot-overwrite", REPLAY + ["--overwrite"], prepare=top(stem="../../evil"), **OK),
    Case("paths-everywhere", REPLAY + ["--overwrite"],
         prepare=tamper(lambda r, f: [r.update(_in(f, EVERY_PATH)), r["preset"].update(_in(f, EVERY_PATH))]), **OK),
    Case("output-in-record", REPLAY, prepare=preset(output="{dir}/elsewhere"), **OK),
    Case("output-in-record-no-flag", ["replay", "{dir}/in.png"], 0, prepare=preset(output="{dir}/elsewhere"),
         output="outputs", check=in_default_folder),
    Case("device-dtype-threads", REPLAY, 0, prepare=preset(device="cuda:7", dtype="float16", threads=10**9),
         check=made("0000-s3.png", device="cpu", dtype="float32")),
    Case("frames-grid-gallery-count", REPLAY, prepare=preset(every=1, show="both", animation="webp", grid=True,
                                                             gallery=True, num_images=1000, batch_size=64), **OK),
    Case("trust-keys", REPLAY, prepare=preset(custom_pipeline="evil", trust_remote_code=True, offline=False), **OK),
    Case("allow-pickle-in-record", REPLAY, 3, "--allow-pickle", prepare=pickle_model),
    Case("allow-pickle-flag", REPLAY + ["--allow-pickle"], prepare=pickle_model, **OK),
    Case("set-steps-1e9", REPLAY + ["--set", "steps=1000000000"], 2, "steps", prepare=preset()),
    # models named by the record
    Case("model-hub-id-offline", REPLAY + ["--offline"], 3, "not in the local cache",
         prepare=preset(model="evil/x", offline=False)),
    Case("model-etc", REPLAY, 3, "not a diffusers pipeline folder", prepare=preset(model="/etc")),
    Case("model-dotdot", REPLAY, 3, "not a diffusers pipeline folder", prepare=preset(model="../" * 16 + "etc")),
    Case("model-escape-sequence", REPLAY, 3, "\\x1b]0;pwned\\x07", prepare=preset(model="/no/\x1b]0;pwned\x07")),
    Case("model-empty", REPLAY, 2, "model", prepare=preset(model="")),
    Case("model-missing", REPLAY, 2, "names no model", prepare=tamper(lambda r, f: r["preset"].pop("model"))),
    Case("model-not-text", REPLAY, 2, "model", prepare=preset(model=["a", "b"])),
    Case("config-with-a-pipeline-folder", REPLAY, 2, "diffcli metadata: config", prepare=preset(config="{dir}"),
         check=lambda f, d: "--config" not in d["error"]["message"]),  # never a flag the user did not type
    Case("init-image-dev-zero", REPLAY, 2, "init", prepare=preset(init_image="/dev/zero", strength=0.5)),
    Case("step-cache-1e9", REPLAY, 2, "step_cache", prepare=preset(step_cache=10**9)),
    Case("lora-weight-1e308", REPLAY, 2, "weight", prepare=preset(loras=[{"path": "x.safetensors", "weight": 1e308}])),
    # values validated like a preset
    Case("steps-1e9-float", REPLAY, 2, "steps: expected an integer", prepare=preset(steps=1e9)),
    Case("steps-1e9", REPLAY, 2, "steps: expected an integer <=", prepare=preset(steps=10**9)),
    Case("steps-0", REPLAY, 2, "steps", prepare=preset(steps=0)),
    Case("steps-text", REPLAY, 2, "steps", prepare=preset(steps="4; rm -rf /")),
    Case("size-100000", REPLAY, 2, "width: expected an integer <=", prepare=preset(width=100000, height=100000)),
    Case("height-negative", REPLAY, 2, "height", prepare=preset(height=-16)),
    Case("seed-negative", REPLAY, 2, "seed", prepare=preset(seed=-1)),
    Case("seed-2**64", REPLAY, 2, "seed", prepare=preset(seed=2**64)),
    Case("guidance-text", REPLAY, 2, "guidance_scale", prepare=preset(guidance_scale="lots")),
    Case("scheduler-unknown", REPLAY, 2, "scheduler", prepare=preset(scheduler="../../evil")),
    Case("scheduler-options-not-dict", REPLAY, 2, "scheduler_options", prepare=preset(scheduler_options="x")),
    Case("scheduler-options-deep", REPLAY, 2, "deep",
         prepare=preset(scheduler_options={"a": json.loads("[" * 500 + "]" * 500)})),
    Case("nan-constant", REPLAY, 2, "not JSON", prepare=raw('{"task": "unconditional", "preset": {"seed": NaN}}')),
    Case("infinity-constant", REPLAY, 2, "not JSON",
         prepare=raw('{"task": "unconditional", "preset": {"guidance_scale": -Infinity}}')),
    # the record's shape
    Case("index-text", REPLAY, 2, "index: expected an integer", prepare=top(index="abc")),
    Case("index-list", REPLAY, 2, "index: expected an integer", prepare=top(index=[1])),
    Case("index-negative", REPLAY, 2, "index: expected an integer", prepare=top(index=-1)),
    Case("index-2**70", REPLAY, 2, "index: expected an integer", prepare=top(index=2**70)),
    Case("index-true", REPLAY, 2, "index: expected an integer", prepare=top(index=True)),
    Case("prompt-index-float", REPLAY, 2, "prompt_index: expected an integer", prepare=top(prompt_index=0.5)),
    Case("task-evil", REPLAY, 2, "task: expected", prepare=top(task="os.system")),
    Case("task-missing", REPLAY, 2, "task: expected", prepare=tamper(lambda r, f: r.pop("task"))),
    Case("preset-text", REPLAY, 2, "corrupt diffcli metadata", prepare=top(preset="x")),
    Case("preset-list", REPLAY, 2, "corrupt diffcli metadata", prepare=top(preset=[1, 2])),
    Case("record-list", REPLAY, 2, "corrupt diffcli metadata", prepare=raw("[1, 2]")),
    Case("record-string", REPLAY, 2, "corrupt diffcli metadata", prepare=raw('"x"')),
    Case("record-not-json", REPLAY, 2, "not JSON", prepare=raw("{'task': 1")),
    Case("record-100000-deep", REPLAY, 2, "diffcli metadata", prepare=raw(DEEP)),
    Case("record-over-256k", REPLAY, 2, "too large", prepare=tamper(lambda r, f: r.update(pad="x" * (300 << 10)))),
    Case("ztxt-bomb", REPLAY, 2, "in.png", prepare=tamper(lambda r, f: r.update(pad=" " * (8 << 20)), zipped=True)),
    Case("no-record", REPLAY, 2, "no diffcli metadata", prepare=raw("")),
    # files that are not (small, whole) PNGs
    Case("header-100000x100000", REPLAY, 2, "in.png", prepare=header_png(100_000, 100_000)),
    Case("header-2**31-wide", REPLAY, 2, "in.png", prepare=header_png(2**31 - 1, 1)),
    Case("jpeg-renamed", REPLAY, 2, "not a PNG", prepare=other_format("JPEG")),
    Case("gif-renamed", REPLAY, 2, "not a PNG", prepare=other_format("GIF")),
    Case("truncated", REPLAY, 2, "in.png",
         prepare=file_is(lambda p: p.write_bytes(SOURCE[0].read_bytes()[:60]))),
    Case("empty-file", REPLAY, 2, "in.png", prepare=file_is(lambda p: p.write_bytes(b""))),
    Case("over-64mb", REPLAY, 2, "larger than", prepare=file_is(lambda p: open(p, "wb").truncate(65 << 20))),
    Case("missing", REPLAY, 2, "not found"),
    Case("folder", REPLAY, 2, "not found (or not a file)", prepare=file_is(lambda p: p.mkdir())),
    Case("fifo", REPLAY, 2, "not found (or not a file)", prepare=file_is(lambda p: os.mkfifo(p))),
    Case("dev-zero", ["replay", "/dev/zero", "-o", "{dir}/out"], 2, "/dev/zero"),
    Case("symlink-passwd", REPLAY, 2, "in.png", prepare=file_is(lambda p: p.symlink_to("/etc/passwd"))),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_replay(case: Case, tmp_path: Path) -> None:
    run_case(case, tmp_path)
