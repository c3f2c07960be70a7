"""Hostile input battery, part 1: presets, `--set`, prompts files, inspect targets, escaping.

Each case is data (what to create, what to run, what must come back). CLI cases run `python -m diffcli`
as a subprocess and check the exit code, that stderr is exactly one `Error:` line without control
characters, and the time taken. Model folders and the hub: test_hostile_models.py; PNG metadata:
test_hostile_metadata.py.
"""

from __future__ import annotations

import os
import re
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from diffcli.errors import PresetError
from tests.conftest import run_cli

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
CONTROLNET_RUN = ["txt2img", "a handwritten digit 7", "--preset", "digits-text", "--quiet", "-o", "{dir}/out",
                  "--controlnet", "{dir}/net", "--control-image"]
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
    # ControlNet control images: read like init images, before any model loads
    Case("control-image-dev-zero", CONTROLNET_RUN + ["/dev/zero"], {}, 2, "not found (or not a file)", absent="out"),
    Case("control-image-fifo", CONTROLNET_RUN + ["{dir}/c.png"], {"c.png": _fifo}, 2, "not found (or not a file)",
         absent="out"),
    Case("control-image-over-64mib", CONTROLNET_RUN + ["{dir}/c.png"], {"c.png": _sparse(65 << 20)}, 2,
         "larger than 64 MB", absent="out"),
    Case("control-image-name-escape", CONTROLNET_RUN + ["{dir}/\u202ec\x1b.png"], {"\u202ec\x1b.png": "x"}, 2,
         "\\u202ec\\x1b.png: not a readable image", absent="out"),
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


def test_set_text_keys_keep_yaml_like_text_but_other_keys_refuse_aliases() -> None:
    from diffcli.plan.presets import parse_set

    assert parse_set(["prompt=*bold* &cat [[[", "negative_prompt=&a *a"]) == {
        "prompt": "*bold* &cat [[[", "negative_prompt": "&a *a"}
    with pytest.raises(PresetError, match="--set scheduler_options: YAML anchors and aliases"):
        parse_set(["scheduler_options=*a"])


# ------------------------------------------------------------------ prompts files, in process


def test_bom_is_stripped_alike_in_txt_and_jsonl(tmp_path: Path) -> None:
    from diffcli.plan.prompts import read_prompts_file

    for name in ("p.txt", "p.jsonl"):
        (tmp_path / name).write_bytes(b'\xef\xbb\xbf{"prompt": "a cat", "seed": 5}\n')
        [line] = read_prompts_file(tmp_path / name)
        assert (line.prompt, line.values) == ("a cat", {"seed": 5})
    (tmp_path / "plain.txt").write_bytes("\ufeffa cat\r\nline\u2028two\n".encode())
    assert [p.prompt for p in read_prompts_file(tmp_path / "plain.txt")] == ["a cat", "line\u2028two"]


# ------------------------------------------------------------------ escaping


@pytest.mark.parametrize("raw,shown", [
    ("\x1b]0;title\x07", "\\x1b]0;title\\x07"), ("a\nb\r\tc", "a\\nb\\r\\tc"), ("\x00\x7f\x9b", "\\x00\\x7f\\x9b"),
    ("\u202eevil\u2066\u2069\u200f", "\\u202eevil\\u2066\\u2069\\u200f"), ("l1\u2028l2\u2029", "l1\\u2028l2\\u2029"),
    ("C:\\models\\é 猫", "C:\\models\\é 猫"),
])
def test_escape_control(raw: str, shown: str) -> None:
    from diffcli.plan.text import escape_control

    assert escape_control(raw) == shown and not CONTROL.search(escape_control(raw))
