"""Thread defaults on a shared CPU: generation time per candidate, idle, beside one CPU-bound process, and with
a CPU-bound neighbour that starts mid-run (after the start-up check: only the re-check between steps sees it).

Each case is a fresh `diffcli txt2img` process (thread settings must be in place before torch
loads) on the built-in digits-text model; the generation time comes from its --json timings.
Cases alternate, medians of --repeats. Run it on an otherwise idle machine:

    python bench/threads.py [--repeats 3] [--json-out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CANDIDATES = {
    "threads=cores, OpenMP defaults (0.1.0)": {"threads": None, "env": {"DIFFCLI_OMP_DEFAULTS": "0"}},
    "threads=cores, OMP_WAIT_POLICY=PASSIVE": {"threads": None,
                                               "env": {"DIFFCLI_OMP_DEFAULTS": "0", "OMP_WAIT_POLICY": "PASSIVE"}},
    "threads=1": {"threads": 1, "env": {"DIFFCLI_OMP_DEFAULTS": "0"}},
    "diffcli default (adapts to running tasks)": {"threads": None, "env": {}},
}


def one_run(threads: int | None, env: dict[str, str], out: Path, neighbour_after: float | None = None) -> float:
    """Generation seconds of one diffcli process (a busy neighbour started `neighbour_after` s into it)."""
    args = [sys.executable, "-m", "diffcli", "txt2img", "a handwritten digit 7", "--preset", "digits-text",
            "-n", "8", "-b", "8", "--steps", "50", "--no-grid", "--overwrite", "-q", "--json", "-o", str(out)]
    if threads is not None:
        args += ["--threads", str(threads)]
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "DIFFCLI_OMP_DEFAULTS")}
    full_env.update(env, PYTHONPATH=str(REPO))
    if neighbour_after is None:
        result = subprocess.run(args, capture_output=True, text=True, env=full_env, timeout=900, check=True)
        return float(json.loads(result.stdout)["timings"]["generate_s"])
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
    time.sleep(neighbour_after)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        stdout, _ = proc.communicate(timeout=900)
    finally:
        busy.kill()
        busy.wait()
    return float(json.loads(stdout)["timings"]["generate_s"])


def measure(repeats: int, contended: bool, neighbour_after: float | None = None) -> dict[str, float]:
    """Median generation seconds per candidate, optionally beside one busy-looping process (from the start,
    or started `neighbour_after` seconds into each run)."""
    busy = None
    if contended:
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
    samples: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(repeats):
                for name, case in CANDIDATES.items():  # alternate the candidates
                    samples[name].append(one_run(case["threads"], case["env"], Path(tmp), neighbour_after))
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--neighbour-after", type=float, default=3.0,
                        help="seconds into each run when the mid-run neighbour starts (after start-up and load)")
    options = parser.parse_args()
    results = {"idle": measure(options.repeats, False), "one busy process": measure(options.repeats, True),
               "neighbour starts mid-run": measure(options.repeats, False, options.neighbour_after)}
    base_idle = min(results["idle"].values())
    one_busy = results["one busy process"]["threads=1"]
    mid_one = results["neighbour starts mid-run"]["threads=1"]
    print(f"{'candidate':<52} {'idle s':>8} {'vs best':>8} {'busy s':>8} {'vs thr=1':>9} {'mid-run s':>10} "
          f"{'vs thr=1':>9}")
    for name in CANDIDATES:
        idle, busy = results["idle"][name], results["one busy process"][name]
        mid = results["neighbour starts mid-run"][name]
        print(f"{name:<52} {idle:8.2f} {idle / base_idle:8.2f} {busy:8.2f} {busy / one_busy:9.2f} {mid:10.2f} "
              f"{mid / mid_one:9.2f}")
    if options.json_out:
        options.json_out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
