"""CPU threads on a possibly shared machine: `--threads`, OMP_NUM_THREADS, and a default that adapts.

Measured on this project's 2-core machine (`python bench/threads.py`): with every core and
OpenMP's default spin-waiting, one other busy process made a run 14.7x slower than one thread;
with passive waiting it was as fast as one thread, but 1.2x slower than spinning when idle.
So at start diffcli looks at how many other tasks are running: none → every core, OpenMP's
defaults; some → passive waiting and the cores they leave free.
"""

from __future__ import annotations

import os
import time

_BUSY_ENV = "DIFFCLI_BUSY_CPUS"  # set by prepare_openmp() for this process's later thread choice


def other_running_tasks(samples: int = 3, interval: float = 0.005) -> int:
    """Runnable tasks besides this one (Linux /proc/stat `procs_running`, fewest of a few samples)."""
    counts = []
    for _ in range(samples):
        try:
            with open("/proc/stat", "rb") as handle:
                for line in handle:
                    if line.startswith(b"procs_running "):
                        counts.append(int(line.split()[1]))
                        break
        except (OSError, ValueError):
            return 0
        time.sleep(interval)
    return max(0, min(counts) - 1) if counts else 0


def prepare_openmp() -> None:
    """Before torch loads: on a busy machine, OpenMP waits passively (unless the user chose).

    `DIFFCLI_OMP_DEFAULTS=0` leaves OpenMP and the thread count alone (for measuring).
    """
    if os.environ.get("DIFFCLI_OMP_DEFAULTS", "1") == "0" or "OMP_WAIT_POLICY" in os.environ:
        return
    busy = other_running_tasks()
    if busy:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        os.environ[_BUSY_ENV] = str(busy)


def available_cpus() -> int:
    """CPUs this process may run on (affinity-aware; containers and taskset respected)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads() -> int:
    """One thread per available CPU left free by other running tasks, shared between local ranks.

    Oversubscription (N ranks each taking every core, or a busy neighbour) was far slower.
    """
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    local_ranks = os.environ.get("LOCAL_WORLD_SIZE", "1").strip()
    ranks = int(local_ranks) if local_ranks.isdigit() and int(local_ranks) > 0 else 1
    busy = os.environ.get(_BUSY_ENV, "0")
    free = available_cpus() - (int(busy) if busy.isdigit() else 0)
    return max(1, max(1, free) // ranks)


def configure_threads(requested: int | None) -> int:
    """Apply the thread count to torch; returns it."""
    import torch

    count = requested or default_threads()
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count
