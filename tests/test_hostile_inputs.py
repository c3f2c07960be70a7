"""Hostile input battery: each case is data (what to create, what to run, what must come back).

CLI cases run `python -m diffcli` as a subprocess and check the exit code, that stderr is exactly one
`Error:` line without control characters, and the time taken. Model-folder, hub, metadata and
escaping cases call the functions directly.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import pytest

from diffcli.errors import ModelError, PresetError
from tests.conftest import REPO, run_cli

CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
ESC_TITLE = "\x1b]0;pwned\x07\x1b[2J"


def _limit_memory() -> None:  # a regression must fail the test, not take the machine down
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))


def _bomb(under: str) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} [" + ",".join([f"*{chr(96 + i)}"] * 9) + "]")
    body = "\n  ".join(lines)
    return f"model: x\n{under}:\n  {body}\n" if under == "scheduler_options" else f"x: &x [{'1,' * 9}1]\n{under}: *x\n"


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _sparse(size: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        with open(path, "wb") as handle:
            handle.truncate(size)
    return make


@dataclass
class Case:
    """One CLI run: files to create in a fresh folder ({dir} in args is that folder), then the expectations."""

    id: str
    args: list[str]
    files: dict[str, Any] = field(default_factory=dict)  # name -> str | bytes | callable(path)
    code: int = 2
    says: str = ""  # substring of the Error line
    seconds: float = 20.0
    env: dict[str, str] = field(default_factory=dict)
    absent: str | None = None  # a file that must not exist afterwards


PROMPTS = ["txt2img", "--preset", "digits-text", "--quiet", "-o", "{dir}/out", "--prompts-file"]
BAD_LINES = "".join(f'{{"prompt": "p{i}", "stepz": 1}}\n' for i in range(25))

CLI_CASES = [
    # presets: YAML bombs and nesting
    Case("yaml-python-tag", ["presets", "show", "{dir}/p.yaml"],
         {"p.yaml": 'model: !!python/object/apply:os.system ["touch {dir}/pwned"]\n'}, 2, "could not determine",
         absent="pwned"),
    Case("billion-laughs-steps", ["presets", "show", "{dir}/p.yaml"], {"p.yaml": "model: x\n" + _bomb("steps")},
         2, "anchors and aliases", seconds=5),
    Case("billion-laughs-scheduler-options", ["presets", "show", "{dir}/p.yaml"],
         {"p.yaml": _bomb("scheduler_options")}, 2, "anchors and aliases", seconds=5),
    Case("yaml-20000-deep", ["presets", "show", "{dir}/p.yaml"],
         {"p.yaml": "model: x\nscheduler_options:\n  k: " + "[" * 20000 + "]" * 20000 + "\n"}, 2, "levels deep"),
    Case("set-5000-brackets", ["presets", "show", "digits", "--set", "scheduler_options=" + "[" * 5000], {},
         2, "levels deep"),
    Case("set-alias", ["presets", "show", "digits", "--set", "scheduler_options={a: &x [1], b: *x}"], {},
         2, "anchors and aliases"),
    Case("yaml-5000-digit-int", ["presets", "show", "{dir}/p.yaml"], {"p.yaml": "model: x\nsteps: " + "9" * 5000},
         2, "unreadable value"),
    Case("yaml-key-escape-sequence", ["presets", "show", "{dir}/p.yaml"],
         {"p.yaml": f'model: x\n"{ESC_TITLE}\\n": 1\n'.replace("\x1b", "\\e").replace("\x07", "\\a")}, 2,
         "\\x1b]0;pwned\\x07"),
    Case("preset-name-with-newline", ["presets", "show", "{dir}/bad\nname.yaml"], {"bad\nname.yaml": "[unclosed"},
         2, "bad\\nname.yaml"),
    Case("preset-over-1mib", ["presets", "show", "{dir}/p.yaml"], {"p.yaml": _sparse(2 << 20)}, 2, "larger than"),
    Case("extends-dev-zero", ["presets", "show", "{dir}/p.yaml"], {"p.yaml": "extends: /dev/zero\n"}, 2,
         "not found", seconds=10),
    # prompts files
    Case("prompts-dev-zero", PROMPTS + ["/dev/zero"], {}, 2, "regular file", seconds=20),
    Case("prompts-fifo", PROMPTS + ["{dir}/fifo.txt"], {"fifo.txt": _fifo}, 2, "regular file", seconds=20),
    Case("prompts-folder", PROMPTS + ["{dir}/sub"], {"sub/x": "x"}, 2, "regular file"),
    Case("prompts-over-16mib", PROMPTS + ["{dir}/p.txt"], {"p.txt": _sparse(17 << 20)}, 2, "larger than 16 MiB"),
    Case("prompts-long-line", PROMPTS + ["{dir}/p.txt"], {"p.txt": "x" * (70 << 10) + "\n"}, 2, "longer than 64 KiB"),
    Case("prompts-bom-txt-is-jsonl", PROMPTS + ["{dir}/p.txt"],
         {"p.txt": '\ufeff{"prompt": "a"}\n{"prompt": "b", "stepz": 3}\n'}, 2, "p.txt:2: stepz: unknown key"),
    Case("prompts-bom-jsonl", PROMPTS + ["{dir}/p.jsonl"],
         {"p.jsonl": '\ufeff{"prompt": "a"}\n{"prompt": "b", "stepz": 3}\n'}, 2, "p.jsonl:2: stepz: unknown key"),
    Case("prompts-all-bad-lines", PROMPTS + ["{dir}/p.jsonl"], {"p.jsonl": BAD_LINES}, 2,
         "p.jsonl:20: stepz: unknown key (did you mean 'steps'?); and 5 more bad lines"),
    Case("prompts-jsonl-30000-deep", PROMPTS + ["{dir}/p.jsonl"],
         {"p.jsonl": '{"prompt": ' + "[" * 30_000 + "]" * 30_000 + "}\n"}, 2, "nested more than 8 levels deep"),
    Case("prompts-jsonl-100000-deep", PROMPTS + ["{dir}/p.jsonl"],
         {"p.jsonl": '{"prompt": ' + "[" * 100_000 + "]" * 100_000 + "}\n"}, 2, "longer than 64 KiB"),
    Case("prompts-nan", PROMPTS + ["{dir}/p.jsonl"], {"p.jsonl": '{"prompt": "a", "guidance_scale": NaN}\n'}, 2,
         "NaN is not a number JSON allows"),
    Case("prompts-infinity", PROMPTS + ["{dir}/p.jsonl"], {"p.jsonl": '{"prompt": "a", "seed": -Infinity}\n'}, 2,
         "-Infinity is not a number JSON allows"),
    Case("prompts-whitespace-prompt", PROMPTS + ["{dir}/p.jsonl"], {"p.jsonl": '{"prompt": " \\t "}\n'}, 2,
         ":1: prompt: expected a non-empty string"),
    Case("prompts-5000-digit-seed", PROMPTS + ["{dir}/p.jsonl"], {"p.jsonl": '{"prompt": "a", "seed": ' + "9" * 5000 + "}"},
         2, ":1: invalid JSON"),
    Case("prompts-key-escape-sequence", PROMPTS + ["{dir}/p.jsonl"],
         {"p.jsonl": '{"prompt": "a", "\\u001b]0;pwned\\u0007\\u001b[2J\\n": 1}\n'}, 2, "\\x1b]0;pwned\\x07\\x1b[2J\\n"),
    Case("prompts-file-name-escape", PROMPTS + ["{dir}/\u202eevil\x1b.txt"], {"\u202eevil\x1b.txt": "\n"}, 2,
         "\\u202eevil\\x1b.txt: no prompts"),
    # inspect: typos never go to the hub; hub ids fail fast and in one line
    Case("inspect-typo", ["inspect", "digts-text"], {}, 2, "unknown preset or model 'digts-text'; did you mean digits-text?",
         seconds=8, env={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}),
    Case("inspect-hub-offline", ["inspect", "someone/not-cached", "--offline"], {}, 3,
         "not in the local cache and diffcli is offline", seconds=10),
    Case("inspect-hub-unreachable", ["inspect", "someone/not-cached"], {}, 3, "cannot reach the Hugging Face Hub",
         seconds=10, env={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}),
]


def _materialise(folder: Path, files: dict[str, Any]) -> None:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content.replace("{dir}", str(folder)), encoding="utf-8")


def assert_one_error_line(stderr: str, says: str) -> None:
    """Exactly one line on stderr, `Error: ...`, containing `says`, with no terminal control characters."""
    assert not CONTROL.search(stderr.rstrip("\n")), repr(stderr)
    lines = stderr.rstrip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert says in lines[0], lines[0]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_refuses_hostile_input(case: Case, tmp_path: Path) -> None:
    _materialise(tmp_path, case.files)
    args = [a.replace("{dir}", str(tmp_path)) for a in case.args]
    start = time.monotonic()
    result = run_cli(*args, timeout=case.seconds + 10, env=case.env, cwd=tmp_path, preexec_fn=_limit_memory)
    elapsed = time.monotonic() - start
    assert result.returncode == case.code, (result.returncode, result.stderr[-2000:])
    assert_one_error_line(result.stderr, case.says)
    assert elapsed < case.seconds, f"took {elapsed:.1f}s"
    if case.absent:
        assert not (tmp_path / case.absent).exists()


# ------------------------------------------------------------------ YAML loader and extends, in process


def test_alias_bomb_refused_in_well_under_a_second(tmp_path: Path) -> None:
    from diffcli.plan.presets import load_file

    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb("scheduler_options"))
    start = time.perf_counter()
    with pytest.raises(PresetError, match="anchors and aliases"):
        load_file(path)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("text", [
    "steps: 25\nscheduler_options: {timestep_spacing: trailing, trained_betas: [0.1, 0.2]}\nprompt: 'a *b* &c'",
    "a: " + "[" * 63 + "]" * 63,  # 64 levels with the mapping: the most allowed
    "", "just a string", "- 1\n- 2.5\n- .nan\n- 2001-02-03",
])
def test_safe_yaml_keeps_safe_load_semantics(text: str) -> None:
    import yaml

    from diffcli.plan import safe_yaml

    assert repr(safe_yaml.load(text)) == repr(yaml.safe_load(text))
    if text.startswith("a: "):
        with pytest.raises(safe_yaml.YAMLRefused, match="nested more than 64"):
            safe_yaml.load("a: " + "[" * 64 + "]" * 64)


def test_relative_extends_follow_the_extending_file(tmp_path: Path) -> None:
    """A chain of relative files works from any folder; a base.yaml in the cwd does not replace the real one."""
    (tmp_path / "presets" / "team").mkdir(parents=True)
    (tmp_path / "presets" / "base.yaml").write_text("extends: digits\nseed: 11\n")
    (tmp_path / "presets" / "team" / "mid.yaml").write_text("extends: ../base.yaml\nsteps: 7\n")
    (tmp_path / "presets" / "team" / "mine.yaml").write_text("extends: mid.yaml\nnum_images: 3\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "base.yaml").write_text("extends: digits\nseed: 999\n")
    (elsewhere / "mid.yaml").write_text("extends: digits\nsteps: 999\n")
    result = run_cli("presets", "show", "../presets/team/mine.yaml", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    shown = {line.split(":")[0]: line.split(": ", 1)[-1] for line in result.stdout.splitlines() if ": " in line}
    assert (shown["seed"], shown["steps"], shown["num_images"]) == ("11", "7", "3")
    assert shown["model"].endswith(os.path.join("models", "digits"))


def test_bare_extends_name_is_shipped_first_then_beside_the_file(tmp_path: Path) -> None:
    from diffcli.plan.presets import resolve

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "digits").write_text("model: x\nseed: 5\n")  # a bare name never shadows a shipped preset
    (tmp_path / "p" / "local").write_text("extends: digits\nseed: 6\n")
    (tmp_path / "p" / "mine.yaml").write_text("extends: local\nsteps: 3\n")
    preset = resolve(str(tmp_path / "p" / "mine.yaml"), None).preset
    assert (preset.seed, preset.steps, Path(preset.model).name) == (6, 3, "digits")


# ------------------------------------------------------------------ prompts files, in process


def test_bom_is_stripped_alike_in_txt_and_jsonl(tmp_path: Path) -> None:
    from diffcli.plan.prompts import read_prompts_file

    for name in ("p.txt", "p.jsonl"):
        (tmp_path / name).write_bytes(b'\xef\xbb\xbf{"prompt": "a cat", "seed": 5}\n')
        [line] = read_prompts_file(tmp_path / name)
        assert (line.prompt, line.values) == ("a cat", {"seed": 5})
    (tmp_path / "plain.txt").write_bytes("\ufeffa cat\r\nline\u2028two\n".encode())
    assert [p.prompt for p in read_prompts_file(tmp_path / "plain.txt")] == ["a cat", "line\u2028two"]


# ------------------------------------------------------------------ model folders, in process


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


# ------------------------------------------------------------------ A1111 metadata cannot be forged


def fold(text: str | None) -> str:
    """What a one-line rendering of `text` must read as: line breaks (as str.splitlines sees them) → spaces."""
    return re.sub("[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+", " ", text or "").strip()


def a1111_reader(text: str) -> tuple[str, str, dict[str, str]]:
    """Mimics A1111's parse_generation_parameters, written from its description (not from diffcli)."""
    *lines, last = text.strip().split("\n")
    params = {k.strip(): v for k, v in re.findall(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)', last)}
    if len(params) < 3:
        lines.append(last)
        params = {}
    prompt, negative, done = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done, line = True, line[16:].strip()
        (negative if done else prompt).append(line)
    unquote = {k: json.loads(v) if v.startswith('"') else v for k, v in params.items()}
    return "\n".join(prompt), "\n".join(negative), unquote


FORGERIES = [
    ("a cat\nNegative prompt: evil\nSteps: 999", None),
    ("a cat\r\nSteps: 999, Seed: 1, Sampler: evil", "ugly\nSteps: 1"),
    ("Negative prompt: evil", None),
    ("  Negative prompt: evil", "x"),
    ("a cat\u2028Negative prompt: evil\x85Steps: 999", "blurry\u2029Seed: 7"),
    ("Steps: 999, Seed: 5, Sampler: x", None),
    ("", "only negative\nSteps: 3"),
]


@pytest.mark.parametrize("prompt,negative", FORGERIES)
def test_a1111_chunk_cannot_be_forged(prompt: str, negative: str | None) -> None:
    from diffcli.sinks.metadata import a1111_parameters

    fields = {"Steps": 4, "Sampler": "DDIM", "CFG scale": 5.0, "Seed": 42, "Size": "16x16",
              "Model": "/models/a, Steps: 999\nSeed: 1", "Version": "diffcli test"}
    seen_prompt, seen_negative, params = a1111_reader(a1111_parameters(prompt, negative, fields))
    expected = fold(prompt)
    if expected.startswith("Negative prompt:"):  # the one change: it must not read as the negative prompt
        expected = "Negative prompt -" + expected[len("Negative prompt:"):]
    assert seen_prompt == expected
    assert seen_negative == fold(negative)
    assert params == {k: str(v) for k, v in fields.items()}


def test_a1111_chunk_through_the_cli_keeps_the_true_prompt(tmp_path: Path) -> None:
    from PIL import Image

    prompt = "a cat\nNegative prompt: evil\nSteps: 999"
    result = run_cli("txt2img", prompt, "--preset", "digits-text", "--steps", "2", "-n", "1", "--quiet",
                     "-o", str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    [png] = sorted((tmp_path / "out").glob("*.png"))
    info = Image.open(png).info
    seen_prompt, seen_negative, params = a1111_reader(info["parameters"])
    assert (seen_prompt, seen_negative, params["Steps"]) == ("a cat Negative prompt: evil Steps: 999", "", "2")
    assert json.dumps(prompt)[1:-1] in info["diffcli"]  # the replay chunk keeps the exact prompt


# ------------------------------------------------------------------ escaping


@pytest.mark.parametrize("raw,shown", [
    ("\x1b]0;title\x07", "\\x1b]0;title\\x07"), ("a\nb\r\tc", "a\\nb\\r\\tc"), ("\x00\x7f\x9b", "\\x00\\x7f\\x9b"),
    ("\u202eevil\u2066\u2069\u200f", "\\u202eevil\\u2066\\u2069\\u200f"), ("l1\u2028l2\u2029", "l1\\u2028l2\\u2029"),
    ("C:\\models\\é 猫", "C:\\models\\é 猫"),
])
def test_escape_control(raw: str, shown: str) -> None:
    from diffcli.plan.text import escape_control

    assert escape_control(raw) == shown and not CONTROL.search(escape_control(raw))
