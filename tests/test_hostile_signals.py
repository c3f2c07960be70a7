"""Hostile input battery: signals. Real subprocesses (SIGINT at its default, as in a shell) get SIGINT,
SIGTERM or SIGKILL during the imports, during the model load and mid-run with --every, then a rerun
with --skip-existing resumes; torchrun runs (slow) with a failing rank and under SIGTERM/SIGINT.

Moments are observed, not guessed: "imports" counts from the first shared library the child loads
that a bare `python -m` does not (diffcli's own imports have begun, so its handler is installed),
"load" from the output folder appearing (made just before the model loads), "mid-run" from the first
final image. Every case checks the exit code, one `Error:` line, one JSON document with --json, that
every file the document lists is a whole PNG, and that no temp or lock file is left.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.hostile_runner import (check_files, check_result, child_env, fill, leftovers, one_document, pngs, run,
                                  snapshot, start)

SO = re.compile(r"[^/\s]+\.so[.\d]*$", re.MULTILINE)
QUICK = ["unconditional", "--model", "{ddpm}", "--steps", "2", "-n", "1", "-o", "{dir}/out", "--quiet"]
LOAD = ["txt2img", "a cat", "--model", "{sd}", "--steps", "60", "-n", "1", "-o", "{dir}/out", "--quiet"]
LONG = ["unconditional", "--model", "{ddpm}", "--steps", "200", "--every", "20", "-n", "3", "-o", "{dir}/out",
        "--quiet"]
NAMES = [f"{i:04d}-s{i}.png" for i in range(3)]


def libraries(pid: int) -> set[str]:
    try:
        return set(SO.findall(Path(f"/proc/{pid}/maps").read_text()))
    except OSError:
        return set()


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> set[str]:
    """The shared libraries a bare `python -m` (site, runpy) has loaded when its module starts."""
    folder = tmp_path_factory.mktemp("bare")
    (folder / "bare_probe.py").write_text("import os; print(open('/proc/self/maps').read())")
    done = subprocess.run([sys.executable, "-m", "bare_probe"], capture_output=True, text=True, timeout=60,
                          env=child_env(PYTHONPATH=str(folder)))
    return set(SO.findall(done.stdout))


def wait_until(proc: subprocess.Popen, ready: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the run ended ({proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, f"no {what} within {timeout}s"
        time.sleep(0.002)


@dataclass
class SignalCase:
    id: str
    args: list[str]
    moment: str  # imports | load | mid-run
    signals: tuple[int, ...]
    code: int
    delay: float = 0.0  # after the moment
    as_json: bool = True
    resume: bool = False  # then rerun with --skip-existing


S_INT, S_TERM, S_KILL = signal.SIGINT, signal.SIGTERM, signal.SIGKILL
CASES = [
    SignalCase("sigint-imports-0ms", QUICK, "imports", (S_INT,), 130),
    SignalCase("sigint-imports-50ms", QUICK, "imports", (S_INT,), 130, delay=0.05),
    SignalCase("sigint-imports-150ms", QUICK, "imports", (S_INT,), 130, delay=0.15),
    SignalCase("sigint-imports-50ms-human", QUICK, "imports", (S_INT,), 130, delay=0.05, as_json=False),
    SignalCase("sigterm-imports-50ms", QUICK, "imports", (S_TERM,), 143, delay=0.05),
    SignalCase("sigint-load", LOAD, "load", (S_INT,), 130),
    SignalCase("sigterm-load", LOAD, "load", (S_TERM,), 143),
    SignalCase("sigint-mid-run-every", LONG, "mid-run", (S_INT,), 130),
    SignalCase("sigterm-mid-run-every", LONG, "mid-run", (S_TERM,), 143),
    SignalCase("double-sigint-mid-run", LONG, "mid-run", (S_INT, S_INT), 130),
    SignalCase("sigint-mid-run-then-resume", LONG, "mid-run", (S_INT,), 130, resume=True),
    SignalCase("sigkill-mid-run-then-resume", LONG, "mid-run", (S_KILL,), -9, resume=True),
]


def listed_files_are_whole(doc: dict[str, Any]) -> None:
    for key in ("images", "frames"):
        for entry in doc.get(key, []):
            path = Path(entry["path"])
            assert pngs(path.parent, [path.name]) == [path.name], path


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_signal(case: SignalCase, tmp_path: Path, tiny_ddpm: Path, tiny_sd: Path, bare_python: set[str]) -> None:
    args = fill(case.args + (["--json"] if case.as_json else []), tmp_path, ddpm=tiny_ddpm, sd=tiny_sd)
    before = snapshot(tmp_path)
    proc = start(args, tmp_path, fresh=case.moment == "imports")  # signals during the imports need them
    if case.moment == "imports":
        wait_until(proc, lambda: bool(libraries(proc.pid) - bare_python), "diffcli's imports")
    elif case.moment == "load":
        wait_until(proc, (tmp_path / "out").is_dir, "the output folder")
    else:
        wait_until(proc, (tmp_path / "out" / NAMES[0]).is_file, "the first image")
    time.sleep(case.delay)
    for number, signum in enumerate(case.signals):
        proc.send_signal(signum)
        time.sleep(0.05 if number + 1 < len(case.signals) else 0)
    out, err = proc.communicate(timeout=120)
    result = subprocess.CompletedProcess(args, proc.returncode, out, err)
    if case.code == -9:
        assert result.returncode == -9
    else:
        doc = check_result(result, case.code, "interrupted", case.as_json)
        assert not case.as_json or doc["error"]["message"].startswith("interrupted")
        listed_files_are_whole(doc)
        if case.moment == "load":  # sent once the output folder was made, before any image: none is made
            assert doc.get("images", []) == [] and pngs(tmp_path / "out") == [], doc
        if case.moment == "mid-run":
            assert [Path(e["path"]).name for e in doc["images"]][:1] == [NAMES[0]], doc["images"]
        check_files(tmp_path, before, "out")
    if case.resume:
        resume(args, tmp_path, proc.pid)


def resume(args: list[str], folder: Path, dead: int) -> None:
    """Rerun with --skip-existing: exit 0, the finished images kept, exactly the missing ones made,
    every frame there, and the temp files a killed writer left (named by its pid) removed."""
    out = folder / "out"
    kept = [name for name in NAMES if (out / name).is_file()]
    (out / f".diffcli-tmp-{dead}-dead-{NAMES[1]}").write_bytes(b"\x89PNG")
    (out / "frames").mkdir(exist_ok=True)
    (out / "frames" / f".diffcli-tmp-{dead}-dead-0001-s1-step0020-t0900-xt.png").write_bytes(b"")
    result = run([*args, "--skip-existing"] + ([] if "--json" in args else ["--json"]), folder)
    doc = check_result(result, 0)
    assert [(Path(e["path"]).name, bool(e.get("existing"))) for e in doc["images"]] == \
        [(name, name in kept) for name in NAMES]
    assert pngs(out, NAMES) == NAMES
    made = {Path(e["path"]).name.split("-step")[0] for e in doc["frames"]}
    assert made == {name[:-4] for name in NAMES if name not in kept}
    frames = sorted(p.name for p in (out / "frames").glob("*.png"))
    assert len(frames) == 3 * 10 and pngs(out / "frames") == frames
    assert leftovers(folder) == []


# ------------------------------------------------------------------ torchrun, two ranks (slow)

def torchrun(args: list[str], folder: Path) -> subprocess.Popen:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", str(port), "-m", "diffcli"]
    return start(args, folder, command=launcher, start_new_session=True, env={"MASTER_ADDR": "127.0.0.1"})


def diffcli_lines(stderr: str) -> list[str]:
    """stderr without the launcher's own report (its log lines, its traceback, its failure summary)."""
    ours = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    assert not [line for line in stderr.splitlines() if line.strip().startswith("File ") and "diffcli" in line
                and "torch" not in line], stderr  # no traceback from diffcli's code
    return ours


