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
