"""What diffcli may touch inside an output folder: real subfolders, bounded reads, pruning that never follows a link.

The output folder itself may be a link (the user named it); anything inside it that diffcli creates,
writes into, reads back or prunes must be a real folder or a regular file. A symbolic link where
diffcli wants a folder is refused (exit 4), so no write, rename or delete lands outside the folder.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Callable

from diffcli.errors import OutputError
from diffcli.plan.text import escape_control

TEMP_PREFIX = ".diffcli-tmp-"
LOCK_PREFIX = ".diffcli-lock-"
_TEMP = re.compile(r"\.diffcli-tmp-(\d+)-")


def describe(err: OSError, path: Path) -> OutputError:
    """An OSError while writing → a one-line OutputError."""
    shown = escape_control(str(path))
    if err.errno == errno.ENOSPC:
        return OutputError(f"disk full while writing {shown}", hint="free some space; finished images were kept")
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {shown}: permission denied", hint="check permissions or choose another --output")
    if err.errno == errno.ENOTDIR:
        return OutputError(f"cannot write {shown}: a parent is a file, not a folder")
    if err.errno == errno.ENAMETOOLONG:
        return OutputError(f"cannot write {shown[:80]}...: name too long for the filesystem",
                           hint="choose a shorter --output")
    return OutputError(f"cannot write {shown}: {err.strerror or err}")


def linked(path: Path) -> OutputError:
    return OutputError(f"{escape_control(str(path))} is a symbolic link; diffcli writes only into real folders "
                       "inside the output folder", hint="remove the link or choose another --output")


def real_subfolder(root: Path, relative: str | PurePosixPath) -> Path:
    """`root/relative`, each part made or checked as a real folder (never a link); OutputError otherwise."""
    current = root
    for part in PurePosixPath(relative).parts:
        if part in ("", ".", "..", "/"):
            raise OutputError(f"not a folder inside the output folder: {escape_control(str(relative))}")
        current = current / part
        try:
            os.mkdir(current)
            continue
        except FileExistsError:
            pass
        except OSError as err:
            raise describe(err, current) from None
        try:
            mode = os.lstat(current).st_mode
        except OSError as err:
            raise describe(err, current) from None
        if stat.S_ISLNK(mode):
            raise linked(current)
        if not stat.S_ISDIR(mode):
            raise OutputError(f"output path is a file, not a folder: {escape_control(str(current))}",
                              hint="choose another --output")
    return current


def is_real_folder(path: Path) -> bool:
    """True for a folder that is not a symbolic link."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def read_bounded(path: Path, limit: int) -> bytes | None:
    """The bytes of a regular file (not a link, FIFO or device) of at most `limit` bytes; None otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        return data if len(data) <= limit else None
    except OSError:
        return None
    finally:
        os.close(fd)


def owner(entry: Path) -> int | None:
    """The pid that wrote a temp file (in its name) or holds a lock (in its content, read bounded)."""
    match = _TEMP.match(entry.name)
    if match:
        return int(match.group(1))
    if entry.name.startswith(LOCK_PREFIX):
        text = (read_bounded(entry, 20) or b"").decode("ascii", "replace").strip()
        return int(text) if text.isdigit() and text.isascii() else None
    return None


def alive(pid: int) -> bool:
    """True unless no process has this id."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def prune(folder: Path, doomed: Callable[[str], bool]) -> int:
    """Remove the entries of a real folder that `doomed(name)` picks, and temp files of dead writers.

    Never follows a link: a linked folder is left alone, a link inside is removed as a link. A temp
    or lock file of a live process (another run writing now) is never removed. Returns how many.
    """
    if not is_real_folder(folder):
        return 0
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        entry = folder / name
        pid = owner(entry)
        if pid is not None:
            if alive(pid):
                continue
        elif name.startswith((TEMP_PREFIX, LOCK_PREFIX)) or not doomed(name):
            continue
        try:
            if not stat.S_ISDIR(os.lstat(entry).st_mode):
                os.unlink(entry)
                removed += 1
        except OSError:
            pass
    return removed
