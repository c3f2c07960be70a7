"""Writing files safely: atomic publish, no clobbering, clear errors for full or unwritable disks."""

from __future__ import annotations

import errno
import os
import re
import secrets
import unicodedata
from pathlib import Path
from typing import Any, Callable

from diffcli.errors import OutputError

TEMP_PREFIX = ".diffcli-tmp-"
MAX_SLUG = 48


def slugify(text: str, max_length: int = MAX_SLUG) -> str:
    """A filename-safe, bounded, lowercase ASCII slug ("a cat playing bass" → "a-cat-playing-bass")."""
    normalized = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", normalized.lower()).strip("-")
    slug = slug[:max_length].rstrip("-")
    return slug or "prompt"


def prepare_dir(path: Path) -> Path:
    """Create the output folder (and parents) and check it is a writable folder."""
    if path.exists() and not path.is_dir():
        raise OutputError(f"output path is a file, not a folder: {path}", hint="choose another --output")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise describe(err, path) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"output folder is not writable: {path}", hint="check its permissions or choose another --output")
    return path


def describe(err: OSError, path: Path) -> OutputError:
    """An OSError while writing → a one-line OutputError."""
    if err.errno == errno.ENOSPC:
        return OutputError(f"disk full while writing {path}", hint="free some space; finished images were kept")
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {path}: permission denied", hint="check permissions or choose another --output")
    if err.errno == errno.ENOTDIR:
        return OutputError(f"cannot write {path}: a parent is a file, not a folder")
    return OutputError(f"cannot write {path}: {err.strerror or err}")


def write_atomic(path: Path, write: Callable[[Any], None], overwrite: bool) -> Path:
    """Write via a temp file in the same folder, then publish it at `path` in one step.

    Without `overwrite`, publishing uses `os.link`, which fails if `path` exists: two
    processes writing into one folder can never clobber each other's files.
    A failure (disk full, Ctrl-C) removes the temp file and leaves no partial output.
    """
    tmp = path.with_name(f"{TEMP_PREFIX}{secrets.token_hex(6)}-{path.name}")
    try:
        with open(tmp, "xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise OutputError(f"{path} already exists", hint="use --overwrite to replace or --skip-existing to skip") from None
            except OSError as err:
                if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
                _publish_without_links(tmp, path)
    except OSError as err:
        raise describe(err, path) from None
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
    return path


def _publish_without_links(tmp: Path, path: Path) -> None:
    """Exclusive publish on filesystems without hard links: reserve the name, then replace it."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.close(fd)
    os.replace(tmp, path)


def save_png(path: Path, image: Any, text_chunks: dict[str, str] | None, overwrite: bool) -> Path:
    """Save a PIL image as PNG with text chunks, atomically."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (text_chunks or {}).items():
        info.add_itxt(key, value) if not value.isascii() else info.add_text(key, value)
    return write_atomic(path, lambda handle: image.save(handle, format="PNG", pnginfo=info), overwrite)

