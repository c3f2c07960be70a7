"""Start-up to first image: where `diffcli txt2img "7" --preset digits-text -n 1` spends its time, vs plain diffusers.

    python bench/startup.py            # 5 alternating repetitions of each side
    python bench/startup.py --quick    # 1 repetition (smoke test)

Both sides run as whole processes with the same work: the built-in digits-text model, DDIM 50 steps,
guidance 4, seed 0, one 64x64 PNG. The plain side is a script doing
`StableDiffusionPipeline.from_pretrained(models/digits-text)` + DDIM + one image + `image.save`. Each
process stamps its timeline (time.time(), so the parent's launch time is on the same clock):

  interpreter   launch -> the first line of the script (Python start-up, site)
  to_load       -> the model load begins (diffcli: CLI import and parse, preset, model checks, the imports of
                torch/diffusers/transformers; plain: those imports)
  load          -> the pipeline is loaded
  first_step    -> the first denoising step's callback (prompt encoding + one UNet call)
  other_steps   -> the last step's callback
  decode        -> the image is in hand (VAE decode, conversion)
  png           -> the PNG is written (diffcli: metadata, atomic write with fsync)
  exit          -> the process has exited (report, JSON, interpreter teardown)

A third side is diffcli as it was before its exit handler `gc.freeze` (diffcli/__main__.py): the same
run with that handler unregistered, so the collector walks torch's objects at interpreter teardown.
diffcli's bytecode is compiled first (`compileall`), as in an installed package.

diffcli's side stamps through wrappers around `load_pipeline`, `StepTracker.after_call` and the PNG
writer (imported before the run starts: the timeline moves those small imports earlier, nothing more).
Medians over the repetitions; ratio = diffcli / plain wall time. Then one `python -X importtime` run of
each command splits the import time by top-level package (self times), and the same for
`diffcli txt2img --help` and `diffcli --help` (no torch). Writes bench/results/startup.json (full runs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "models" / "digits-text"
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
PHASES = ("interpreter", "to_load", "load", "first_step", "other_steps", "decode", "png", "exit")

DIFFCLI = r"""
import time; marks = {"first_line": time.time()}
import json, sys
import diffcli.run.pipelines as pipelines, diffcli.run.sampling as sampling, diffcli.sinks.folder as folder
def stamp(name, func):
    def wrapped(*args, **kwargs):
        marks.setdefault(name + "_start", time.time())
        try:
            return func(*args, **kwargs)
        finally:
            marks[name + "_end"] = time.time()
    return wrapped
pipelines.load_pipeline = stamp("load", pipelines.load_pipeline)
sampling.StepTracker.after_call = stamp("step", sampling.StepTracker.after_call)
folder.write_atomic = stamp("png", folder.write_atomic)
from diffcli.__main__ import main
keep_collector = sys.argv[-1] == "--keep-collector"
sys.argv = ["diffcli", "txt2img", "7", "--preset", "digits-text", "-n", "1", "-o", sys.argv[1], "--overwrite",
            "--json"]
try:
    main()
except SystemExit as e:
    assert not e.code, e.code
if keep_collector:  # as before the cut: a full collection at exit
    import atexit, gc
    atexit.unregister(gc.freeze)
print("MARKS " + json.dumps(marks), file=sys.stderr)
"""

PLAIN = r"""
import time; marks = {"first_line": time.time()}
import json, sys
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
marks["load_start"] = time.time()
pipe = StableDiffusionPipeline.from_pretrained(sys.argv[1])
pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
pipe.set_progress_bar_config(disable=True)
marks["load_end"] = time.time()
def callback(_pipe, i, t, tensors):
    marks.setdefault("step_start", time.time()); marks["step_end"] = time.time()
    return {}
image = pipe("7", num_inference_steps=50, guidance_scale=4.0, generator=[torch.Generator("cpu").manual_seed(0)],
             callback_on_step_end=callback).images[0]
