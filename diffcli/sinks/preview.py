"""The live preview (`--preview`): the forming image above the progress bar, then each batch's final images.

Drawn by textual-image (the `preview` extra), whose rich renderables pick the terminal's best way: sixel, kitty's
graphics protocol, else coloured Unicode half blocks (▀). Off, silently, with --quiet or --json, when stdin,
stdout or stderr is not a terminal (textual-image asks the terminal what it supports through them), under
TERM=dumb, in a background job or a terminal of no size, and on ranks other than 0; off with a warning when NO_COLOR is set (half blocks without colour show
nothing).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any, Iterator

from diffcli.errors import UsageError
from diffcli.plan.items import Item
from diffcli.sinks.base import RunInfo
from diffcli.step import Step

MISSING_EXTRA = '--preview needs the \'preview\' extra (textual-image): pip install -e ".[preview]"'
NO_COLOR_REASON = "NO_COLOR is set"
MAX_SHOWN = 8        # images of one batch side by side
MIN_GAP_S = 0.25     # the bars redraw REDRAWS times a second: more previews than that would never be seen
COST_SHARE = 4       # after a preview that took t seconds, none for COST_SHARE * t: at most ~20% of the run
MAX_ROWS = 40        # terminal rows for the picture (and at most half the terminal's height)
MAX_COLUMNS = 80     # and columns (a sixel picture is sent again at each redraw: its size is the cost)
REDRAWS = 4.0        # bars redrawn per second in a run with a preview (rich's default: 10)


def check_available() -> None:
    """Exit 2 naming the extra when textual-image is not installed (checked before any model loads)."""
    import importlib.util

    try:
        found = importlib.util.find_spec("textual_image") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise UsageError(MISSING_EXTRA)


def preview_request(preview: bool, every: int | None) -> int | None:
    """`--preview` / `--preview-every N` → None (off), N, or 0 (`default_every`); exit 2 for N < 1 or a
    missing extra, whether or not this terminal would show it."""
    if every is not None and every < 1:
        raise UsageError(f"--preview-every: expected an integer >= 1, got {every}")
    if not preview and every is None:
        return None
    check_available()
    return every or 0


def preview_blocker(quiet: bool) -> str | None:
    """Why the preview would not show in this process (None: it shows)."""
    if quiet:
        return "--quiet or --json"
    if not all(stream is not None and stream.isatty() for stream in (sys.stdin, sys.stdout, sys.stderr)):
        return "not a terminal"
    if os.environ.get("TERM", "") in ("dumb", "unknown"):  # rich draws no live bars there
        return "a dumb terminal"
    try:
        if _in_background(sys.stdout.fileno()):
            return "running in the background"
        if 0 in os.get_terminal_size(sys.stdout.fileno()):
            return "the terminal reports no size"
    except OSError:
        return "not a terminal"
    if os.environ.get("NO_COLOR", ""):
        return NO_COLOR_REASON
    return None


def _in_background(fd: int) -> bool:
    """True when `fd` is this process's controlling terminal and another process group is in its foreground:
    textual-image's terminal query would then stop the process (SIGTTOU/SIGTTIN), as for `timeout cmd`."""
    try:
        foreground = os.tcgetpgrp(fd)
    except OSError:
        return False  # not this process's controlling terminal (tcgetpgrp says so): no job control applies
    return foreground != os.getpgrp()