@pytest.mark.slow
@pytest.mark.xdist_group("torchrun")
def test_torchrun_failing_rank_gives_one_error_document(tiny_ddpm: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "0002-s2.png").mkdir(parents=True)  # item 2 is rank 1's: it cannot publish there
    proc = torchrun(fill(["unconditional", "--model", "{m}", "--steps", "2", "-n", "4", "--overwrite", "-o",
                          "{dir}/out", "--json", "--quiet"], tmp_path, m=tiny_ddpm), tmp_path)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode != 0
    doc = one_document(stdout, 4)  # rank 0 alone prints, for both
    assert doc["error"]["message"].startswith("rank 1: cannot write"), doc["error"]
    assert diffcli_lines(stderr) == ["Error: " + doc["error"]["message"]]
    listed_files_are_whole(doc)
    assert leftovers(tmp_path) == []


@pytest.mark.slow
@pytest.mark.xdist_group("torchrun")
@pytest.mark.parametrize("signum,code", [(S_TERM, 143), (S_INT, 130)], ids=["sigterm", "sigint-to-the-group"])
def test_torchrun_signal_gives_one_document(signum: int, code: int, tiny_ddpm: Path, tmp_path: Path) -> None:
    proc = torchrun(fill(LONG + ["-n", "6", "--json"], tmp_path, ddpm=tiny_ddpm), tmp_path)
    wait_until(proc, (tmp_path / "out" / NAMES[0]).is_file, "the first image", timeout=300)
    if signum == S_INT:
        os.killpg(proc.pid, signum)  # Ctrl-C in a terminal reaches the launcher and both ranks
    else:
        proc.send_signal(signum)  # a job scheduler stops the launcher; it passes SIGTERM on
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode != 0
    doc = one_document(stdout, code)
    assert diffcli_lines(stderr) == ["Error: " + doc["error"]["message"]]
    listed_files_are_whole(doc)
    assert leftovers(tmp_path) == []


SIGNAL_AT_EXIT = """
import atexit, os, signal, sys, time
from pathlib import Path
from diffcli.__main__ import main

def late_signals():  # runs after the outcome is reported, like Ctrl-C pressed during torch's exit hooks
    for _ in range({count}):
        os.kill(os.getpid(), signal.{name})
        time.sleep(0.1)
    Path("went-on").touch()

atexit.register(late_signals)
sys.argv = ["diffcli", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("count", [1, 2], ids=["one-signal", "two-signals"])
@pytest.mark.parametrize("args,code", [(["presets", "--json"], 0), (["presets", "show", "nope", "--json"], 2),
                                       (["presets", "--nope", "--json"], 2)],
                         ids=["after-success", "after-an-error", "after-a-usage-error"])
def test_a_signal_during_shutdown_keeps_the_reported_outcome(name: str, count: int, args: list[str], code: int,
                                                             tmp_path: Path) -> None:
    """A signal in an exit hook once the outcome is reported raises nothing (it printed "Exception ignored in
    atexit callback" and a traceback): one lets the shutdown go on, a second ends it at once; either way the exit
    code is the outcome's, with one line and one document."""
    script = SIGNAL_AT_EXIT.replace("{name}", name).replace("{count}", str(count))
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=child_env())
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr[-3000:]
    check_result(done, code, "nope" if code else "", as_json=True)
    assert (tmp_path / "went-on").exists() == (count == 1)  # the rest of the exit hooks ran after one signal only
