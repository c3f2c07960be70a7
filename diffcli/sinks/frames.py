"""Frame sink: every Nth denoising step saved as PNG, encoded and written off the denoising path."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffcli.sinks.pixels import sample_to_pixels, to_pil
from diffcli.sinks.folder import save_png
from diffcli.step import Step


def is_frame_step(step: int, total_steps: int, every: int) -> bool:
    """Step (counted from 1) gets a frame: every Nth, plus always the last."""
    return step % every == 0 or step == total_steps


def frame_steps(total_steps: int, every: int) -> list[int]:
    """All steps of a run that get a frame."""
    return [step for step in range(1, total_steps + 1) if is_frame_step(step, total_steps, every)]


def default_every(total_steps: int, frames: int = 20) -> int:
    """An `every` giving about `frames` frames."""
    return max(1, round(total_steps / frames))


@dataclass(frozen=True)
class FrameRecord:
    """One written frame (what the --json report lists)."""

    path: str
    step: int
    timestep: int
    image_index: int
    kind: str
    seed: int


class FrameSink:
    """Turns selected `Step`s of a batch into frame files through a small bounded writer pool.

    Memory stays bounded: at most `max_pending` frames wait for the writer; nothing is
    kept after it is written. The last step's x_t frame is written from the final image's
    own pixels, so it is identical to it.
    """

    def __init__(self, folder: Path, every: int, kinds: tuple[str, ...], pipe: Any,
                 latent: bool, decode: str, overwrite: bool, size: tuple[int, int] | None,
                 workers: int = 1, max_pending: int = 4) -> None:
        self.folder = folder
        self.every = every
        self.kinds = kinds
        self.pipe = pipe
        self.latent = latent
        self.decode = decode
        self.overwrite = overwrite
        self.size = size
        self.records: list[FrameRecord] = []
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="diffcli-frames")
        self._slots = threading.BoundedSemaphore(max_pending)
        self._futures: list[Future] = []
        self._batch: list[tuple[int, int, str]] = []
        self._deferred: list[tuple[str, Step]] = []

    def start_batch(self, items: list[tuple[int, int, str]]) -> None:
        """(image_index, seed, stem) of each image in the coming batch."""
        self._batch = items
        self._deferred = []

    def on_step(self, step: Step) -> None:
        if not step.complete or not is_frame_step(step.step, step.total_steps, self.every):
            return
        for kind in self.kinds:
            if kind == "x_t" and step.step == step.total_steps:
                self._deferred.append((kind, step))
                continue
            tensor = step.sample if kind == "x_t" else step.x0
            if tensor is None:
                continue
            pixels = sample_to_pixels(self.pipe, tensor, self.latent, self.decode)
            self._submit(step, kind, pixels)

    def finish_batch(self, final_pixels: Any) -> None:
        """Write the deferred last-step frames from the final images' pixels."""
        for kind, step in self._deferred:
            self._submit(step, kind, final_pixels)
        self._deferred = []

    def _reap(self) -> None:
        """Forget finished writes (re-raising a failed one now, not at the end)."""
        pending = []
        for future in self._futures:
            if future.done():
                future.result()
            else:
                pending.append(future)
        self._futures = pending

    def _submit(self, step: Step, kind: str, pixels: Any) -> None:
        self._reap()
        for (image_index, seed, stem), image in zip(self._batch, pixels):
            name = f"{stem}-step{step.step:04d}-t{int(round(step.timestep)):04d}-{kind.replace('_', '')}.png"
            record = FrameRecord(str(self.folder / name), step.step, int(round(step.timestep)), image_index, kind, seed)
            self._slots.acquire()
            future = self._pool.submit(self._write, Path(record.path), image.copy())
            future.add_done_callback(lambda _f: self._slots.release())
            self._futures.append(future)
            self.records.append(record)

    def _write(self, path: Path, pixels: Any) -> None:
        image = to_pil(pixels)
        if self.size is not None and image.size != self.size:
            from PIL import Image

            image = image.resize(self.size, Image.Resampling.NEAREST)
        save_png(path, image, None, self.overwrite)

    def close(self) -> None:
        """Wait for every queued frame (finished frames are never dropped); re-raise a write error."""
        self._pool.shutdown(wait=True)
        futures, self._futures = self._futures, []
        for future in futures:
            future.result()
