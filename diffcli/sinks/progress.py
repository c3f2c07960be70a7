"""The progress sink: rich bars on a terminal, plain lines in a pipe, nothing with --quiet."""

from __future__ import annotations

import sys
import time
from typing import Any

from diffcli.plan.items import Item
from diffcli.sinks.base import RunInfo
from diffcli.step import Step


class ProgressSink:
    """Images done, and model calls of the current batch, on stderr."""

    def __init__(self, quiet: bool, label: str = "images") -> None:
        self.quiet = quiet
        self.label = label
        self.total = 0
        self.done = 0
        self._bar: Any = None
        self._images_task: Any = None
        self._steps_task: Any = None
        self._batch_first: int | None = None
        self.refresh_per_second = 10.0  # how often the bars (and what is shown above them) are redrawn
        self._started = time.perf_counter()

    def start(self, run: RunInfo) -> None:
        self.total = run.total
        if not self.quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

            self._bar = _bars_class()(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=Console(stderr=True), transient=False,
                                      refresh_per_second=self.refresh_per_second)
            self._bar.start()
            self._images_task = self._bar.add_task(self.label, total=self.total)
            self._steps_task = self._bar.add_task("steps", total=1)

    def on_step(self, batch: list[Item], step: Step) -> None:
        if self._bar is None:
            return
        if self._batch_first != batch[0].index:
            self._batch_first = batch[0].index
            first = self.done + 1
            self._bar.reset(self._steps_task, total=step.total_calls,
                            description=f"steps (images {first}-{first + len(batch) - 1})")
        self._bar.update(self._steps_task, completed=step.call, total=step.total_calls)

    def on_images(self, batch: list[Item], pixels: Any) -> None:
        self.done += len(batch)
        if self._bar is not None:
            self._bar.update(self._images_task, completed=self.done)
        elif not self.quiet:
            elapsed = time.perf_counter() - self._started
            print(f"{self.label} {self.done}/{self.total} done ({elapsed:.1f}s)", file=sys.stderr, flush=True)

    @property
    def console(self) -> Any:
        """The bars' rich console on stderr (None without bars)."""
        return self._bar.console if self._bar is not None else None

    def show_above(self, renderable: Any) -> None:
        """Keep `renderable` drawn just above the bars, redrawn with them (None removes it)."""
        if self._bar is not None:
            self._bar.above = renderable
            self._bar.refresh()

    def print_above(self, renderable: Any) -> None:
        """Print `renderable` once above the bars (it scrolls away with the terminal's history)."""
        if self._bar is not None:
            self._bar.console.print(renderable)

    def close(self, completed: bool) -> dict[str, list[dict[str, Any]]]:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        return {}


def _bars_class() -> Any:
    """rich's Progress with one extra renderable (`above`, e.g. the live preview) drawn over its bars."""
    from rich.progress import Progress

    class Bars(Progress):
        above: Any = None

        def get_renderables(self) -> Any:
            if self.above is not None:
                yield self.above
            yield from super().get_renderables()

    return Bars
