"""Multi-process runs under `accelerate launch` or `torchrun`: split the items, gather the reports.

Items carry their own seeds and names, so outputs do not depend on the number of processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

from diffcli.errors import DiffcliError, ExitCode

T = TypeVar("T")


def launched() -> bool:
    """True when a launcher started several processes (WORLD_SIZE > 1)."""
    size = os.environ.get("WORLD_SIZE", "1").strip()
    return size.isdigit() and int(size) > 1


@dataclass
class Ranks:
    """This process's place in a multi-process run."""

    state: Any
    rank: int
    world: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        self.state.wait_for_everyone()

    def share(self, items: list[T]) -> list[T]:
        """This rank's contiguous share of `items` (accelerate's split_between_processes)."""
        with self.state.split_between_processes(items) as mine:
            return list(mine)

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order, on every rank."""
        from accelerate.utils import gather_object

        return gather_object([value])


_current: list[Ranks | None] = []


def current() -> Ranks | None:
    """The multi-process context, set up once (gloo on CPU, one GPU per rank on CUDA); None for one process."""
    if _current:
        return _current[0]
    ranks = None
    if launched():
        import torch
        from accelerate import PartialState

        # Without cpu=True, PartialState on a CPU-only host silently runs every rank as a lone process.
        state = PartialState(cpu=not torch.cuda.is_available())
        import atexit

        atexit.register(_destroy_process_group)  # else gloo's threads die in interpreter shutdown (SIGABRT)
        ranks = Ranks(state, state.process_index, state.num_processes)
    _current.append(ranks)
    return ranks


def _destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device_for_rank(requested: str) -> str:
    """`auto` or a bare `cuda` under a multi-GPU launch → this rank's own GPU (`cuda:N` is kept)."""
    ranks = current()
    if ranks is None or requested not in ("auto", "cuda"):
        return requested
    device = ranks.state.device
    return str(device) if device.type == "cuda" else requested


class RankFailed(DiffcliError):
    """Another rank (or this one) failed; carries that rank's exit code."""

    def __init__(self, rank: int, message: str, exit_code: int) -> None:
        super().__init__(f"rank {rank}: {message}")
        self.exit_code = ExitCode(exit_code) if exit_code in ExitCode._value2member_map_ else ExitCode.INTERNAL
