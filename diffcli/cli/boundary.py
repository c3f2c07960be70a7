"""The one boundary where exceptions become a one-line message, an exit code and (with --json) a document.

Exceptions are mapped by type: diffcli's own hierarchy carries its exit code; out-of-memory
errors (host `MemoryError`, `torch.OutOfMemoryError`) are exit 1 with the levers that help;
anything else is a bug (exit 1; `DIFFCLI_DEBUG=1` shows the traceback).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
from typing import Any, Callable

import typer

from diffcli.cli.emit import Emitter, StdoutError
from diffcli.errors import (DiffcliError, ExitCode, Interrupted, interrupted_by, pending_interrupt,
                            signal_received)

OOM_HINT = ("use a smaller --batch-size or --width/--height, or set cpu_offload: model, vae_tiling: true, "
            "vae_slicing: true")


def debug() -> bool:
    return os.environ.get("DIFFCLI_DEBUG", "") not in ("", "0")


def is_out_of_memory(err: BaseException) -> bool:
    """Host or accelerator out-of-memory, by exception type."""
    if isinstance(err, MemoryError):
        return True
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    return oom is not None and isinstance(err, oom)


def describe(err: BaseException) -> tuple[str, int]:
    """(one-line message, exit code) for any exception."""
    if isinstance(err, DiffcliError):
        return err.message + (f" ({err.hint})" if err.hint else ""), int(err.exit_code)
    if is_out_of_memory(err):
        return f"not enough memory for this run ({OOM_HINT})", int(ExitCode.INTERNAL)
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return (f"internal error: {type(err).__name__}: {text} (set DIFFCLI_DEBUG=1 for the traceback)",
            int(ExitCode.INTERNAL))


def guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command; any failure is reported once through the emitter and becomes its exit code."""

    import inspect

    wants_emitter = "emitter" in inspect.signature(func, eval_str=True).parameters

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        run = kwargs.get("run") or {}
        emitter = Emitter(bool(kwargs.get("as_json") or run.get("as_json")),
                          bool(kwargs.get("quiet") or run.get("quiet")))
        install_signals(emitter)
        if wants_emitter:
            kwargs["emitter"] = emitter
        try:
            result = func(*args, **kwargs)
        except typer.Exit as done:
            settle_signals(int(done.exit_code or 0))
            raise
        except KeyboardInterrupt as err:
            fail(emitter, interrupted_by(err))
        except StdoutError:
            raise
        except BrokenPipeError as err:  # as a StdoutError: click would make any OSError a silent exit 1
            raise StdoutError(err) from None
        except Exception as err:  # noqa: BLE001 - the boundary
            if debug():
                raise
            fail(emitter, pending_interrupt(getattr(err, "report", None)) or err)
        settle_signals(0)
        return result

    signature = inspect.signature(func, eval_str=True)
    wrapper.__annotations__ = {}  # the signature below carries the evaluated annotations
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p for name, p in signature.parameters.items() if name != "emitter"])
    return wrapper


def fail(emitter: Emitter, err: BaseException) -> None:
    message, code = describe(err)
    report = getattr(err, "report", None)
    emitter.error(message, code, report.to_dict() if report is not None and hasattr(report, "to_dict") else report)
    settle_signals(code)
    raise typer.Exit(code)


def settle_signals(code: int) -> None:
    """Once the outcome is reported, a SIGINT or SIGTERM no longer raises (from an exit hook, torch's or Python's
    own, it printed a traceback): the first lets the shutdown go on, a second ends it at once with the outcome's
    code. Only in a process `run_app` started; a command run in-process (by a test) leaves that process's exit alone.
    """
    if not _owns_process:
        return
    received: list[int] = []

    def exit_now(signum: int, _frame: Any) -> None:
        received.append(signum)
        if len(received) < 2:
            return  # already on its way out: the exit hooks (temporary folders, caches) still run
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - nothing more to say on a broken stream
                pass
        os._exit(code)

    try:
        signal.signal(signal.SIGINT, exit_now)
        signal.signal(signal.SIGTERM, exit_now)
    except ValueError:  # not the main thread
        pass


IMPORT_PATIENCE_S = 0.25
_owns_process = False


def install_signals(emitter: Emitter | None = None, owns_process: bool = False) -> None:
    """SIGINT ends a run with exit 130 and SIGTERM like it with 143, finished files kept; each is
    recorded, so an error that library code makes of it is still reported as the interrupt.
    `owns_process`: the caller is `run_app`, so the process ends with the command (see `settle_signals`).

    A signal that arrives while a module is being imported is not raised there: an exception in an
    import can abort the process (a C++ extension calling back into Python), be swallowed (an
    import-lock callback) or leave a half-imported module behind. It is delivered again every
    20 ms; if the import is still running after 0.25 s (torch, diffusers: seconds, before anything
    is written) the process answers at once (one line, the document with --json) and exits.
    """
    global _owns_process
    _owns_process = _owns_process or owns_process
    deferred: list[float] = []

    def handler(signum: int, frame: Any) -> None:
        code = ExitCode.TERMINATED if signum == signal.SIGTERM else ExitCode.INTERRUPTED
        if _inside_import(frame):
            deferred[:] = deferred or [time.monotonic()]
            if time.monotonic() - deferred[0] < IMPORT_PATIENCE_S:
                timer = threading.Timer(0.02, os.kill, (os.getpid(), signum))
                timer.daemon = True
                timer.start()
                return
            _exit_now(emitter, code)
        deferred.clear()
        raise signal_received(code)

    try:
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. a test runner's worker)
        pass


def _exit_now(emitter: Emitter | None, code: ExitCode) -> None:
    """Answer a signal without raising (no Python code of the import runs again) and exit."""
    err = Interrupted("SIGTERM", code) if code == ExitCode.TERMINATED else Interrupted()
    try:
        (emitter or Emitter(as_json="--json" in sys.argv[1:])).error(err.message, int(code))
    except Exception:  # noqa: BLE001 - stdout or stderr unusable: the exit code is what is left
        pass
    os._exit(int(code))


def _inside_import(frame: Any) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False