def default_every(total_steps: int) -> int:
    """About eight previews per image."""
    return max(1, total_steps // 8)


def preview_sinks(every: int, quiet: bool, progress: Any) -> list[Any]:
    """[the preview sink] when it can show, else []; `every` 0 means `default_every`."""
    return [PreviewSink(every or None, progress)] if preview_blocker(quiet) is None else []


def strip_of(pixels: Any) -> Any:
    """A batch's uint8 BHWC pixels → one PIL image, side by side with a grey 1-pixel gap (MAX_SHOWN at most)."""
    from PIL import Image

    from diffcli.sinks.pixels import to_pil

    images = [to_pil(image).convert("RGB") for image in pixels[:MAX_SHOWN]]
    width, height = images[0].size
    strip = Image.new("RGB", (len(images) * (width + 1) - 1, height), (128, 128, 128))
    for number, image in enumerate(images):
        strip.paste(image, (number * (width + 1), 0))
    return strip


def _label(batch: list[Item]) -> str:
    first, last = batch[0].index + 1, batch[min(len(batch), MAX_SHOWN) - 1].index + 1
    shown = f"image {first}" if first == last else f"images {first}-{last}"
    return shown + (f" (of {len(batch)} in the batch)" if len(batch) > MAX_SHOWN else "")


class PreviewSink:
    """Shows a cheap decode of x0 every `every` complete steps (None: `default_every`) above the bars, and
    prints each batch's final images. A preview is skipped while the last one's cost says it would slow
    the run (see COST_SHARE); the pixels written are never touched."""

    kinds = ("x0",)  # asks the sampler for the x0 estimate

    def __init__(self, every: int | None, progress: Any) -> None:
        self.every = every
        self.progress = progress
        progress.refresh_per_second = REDRAWS
        self.run: RunInfo | None = None
        self._image: Any = None   # textual-image's renderable now shown (freed from the terminal when replaced)
        self._not_before = 0.0
        self._on = True

    def start(self, run: RunInfo) -> None:
        """Import textual-image now, before the bars start: it asks the terminal which protocol to use."""
        self.run = run
        import logging

        quiet = logging.getLogger("textual_image")  # its cell-size fallbacks would log on stderr
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
        try:
            import textual_image.renderable  # noqa: F401 - the terminal query happens on import
        except Exception as err:  # noqa: BLE001 - a preview never fails a run
            self._on = False
            print(f"Warning: --preview is off: {type(err).__name__}: {err}", file=sys.stderr, flush=True)

    @property
    def _live(self) -> bool:
        return self._on and self.progress.console is not None

    def on_step(self, batch: list[Item], step: Step) -> None:
        if not self._live or not step.complete or step.x0 is None or step.step == step.total_steps:
            return  # the last step's picture is the final image, shown by on_images
        if step.step % (self.every or default_every(step.total_steps)) or time.monotonic() < self._not_before:
            return
        from diffcli.sinks.pixels import cheap_pixels

        started = time.monotonic()
        assert self.run is not None
        with self._guard():
            pixels = cheap_pixels(self.run.pipe, step.x0, self.run.latent)
            self._replace(self._render(pixels, f"{_label(batch)}: step {step.step}/{step.total_steps}"))
        cost = time.monotonic() - started
        self._not_before = time.monotonic() + max(MIN_GAP_S, COST_SHARE * cost)

    def on_images(self, batch: list[Item], pixels: Any) -> None:
        if not self._live:
            return
        with self._guard():
            self._replace(None)
            final, _image = self._render(pixels, f"{_label(batch)}: final")
            self.progress.print_above(final)  # kept in the terminal's history; the next batch starts afresh
        self._not_before = 0.0

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """A preview that fails turns the preview off with one warning above the bars; the run goes on."""
        try:
            yield
        except Exception as err:  # noqa: BLE001 - the images matter, not their preview
            from rich.text import Text

            self._on = False
            self.progress.show_above(None)
            self.progress.print_above(Text(f"Warning: --preview is off: {type(err).__name__}: {err}"))

    def close(self, completed: bool) -> dict[str, list[dict[str, Any]]]:
        if self._live:
            self._replace(None)
        return {}

    def _replace(self, shown: tuple[Any, Any] | None) -> None:
        old, self._image = self._image, shown[1] if shown else None
        self.progress.show_above(shown[0] if shown else None)
        if old is not None:
            old.cleanup()  # kitty's protocol keeps images in the terminal until deleted; a no-op elsewhere

    def _render(self, pixels: Any, caption: str) -> tuple[Any, Any]:
        """The caption and the picture as rich renderables, the picture rendered once for the terminal's size
        (the bars redraw REDRAWS times a second: re-encoding it each time would cost the run)."""
        from rich.console import Group
        from rich.segment import Segments
        from rich.text import Text
        from textual_image.renderable import Image

        console = self.progress.console
        rows = max(2, min(MAX_ROWS, console.height // 2))
        image = Image(strip_of(pixels), width="auto", height="auto")  # fits the box below, keeping its aspect
        box = console.options.update(width=min(MAX_COLUMNS, console.width), height=rows)
        segments = list(console.render(image, box))
        return Group(Text(caption, style="dim"), Segments(segments)), image
