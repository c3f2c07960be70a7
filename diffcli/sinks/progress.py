"""Progress on stderr: rich bars on a terminal, plain lines in a pipe, nothing with --quiet."""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """Images done and steps of the current batch."""

    def __init__(self, total_images: int, quiet: bool, label: str = "images") -> None:
        self.total_images = total_images
        self.done_images = 0
        self.quiet = quiet
        self.label = label
        self.interactive = not quiet and sys.stderr.isatty()
        self._bar: Any = None
        self._images_task: Any = None
        self._steps_task: Any = None
        self._started = time.perf_counter()

    def __enter__(self) -> "Progress":
        if self.interactive:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), console=Console(stderr=True), transient=False)
            self._bar.__enter__()
            self._images_task = self._bar.add_task(self.label, total=self.total_images)
            self._steps_task = self._bar.add_task("steps", total=1)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def start_batch(self, first: int, count: int) -> None:
        """A batch of `count` images starts at image index `first`."""
        if self._bar is not None:
            self._bar.reset(self._steps_task, total=None, description=f"steps (images {first + 1}-{first + count})")

    def advance_step(self, call: int, total_calls: int) -> None:
        """The loop made model call `call` of `total_calls`."""
        if self._bar is not None:
            self._bar.update(self._steps_task, completed=call, total=total_calls)

    def finish_batch(self, count: int) -> None:
        self.done_images += count
        if self._bar is not None:
            self._bar.update(self._images_task, completed=self.done_images)
        elif not self.quiet:
            elapsed = time.perf_counter() - self._started
            print(f"{self.label} {self.done_images}/{self.total_images} done ({elapsed:.1f}s)", file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        """A narration line on stderr (suppressed by --quiet)."""
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=sys.stderr, flush=True)
