"""A pre-forked `python -m diffcli` for the hostile battery: each case is a real child process, minus the imports.

Importing torch, diffusers and transformers costs seconds of CPU per process, and the battery starts
hundreds. The server imports them once (never diffcli itself, and it runs no torch op, so no thread pool
exists to break on fork); each case is a `fork()` of it that takes the case's stdin/stdout/stderr (passed
over a Unix socket), its folder and its environment, restores Python's default signal handlers and runs
`diffcli.__main__` as `python -m diffcli` does. The exit status is the child's own (`-N` when a signal
killed it), read by `waitpid` in the server and sent back. Cases that set environment variables a library
reads at import run in a real subprocess instead (`needs_fresh_interpreter`).
"""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

PRELOAD = ("torch", "numpy", "PIL.Image", "PIL.PngImagePlugin", "safetensors.torch", "transformers", "diffusers",
           "yaml", "rich.console", "typer")
PRELOAD_NAMES = ("DiffusionPipeline", "StableDiffusionPipeline", "DDPMPipeline", "DDIMScheduler", "PNDMScheduler",
                 "AutoencoderKL", "UNet2DConditionModel", "UNet2DModel")


def needs_fresh_interpreter(env: dict[str, str]) -> bool:
    """A case whose environment differs from the server's in ways only a new interpreter reads: anything but
    diffcli's own variables, which diffcli reads when it runs (DIFFCLI_OMP_DEFAULTS is read before torch loads)."""
    return any(not key.startswith("DIFFCLI_") or key == "DIFFCLI_OMP_DEFAULTS" for key in env)


def _serve(path: str) -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    import diffusers

    for name in PRELOAD_NAMES:
        getattr(diffusers, name)
    import threading
    import warnings

    # the children are forked while other children's reporting threads wait in waitpid or sendall: they hold no lock
    warnings.filterwarnings("ignore", message=r".*fork\(\) may lead to deadlocks", category=DeprecationWarning)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    print("ready", flush=True)
    open_conns: set[socket.socket] = set()
    while True:
        conn, _ = listener.accept()
        message, fds = _receive(conn)
        if message is None:
            conn.close()
            continue
        pid = os.fork()
        if pid == 0:
            for other in (listener, conn, *open_conns):
                other.close()
            _child(message, fds)  # never returns
        for fd in fds:
            os.close(fd)
        open_conns.add(conn)
        threading.Thread(target=_report, args=(conn, pid, open_conns), daemon=True).start()


def _report(conn: socket.socket, pid: int, open_conns: set[socket.socket]) -> None:
    """Send the child's pid, wait for it, send its exit status: one thread per child, so children overlap."""
    try:
        conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        conn.sendall(json.dumps({"returncode": code}).encode() + b"\n")
    except OSError:
        pass
    finally:
        open_conns.discard(conn)
        conn.close()


