"""The frame sink: every Nth denoising step saved as PNG, encoded and written off the denoising path."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

from diffcli.plan.items import Item
from diffcli.sinks.base import RunInfo
from diffcli.sinks.pixels import sample_to_pixels, to_pil
from diffcli.step import Step

FRAMES_DIR = "frames"
FrameListener = Callable[[Item, int, int, str, Any], None]


def is_frame_step(step: int, total_steps: int, every: int) -> bool:
    """Step (counted from 1) gets a frame: every Nth, plus always the last."""
    return step % every == 0 or step == total_steps


def frame_steps(total_steps: int, every: int) -> list[int]:
    """All steps of a run that get a frame."""
    return [step for step in range(1, total_steps + 1) if is_frame_step(step, total_steps, every)]


def default_every(total_steps: int, frames: int = 20) -> int:
    """An `every` giving about `frames` frames."""
    return max(1, round(total_steps / frames))


def frame_name(item: Item, step: int, timestep: int, kind: str) -> str:
    """`frames/<image>-step0050-t0950-xt.png`."""
    return f"{FRAMES_DIR}/{item.stem}-step{step:04d}-t{timestep:04d}-{kind.replace('_', '')}.png"


class FrameSink:
    """Turns selected steps into frame files through a small bounded writer pool.

    At most `max_pending` frames wait for the writer, so memory does not grow with the number
    of frames. The last step's x_t frame is the final image's own pixels (identical to it);
    every other frame is decoded from the step's tensor. Frames take each item's own size.
    """

    def __init__(self, every: int, kinds: tuple[str, ...], decode: str, listeners: list[FrameListener] | None = None,
                 workers: int = 1, max_pending: int = 4) -> None:
        self.every = every
        self.kinds = kinds
        self.decode = decode
        self.listeners = listeners or []
        self.max_pending = max_pending
        self.entries: list[dict[str, Any]] = []
        self.run: RunInfo | None = None
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="diffcli-frames")
        self._slots = threading.BoundedSemaphore(max_pending)
        self._futures: list[Future] = []
        self._deferred: list[Step] = []

    def start(self, run: RunInfo) -> None:
        self.run = run

    def on_step(self, batch: list[Item], step: Step) -> None:
        if not step.complete or not is_frame_step(step.step, step.total_steps, self.every):
            return
        for kind in self.kinds:
            if kind == "x_t" and step.step == step.total_steps:
                self._deferred.append(step)
                continue
            tensor = step.sample if kind == "x_t" else step.x0
            if tensor is None:
                continue
            assert self.run is not None
            pixels = sample_to_pixels(self.run.pipe, tensor, self.run.latent, self.decode)
            self._submit(batch, step, kind, pixels)

    def on_images(self, batch: list[Item], pixels: Any) -> None:
        """Write the deferred last-step x_t frames from the final images' pixels, and wait for every
        queued frame: the final image, published next, marks the item done (a resumed run skips it)."""
        for step in self._deferred:
            self._submit(batch, step, "x_t", pixels)
        self._deferred = []
        futures, self._futures = self._futures, []
        for future in futures:
            future.result()

    def _reap(self) -> None:
        """Forget finished writes (re-raising a failed one now, not at the end)."""
        pending = []
        for future in self._futures:
            if future.done():
                future.result()
            else:
                pending.append(future)
        self._futures = pending

    def _submit(self, batch: list[Item], step: Step, kind: str, pixels: Any) -> None:
        self._reap()
        timestep = int(round(step.timestep))
        for item, image in zip(batch, pixels):
            frame = image.copy()
            for listener in self.listeners:
                listener(item, step.step, timestep, kind, frame)
            name = frame_name(item, step.step, timestep, kind)
            self._slots.acquire()
            future = self._pool.submit(self._write, name, frame, (item.width, item.height))
            future.add_done_callback(lambda _f: self._slots.release())
            self._futures.append(future)
            self.entries.append({"path": name, "step": step.step, "timestep": timestep, "image_index": item.index,
                                 "kind": kind, "seed": item.seed})

    def _write(self, name: str, pixels: Any, size: tuple[int, int]) -> None:
        from diffcli.sinks.folder import png_writer

        image = to_pil(pixels)
        if image.size != size:
            from PIL import Image

            image = image.resize(size, Image.Resampling.NEAREST)
        assert self.run is not None
        self.run.folder.publish(name, png_writer(image, None), final=False)

    def close(self, completed: bool) -> dict[str, list[dict[str, Any]]]:
        """Wait for every queued frame (finished frames are never dropped); re-raise a write error."""
        self._pool.shutdown(wait=True)
        futures, self._futures = self._futures, []
        for future in futures:
            future.result()
        assert self.run is not None
        written = []
        for entry in self.entries:
            path = self.run.folder.path_of(entry["path"])
            if path.is_file():
                written.append({**entry, "path": str(path)})
        return {"frames": written}
