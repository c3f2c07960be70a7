"""The emitter: the only place that prints results and errors, human or JSON, and only on rank 0.

With `--json` every exit path prints exactly one JSON document on stdout; messages and
progress go to stderr, one line each, control characters escaped.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from typing import Any

from diffcli.plan.text import escape_control

_spoken: list[bool] = []  # set once any emitter has printed its document or error in this process


def spoken() -> bool:
    """True once a result or an error was printed (so the process boundary adds nothing)."""
    return bool(_spoken)


def is_main_process() -> bool:
    """Rank 0, or the only process (read from the launcher's environment; no torch import)."""
    size = os.environ.get("WORLD_SIZE", "1").strip()
    if not (size.isdigit() and int(size) > 1):
        return True
    return os.environ.get("RANK", "0").strip() == "0"


class Emitter:
    """Human or JSON output for one command invocation."""

    def __init__(self, as_json: bool = False, quiet: bool = False) -> None:
        self.as_json = as_json
        self.quiet = quiet
        self.main = is_main_process()
        self.done = False  # a document (or an error) was printed

    def note(self, message: str) -> None:
        """One narration line on stderr (not with --quiet or --json)."""
        if self.main and not self.quiet and not self.as_json:
            _write(sys.stderr, escape_control(message) + "\n")

    def warn(self, message: str) -> None:
        """A warning line on stderr (not with --quiet; kept with --json, whose stdout stays clean)."""
        if self.main and not self.quiet:
            _write(sys.stderr, "Warning: " + escape_control(message) + "\n")

    def document(self, data: dict[str, Any], human: list[str] | None = None) -> None:
        """The result: the JSON document (`"status": "ok"` unless it says otherwise), or the human lines."""
        if not self.main or self.done:
            return
        self.done = True
        _spoken.append(True)
        if self.as_json:
            data = {"status": data.get("status", "ok"), **data}
            _write(sys.stdout, json.dumps(data, indent=2, default=str, allow_nan=False) + "\n")
        else:
            _write(sys.stdout, "".join(line + "\n" for line in (human or [])))

    def error(self, message: str, code: int, report: dict[str, Any] | None = None) -> None:
        """`Error: ...` on stderr (one line), and with --json one document with the report so far."""
        if not self.main or self.done:
            return
        one_line = escape_control(message)
        _spoken.append(True)
        if not self.as_json:
            _write(sys.stderr, f"Error: {one_line}\n")
            self.done = True
            return
        data = dict(report or {})
        status = "interrupted" if code in (130, 143) else "error"
        data.update(status=status, error={"exit_code": int(code), "message": one_line})
        try:
            self.document(data)
        except StdoutError as err:  # still one line: the error, and why no document came (not for a closed pipe)
            why = "" if err.errno == errno.EPIPE else f" (and the JSON document could not be written: {err})"
            _write(sys.stderr, f"Error: {one_line}{why}\n")
            err.reported = True
            raise
        _write(sys.stderr, f"Error: {one_line}\n")


def _write(stream: Any, text: str) -> None:
    """Write and flush; on stdout a closed pipe or a full device becomes a StdoutError (not an OSError,
    which click would turn into a silent exit 1); on stderr a failure is dropped: there is nowhere
    left to say it, and the exit code still does."""
    try:
        stream.write(text)
        stream.flush()
    except OSError as err:
        if stream is sys.stderr:
            return
        raise StdoutError(err) from None


class StdoutError(Exception):
    """Writing the result failed: the reader went away (EPIPE, exit 141) or stdout is full or unwritable (exit 4)."""

    def __init__(self, err: OSError) -> None:
        super().__init__(err.strerror or str(err))
        self.errno = err.errno
        self.reported = False  # True when the stderr line already said it
