"""Environment variables that diffcli or its libraries read as numbers, checked before any library is imported.

huggingface_hub parses its timeouts with `int()` when it is imported, torch takes OMP_NUM_THREADS as
its thread count, and accelerate reads a launcher's WORLD_SIZE, RANK and MASTER_ADDR: a bad value there
would end in a library's exception, a message on stdout or a silent exit. Each is refused here, in one
line (exit 2), naming the variable. No torch here.
"""

from __future__ import annotations

from typing import Mapping

from diffcli.errors import UsageError
from diffcli.plan.text import escape_control

MAX_THREADS = 1024  # the same limit as --threads
MAX_TIMEOUT_S = 86400
MAX_WORLD = 65536
LAUNCH_HINT = "start multi-process runs with torchrun or accelerate launch, or unset WORLD_SIZE and RANK"


def _whole(environ: Mapping[str, str], name: str, low: int, high: int, what: str, hint: str) -> int | None:
    """The variable as an ASCII whole number in low..high; None when unset or empty; UsageError otherwise."""
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return None
    return _number(name, raw, raw, low, high, what, hint)


def _number(name: str, raw: str, part: str, low: int, high: int, what: str, hint: str) -> int:
    text = part.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 12 and low <= int(text) <= high):
        raise UsageError(f"{name}={escape_control(raw[:40])}: expected {what} from {low} to {high}", hint=hint)
    return int(text)


def check_threads(environ: Mapping[str, str]) -> None:
    """OMP_NUM_THREADS: a thread count (or OpenMP's comma-separated list of them), each 1..1024."""
    raw = environ.get("OMP_NUM_THREADS")
    if raw is None or not raw.strip():
        return
    for part in raw.split(","):
        _number("OMP_NUM_THREADS", raw, part, 1, MAX_THREADS, "a whole number of threads", "unset it or use --threads")


def check_launch(environ: Mapping[str, str]) -> None:
    """WORLD_SIZE > 1 only with what a launcher sets: RANK below it, MASTER_ADDR and MASTER_PORT."""
    world = _whole(environ, "WORLD_SIZE", 1, MAX_WORLD, "a whole number of processes", LAUNCH_HINT)
    for name in ("RANK", "LOCAL_RANK"):
        _whole(environ, name, 0, MAX_WORLD - 1, "a process number", LAUNCH_HINT)
    _whole(environ, "LOCAL_WORLD_SIZE", 1, MAX_WORLD, "a whole number of processes", LAUNCH_HINT)
    if world is None or world == 1:
        return
    rank = _whole(environ, "RANK", 0, world - 1, f"a process number below WORLD_SIZE={world}", LAUNCH_HINT)
    if rank is None:
        raise UsageError(f"WORLD_SIZE={world} but RANK is not set", hint=LAUNCH_HINT)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not environ.get(name, "").strip():
            raise UsageError(f"WORLD_SIZE={world} but {name} is not set (no launcher started this process)",
                             hint=LAUNCH_HINT)
    _whole(environ, "MASTER_PORT", 1, 65535, "a port number", LAUNCH_HINT)


def check_environment(environ: Mapping[str, str]) -> None:
    """Every check above, plus huggingface_hub's timeouts (whole seconds, as it parses them at import)."""
    check_threads(environ)
    check_launch(environ)
    for name in ("HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"):
        _whole(environ, name, 1, MAX_TIMEOUT_S, "a whole number of seconds", f"unset {name} or give whole seconds")
