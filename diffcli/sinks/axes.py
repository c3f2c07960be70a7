"""The `--vary` grid: cells laid out by their axes and labelled with the keys and values.

Rows are the first --vary, columns the second (one --vary: one row); a third --vary makes one
grid per value, `grid-<key>-<value>.png`. A cell with several images (`-n`, prompt lines) shows
them side by side. Small images are scaled up with nearest-neighbour pixels and the text size
follows the tile size, so labels stay readable. Every grid carries a `diffcli-grid` text chunk:
`{"axes": [{"key": ..., "values": [...]}, ...]}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from diffcli.plan.items import Item, grid_stem
from diffcli.plan.naming import slugify
from diffcli.plan.naming import label
from diffcli.sinks.base import RunInfo
from diffcli.sinks.gallery_read import GRID_KEY
from diffcli.sinks.grid import open_existing
from diffcli.sinks.trace import tile_size
from diffcli.step import Step

MAX_GRID_TILES = 1024  # per grid: a cell shows its first images when the run has more
MAX_LABEL_PX = 320     # longer labels are cut with "..."


@dataclass
class Grid:
    """One grid file: its name, the fixed third-axis value (if any) and the items it shows, by cell."""

    name: str
    fixed: tuple[str, str] | None
    blocks: dict[tuple[int, int], list[int]] = field(default_factory=dict)


@dataclass
class Layout:
    """The axes of a --vary run (keys, JSON values in the order given) and its grids."""

    keys: list[str]
    values: list[list[str]]
    grids: list[Grid]

    @property
    def shown(self) -> set[int]:
        return {index for grid in self.grids for block in grid.blocks.values() for index in block}


def layout_of(items: list[Item]) -> Layout:
    """Axes and grids from the planned items (cells in the order `plan/vary.py` made them)."""
    keys = [key for key, _ in items[0].cell]
    values: list[list[str]] = [[] for _ in keys]
    cells: dict[tuple[str, ...], list[int]] = {}
    for item in sorted(items, key=lambda it: it.index):
        cell = tuple(value for _, value in item.cell)
        for axis, value in enumerate(cell):
            if value not in values[axis]:
                values[axis].append(value)
        cells.setdefault(cell, []).append(item.index)
    fixed_values: list[str | None] = list(values[2]) if len(keys) == 3 else [None]
    stem = grid_stem(items)
    names = [f"{stem}.png"] if len(keys) < 3 else _third_axis_names(stem, keys[2], values[2])
    rows = values[0] if len(keys) > 1 else [None]
    columns = values[1] if len(keys) > 1 else values[0]
    per_block = max(1, MAX_GRID_TILES // (len(rows) * len(columns)))
    grids = []
    for name, third in zip(names, fixed_values):
        grid = Grid(name, (keys[2], third) if third is not None else None)
        for cell, indices in cells.items():
            if third is not None and cell[2] != third:
                continue
            if len(keys) > 1:
                position = (values[0].index(cell[0]), values[1].index(cell[1]))
            else:
                position = (0, values[0].index(cell[0]))
            grid.blocks[position] = indices[:per_block]
        grids.append(grid)
    return Layout(keys, values, grids)


def _third_axis_names(stem: str, key: str, values: list[str]) -> list[str]:
    slugs = [slugify(label(json.loads(value))) for value in values]
    if len(set(slugs)) < len(slugs):  # values that slug alike are told apart by their position
        slugs = [f"{i}-{slug}" for i, slug in enumerate(slugs)]
    return [f"{stem}-{slugify(key)}-{slug}.png" for slug in slugs]


def _chunk_value(text: str) -> Any:
    value = json.loads(text)
    return value if isinstance(value, (str, int, float)) and not isinstance(value, bool) else label(value)


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the small bitmap font
        return ImageFont.load_default()


def _fit(draw: Any, text: str, font: Any, width: float) -> str:
    text = text[:200]
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def render(layout: Layout, grid: Grid, tiles: dict[int, Any]) -> Any:
    """One labelled grid image from the tiles (PIL images, already scaled) of its items."""
    from PIL import Image, ImageDraw

    two = len(layout.keys) > 1
    row_labels = [label(json.loads(v)) for v in layout.values[0]] if two else []
    col_key = layout.keys[1] if two else layout.keys[0]
    col_labels = [label(json.loads(v)) for v in (layout.values[1] if two else layout.values[0])]
    shown = [tiles[i] for block in grid.blocks.values() for i in block if i in tiles]
    slot_w = max((tile.size[0] for tile in shown), default=96)
    slot_h = max((tile.size[1] for tile in shown), default=96)
    per_block = max((len(block) for block in grid.blocks.values()), default=1)
    size = max(12, min(32, slot_h // 6))
    font, bold = _font(size), _font(size + 2)
    pad, gap = size // 2, max(4, size // 4)  # gap: between images; columns are set further apart
    col_gap = gap if per_block == 1 else 3 * gap
    line = size + pad
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    block_w = per_block * slot_w + (per_block - 1) * gap
    widest = max((measure.textlength(text, font=font) for text in col_labels), default=0)
    col_w = int(max(block_w, min(widest + pad, max(block_w, MAX_LABEL_PX))))
    row_w = 0
    if two:
        texts = [measure.textlength(t, font=font) for t in row_labels] + [measure.textlength(layout.keys[0], font=bold)]
        row_w = int(min(max(texts) + 2 * pad, MAX_LABEL_PX))
    rows, columns = (len(row_labels) if two else 1), len(col_labels)
    top = pad + (line if grid.fixed else 0)
    header = top + 2 * line
    width = pad + row_w + columns * col_w + (columns - 1) * col_gap + pad
    height = header + rows * slot_h + (rows - 1) * gap + pad
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    if grid.fixed:
        key, value = grid.fixed
        draw.text((pad, pad), _fit(draw, f"{key} = {label(json.loads(value))}", bold, width - 2 * pad), fill="black",
                  font=bold)
    x0 = pad + row_w
    area = columns * col_w + (columns - 1) * col_gap
    title = _fit(draw, col_key, bold, area)
    draw.text((x0 + (area - draw.textlength(title, font=bold)) / 2, top), title, fill="black", font=bold)
    if two:
        draw.text((pad, top + line), _fit(draw, layout.keys[0], bold, row_w - pad), fill="black", font=bold)
    for c, text in enumerate(col_labels):
        shown_text = _fit(draw, text, font, col_w)
        x = x0 + c * (col_w + col_gap) + (col_w - draw.textlength(shown_text, font=font)) / 2
        draw.text((x, top + line), shown_text, fill="black", font=font)
    draw.line([(pad, header - pad // 2), (width - pad, header - pad // 2)], fill=(200, 200, 200), width=1)
    for r in range(rows):
        y = header + r * (slot_h + gap)
        if two:
            draw.text((pad, y + (slot_h - size) / 2), _fit(draw, row_labels[r], font, row_w - pad), fill="black",
                      font=font)
        for c in range(columns):
            block = grid.blocks.get((r, c), [])
            x = x0 + c * (col_w + col_gap) + (col_w - (len(block) * slot_w + (len(block) - 1) * gap)) // 2
            for j, index in enumerate(block):
                tile = tiles.get(index)
                left, cell_top = x + j * (slot_w + gap), y
                if tile is None:
                    draw.rectangle([left, cell_top, left + slot_w - 1, cell_top + slot_h - 1], fill=(235, 235, 235))
                    continue
                image.paste(tile, (left + (slot_w - tile.size[0]) // 2, cell_top + (slot_h - tile.size[1]) // 2))
    return image


def write_grids(folder: Any, layout: Layout, tiles: dict[int, Any], keep: bool = False) -> list[dict[str, Any]]:
    """Write every grid of the layout (`keep`: not one whose file is already that grid); their report entries
    (path, images shown, axes)."""
    from diffcli.sinks.folder import png_writer

    entries = []
    for grid in layout.grids:
        axes = [{"key": key, "values": [_chunk_value(v) for v in values]}
                for key, values in zip(layout.keys[:2], layout.values[:2])]
        if grid.fixed:
            axes.append({"key": grid.fixed[0], "values": [_chunk_value(grid.fixed[1])]})
        chunk = {GRID_KEY: json.dumps({"axes": axes}, sort_keys=True)}
        write = png_writer(render(layout, grid, tiles), chunk)
        if keep and folder.holds(grid.name, write):
            path = folder.path_of(grid.name)
        else:
            path, _ = folder.publish(grid.name, write, final=False, summary=True)
        count = sum(1 for block in grid.blocks.values() for i in block if i in tiles)
        entries.append({"path": str(path), "images": count, "axes": axes})
    return entries


def tile_of(image: Any) -> Any:
    """A grid tile: small images scaled up with nearest-neighbour pixels, large ones scaled down."""
    from PIL import Image

    size = tile_size(*image.size)
    resample = Image.Resampling.NEAREST if size[0] >= image.size[0] else Image.Resampling.LANCZOS
    return image.convert("RGB").resize(size, resample)


def grids_from_files(folder: Any, items: list[Item], paths: dict[int, str], keep: bool = False) -> list[dict[str, Any]]:
    """The grids built from the images on disk: a multi-process run's on rank 0, a resume's that made nothing
    (`keep`: a grid file that is already that grid is not rewritten)."""
    layout = layout_of(items)
    tiles: dict[int, Any] = {}
    for index in layout.shown:
        image = open_existing(paths[index]) if index in paths else None
        if image is not None:
            tiles[index] = tile_of(image)
    return write_grids(folder, layout, tiles, keep)


class AxesGridSink:
    """Keeps a tile of each image a grid shows; at the end writes the labelled grid(s)."""

    def __init__(self, items: list[Item]) -> None:
        self.layout = layout_of(items)
        self.names = [grid.name for grid in self.layout.grids]  # checked against the output policy first
        self.shown = self.layout.shown
        self.tiles: dict[int, Any] = {}
        self.run: RunInfo | None = None

    def start(self, run: RunInfo) -> None:
        self.run = run
        for item, path in run.existing:
            image = open_existing(path) if item.index in self.shown else None
            if image is not None:  # an unreadable existing image leaves its place empty
                self.tiles[item.index] = tile_of(image)

    def on_step(self, batch: list[Item], step: Step) -> None:
        pass

    def on_images(self, batch: list[Item], pixels: Any) -> None:
        from diffcli.sinks.pixels import to_pil

        for item, image in zip(batch, pixels):
            if item.index in self.shown:
                self.tiles[item.index] = tile_of(to_pil(image))

    def close(self, completed: bool) -> dict[str, list[dict[str, Any]]]:
        if not completed or self.run is None:
            return {}
        return {"grid": write_grids(self.run.folder, self.layout, self.tiles)}
