"""The hostile battery's one runner: run `python -m diffcli` in a case folder and check the contract.

Every case checks the exit code; on failure exactly one stderr line `Error: ...` without control
characters; with `--json` exactly one JSON document on stdout whose status and exit code agree;
no new file outside the output folder; no `.diffcli-tmp-*` / `.diffcli-lock-*` file left anywhere
under the case folder.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tests.conftest import REPO

CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
LEFTOVER = re.compile(r"^\.diffcli-(tmp|lock)-")


@dataclass
class Case:
    """One hostile run, as data: `prepare(folder)` makes the inputs, `args` may name `{dir}` (the case folder)."""

    id: str
    args: list[str]
    code: int
    says: str = ""  # substring of the Error line (or, with code 0, of stdout)
    prepare: Callable[[Path], None] | None = None
    output: str = "out"  # the only place new files may appear (relative to the case folder)
    check: Callable[[Path, dict[str, Any]], None] | None = None  # extra checks: (folder, document)
    seconds: float = 120.0
    env: dict[str, str] = field(default_factory=dict)


def child_env(**extra: str) -> dict[str, str]:
    """The environment of every diffcli subprocess: source tree first, one thread, no network."""
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **extra}


def start(args: list[str], cwd: Path, fresh: bool = False, close: tuple[int, ...] = (), **popen: Any) -> Any:
    """Start diffcli with SIGINT at its default (a shell's job would have it), pipes for both streams: forked
    from the pre-imported server (tests/forkserver.py, a `Popen`-like handle) unless the case needs a new
    interpreter (`fresh`: what it checks happens during the imports; environment read at start; other options).
    `close`: stream numbers the process starts without."""
    from tests.forkserver import needs_fresh_interpreter

    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    extra_env = popen.get("env") or {}
    server = None if fresh or set(popen) - {"env", "stdout", "stderr"} or needs_fresh_interpreter(extra_env) \
        else _fork_server()
    if server is not None:
        return server.start(args, cwd, child_env(**extra_env), popen["stdout"], popen["stderr"], close)
    if close:
        popen["before_exec"] = lambda: [os.close(fd) for fd in close] and None
    env = child_env(**popen.pop("env", {}))
    also = popen.pop("before_exec", None)

    def before_exec() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if also is not None:
            also()

    command = popen.pop("command", [sys.executable, "-m", "diffcli"])
    return subprocess.Popen([*command, *args], cwd=cwd, env=env, text=True, preexec_fn=before_exec, **popen)


_SERVER: Any = None


def _fork_server() -> Any:
    """This test process's fork server (tests/forkserver.py), started on first use; None if disabled."""
    global _SERVER
    if os.environ.get("DIFFCLI_TEST_FORKSERVER", "1") == "0":
        return None
    if _SERVER is None:
        import atexit

        from tests.forkserver import ForkServer

        _SERVER = ForkServer(child_env())
        atexit.register(_SERVER.close)
    return _SERVER


def run(args: list[str], cwd: Path, timeout: float = 120.0, **popen: Any) -> subprocess.CompletedProcess:
    """Run diffcli in `cwd`: forked from the pre-imported server, or a new interpreter when the case sets
    environment variables or process options (those are read at interpreter start or library import)."""
    from tests.forkserver import needs_fresh_interpreter

    extra_env = popen.get("env") or {}
    server = None if set(popen) - {"env"} or needs_fresh_interpreter(extra_env) else _fork_server()
    if server is not None:
        return server.run(list(args), cwd, child_env(**extra_env), timeout)
    proc = start(args, cwd, **popen)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out or "", err or "")


def snapshot(root: Path) -> set[str]:
    """Every path under `root` (files, folders, links; links not followed)."""
    found = set()
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(folder, name), root))
    return found


def leftovers(root: Path) -> list[str]:
    return sorted(path for path in snapshot(root) if LEFTOVER.match(os.path.basename(path)))


def one_error_line(stderr: str, says: str = "") -> str:
    """Exactly one stderr line, `Error: ...`, containing `says`, with no control characters."""
    text = stderr.rstrip("\n")
    assert not CONTROL.search(text), repr(stderr[-2000:])
    lines = text.split("\n")
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr[-3000:]
    assert says in lines[0], lines[0]
    return lines[0]


def one_document(stdout: str, code: int) -> dict[str, Any]:
    """Exactly one JSON document; its status and error exit code agree with the process's."""
    doc = json.loads(stdout)  # "Extra data" if there were two
    assert isinstance(doc, dict), stdout[:500]
    status = "ok" if code == 0 else "interrupted" if code in (130, 143) else "error"
    assert doc.get("status") == status, (status, stdout[:2000])
    if code != 0:
        assert doc["error"]["exit_code"] == code, doc["error"]
        assert not CONTROL.search(doc["error"]["message"]), doc["error"]
    return doc


def check_result(result: subprocess.CompletedProcess, code: int, says: str = "",
                 as_json: bool = True) -> dict[str, Any]:
    """The exit code, the stderr line and (with --json) the document; returns the document ({} without)."""
    assert result.returncode == code, (result.returncode, result.stderr[-3000:], result.stdout[-1000:])
    if code != 0:
        one_error_line(result.stderr, says)
    else:
        assert "Error" not in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]
    doc = one_document(result.stdout, code) if as_json else {}
    if code == 0 and says:
        assert says in result.stdout, result.stdout[-2000:]
    return doc


def check_files(root: Path, before: set[str], output: str) -> None:
    """New paths only inside `output`; no temp or lock file anywhere under `root`."""
    outside = sorted(p for p in snapshot(root) - before if p != output and not p.startswith(output + os.sep))
    assert outside == [], outside
    assert leftovers(root) == [], leftovers(root)


def fill(args: list[str], folder: Path, **values: Any) -> list[str]:
    """`{dir}` → the case folder, `{name}` → values[name]."""
    for key, value in {"dir": folder, **values}.items():
        args = [arg.replace("{" + key + "}", str(value)) for arg in args]
    return args


def run_case(case: Case, folder: Path, **values: Any) -> dict[str, Any]:
    """Prepare, run with --json, and check everything; returns the document."""
    if case.prepare is not None:
        case.prepare(folder)
    before = snapshot(folder)
    args = fill(case.args, folder, **values)
    if "--json" not in args:
        args.append("--json")
    started = time.monotonic()
    result = run(args, folder, timeout=case.seconds, env=case.env)
    doc = check_result(result, case.code, case.says)
    assert time.monotonic() - started < case.seconds
    check_files(folder, before, case.output)
    if case.check is not None:
        case.check(folder, doc)
    return doc


def pngs(folder: Path, only: list[str] | None = None) -> list[str]:
    """Names of the PNG files in `folder` (or those of `only` that exist), each verified as a whole PNG."""
    from PIL import Image

    names = []
    for path in sorted(folder.glob("*.png")):
        if only is not None and path.name not in only:
            continue
        with Image.open(path) as image:
            image.verify()
        names.append(path.name)
    return names
