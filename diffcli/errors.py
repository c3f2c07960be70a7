"""Exit codes and the exception hierarchy; every user-facing failure is one of these."""

from __future__ import annotations

import enum
from typing import Any


class ExitCode(enum.IntEnum):
    """Documented process exit codes (README: "Exit codes")."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    MODEL = 3
    OUTPUT = 4
    INTERRUPTED = 130
    TERMINATED = 143


class DiffcliError(Exception):
    """A failure the user can act on: printed as one line, never as a traceback."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.report: Any = None  # the run's report so far, when a run was under way


class UsageError(DiffcliError):
    """Bad flags or arguments."""

    exit_code = ExitCode.USAGE


class PresetError(UsageError):
    """An invalid preset: unknown key, wrong type, out-of-range value, malformed YAML."""


class ModelError(DiffcliError):
    """The model cannot be found, loaded, or used for this task."""

    exit_code = ExitCode.MODEL


class OutputError(DiffcliError):
    """An output cannot be written: exists, unwritable, disk full."""

    exit_code = ExitCode.OUTPUT


class Interrupted(DiffcliError):
    """The run was stopped by SIGINT (130) or SIGTERM (143)."""

    exit_code = ExitCode.INTERRUPTED

    def __init__(self, signal_name: str = "SIGINT", exit_code: ExitCode = ExitCode.INTERRUPTED,
                 report: Any = None) -> None:
        super().__init__(f"interrupted by {signal_name}; finished images were kept")
        self.exit_code = exit_code
        self.report = report


class Terminated(KeyboardInterrupt):
    """What the SIGTERM handler raises: a KeyboardInterrupt, so library code that wraps any
    Exception (diffusers' lazy imports, hub imports) lets it through like Ctrl-C."""


def interrupted_by(err: BaseException, report: Any = None) -> Interrupted:
    """The Interrupted error for a KeyboardInterrupt (SIGINT, 130) or a Terminated (SIGTERM, 143)."""
    if isinstance(err, Terminated):
        return Interrupted("SIGTERM", ExitCode.TERMINATED, report)
    return Interrupted(report=report)


_signals: list[ExitCode] = []  # what the boundary's signal handlers received in this process


def signal_received(code: ExitCode) -> BaseException:
    """Record a SIGINT (130) or SIGTERM (143) and return the exception its handler raises."""
    _signals.append(code)
    return Terminated() if code == ExitCode.TERMINATED else KeyboardInterrupt()


def pending_interrupt(report: Any = None) -> Interrupted | None:
    """The Interrupted for a signal received earlier, if any: library code can swallow the
    KeyboardInterrupt or turn it into another error (a half-imported numpy, a wrapped import)."""
    if not _signals:
        return None
    return interrupted_by(Terminated() if _signals[-1] == ExitCode.TERMINATED else KeyboardInterrupt(), report)


def raise_if_signalled() -> None:
    """At a safe point (each denoising step): re-raise a signal that library code swallowed."""
    if _signals:
        raise Terminated() if _signals[-1] == ExitCode.TERMINATED else KeyboardInterrupt()
