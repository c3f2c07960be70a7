"""`diffcli gallery`: one static index.html for a folder of outputs, rebuilt incrementally from a small cache.

The cache (`DIR/.gallery/index.json`) maps each image's relative path to its size, mtime_ns and what was
read from it, so a rebuild only opens new or changed files. Frames under `frames/` folders are never
opened: they are counted on their final image's card (its contact sheet and animation show them).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from diffcli.errors import OutputError, UsageError
from diffcli.sinks.folder import OutputFolder
from diffcli.sinks.gallery_html import group, render_page
from diffcli.sinks.gallery_read import read_image

GALLERY_DIR = ".gallery"
INDEX = "index.html"
CACHE = "index.json"
THUMBS = ".gallery/thumbs"
CACHE_VERSION = 2  # bumped whenever what is read from a file changes
IMAGE_SUFFIXES = frozenset({".png", ".gif", ".webp", ".jpg", ".jpeg"})
THUMB_ABOVE = 384  # still images with a side larger than this get a thumbnail
THUMB_BOX = (320, 320)
THUMB_NAME = re.compile(r"[0-9a-f]{20}\.webp")  # what pruning may remove from .gallery/thumbs/
MAX_CACHE_BYTES = 256 << 20  # a larger (or non-regular) index.json is ignored and rebuilt


@dataclass
class GalleryReport:
    """What one build did (the `--json` document of `diffcli gallery`)."""

    gallery: str
    images: int
    frames_grouped: int
    frames_left_out: int
    broken: int
    read: int
    cached: int
    written: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"status": "ok", **asdict(self)}


def _thumbnail(source: Path, out: OutputFolder, key: str) -> str | None:
    """A small WebP of a large still image in `.gallery/thumbs/` (None if it cannot be made)."""
    from PIL import Image

    name = hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()[:20] + ".webp"
    try:
        with Image.open(source) as image:
            image.thumbnail(THUMB_BOX)
            small = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
        out.publish(f"{THUMBS}/{name}", lambda handle: small.save(handle, format="WEBP", quality=80), final=False,
                    summary=True)
    except OutputError:
        raise
    except Exception:  # noqa: BLE001 - no thumbnail: the page shows the original instead
        return None
    return name


def _read(out: OutputFolder, rel: str, stat: os.stat_result) -> dict[str, Any]:
    record = read_image(out.root / rel)
    width, height = record.get("width", 0), record.get("height", 0)
    if not record.get("animated") and max(width, height) > THUMB_ABOVE:
        thumb = _thumbnail(out.root / rel, out, f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}")
        if thumb:
            record["thumb"] = thumb
    return record


def scan(folder: Path) -> tuple[dict[str, os.stat_result], list[str]]:
    """Image files (relative POSIX path → stat) and frame files (under a `frames/` folder); hidden entries and
    symbolic links skipped (nothing outside `folder` is read)."""
    images: dict[str, os.stat_result] = {}
    frames: list[str] = []
    stack = [("", str(folder), False)]
    while stack:
        prefix, path, in_frames = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):  # .gallery, .git, in-flight .diffcli-tmp-* files
                continue
            rel = prefix + entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((rel + "/", entry.path, entry.name == "frames"))
                elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES and entry.is_file(follow_symlinks=False):
                    if in_frames:
                        frames.append(rel)
                    else:
                        images[rel] = entry.stat()
            except OSError:
                continue
    return images, frames


def _load_cache(raw: bytes | None) -> dict[str, Any]:
    """The cached records: from a regular file of bounded size only (a link, FIFO or device is ignored)."""
    try:
        data = json.loads((raw or b"").decode("utf-8"))
    except (ValueError, RecursionError):
        return {}
    ok = isinstance(data, dict) and data.get("version") == CACHE_VERSION and isinstance(data.get("files"), dict)
    return data["files"] if ok else {}


def _cached(entry: Any, stat: os.stat_result) -> dict[str, Any] | None:
    if (isinstance(entry, dict) and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns
            and isinstance(entry.get("record"), dict)):
        return entry["record"]
    return None


def _write_if_changed(out: OutputFolder, relative: str, data: bytes) -> bool:
    if out.read(relative, len(data)) == data:
        return False
    out.publish(relative, lambda handle: handle.write(data), final=False, summary=True)
    return True


def check_folder(folder: Path) -> Path:
    """An existing, writable folder, or the project's usage/output errors."""
    if not folder.exists():
        raise UsageError(f"folder not found: {folder}")
    if not folder.is_dir():
        raise UsageError(f"not a folder: {folder}", hint="give the output folder, not a file in it")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"folder is not writable: {folder}", hint="check its permissions")
    return folder


def build_gallery(folder: Path) -> GalleryReport:
    """Write `folder/index.html` (only when it changed) and refresh the cache; re-read only new or changed files."""
    started = time.perf_counter()
    folder = check_folder(Path(folder))
    out = OutputFolder(folder, "gallery", "overwrite")  # decides what may be written, read back or pruned
    out.subfolder(GALLERY_DIR)
    cache = _load_cache(out.read(f"{GALLERY_DIR}/{CACHE}", MAX_CACHE_BYTES))
    files, frames = scan(folder)
    records: dict[str, dict[str, Any]] = {}
    fresh: dict[str, Any] = {}
    read = 0
    for rel, stat in files.items():
        record = _cached(cache.get(rel), stat)
        if record is None:
            record, read = _read(out, rel, stat), read + 1
        records[rel] = record
        fresh[rel] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "record": record}
    cards, grouped, left_out = group(records, frames)
    page = render_page(cards, folder.resolve(), grouped, left_out)
    written = _write_if_changed(out, INDEX, page.encode("utf-8"))
    if read or fresh.keys() != cache.keys():
        document = json.dumps({"version": CACHE_VERSION, "files": fresh}, separators=(",", ":")).encode("ascii")
        out.publish(f"{GALLERY_DIR}/{CACHE}", lambda handle: handle.write(document), final=False, summary=True)
    keep = {r["thumb"] for r in records.values() if isinstance(r.get("thumb"), str)}
    out.prune(THUMBS, lambda name: name in keep or not THUMB_NAME.fullmatch(name))
    return GalleryReport(gallery=str(folder / INDEX), images=len(cards), frames_grouped=grouped,
                         frames_left_out=left_out, broken=sum(1 for card in cards if card.get("error")), read=read,
                         cached=len(files) - read, written=written, seconds=round(time.perf_counter() - started, 3))


def update_gallery(folder: Path) -> Path:
    """Build or refresh the gallery of `folder`; the path of its index.html (for a `--gallery` flag)."""
    return Path(build_gallery(folder).gallery)
