"""`diffcli denoise-trace` outputs: a labelled contact sheet and an animation per image, built from the frame files."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

from diffcli.sinks.folder import save_png, write_atomic

MIN_TILE = 96  # small models (16x16 digits) are scaled up so the sheet is readable
LABEL_HEIGHT = 14


def _tile_size(width: int, height: int) -> tuple[int, int]:
    scale = max(1, -(-MIN_TILE // max(1, min(width, height))))
    return width * scale, height * scale


def _open_rgb(path: str, size: tuple[int, int]) -> Any:
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB").resize(size, Image.Resampling.NEAREST)


def group_frames(frames: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Frame records by image index, ordered by step then kind (x_t before x0)."""
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for frame in frames:
        groups[frame["image_index"]].append(frame)
    for records in groups.values():
        records.sort(key=lambda f: (f["step"], f["kind"] != "x_t"))
    return dict(groups)


def contact_sheet(frames: list[dict[str, Any]], final_image: str, path: Path, overwrite: bool,
                  columns: int = 10) -> Path:
    """A grid of the frames, each labelled `step N · t T` (and the kind when both are shown)."""
    from PIL import Image, ImageDraw

    kinds = sorted({f["kind"] for f in frames}, key=lambda k: k != "x_t")
    steps = sorted({f["step"] for f in frames})
    with Image.open(final_image) as final:
        tile = _tile_size(*final.size)
    columns = min(columns, len(steps))
    rows_per_kind = -(-len(steps) // columns)
    cell_w, cell_h = tile[0] + 4, tile[1] + LABEL_HEIGHT + 4
    sheet = Image.new("RGB", (columns * cell_w + 4, len(kinds) * rows_per_kind * cell_h + 4), "white")
    draw = ImageDraw.Draw(sheet)
    by_key = {(f["kind"], f["step"]): f for f in frames}
    for k, kind in enumerate(kinds):
        for i, step in enumerate(steps):
            frame = by_key.get((kind, step))
            if frame is None:
                continue
            row, col = divmod(i, columns)
            x, y = 4 + col * cell_w, 4 + (k * rows_per_kind + row) * cell_h
            sheet.paste(_open_rgb(frame["path"], tile), (x, y))
            label = f"step {step} t={frame['timestep']}" + (f" {kind}" if len(kinds) > 1 else "")
            draw.text((x, y + tile[1] + 1), label, fill="black")
    return save_png(path, sheet, None, overwrite)


def _animation_frames(frames: list[dict[str, Any]], final_image: str, tile: tuple[int, int]) -> Iterator[Any]:
    """One picture per step: the kinds side by side; the last is the final image itself."""
    from PIL import Image

    kinds = sorted({f["kind"] for f in frames}, key=lambda k: k != "x_t")
    by_step: dict[int, dict[str, str]] = defaultdict(dict)
    for frame in frames:
        by_step[frame["step"]][frame["kind"]] = frame["path"]
    last = max(by_step)
    for step in sorted(by_step):
        canvas = Image.new("RGB", (tile[0] * len(kinds), tile[1]), "black")
        for k, kind in enumerate(kinds):
            source = final_image if (step == last and kind == "x_t") else by_step[step].get(kind)
            if source:
                canvas.paste(_open_rgb(source, tile), (k * tile[0], 0))
        yield canvas


def animation(frames: list[dict[str, Any]], final_image: str, path: Path, fmt: str, duration_ms: int,
              overwrite: bool) -> Path:
    """A GIF or WebP of the frames, written atomically. GIF frames are streamed from disk."""
    from PIL import Image

    with Image.open(final_image) as final:
        tile = _tile_size(*final.size)
    pictures = _animation_frames(frames, final_image, tile)
    first = next(pictures)
    rest: Any = pictures if fmt == "gif" else list(pictures)

    def write(handle: Any) -> None:
        first.save(handle, format=fmt.upper(), save_all=True, append_images=rest, duration=duration_ms, loop=0,
                   **({"lossless": True} if fmt == "webp" else {}))

    return write_atomic(path, write, overwrite)


def build_trace_outputs(report: Any, folder: Path, fmt: str, duration_ms: int, overwrite: bool) -> None:
    """A sheet and (unless `none`) an animation for every image of the report."""
    groups = group_frames(report.frames)
    sheets, animations = [], []
    for entry in report.images:
        frames = groups.get(entry["index"], [])
        if not frames:
            continue
        stem = Path(entry["path"]).stem
        sheets.append({"image_index": entry["index"], "path": str(
            contact_sheet(frames, entry["path"], folder / f"{stem}-sheet.png", overwrite))})
        if fmt != "none":
            animations.append({"image_index": entry["index"], "path": str(
                animation(frames, entry["path"], folder / f"{stem}-trace.{fmt}", fmt, duration_ms, overwrite))})
    report.extra["sheets"] = sheets
    report.extra["animations"] = animations
