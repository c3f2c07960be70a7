"""The queue and the worker thread that owns the pipeline: jobs in, batches gathered, progress out.

A job is one request's items. The worker takes the oldest job's batch key and gathers items with
that key — from that job and any later ones — up to --max-batch, waiting a few milliseconds for
more when the batch is not full; jobs with other keys keep their place. Images waiting beyond
--max-queue are refused (QueueFull). Handlers only submit, cancel, interrupt and read progress.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict, deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

from diffcli.plan.items import Item
from diffcli.serve.engine import Engine, Output
from diffcli.serve.errors import Cancelled, QueueFull, ShuttingDown
from diffcli.serve.limits import Limits
from diffcli.step import Step

KEEP_FINISHED = 256  # finished jobs remembered for per-job progress


class _Stop(BaseException):
    """Raised from the step callback to end the running batch (interrupt, shutdown deadline); a
    BaseException so no library `except Exception` swallows it on the way out of the pipeline."""


@dataclass(eq=False)
class Job:
    """One request's items and what became of them."""

    items: list[Item]
    task_id: str = field(default_factory=lambda: f"task({uuid.uuid4().hex[:15]})")
    future: Future = field(default_factory=Future)
    outputs: list[Output] = field(default_factory=list)
    running: int = 0
    interrupted: bool = False
    cancelled: bool = False
    queued_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    batches: list[int] = field(default_factory=list)  # the size of each batch its images ran in

    def __post_init__(self) -> None:
        self.pending: deque[Item] = deque(self.items)

    @property
    def finished(self) -> bool:
        return self.future.done()


@dataclass
class JobResult:
    """A finished job: its images in item order; `interrupted` when an interrupt or shutdown cut it short."""

    outputs: list[Output]
    interrupted: bool


