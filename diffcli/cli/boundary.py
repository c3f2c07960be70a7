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
from typing import Any, Callable

import typer

from diffcli.cli.emit import Emitter, StdoutError
from diffcli.errors import DiffcliError, ExitCode, Interrupted

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
        install_sigterm()
        if wants_emitter:
            kwargs["emitter"] = emitter
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            fail(emitter, Interrupted())
        except (BrokenPipeError, StdoutError):
            raise
        except Exception as err:  # noqa: BLE001 - the boundary
            if debug():
                raise
            fail(emitter, err)

    signature = inspect.signature(func, eval_str=True)
    wrapper.__annotations__ = {}  # the signature below carries the evaluated annotations
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p for name, p in signature.parameters.items() if name != "emitter"])
    return wrapper


def fail(emitter: Emitter, err: BaseException) -> None:
    message, code = describe(err)
    report = getattr(err, "report", None)
    emitter.error(message, code, report.to_dict() if report is not None and hasattr(report, "to_dict") else report)
    raise typer.Exit(code)


def install_sigterm() -> None:
    """SIGTERM ends a run like Ctrl-C (exit 143, finished files kept)."""

    def handler(_signum: int, _frame: Any) -> None:
        raise Interrupted("SIGTERM", ExitCode.TERMINATED)

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. a test runner's worker)
        pass
