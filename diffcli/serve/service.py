"""What every route shares: the door, the worker, the limits; reading a body; running a job for a request."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffcli.plan.items import Item
from diffcli.serve.door import Door, Wanted
from diffcli.serve.errors import Cancelled, RequestError
from diffcli.serve.limits import Limits
from diffcli.serve.worker import Job, JobResult, Worker

DISCONNECT_POLL_S = 0.2


@dataclass
class Service:
    """The server's state, reached from a request as `request.app.state.service`."""

    door: Door
    worker: Worker
    limits: Limits
    key: str | None
    model_id: str                 # what /v1/models and /sdapi/v1/sd-models list
    model_names: tuple[str, ...]  # what a request's `model` may say
    output: Path                  # where `response_format: url` images are kept
    default_sampler: str = ""     # the A1111 label of the server's own scheduler
    quiet: bool = False
    started: float = field(default_factory=time.time)

    def log(self, line: str) -> None:
        """One line on stderr (not with --quiet)."""
        if not self.quiet:
            from diffcli.plan.text import escape_control

            try:
                sys.stderr.write(f"diffcli serve: {escape_control(line)}\n")
                sys.stderr.flush()
            except OSError:
                pass


def service_of(request: Any) -> Service:
    return request.app.state.service


async def read_json(request: Any) -> Any:
    """The body as JSON (its size already bounded by the gate); malformed JSON is a 400."""
    body = await request.body()
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise RequestError("the body is not valid JSON", code="invalid_json") from None


async def plan(request: Any, wanted: Wanted) -> list[Item]:
    """The request's items, made off the event loop (schedule checks and image decoding take a moment)."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(service_of(request).door.items, wanted)


async def run_job(request: Any, items: list[Item], task_id: str | None = None) -> JobResult:
    """Queue the items as one job and wait for it; a client that goes away has its unstarted work dropped."""
    service = service_of(request)
    job = Job(items) if task_id is None else Job(items, task_id=task_id)
    request.state.images = len(items)
    try:
        service.worker.submit(job)
        done = asyncio.wrap_future(job.future)
        while True:
            finished, _ = await asyncio.wait({done}, timeout=DISCONNECT_POLL_S)
            if finished:
                return done.result()
            if await request.is_disconnected():
                service.worker.cancel(job)
                request.state.disconnected = True
                await asyncio.wait({done})  # a running batch still reads the job's init image: let it end
                raise Cancelled("the client closed the connection")
    finally:
        request.state.batches = job.batches
        service.door.release(items)
