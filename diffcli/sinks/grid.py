"""The grid sink: one labelled overview PNG of a run's images, scaled so small models are visible."""

from __future__ import annotations

import math
from typing import Any

from diffcli.plan.items import Item, grid_stem
from diffcli.sinks.base import RunInfo
from diffcli.sinks.trace import tile_size
from diffcli.step import Step

MAX_CELLS = 400  # a grid is an overview: larger runs show their first 400 images
LABEL_HEIGHT = 14


def open_existing(path: str) -> Any:
    """An image already in the output folder, read with the init image's bounds (a regular file, 64 MiB,
    8192² pixels, decompression bombs refused); None when it is not one, so its tile stays blank."""
    from diffcli.errors import UsageError
    from diffcli.plan.init_image import decode, read_bytes

    try:
        return decode(read_bytes(path, "existing image"), path, "existing image")
    except UsageError:
        return None


def label_for(item: Item) -> str:
    """`#3 s42`: image index and seed (the prompt index too for text prompts)."""
    prefix = f"p{item.prompt_index} " if item.task == "txt2img" else ""
    return f"{prefix}#{item.index} s{item.seed}"


def compose(cells: list[tuple[str, Any]], columns: int | None = None) -> Any:
    """Tiles with a label under each, in rows of `columns` (about square by default)."""
    from PIL import Image, ImageDraw

    columns = columns or math.ceil(math.sqrt(len(cells)))
    tile_w = max(image.size[0] for _, image in cells)
    tile_h = max(image.size[1] for _, image in cells)
    cell_w, cell_h = tile_w + 4, tile_h + LABEL_HEIGHT + 4
    rows = math.ceil(len(cells) / columns)
    grid = Image.new("RGB", (columns * cell_w + 4, rows * cell_h + 4), "white")
    draw = ImageDraw.Draw(grid)
    for i, (label, image) in enumerate(cells):
        row, col = divmod(i, columns)
        x, y = 4 + col * cell_w, 4 + row * cell_h
        grid.paste(image, (x, y))
        draw.text((x, y + tile_h + 1), label, fill="black")
    return grid


def grid_from_files(run_folder: Any, entries: list[tuple[Item, str]], keep: bool = False) -> dict[str, Any] | None:
    """The grid built from the images on disk, as its report entry: a multi-process run's on rank 0, a resume's
    that made nothing (`keep`: a grid file that is already this grid is not rewritten)."""
    from diffcli.sinks.folder import png_writer

    sink = GridSink([item for item, _ in entries])
    for item, path in entries[:MAX_CELLS]:
        image = open_existing(path)
        if image is not None:
            sink.add(item, image)
    if len(sink.cells) < 2:
        return None
    write = png_writer(compose([sink.cells[index] for index in sorted(sink.cells)]), None)
    if keep and run_folder.holds(sink.name, write):
        path = run_folder.path_of(sink.name)
    else:
        path, _ = run_folder.publish(sink.name, write, final=False, summary=True)
    return {"path": str(path), "images": len(sink.cells)}


class GridSink:
    """Keeps a tile of each image; at the end writes `grid-<first stem>.png` when the run has more than one."""

    def __init__(self, items: list[Item]) -> None:
        self.name = f"{grid_stem(items)}.png"
        self.names = [self.name]  # what it may write (checked against the output policy before the run)
        self.run: RunInfo | None = None
        self.cells: dict[int, tuple[str, Any]] = {}

    def start(self, run: RunInfo) -> None:
        self.run = run
        for item, path in run.existing:
            image = open_existing(path)
            if image is not None:  # an unreadable existing image is left out of the overview
                self.add(item, image)

    def on_step(self, batch: list[Item], step: Step) -> None:
        pass

    def add(self, item: Item, image: Any) -> None:
        """Add one image (a PIL image), e.g. an existing one that was skipped."""
        from PIL import Image

        if len(self.cells) < MAX_CELLS:
            size = tile_size(*image.size)
            resample = Image.Resampling.NEAREST if size[0] >= image.size[0] else Image.Resampling.LANCZOS
            self.cells[item.index] = (label_for(item), image.convert("RGB").resize(size, resample))

    def on_images(self, batch: list[Item], pixels: Any) -> None:
        from diffcli.sinks.pixels import to_pil

        for item, image in zip(batch, pixels):
            self.add(item, to_pil(image))

    def close(self, completed: bool) -> dict[str, list[dict[str, Any]]]:
        from diffcli.sinks.folder import png_writer

        if not completed or len(self.cells) < 2 or self.run is None:
            return {}
        cells = [self.cells[index] for index in sorted(self.cells)]
        path, _ = self.run.folder.publish(self.name, png_writer(compose(cells), None), final=False,
                                          summary=True)
        return {"grid": [{"path": str(path), "images": len(cells)}]}