marks["png_start"] = time.time()
image.save(sys.argv[2])
marks["png_end"] = time.time()
print("MARKS " + json.dumps(marks), file=sys.stderr)
"""


def timeline(command: list[str]) -> dict[str, float]:
    """Run one process; its phases in seconds (see the module docstring)."""
    launched = time.time()
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=REPO)
    ended = time.time()
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{result.stderr[-2000:]}")
    marks = json.loads(next(line[6:] for line in result.stderr.splitlines() if line.startswith("MARKS ")))
    points = [launched, marks["first_line"], marks["load_start"], marks["load_end"], marks["step_start"],
              marks["step_end"], marks["png_start"], marks["png_end"], ended]
    phases = {name: points[i + 1] - points[i] for i, name in enumerate(PHASES)}
    phases["total"] = ended - launched
    return phases


def import_breakdown(args: list[str]) -> dict[str, float]:
    """Self import time (ms) by top-level package from `python -X importtime ARGS`, plus the total."""
    result = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True, env=ENV,
                            cwd=REPO)
    by_package: Counter = Counter()
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \| *(\S+)", line)
        if match:
            by_package[match.group(2).split(".")[0]] += int(match.group(1))
    groups = {"torch": ["torch"], "diffusers": ["diffusers"], "transformers": ["transformers", "tokenizers"],
              "scipy+sympy+jinja2 (pulled by diffusers/torch/transformers)": ["scipy", "sympy", "jinja2", "mpmath"],
              "typer+pydantic (CLI)": ["typer", "pydantic", "pydantic_core", "annotated_types"],
              "diffcli": ["diffcli"], "PIL": ["PIL"], "numpy": ["numpy"]}
    out = {name: round(sum(by_package.pop(p, 0) for p in packages) / 1000, 1) for name, packages in groups.items()}
    out["other"] = round(sum(by_package.values()) / 1000, 1)
    out["total"] = round(sum(out.values()), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 repetition")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    reps = 1 if args.quick else args.reps
    tmp = Path(tempfile.mkdtemp(prefix="diffcli-startup-"))
    ours_cmd = [sys.executable, "-c", DIFFCLI, str(tmp / "ours")]
    plain_cmd = [sys.executable, "-c", PLAIN, str(MODEL), str(tmp / "plain.png")]
    before_cmd = [*ours_cmd, "--keep-collector"]
    runs: dict[str, list[dict[str, float]]] = {"diffcli": [], "plain": [], "diffcli_keep_collector": []}
    # the state of an installed package: bytecode compiled (PYTHONDONTWRITEBYTECODE=1 would recompile every start)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "diffcli")], check=True)
    timeline(ours_cmd)  # warm the page cache: every timed run finds the files in memory
    for _ in range(reps):
        runs["diffcli"].append(timeline(ours_cmd))
        runs["plain"].append(timeline(plain_cmd))
        runs["diffcli_keep_collector"].append(timeline(before_cmd))
    medians = {side: {k: round(statistics.median(r[k] for r in records), 3) for k in (*PHASES, "total")}
               for side, records in runs.items()}
    interpreter = [timeline_of_pass() for _ in range(max(3, reps))]
    results = {"reps": reps, "cpus": os.cpu_count(), "phases_s": medians,
               "ratio": round(medians["diffcli"]["total"] / medians["plain"]["total"], 3),
               "ratio_without_gc_freeze": round(medians["diffcli_keep_collector"]["total"] / medians["plain"]["total"],
                                                3),
               "python_c_pass_s": round(statistics.median(interpreter), 3),
               "imports_ms": {
                   "diffcli txt2img": import_breakdown(["-m", "diffcli", "txt2img", "7", "--preset", "digits-text",
                                                        "-n", "1", "-o", str(tmp / "imports"), "--overwrite",
                                                        "--quiet"]),
                   "plain script": import_breakdown(["-c", PLAIN, str(MODEL), str(tmp / "imports.png")]),
                   "diffcli txt2img --help": import_breakdown(["-m", "diffcli", "txt2img", "--help"]),
                   "diffcli --help": import_breakdown(["-m", "diffcli", "--help"])}}
    print(json.dumps(results, indent=2))
    rows = [f"{'phase':<14}{'diffcli s':>11}{'plain s':>10}{'diffcli without gc.freeze at exit':>36}"]
    rows += [f"{k:<14}{medians['diffcli'][k]:>11.3f}{medians['plain'][k]:>10.3f}"
             f"{medians['diffcli_keep_collector'][k]:>36.3f}" for k in (*PHASES, "total")]
    rows.append(f"ratio {results['ratio']} (without gc.freeze at exit {results['ratio_without_gc_freeze']}); "
                f"python -c pass: {results['python_c_pass_s']} s")
    print("\n".join(rows), file=sys.stderr)
    out = args.json_out or (None if args.quick else REPO / "bench" / "results" / "startup.json")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")


def timeline_of_pass() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, env=ENV)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
