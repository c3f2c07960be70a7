"""The trace sink: per image, a labelled contact sheet and an animation, built from frames as they arrive.

Frames come from the frame sink's listener as pixels (no file is read back); each image's sheet
and animation are written as soon as its final image is made, then its tiles are dropped.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from diffcli.plan.items import Item
from diffcli.sinks.base import RunInfo
from diffcli.step import Step

MIN_TILE = 96   # small models (16x16 digits) are scaled up so the sheet is readable
MAX_TILE = 256  # large images are scaled down: a sheet is an overview
LABEL_HEIGHT = 14


def tile_size(width: int, height: int) -> tuple[int, int]:
    """Nearest-neighbour upscale of small images to at least MIN_TILE, downscale of large ones to MAX_TILE."""
    side = max(width, height)
    if side > MAX_TILE:
        return max(1, width * MAX_TILE // side), max(1, height * MAX_TILE // side)
    scale = max(1, -(-MIN_TILE // max(1, min(width, height))))
    return width * scale, height * scale


def _tile(pixels: Any, size: tuple[int, int]) -> Any:
    from PIL import Image

    from diffcli.sinks.pixels import to_pil

    image = to_pil(pixels).convert("RGB")
    return image.resize(size, Image.Resampling.NEAREST if size[0] >= image.size[0] else Image.Resampling.LANCZOS)


class TraceSink:
    """Collects tiles per image from the frame sink; writes `<image>-sheet.png` and `<image>-trace.<fmt>`."""

    def __init__(self, animation: str, frame_duration: int, columns: int = 10) -> None:
        self.animation = animation
        self.frame_duration = frame_duration
        self.columns = columns
        self.run: RunInfo | None = None
        self._tiles: dict[int, dict[tuple[str, int], tuple[int, Any]]] = defaultdict(dict)
        self.sheets: list[dict[str, Any]] = []
        self.animations: list[dict[str, Any]] = []

    def start(self, run: RunInfo) -> None:
        self.run = run

    def on_frame(self, item: Item, step: int, timestep: int, kind: str, pixels: Any) -> None:
        """Frame-sink listener: keep a tile of this frame until the image is done."""
        self._tiles[item.index][(kind, step)] = (timestep, _tile(pixels, tile_size(item.width, item.height)))

    def on_step(self, batch: list[Item], step: Step) -> None:
        pass

    def on_images(self, batch: list[Item], pixels: Any) -> None:
        for item in batch:
            tiles = self._tiles.pop(item.index, None)
            if tiles:
                self._write(item, tiles)

    def _write(self, item: Item, tiles: dict[tuple[str, int], tuple[int, Any]]) -> None:
        from diffcli.sinks.folder import png_writer

        assert self.run is not None
        sheet = contact_sheet(tiles, self.columns)
        path, _ = self.run.folder.publish(f"{item.stem}-sheet.png", png_writer(sheet, None), final=False)
        self.sheets.append({"image_index": item.index, "path": str(path)})
        if self.animation != "none":
            path, _ = self.run.folder.publish(f"{item.stem}-trace.{self.animation}",
                                              animation_writer(tiles, self.animation, self.frame_duration),
                                              final=False)
            self.animations.append({"image_index": item.index, "path": str(path)})

    def close(self, completed: bool) -> dict[str, list[dict[str, Any]]]:
        self._tiles.clear()
        return {"sheets": self.sheets, "animations": self.animations}


def _kinds_and_steps(tiles: dict[tuple[str, int], Any]) -> tuple[list[str], list[int]]:
    kinds = sorted({kind for kind, _ in tiles}, key=lambda k: k != "x_t")
    steps = sorted({step for _, step in tiles})
    return kinds, steps


def contact_sheet(tiles: dict[tuple[str, int], tuple[int, Any]], columns: int) -> Any:
    """A grid of the frames, each labelled `step N t=T` (and the kind when both are shown)."""
    from PIL import Image, ImageDraw

    kinds, steps = _kinds_and_steps(tiles)
    tile = next(iter(tiles.values()))[1].size
    columns = min(columns, len(steps))
    rows_per_kind = -(-len(steps) // columns)
    cell_w, cell_h = tile[0] + 4, tile[1] + LABEL_HEIGHT + 4
    sheet = Image.new("RGB", (columns * cell_w + 4, len(kinds) * rows_per_kind * cell_h + 4), "white")
    draw = ImageDraw.Draw(sheet)
    for k, kind in enumerate(kinds):
        for i, step in enumerate(steps):
            if (kind, step) not in tiles:
                continue
            timestep, image = tiles[(kind, step)]
            row, col = divmod(i, columns)
            x, y = 4 + col * cell_w, 4 + (k * rows_per_kind + row) * cell_h
            sheet.paste(image, (x, y))
            label = f"step {step} t={timestep}" + (f" {kind}" if len(kinds) > 1 else "")
            draw.text((x, y + tile[1] + 1), label, fill="black")
    return sheet


def animation_writer(tiles: dict[tuple[str, int], tuple[int, Any]], fmt: str, duration_ms: int) -> Any:
    """A `write(handle)` for a GIF or WebP with one picture per step (the kinds side by side)."""
    from PIL import Image

    kinds, steps = _kinds_and_steps(tiles)
    tile = next(iter(tiles.values()))[1].size
    pictures = []
    for step in steps:
        canvas = Image.new("RGB", (tile[0] * len(kinds), tile[1]), "black")
        for k, kind in enumerate(kinds):
            if (kind, step) in tiles:
                canvas.paste(tiles[(kind, step)][1], (k * tile[0], 0))
        pictures.append(canvas)

    def write(handle: Any) -> None:
        pictures[0].save(handle, format=fmt.upper(), save_all=True, append_images=pictures[1:],
                         duration=duration_ms, loop=0, **({"lossless": True} if fmt == "webp" else {}))

    return write
