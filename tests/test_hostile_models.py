"""Hostile input battery, part 2: crafted model folders and hub failures, refused before anything loads.

Folder cases mutate a copy of the tiny DDPM pipeline and call `read_model_index`; hub cases run the
same function in a subprocess against a local fake hub (HF_ENDPOINT) that answers each repo id with
one kind of failure, and check the message, the time, an empty stderr and the number of requests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import pytest

from diffcli.errors import ModelError
from tests.conftest import REPO


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _index(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "model_index.json").read_text())


def _set_index(**changes: Any) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        (folder / "model_index.json").write_text(json.dumps({**_index(folder), **changes}))
    return change


def _set_config(component: str, filename: str, **changes: Any) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        path = folder / component / filename
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return change


def _replace(relative: str, how: Callable[[Path], None]) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        (folder / relative).unlink()
        how(folder / relative)
    return change


def _pickle_only(folder: Path) -> None:
    import torch
    from safetensors.torch import load_file

    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), weights.with_suffix(".bin"))
    weights.unlink()


FOLDER_CASES = [
    ("library-os", _set_index(unet=["os", "system"]), "library 'os' is not diffusers"),
    ("library-builtins", _set_index(unet=["builtins", "eval"]), "library 'builtins'"),
    ("library-subprocess", _set_index(scheduler=["subprocess", "Popen"]), "library 'subprocess'"),
    ("library-py-file", _set_index(unet=["evil.py", "X"]), "library 'evil.py'"),
    ("class-name-os", _set_index(_class_name="os"), "is not a pipeline class name"),
    ("component-empty-list", _set_index(unet=[]), "unet: expected [library, ClassName], got []"),
    ("component-traversal", _set_index(**{"../../etc": ["diffusers", "UNet2DModel"]}), "is not a plain name"),
    ("index-over-1mib", _set_index(_padding="x" * (1 << 20)), "larger than 1 MiB"),
    ("index-100000-deep", _replace("model_index.json", lambda p: p.write_text("[" * 100_000 + "]" * 100_000)),
     "nested more than 32 levels deep"),
    ("index-fifo", _replace("model_index.json", _fifo), "must be a regular file, not a FIFO"),
    ("index-dev-zero", _replace("model_index.json", lambda p: p.symlink_to("/dev/zero")), "not a character device"),
    ("sample-size-100000", _set_config("unet", "config.json", sample_size=100_000),
     "config asks for sample_size 100000, more than diffcli allows"),
    ("channels-320000", _set_config("unet", "config.json", block_out_channels=[32, 320_000]),
     "config asks for block_out_channels"),
    ("timesteps-1e9", _set_config("scheduler", "scheduler_config.json", num_train_timesteps=10**9),
     "config asks for num_train_timesteps"),
    ("config-fifo", _replace("unet/config.json", _fifo), "must be a regular file, not a FIFO"),
    ("config-passwd", _replace("unet/config.json", lambda p: p.symlink_to("/etc/passwd")), "corrupt config.json"),
    ("config-deep", _replace("unet/config.json", lambda p: p.write_text('{"a": ' + "[" * 5000 + "]" * 5000 + "}")),
     "nested more than 32 levels deep"),
    ("pickle-only", _pickle_only, "--allow-pickle"),
]


@pytest.mark.parametrize("case", FOLDER_CASES, ids=[c[0] for c in FOLDER_CASES])
def test_hostile_model_folder_is_refused_before_loading(case: tuple, tiny_ddpm: Path, tmp_path: Path) -> None:
    from diffcli.plan.presets import Preset
    from diffcli.run.pipelines import read_model_index

    _, change, says = case
    folder = tmp_path / "model"
    shutil.copytree(tiny_ddpm, folder)
    change(folder)
    with pytest.raises(ModelError) as raised:
        read_model_index(str(folder), Preset(model=str(folder)), offline=True)
    message = raised.value.message + (raised.value.hint or "")
    assert says in message and "\n" not in message, message


def test_tiny_pipelines_pass_the_folder_checks(tiny_ddpm: Path, tiny_sd: Path) -> None:
    from diffcli.plan.presets import Preset
    from diffcli.plan.resources import builtin_models_dir
    from diffcli.run.pipelines import read_model_index

    for folder in (tiny_ddpm, tiny_sd, builtin_models_dir() / "digits", builtin_models_dir() / "digits-text"):
        assert read_model_index(str(folder), Preset(model=str(folder)), offline=True)["_class_name"].endswith("Pipeline")


# ------------------------------------------------------------------ hub errors by type, against a local fake hub

HUB_REPLIES = {  # repo -> (status, X-Error-Code)
    "nobody/missing": (404, "RepoNotFound"), "owner/badrev": (404, "RevisionNotFound"),
    "owner/notapipeline": (404, "EntryNotFound"), "owner/gated": (403, "GatedRepo"), "owner/busy": (503, None),
}
GOOD_INDEX = json.dumps({"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"],
                         "scheduler": ["diffusers", "DDPMScheduler"]}).encode()
EVIL_INDEX = json.dumps({"_class_name": "DDPMPipeline", "unet": ["os", "system"]}).encode()


class _FakeHub(BaseHTTPRequestHandler):
    requests: list[tuple[str, str]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, body: bool) -> None:
        _FakeHub.requests.append((self.command, self.path))
        repo = "/".join(self.path.strip("/").split("/")[:2])
        if repo == "owner/silent":
            time.sleep(3)
            return
        if repo in ("owner/good", "owner/evil"):
            data = GOOD_INDEX if repo == "owner/good" else EVIL_INDEX
            self.send_response(200)
            for key, value in (("X-Repo-Commit", "a" * 40), ("ETag", f'"{len(data)}{repo[-4:]}"'),
                               ("Content-Length", str(len(data)))):
                self.send_header(key, value)
            self.end_headers()
            if body:
                self.wfile.write(data)
            return
        status, code = HUB_REPLIES.get(repo, (404, "RepoNotFound"))
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
        self._reply(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._reply(body=True)


@pytest.fixture(scope="module")
def fake_hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


PROBE = """
import json, sys, time
from diffcli.plan.presets import Preset
from diffcli.run.pipelines import read_model_index
start = time.monotonic()
try:
    index = read_model_index(sys.argv[1], Preset(model=sys.argv[1], revision=sys.argv[2] or None), sys.argv[3] == "1")
    out = {"ok": index["_class_name"]}
