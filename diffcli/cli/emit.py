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
        """The result: the JSON document, or the human lines on stdout."""
        if not self.main or self.done:
            return
        self.done = True
        if self.as_json:
            _write(sys.stdout, json.dumps(data, indent=2, default=str, allow_nan=False) + "\n")
        else:
            _write(sys.stdout, "".join(line + "\n" for line in (human or [])))

    def error(self, message: str, code: int, report: dict[str, Any] | None = None) -> None:
        """`Error: ...` on stderr (one line), and with --json one document with the report so far."""
        if not self.main or self.done:
            return
        one_line = escape_control(message)
        _write(sys.stderr, f"Error: {one_line}\n")
        if self.as_json:
            data = dict(report or {})
            status = "interrupted" if code in (130, 143) else "error"
            data.update(status=status, error={"exit_code": int(code), "message": one_line})
            self.document(data)
        self.done = True


def _write(stream: Any, text: str) -> None:
    """Write and flush; a closed pipe or a full device becomes the exceptions `main` maps."""
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        raise
    except OSError as err:
        if err.errno == errno.EPIPE:
            raise BrokenPipeError(errno.EPIPE, "broken pipe") from None
        raise StdoutError(err) from None


class StdoutError(Exception):
    """Writing the result failed (stdout full or unwritable): exit 4."""

    def __init__(self, err: OSError) -> None:
        super().__init__(err.strerror or str(err))
        self.errno = err.errno
