"""User text in and out: bounded reading of user files, and escaping user text before it reaches a terminal."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from diffcli.errors import DiffcliError, PresetError

# C0 controls (tab and newline included), DEL, C1 controls, the Arabic letter mark, LRM/RLM,
# line/paragraph separators, bidi embeddings/overrides (U+202A-U+202E) and isolates (U+2066-U+2069).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_control(text: str) -> str:
    """`text` with terminal-control and line-breaking characters shown as `\\n`, `\\x1b`, `\\u202e`.

    Everything else (backslashes included) is left as it is, so ordinary paths and prompts read unchanged;
    the result is always one line and cannot move the cursor, set a title or reorder text.
    """
    return _UNSAFE.sub(_visible, str(text))


def one_line(text: str, limit: int = 200) -> str:
    """`escape_control(text)` cut to `limit` characters (with an ellipsis): for quoting user values in errors."""
    escaped = escape_control(text)
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"


def _size(count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:g} {unit}"
    return f"{count} bytes"


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def read_text_file(path: Path, max_bytes: int, what: str, error: type[DiffcliError] = PresetError) -> str:
    """A regular file's UTF-8 text (BOM dropped), at most `max_bytes`; anything else raises `error`.

    FIFOs, devices and folders are refused without reading (opened non-blocking), so `/dev/zero`
    or a pipe nobody writes to cannot hang or exhaust memory.
    """
    shown = escape_control(str(path))
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{what} not found: {shown}") from None
    except OSError as err:
        raise error(f"{shown}: cannot read {what}: {err.strerror or err}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{shown}: {what} must be a regular file, not a {_kind(info.st_mode)}")
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as err:
        raise error(f"{shown}: cannot read {what}: {err.strerror or err}") from None
    finally:
        os.close(fd)
    if total > max_bytes:
        raise error(f"{shown}: {what} is larger than {_size(max_bytes)}, the most diffcli reads")
    data = b"".join(chunks)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise error(f"{shown}: {what} is not UTF-8 text (line {line}, byte {err.start})") from None
    return text[1:] if text.startswith("\ufeff") else text


def json_nesting_ok(text: str, limit: int) -> bool:
    """True when `[`/`{` nesting outside JSON strings stays within `limit` (checked without recursion).

    Run before `json.loads`, whose recursion would otherwise fail deep inside on hostile input.
    """
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return False
        elif char in "]}":
            depth -= 1
    return True
