"""CPU thread count: the measured-fastest default, `--threads`, and OMP_NUM_THREADS."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """CPUs this process may run on (affinity-aware; containers and taskset respected)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads() -> int:
    """One thread per available CPU, shared between the processes of a multi-process launch.

    Measured on a 2-CPU machine: 2 threads beat 1 (bench/run.py, "threads" case); more
    threads than CPUs (oversubscription, e.g. N ranks each taking every core) was far slower.
    """
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    local_ranks = os.environ.get("LOCAL_WORLD_SIZE", "1").strip()
    ranks = int(local_ranks) if local_ranks.isdigit() and int(local_ranks) > 0 else 1
    return max(1, available_cpus() // ranks)


def configure_threads(requested: int | None) -> int:
    """Apply the thread count to torch; returns it."""
    import torch

    count = requested or default_threads()
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count
