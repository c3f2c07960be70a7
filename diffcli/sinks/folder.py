"""The output folder: where files go, the overwrite/skip policy, temp files and atomic publishing.

A file is written to a temp file beside it and published under its final name in one step, so
no partial or zero-byte file is ever visible under a final name. An item is *done* when its final
image exists.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Callable

from diffcli.errors import OutputError
from diffcli.plan.text import escape_control
from diffcli.sinks.inside import (LOCK_PREFIX, TEMP_PREFIX, describe, is_real_folder, prune, read_bounded,
                                  real_subfolder)

__all__ = ["LOCK_PREFIX", "TEMP_PREFIX", "OutputFolder", "describe", "png_writer", "read_bounded", "save_png",
           "write_atomic"]
POLICIES = ("new", "overwrite", "skip")
MAX_SUMMARY_BYTES = 512 * 2**20  # the most of a grid read back to compare with the one a rerun would write


class OutputFolder:
    """One run's output folder.

    `root=None` means a new numbered folder under `base/<command>/` (0001, 0002, ...), made on first use
    (`root`, once the model has loaded); `discard_if_empty` removes it again when the run fails before a file lands.
    Policies: `new` refuses existing final images, `overwrite` replaces them, `skip` keeps them.
    """

    def __init__(self, root: Path | None, command: str, policy: str = "new", base: Path = Path("outputs")) -> None:
        if policy not in POLICIES:
            raise ValueError(policy)
        self.policy = policy
        self._root = root
        self._auto_parent = base / command
        self._made: set[Path] = set()
        self._reserved: Path | None = None  # the numbered folder this process made, if any

    @property
    def automatic(self) -> bool:
        return self._root is None

    def check(self) -> None:
        """Before any work: a given folder must be a folder we can write into (or creatable)."""
        if self._root is None:
            return
        if any(len(os.fsencode(part)) > 255 for part in self._root.parts):
            raise describe(OSError(errno.ENAMETOOLONG, "File name too long"), self._root)
        try:
            exists, is_dir, is_link = self._root.exists(), self._root.is_dir(), self._root.is_symlink()
        except OSError as err:  # a path longer than the system allows (ENAMETOOLONG), ...
            raise describe(err, self._root) from None
        if exists and not is_dir:
            raise OutputError(f"output path is a file, not a folder: {self._show(self._root)}",
                              hint="choose another --output")
        if is_link and not exists:
            raise OutputError(f"output path is a broken symbolic link: {self._show(self._root)}",
                              hint="choose another --output")

    @property
    def root(self) -> Path:
        """The folder, created on first use (the next free number when automatic)."""
        if self._root is None:
            self._root = self._reserve_numbered()
        if self._root not in self._made:
            self._mkdir(self._root)
        return self._root

    def adopt(self, root: Path) -> None:
        """Use a folder another process made (the numbered folder of rank 0)."""
        self._root = root
        self._made.add(root)

    def peek(self) -> Path | None:
        """The folder if it is known yet (never creates one)."""
        return self._root

    def _reserve_numbered(self) -> Path:
        self._mkdir(self._auto_parent)
        numbers = [int(p.name) for p in self._auto_parent.iterdir() if p.name.isdigit()]
        number = max(numbers, default=0) + 1
        while True:
            candidate = self._auto_parent / f"{number:04d}"
            try:
                candidate.mkdir()
            except FileExistsError:
                number += 1
                continue
            except OSError as err:
                raise describe(err, candidate) from None
            self._made.add(candidate)
            self._reserved = candidate
            return candidate

    def discard_if_empty(self) -> None:
        """Remove the numbered folder this process made when nothing landed in it (a run that failed)."""
        if self._reserved is not None and self._root == self._reserved:
            try:
                self._reserved.rmdir()  # an empty folder only
            except OSError:
                return
            self._made.discard(self._reserved)
            self._root = self._reserved = None

    def _mkdir(self, path: Path) -> None:
        try:
            if path.exists() and not path.is_dir():
                raise OutputError(f"output path is a file, not a folder: {self._show(path)}",
                                  hint="choose another --output")
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise describe(err, path) from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputError(f"output folder is not writable: {self._show(path)}",
                              hint="check its permissions or choose another --output")
        self._made.add(path)

    def path_of(self, relative: str) -> Path:
        """Where a file will go (the folder itself is not created)."""
        return (self._root if self._root is not None else self._auto_parent / "NNNN") / relative

    def is_done(self, relative: str) -> bool:
        """True when the final file exists (never true for an automatic folder not made yet)."""
        return self._root is not None and (self._root / relative).is_file()

    def subfolder(self, relative: str) -> Path:
        """`root/relative` as a real folder inside the output folder (made; a link there is refused, exit 4)."""
        folder = real_subfolder(self.root, relative)
        self._made.add(folder)
        return folder

    def holds(self, relative: str, write: Callable[[Any], None]) -> bool:
        """True when the file is there with exactly the bytes `write` would write (a summary kept as it is)."""
        import io

        existing = self.read(relative, MAX_SUMMARY_BYTES)
        if existing is None:
            return False
        buffer = io.BytesIO()
        write(buffer)
        return buffer.getvalue() == existing

    def read(self, relative: str, limit: int) -> bytes | None:
        """A file diffcli wrote earlier (a cache): a regular file of at most `limit` bytes, else None."""
        return None if self._root is None else read_bounded(self._root / relative, limit)

    def prune(self, relative: str, keep: Callable[[str], bool]) -> int:
        """Remove what `keep` rejects from a real subfolder (never through a link, never a live temp file)."""
        if self._root is None:
            return 0
        folder = self._root / relative
        parent = folder.parent
        while parent != self._root:  # every folder between the root and this one must be real too
            if not is_real_folder(parent):
                return 0
            parent = parent.parent
        return prune(folder, lambda name: not keep(name))

    def publish(self, relative: str, write: Callable[[Any], None], final: bool,
                summary: bool = False) -> tuple[Path, bool]:
        """Write a file atomically; returns (path, existed).

        Final images follow the policy; other files (frames, sheets, animations, grids) of an
        unfinished item replace leftovers unless the policy is `new`; run summaries (the grid)
        always replace the previous run's. `existed` is True when
        `skip` found the final image already there (another process made it first).
        """
        path = self.root / relative
        if path.parent not in self._made:
            self.subfolder(os.path.dirname(relative))
        replace = summary or self.policy == "overwrite" or (not final and self.policy == "skip")
        try:
            write_atomic(path, write, replace)
        except FileExistsError:
            if final and self.policy == "skip" and _regular(path):
                return path, True
            if not _regular(path):
                raise OutputError(f"{self._show(path)} exists and is not a regular file",
                                  hint="remove it or choose another --output") from None
            raise OutputError(f"{self._show(path)} already exists",
                              hint="use --overwrite to replace or --skip-existing to skip") from None
        return path, False

    def cleanup_stale(self) -> int:
        """Remove temp and lock files whose writing process is gone; returns how many."""
        if self._root is None or not self._root.is_dir():
            return 0
        return sum(prune(folder, lambda name: False) for folder in (self._root, self._root / "frames"))

    @staticmethod
    def _show(path: Path) -> str:
        return escape_control(str(path))


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def write_atomic(path: Path, write: Callable[[Any], None], replace: bool) -> Path:
    """Write via a temp file in the same folder, then publish it at `path` in one step.

    Without `replace`, publishing fails with FileExistsError if `path` exists: two processes
    writing into one folder never clobber each other. A failure (disk full, Ctrl-C) removes the
    temp file and leaves no partial output.
    """
    tmp = path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{path.name}"[:255])
    try:
        with open(tmp, "xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            _publish_exclusive(tmp, path)
    except FileExistsError:
        raise
    except OSError as err:
        raise describe(err, path) from None
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
    return path


def _publish_exclusive(tmp: Path, path: Path) -> None:
    """`os.link` fails if `path` exists; where links are unsupported, a lock file guards a rename."""
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
    lock = path.with_name(f"{LOCK_PREFIX}{path.name}"[:255])
    fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)  # FileExistsError: another writer holds it
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "exists", str(path))
        os.replace(tmp, path)
    finally:
        os.unlink(lock)


def save_png(path: Path, image: Any, text_chunks: dict[str, str] | None, replace: bool) -> Path:
    """Save a PIL image as PNG with text chunks, atomically (for writers outside a run)."""
    return write_atomic(path, png_writer(image, text_chunks), replace)


def png_writer(image: Any, text_chunks: dict[str, str] | None) -> Callable[[Any], None]:
    """A `write(handle)` that saves `image` as PNG with text chunks."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (text_chunks or {}).items():
        info.add_itxt(key, value) if not value.isascii() else info.add_text(key, value)
    return lambda handle: image.save(handle, format="PNG", pnginfo=info)