except Exception as err:
    out = {"error": type(err).__name__, "message": getattr(err, "message", str(err)), "hint": getattr(err, "hint", "")}
out["seconds"] = time.monotonic() - start
print(json.dumps(out))
"""

HUB_CASES = [
    ("nobody/missing", "", "0", "'nobody/missing' was not found on the hub"),
    ("owner/badrev", "v9", "0", "revision not found"),
    ("owner/notapipeline", "", "0", "has no model_index.json on the hub"),
    ("owner/gated", "", "0", "is a gated model"),
    ("owner/busy", "", "0", "the hub answered HTTP 503"),
    ("owner/silent", "", "0", "cannot reach the Hugging Face Hub"),
    ("owner/evil", "", "0", "library 'os' is not diffusers"),
    ("owner/uncached", "", "1", "not in the local cache and diffcli is offline"),
    ("owner/good", "", "0", "DDPMPipeline"),
]


@pytest.mark.parametrize("case", HUB_CASES, ids=[c[0] for c in HUB_CASES])
def test_hub_errors_are_mapped_by_type_without_retries(case: tuple, fake_hub: str, tmp_path: Path) -> None:
    repo, revision, offline, says = case
    _FakeHub.requests.clear()
    env = {**os.environ, "HF_ENDPOINT": fake_hub, "HF_HUB_OFFLINE": offline, "HF_HUB_CACHE": str(tmp_path),
           "HF_HUB_ETAG_TIMEOUT": "1", "PYTHONPATH": str(REPO), "HF_HUB_DISABLE_TELEMETRY": "1"}
    result = subprocess.run([sys.executable, "-W", "default", "-c", PROBE, repo, revision, offline],
                            capture_output=True, text=True, timeout=60, env=env)
    out = json.loads(result.stdout)
    assert says in (out.get("ok") or out["message"]), out
    assert out["seconds"] < 3.0, out
    assert result.stderr == "", result.stderr  # no huggingface_hub UserWarning or retry chatter
    heads = [path for method, path in _FakeHub.requests if method == "HEAD"]
    assert len(heads) == (0 if offline == "1" else 2 if repo in ("owner/good", "owner/evil") else 1), heads


# ------------------------------------------------------------------ a damaged OpenVINO cache (hostile-findings-2.md 20-21)


@pytest.mark.slow
def test_openvino_cache_swapped_or_garbage_is_reconverted_quietly(tiny_sd: Path, tmp_path: Path) -> None:
    """The UNet's cached IR swapped with the VAE's, then a garbage model.xml: each rerun reconverts (exit 0) and
    says nothing on stderr (no TensorFlow-frontend log lines from OpenVINO probing the file)."""
    pytest.importorskip("openvino")
    from tests.hostile_runner import check_result, run

    cache = tmp_path / "ov"
    args = ["txt2img", "a cat", "--model", str(tiny_sd), "--backend", "openvino", "--steps", "2", "--no-grid",
            "--quiet", "--json", "--overwrite", "-o", str(tmp_path / "out")]
    env = {"DIFFCLI_OPENVINO_CACHE": str(cache)}
    check_result(run(args, tmp_path, 300, env=env), 0)
    entries = {json.loads((e / "key.json").read_text())["part"]: e for e in cache.iterdir() if not e.name.startswith(".")}
    unet, vae = entries["unet"], entries["vae_decoder"]
    for name in ("model.xml", "model.bin"):
        swapped = (unet / name).read_bytes()
        shutil.copyfile(vae / name, unet / name)
        (vae / name).write_bytes(swapped)
    result = run(args, tmp_path, 300, env=env)
    check_result(result, 0)
    assert result.stderr == "", result.stderr
    (unet / "model.xml").write_text("garbage, not an IR <<<")
    result = run(args, tmp_path, 300, env=env)
    check_result(result, 0)
    assert result.stderr == "", result.stderr
    assert b"<net " in (unet / "model.xml").read_bytes()[:4096]  # replaced by a fresh conversion