class Worker:
    """One thread, one pipeline: takes batches off the queue, samples them, hands each job its images."""

    def __init__(self, engine: Engine, limits: Limits, log: Callable[[str], None] = lambda line: None) -> None:
        self.engine = engine
        self.limits = limits
        self.log = log
        self._cond = threading.Condition()
        self._jobs: list[Job] = []           # jobs with items not yet started, oldest first
        self._queued = 0                      # their images
        self._batch: list[tuple[Job, Item]] = []
        self._step: Step | None = None
        self._interrupt = False
        self._stopping = False
        self._deadline: float | None = None
        self._by_task: OrderedDict[str, Job] = OrderedDict()
        self._seconds_per_image = 1.0
        self.preview_wanted = False
        self.preview: Any = None
        self._preview_at = 0.0
        self._thread = threading.Thread(target=self._loop, name="diffcli-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # ------------------------------------------------------------------ called by handlers

    def submit(self, job: Job) -> None:
        """Queue a job, or raise QueueFull (with a Retry-After estimate) / ShuttingDown."""
        with self._cond:
            if self._stopping:
                raise ShuttingDown("the server is shutting down")
            if self._queued + len(job.items) > self.limits.max_queue:
                wait = self._seconds_per_image * (self._queued + len(self._batch)) / self.limits.max_batch
                raise QueueFull(f"the queue is full ({self._queued} images waiting, at most {self.limits.max_queue})",
                                retry_after=max(1, round(wait)))
            self._jobs.append(job)
            self._queued += len(job.items)
            self._by_task[job.task_id] = job
            while len(self._by_task) > KEEP_FINISHED and next(iter(self._by_task.values())).finished:
                self._by_task.popitem(last=False)
            self._cond.notify_all()

    def cancel(self, job: Job) -> None:
        """The client went away: its items not yet started are dropped (a running batch finishes)."""
        with self._cond:
            job.cancelled = True
            self._drop_pending(job)
            if job.running == 0 and not job.finished:
                job.future.set_exception(Cancelled("the client closed the connection"))

    def interrupt(self) -> bool:
        """Stop the running batch at its next step; its jobs end with what they have. False when idle."""
        with self._cond:
            self._interrupt = bool(self._batch)
            return self._interrupt

    def stop(self, grace: float) -> None:
        """No new jobs; queued ones fail with ShuttingDown; the running batch has `grace` seconds."""
        with self._cond:
            self._stopping = True
            self._deadline = time.monotonic() + grace
            for job in list(self._jobs):
                job.interrupted = job.running > 0  # cut short: it keeps the images of its running batch
                self._drop_pending(job)
                if job.running == 0 and not job.finished:
                    job.future.set_exception(ShuttingDown("the server is shutting down"))
            self._cond.notify_all()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def progress(self) -> dict[str, Any]:
        """The running batch's first job: step, fraction done, seconds left; queue length."""
        with self._cond:
            job = self._batch[0][0] if self._batch else None
            state = {"job": job.task_id if job else "", "job_count": len(self._jobs) + len({id(j) for j, _ in self._batch}),
                     "interrupted": self._interrupt, "queued_images": self._queued}
            step = self._step
            if job is None:
                return {**state, "progress": 0.0, "eta": None, "step": 0, "steps": 0}
            return {**state, **self._job_progress(job, step)}

    def job_status(self, task_id: str) -> dict[str, Any] | None:
        """One job's state by its task id (A1111's `force_task_id`), or None if unknown."""
        with self._cond:
            job = self._by_task.get(task_id)
            if job is None:
                return None
            active = any(j is job for j, _ in self._batch)
            info = self._job_progress(job, self._step) if active else {"progress": 1.0 if job.finished else 0.0,
                                                                         "eta": None, "step": 0, "steps": 0}
            return {"active": active, "queued": not active and not job.finished and job.running == 0,
                    "completed": job.finished, **info}

    # ------------------------------------------------------------------ the worker thread

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            self._run(batch)

    def _take(self) -> list[tuple[Job, Item]] | None:
        """The next batch: the oldest job's key, gathered from every queued job up to --max-batch."""
        with self._cond:
            while True:
                if self._stopping:
                    return None
                if not self._jobs:
                    self._cond.wait()
                    continue
                head = self._jobs[0]
                key = head.pending[0].batch_key()
                ready = sum(len(j.pending) for j in self._jobs if j.pending[0].batch_key() == key)
                left = head.queued_at + self.limits.wait_s - time.monotonic()
                if ready >= self.limits.max_batch or left <= 0:
                    break
                self._cond.wait(left)
            batch: list[tuple[Job, Item]] = []
            for job in list(self._jobs):
                if job.pending[0].batch_key() != key:
                    continue
                while job.pending and len(batch) < self.limits.max_batch:
                    batch.append((job, job.pending.popleft()))
                    job.running += 1
                if job.started_at is None:
                    job.started_at = time.monotonic()
                if not job.pending:
                    self._jobs.remove(job)
                if len(batch) >= self.limits.max_batch:
                    break
            self._queued -= len(batch)
            for job in {id(j): j for j, _ in batch}.values():
                job.batches.append(len(batch))
            self._batch, self._step, self._interrupt = batch, None, False
            return batch

    def _run(self, batch: list[tuple[Job, Item]]) -> None:
        started = time.monotonic()
        outputs: list[Output] = []
        failure: BaseException | None = None
        interrupted = False
        try:
            outputs = self.engine.sample([item for _, item in batch], self._on_step)
        except _Stop:
            interrupted = True
        except BaseException as err:  # noqa: BLE001 - the jobs get the error; the worker lives on
            failure = err
            self.log(f"batch of {len(batch)} failed: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}")
        finished: list[tuple[Job, Any]] = []
        with self._cond:
            if outputs:
                per_image = (time.monotonic() - started) / len(batch)
                self._seconds_per_image = 0.7 * self._seconds_per_image + 0.3 * per_image
            for (job, _), output in zip(batch, outputs):
                job.outputs.append(output)
            for job in {id(j): j for j, _ in batch}.values():
                job.running = 0
                if failure is not None or interrupted:
                    job.interrupted = job.interrupted or interrupted
                    self._drop_pending(job)
                if not job.pending and not job.finished:
                    finished.append((job, failure))
            self._batch, self._step, self.preview = [], None, None
            self.preview_wanted = False
        for job, error in finished:
            if error is not None:
                job.future.set_exception(error)
            else:
                job.outputs.sort(key=lambda output: output.item.index)
                job.future.set_result(JobResult(job.outputs, job.interrupted))

    def _on_step(self, step: Step) -> None:
        self._step = step
        if self._interrupt or (self._deadline is not None and time.monotonic() > self._deadline):
            raise _Stop()
        if self.preview_wanted and step.sample is not None and time.monotonic() - self._preview_at > 1.0:
            self._preview_at = time.monotonic()
            try:
                self.preview = self.engine.preview(step.sample)
            except Exception:  # noqa: BLE001 - a preview is optional: never fail the batch for one
                self.preview_wanted = False

    def _drop_pending(self, job: Job) -> None:
        """Forget a job's items not yet started (the caller holds the lock)."""
        if job.pending:
            self._queued -= len(job.pending)
            job.pending.clear()
        if job in self._jobs:
            self._jobs.remove(job)

    def _job_progress(self, job: Job, step: Step | None) -> dict[str, Any]:
        in_batch = sum(1 for j, _ in self._batch if j is job)
        fraction = step.call / max(step.total_calls, 1) if step is not None else 0.0
        done = (len(job.outputs) + fraction * in_batch) / max(len(job.items), 1)
        elapsed = time.monotonic() - (job.started_at or time.monotonic())
        eta = elapsed * (1 - done) / done if done > 0 else None
        return {"progress": round(min(done, 1.0), 4), "eta": None if eta is None else round(eta, 3),
                "step": step.step if step is not None else 0, "steps": step.total_steps if step is not None else 0}
