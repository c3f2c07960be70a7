"""CPU threads on a possibly shared machine: `--threads`, OMP_NUM_THREADS, and a default that adapts.

Measured on this project's 2-core machine (`python bench/threads.py`): with every core and
OpenMP's default spin-waiting, one other busy process made a run 14.7x slower than one thread;
with passive waiting it was as fast as one thread, but 1.2x slower than spinning when idle.
So at start diffcli looks at how many other tasks are running: none → every core, OpenMP's
defaults; some → passive waiting and the cores they leave free. A neighbour can also start after
that choice (another diffcli in a batch script, a compile): the default count is re-checked between
denoising steps (`ThreadGovernor`, at most every 0.25 s) and drops to the cores left free while
others run, coming back after a second of quiet.
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


def own_running_threads() -> int:
    """Threads of this process that are running or runnable (state R in /proc/self/task/*/stat)."""
    count = 0
    try:
        for task in os.scandir("/proc/self/task"):
            try:
                with open(os.path.join(task.path, "stat"), "rb") as handle:
                    data = handle.read(512)
            except OSError:
                continue
            end = data.rfind(b")")
            count += data[end + 2:end + 3] == b"R"
    except OSError:
        return 1
    return max(count, 1)


def _procs_running() -> int:
    try:
        with open("/proc/stat", "rb") as handle:
            for line in handle:
                if line.startswith(b"procs_running "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def others_now() -> int:
    """Runnable tasks of other processes: /proc/stat's count minus this process's own running threads, the
    fewer of two paired samples (an OpenMP worker that stops spinning between the two reads is not another task)."""
    counts = []
    for _ in range(2):
        before = own_running_threads()
        running = _procs_running()
        counts.append(running - max(before, own_running_threads()))
    return max(0, min(counts))


class ThreadGovernor:
    """The default thread count, re-checked between steps so a neighbour that starts mid-run gets its cores.

    Only the default adapts (not `--threads` or OMP_NUM_THREADS). Others running: the cores they leave
    free (at least 1) once seen on two checks in a row; quiet for `quiet_checks` checks in a row: back to the
    starting count.
    """

    def __init__(self, threads: int, adaptive: bool, every_s: float = 0.25, quiet_checks: int = 4) -> None:
        self.full = threads
        self.current = threads
        self.adaptive = adaptive and threads > 1 and os.environ.get("DIFFCLI_OMP_DEFAULTS", "1") != "0"
        self.every_s = every_s
        self.quiet_checks = quiet_checks
        self._quiet = 0
        self._busy = 0
        self._last = time.monotonic()
        self.lowest = threads

    def check(self) -> None:
        """Between steps: adjust torch's thread count to the running tasks (cheap; throttled)."""
        if not self.adaptive:
            return
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        others = others_now()
        wanted = max(1, min(self.full, available_cpus() - others)) if others else self.full
        if wanted < self.current:
            self._quiet = 0
            self._busy += 1
            if self._busy >= 2:  # seen on two checks in a row: a neighbour, not a passing task
                self._set(wanted)
        elif wanted > self.current:
            self._busy = 0
            self._quiet += 1
            if self._quiet >= self.quiet_checks:
                self._set(wanted)
        else:
            self._quiet = self._busy = 0

    def _set(self, count: int) -> None:
        import torch

        torch.set_num_threads(count)
        self.current = count
        self.lowest = min(self.lowest, count)