def _receive(conn: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    if not data:
        return None, []
    size = struct.unpack("!I", data[:4])[0]
    body = data[4:]
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            break
        body += chunk
    return json.loads(body), list(fds)


def _child(message: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: become `python -m diffcli ARGS` in the case's folder, streams and environment."""
    code = 1
    try:
        os.setpgid(0, 0) if message.get("new_group") else None
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        for target in message.get("close", []):  # a stream the case starts without: None, as at startup
            os.close(target)
            setattr(sys, ("stdin", "stdout", "stderr")[target], None)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.chdir(message["cwd"])
        os.environ.clear()
        os.environ.update(message["env"])
        sys.argv = ["-m", *message["args"]]
        import runpy

        try:
            runpy.run_module("diffcli", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            if done.code is not None and not isinstance(done.code, int):
                print(done.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001 - as the interpreter would: the traceback, exit 1
            import traceback

            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def relay(path: str, args: list[str]) -> int:
    """Run `diffcli ARGS` forked from the server at `path` on this process's own stdin, stdout and stderr (a
    terminal, in the preview tests), folder and environment; return the child's exit status."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    with conn:
        body = json.dumps({"args": args, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
        socket.send_fds(conn, [struct.pack("!I", len(body)) + body], [0, 1, 2])
        reader = conn.makefile("rb")
        reader.readline()  # the child's pid
        line = reader.readline()
    return json.loads(line)["returncode"] if line else -signal.SIGKILL


class ForkServer:
    """One server per test process, started on first use; `run` is a drop-in for a subprocess run."""

    def __init__(self, env: dict[str, str]) -> None:
        self.folder = tempfile.mkdtemp(prefix="diffcli-fork-")
        self.path = os.path.join(self.folder, "socket")
        self.process = subprocess.Popen([sys.executable, "-c", f"from tests.forkserver import _serve; _serve({self.path!r})"],
                                        env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                        cwd=str(Path(__file__).resolve().parent.parent), text=True)
        ready = self.process.stdout.readline() if self.process.stdout else ""
        if ready.strip() != "ready":
            raise RuntimeError("the fork server did not start")

    def run(self, args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, open(os.devnull, "rb") as null:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(timeout)
            conn.connect(self.path)
            with conn:
                body = json.dumps({"args": args, "cwd": str(cwd), "env": env}).encode()
                socket.send_fds(conn, [struct.pack("!I", len(body)) + body],
                                array.array("i", [null.fileno(), out.fileno(), err.fileno()]).tolist())
                reader = conn.makefile("rb")
                pid = json.loads(reader.readline())["pid"]
                try:
                    line = reader.readline()
                except (TimeoutError, socket.timeout):
                    os.kill(pid, signal.SIGKILL)
                    raise subprocess.TimeoutExpired(args, timeout) from None
                returncode = json.loads(line)["returncode"]
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(args, returncode, out.read().decode("utf-8", "replace"),
                                               err.read().decode("utf-8", "replace"))

    def start(self, args: list[str], cwd: Path, env: dict[str, str], stdout: Any = subprocess.PIPE,
              stderr: Any = subprocess.PIPE, close: tuple[int, ...] = ()) -> "ForkedProcess":
        """Fork a child and return at once, as `subprocess.Popen` does; children may overlap."""
        return ForkedProcess(self.path, list(args), cwd, env, stdout, stderr, close)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)


class ForkedProcess:
    """A child forked by the server, with the part of `subprocess.Popen`'s interface the tests use: `pid`,
    `stdout`/`stderr` (text pipes when PIPE), `poll`, `wait`, `communicate`, `send_signal`, `kill`, `returncode`.
    Streams given as open files are passed on; the numbers in `close` start closed."""

    def __init__(self, path: str, args: list[str], cwd: Path, env: dict[str, str], stdout: Any, stderr: Any,
                 close: tuple[int, ...]) -> None:
        self.args, self.returncode = args, None
        passed, ours = [os.open(os.devnull, os.O_RDONLY)], []
        self.stdout = self.stderr = None
        for number, spec in ((1, stdout), (2, stderr)):
            if spec is subprocess.PIPE and number not in close:
                read, write = os.pipe()
                passed.append(write)
                ours.append(write)
                setattr(self, "stdout" if number == 1 else "stderr", open(read, encoding="utf-8", errors="replace"))  # noqa: SIM115
            elif hasattr(spec, "fileno"):
                passed.append(spec.fileno())
            else:
                passed.append(os.open(os.devnull, os.O_WRONLY))
                ours.append(passed[-1])
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._conn.connect(path)
        body = json.dumps({"args": args, "cwd": str(cwd), "env": env, "close": list(close)}).encode()
        socket.send_fds(self._conn, [struct.pack("!I", len(body)) + body], passed)
        for fd in [passed[0], *ours]:
            os.close(fd)
        self._reader = self._conn.makefile("rb")
        self.pid = json.loads(self._reader.readline())["pid"]

    def poll(self) -> int | None:
        if self.returncode is None:
            import select

            if select.select([self._conn], [], [], 0)[0]:
                self._finish()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._conn.settimeout(timeout)
            try:
                self._finish()
            except (TimeoutError, socket.timeout):
                self._conn.settimeout(None)
                raise subprocess.TimeoutExpired(self.args, timeout or 0) from None
        return self.returncode  # type: ignore[return-value]

    def _finish(self) -> None:
        line = self._reader.readline()
        self.returncode = json.loads(line)["returncode"] if line else -signal.SIGKILL
        self._reader.close()
        self._conn.close()

    def communicate(self, timeout: float | None = None) -> tuple[str | None, str | None]:
        import threading

        texts: dict[str, str] = {}
        readers = [threading.Thread(target=lambda n=name, h=handle: texts.__setitem__(n, h.read()), daemon=True)
                   for name, handle in (("out", self.stdout), ("err", self.stderr)) if handle and not handle.closed]
        for reader in readers:
            reader.start()
        self.wait(timeout)
        for reader in readers:
            reader.join()
        for handle in (self.stdout, self.stderr):
            if handle and not handle.closed:
                handle.close()
        return texts.get("out"), texts.get("err")

    def send_signal(self, signum: int) -> None:
        """Signal the child unless it has already ended (as `Popen.send_signal` does)."""
        if self.poll() is not None:
            return
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


if __name__ == "__main__":  # python -m tests.forkserver SOCKET ARGS...: exits as a shell reports the child
    status = relay(sys.argv[1], sys.argv[2:])
    sys.exit(128 - status if status < 0 else status)
