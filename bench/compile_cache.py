"""`compile:` across processes: start-to-first-image with a cold compile cache, then warm, vs no compile.

    python bench/compile_cache.py               # digits-text, 3 rounds
    python bench/compile_cache.py --rounds 1    # quicker
    python bench/compile_cache.py --device cuda --preset sd15-architecture-folder ...   # any preset/model

Each round uses a fresh, empty compile cache folder (DIFFCLI_COMPILE_CACHE; TORCHINDUCTOR_CACHE_DIR
unset) and runs three whole `diffcli txt2img ... -n 1 --json` processes, in this order: without
compile, with `compile: default` (cold: compiles and fills the cache), and the same again (warm: loads
the compiled graphs and kernels). Reported: the process's wall time (start to first image written),
the first batch's time from --json (`first_batch_s`: sampling, including compilation), and the FX-graph
cache hits and misses diffcli reports; medians over the rounds. Writes bench/results/compile_cache.json
(default runs).
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


def run(args: argparse.Namespace, cache: Path, out: Path, compile_mode: str | None) -> dict:
    command = [sys.executable, "-m", "diffcli", "txt2img", args.prompt, "--preset", args.preset, "-n", "1",
               "-o", str(out), "--overwrite", "--no-grid", "--quiet", "--json", "--threads", str(args.threads)]
    if args.device:
        command += ["--device", args.device]
    if compile_mode:
        command += ["--set", f"compile={compile_mode}"]
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env.update(PYTHONPATH=str(REPO), DIFFCLI_COMPILE_CACHE=str(cache))
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)}: exit {result.returncode}: {result.stderr.strip()[-400:]}")
    report = json.loads(result.stdout)
    return {"wall_s": round(wall, 2), "first_batch_s": report["timings"]["first_batch_s"],
            **{k: v for k, v in report.get("compile_cache", {}).items() if k != "folder"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--preset", default="digits-text")
    parser.add_argument("--prompt", default="a handwritten digit 7")
    parser.add_argument("--mode", default="default", help="the compile: value (default | max-autotune | ...)")
    parser.add_argument("--device")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    cases: dict[str, list[dict]] = {"no compile": [], "compile, cold cache": [], "compile, warm cache": []}
    with tempfile.TemporaryDirectory(prefix="diffcli-compile-bench-") as tmp:
        for number in range(args.rounds):
            cache = Path(tmp) / f"cache-{number}"
            for case, mode in zip(cases, (None, args.mode, args.mode)):
                cases[case].append(run(args, cache, Path(tmp) / "out", mode))
                print(f"round {number + 1} {case}: {json.dumps(cases[case][-1])}", file=sys.stderr, flush=True)
    summary = {case: {key: statistics.median(r[key] for r in records) for key in records[0]}
               for case, records in cases.items()}
    cold, warm = summary["compile, cold cache"]["wall_s"], summary["compile, warm cache"]["wall_s"]
    results = {"preset": args.preset, "mode": args.mode, "device": args.device or "auto", "threads": args.threads,
               "rounds": args.rounds, "median": summary, "runs": cases,
               "warm_over_cold_wall": round(warm / cold, 3),
               "warm_over_no_compile_wall": round(warm / summary["no compile"]["wall_s"], 3)}
    print(json.dumps(results, indent=2))
    for case, values in summary.items():
        print(f"{case:>20}: wall {values['wall_s']:.2f} s, first batch {values['first_batch_s']:.2f} s",
              file=sys.stderr)
    out = args.json_out or (REPO / "bench" / "results" / "compile_cache.json" if args.preset == "digits-text"
                            and args.rounds >= 3 else None)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
