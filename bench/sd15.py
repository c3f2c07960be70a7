"""GPU levers on an SD 1.5-architecture pipeline with random weights (no download), for speed measurements.

    python bench/sd15.py --device cuda --dtype float16 --steps 30 --budget 330 --json-out out.json \\
        --cases sdpa fuse_qkv fuse_qkv+channels_last autotune-cudagraphs autotune --batches 1 4 8
    python bench/sd15.py --device cpu --steps 3 --cases sdpa math channels_last

Builds the published component configs (bench/sd15-architecture.json), feeds random prompt
embeddings (no tokenizer needed), 512x512, classifier-free guidance on (UNet batch 2), output_type
"latent". it/s = denoising steps per second: (callbacks - 1) / time from the end of the first step to
the end of the last (the device is synchronised at those two points only), median of 3 runs after a
warm-up run. Cases (each lever on top of the previous one where the name says so):

    sdpa                   diffusers' default attention (torch SDPA), the baseline
    math                   SDPA forced to its reference kernel
    fuse_qkv               + unet.fuse_qkv_projections() (one matmul for q, k, v)
    channels_last          + unet.to(memory_format=torch.channels_last), without fuse_qkv
    fuse_qkv+channels_last both
    compile                torch.compile default mode + channels_last (what `compile: default` does)
    reduce-overhead        torch.compile(mode="reduce-overhead", fullgraph=True) + channels_last: CUDA graphs
                           without autotuning (compiles in about the time of the default mode)
    autotune               fuse_qkv + channels_last + torch.compile(mode="max-autotune-no-cudagraphs",
                           fullgraph=True) with the inductor flags of diffusers' "speed up inference" docs
    autotune-cudagraphs    the same with mode="max-autotune" (CUDA graphs)

Eager cases run in one child process; each compiled case runs in its own child, which first times
`sdpa` so every gain is against plain SDPA in the same process. Children run in the order given and
only while `--budget` seconds last (a child still running at the deadline is killed and reported).
The max-autotune cases autotune every matmul and convolution shape of the UNet: on a lent H200
(torch 2.11) that had not finished after 224 s (14 shapes tuned, 4 to 34 s each).
`--batches` adds images/s (whole pipeline call with the VAE decode, `--batch-steps` steps) for the
fastest case of the eager child and of the last child (a compiled UNet recompiles for each new batch
size), where the time left allows. Results are written to --json-out after each child.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ARCH = Path(__file__).with_name("sd15-architecture.json")
EAGER = ("sdpa", "math", "fuse_qkv", "channels_last", "fuse_qkv+channels_last")
COMPILED = {"compile": "default", "reduce-overhead": "reduce-overhead", "autotune": "max-autotune-no-cudagraphs",
            "autotune-cudagraphs": "max-autotune"}


def build(dtype: Any, device: str, tiny: bool = False) -> Any:
    """The pipeline with random weights, created directly on `device` (tiny: a small UNet for smoke tests)."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    arch = json.loads(ARCH.read_text())
    strip = lambda d: {k: v for k, v in d.items() if not k.startswith("_")}  # noqa: E731
    unet_cfg, vae_cfg = strip(arch["unet"]), strip(arch["vae"])
    if tiny:
        unet_cfg.update(block_out_channels=[32, 64, 64, 64], layers_per_block=1, norm_num_groups=8)
        vae_cfg.update(block_out_channels=[16, 16, 16, 16], layers_per_block=1, norm_num_groups=8)
    torch.manual_seed(0)
    with torch.device(device):
        unet, vae = UNet2DConditionModel(**unet_cfg), AutoencoderKL(**vae_cfg)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet,
                                   scheduler=PNDMScheduler(**strip(arch["scheduler"])), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device=device, dtype=dtype)


def _call(pipe: Any, steps: int, size: int, batch: int, callback: Any = None, output_type: str = "latent") -> None:
    import torch

    device = pipe.unet.device
    embeds = torch.randn(batch, 77, 768, generator=torch.Generator("cpu").manual_seed(0)).to(device, pipe.unet.dtype)
    with torch.inference_mode():
        pipe(prompt_embeds=embeds, negative_prompt_embeds=torch.zeros_like(embeds), num_inference_steps=steps,
             height=size, width=size, guidance_scale=7.5, output_type=output_type, callback_on_step_end=callback,
             generator=torch.Generator("cpu").manual_seed(0))


def _sync(pipe: Any) -> None:
    import torch

    if pipe.unet.device.type == "cuda":
        torch.cuda.synchronize()


def loop_rate(pipe: Any, steps: int, size: int, repeats: int = 3) -> float:
    """Denoising steps per second (see the module docstring), median of `repeats` runs after a warm-up."""
    rates = []
    for run in range(repeats + 1):
        marks: list[tuple[int, float]] = []

        def callback(_pipe: Any, i: int, t: Any, kwargs: dict) -> dict:
            if i in (0, _pipe.num_timesteps - 1):
                _sync(pipe)
                marks.append((i, time.perf_counter()))
            return {}

        _call(pipe, steps if run else min(steps, 3), size, 1, callback)
        (i0, t0), (i1, t1) = marks[0], marks[-1]
        if run and i1 > i0:
            rates.append((i1 - i0) / (t1 - t0))
    return statistics.median(rates)


def images_per_s(pipe: Any, steps: int, size: int, batch: int) -> float:
    """Images per second of whole pipeline calls (VAE decode included): mean of 2 runs after a warm-up."""
    _call(pipe, steps, size, batch, output_type="pt")
    _sync(pipe)
    started = time.perf_counter()
    for _ in range(2):
        _call(pipe, steps, size, batch, output_type="pt")
    _sync(pipe)
    return 2 * batch / (time.perf_counter() - started)


def set_eager(pipe: Any, case: str, state: dict) -> None:
    """Put the UNet into the eager case's lever state (fused or not, memory format)."""
    import torch

    fuse = "fuse_qkv" in case
    if fuse != state.get("fused", False):
        (pipe.unet.fuse_qkv_projections if fuse else pipe.unet.unfuse_qkv_projections)()
        state["fused"] = fuse
    layout = torch.channels_last if "channels_last" in case else torch.contiguous_format
    pipe.unet.to(memory_format=layout)


def child(args: argparse.Namespace) -> None:
    """Run the given cases in this process; one `RESULT {json}` line per measurement on stdout."""
    import contextlib

    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def emit(record: dict) -> None:
        print("RESULT " + json.dumps(record), flush=True)

    pipe = build(getattr(torch, args.dtype), args.device, args.tiny)
    state: dict = {}
    rates: dict[str, float] = {}
    cases = list(args.cases)
    if cases[0] in COMPILED:
        cases = ["sdpa"] + cases  # the same-process baseline
    for case in cases:
        started = time.perf_counter()
        if case in COMPILED:
            import torch._inductor.config as inductor

            set_eager(pipe, "fuse_qkv+channels_last" if case.startswith("autotune") else "channels_last", state)
            if case.startswith("autotune"):
                inductor.conv_1x1_as_mm = True
                inductor.coordinate_descent_tuning = True
                inductor.epilogue_fusion = False
                inductor.coordinate_descent_check_all_directions = True
            mode = None if COMPILED[case] == "default" else COMPILED[case]
            pipe.unet = torch.compile(pipe.unet, mode=mode, fullgraph=case != "compile")
            _call(pipe, 3, args.size, 1)  # compile, then CUDA graph recording where the mode records
            _call(pipe, 3, args.size, 1)
            _sync(pipe)
            context: Any = contextlib.nullcontext()
        else:
            set_eager(pipe, case, state)
            context = sdpa_kernel(SDPBackend.MATH) if case == "math" else contextlib.nullcontext()
        prepared = time.perf_counter() - started
        with context:
            rates[case] = loop_rate(pipe, args.steps, args.size)
        base = rates.get("sdpa")
        emit({"case": case, "it_per_s": round(rates[case], 2), "s_per_step": round(1 / rates[case], 4),
              "gain_vs_sdpa": round(rates[case] / base, 3) if base else None,
              "prepare_s": round(prepared, 1), "wall_s": round(time.perf_counter() - started, 1)})
    best = max(rates, key=rates.get)
    if best != "math":
        if best in EAGER:
            set_eager(pipe, best, state)
        for batch in args.batches:
            left = args.deadline - time.time()
            if best in COMPILED and batch != 1 and left < 1.5 * prepared + 20:
                emit({"case": best, "batch": batch, "skipped": f"a recompile for this batch would not fit ({left:.0f} s left)"})
                continue
            started = time.perf_counter()
            rate = images_per_s(pipe, args.batch_steps, args.size, batch)
            emit({"case": best, "batch": batch, "steps": args.batch_steps, "images_per_s": round(rate, 3),
                  "wall_s": round(time.perf_counter() - started, 1)})


def parent(args: argparse.Namespace) -> dict:
    """Run the cases in child processes under the time budget; write and return the results."""
    import diffusers
    import torch

    started = time.time()
    deadline = started + args.budget
    eager = [c for c in args.cases if c in EAGER]
    groups = ([eager] if eager else []) + [[c] for c in args.cases if c in COMPILED]
    out: dict = {"device": args.device, "dtype": args.dtype, "size": args.size, "steps": args.steps,
                 "torch": torch.__version__, "diffusers": diffusers.__version__, "cases": {}, "batches": [],
                 "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
                 "not_run": []}
    for group in groups:
        left = deadline - time.time()
        if left < 30:
            out["not_run"] += [{"case": c, "why": f"budget: {left:.0f} s left"} for c in group]
            continue
        label = "eager" if group == eager else group[0]
        # a compiled case recompiles for each new batch size: images/s only in the last child, with the time left
        batches = [] if group[0] in COMPILED and group is not groups[-1] else args.batches
        command = [sys.executable, __file__, *sys.argv[1:], "--child", "--deadline", str(deadline), "--cases", *group,
                   "--batches", *map(str, batches)]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            lines, _ = proc.communicate(timeout=left)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the child and its compile workers
            lines, _ = proc.communicate()
            out["not_run"].append({"case": label, "why": f"killed at the budget after {left:.0f} s"})
        for line in lines.splitlines():
            if line.startswith("RESULT "):
                record = json.loads(line[7:])
                print(json.dumps(record), file=sys.stderr, flush=True)
                if "batch" in record:
                    out["batches"].append(record)
                else:
                    out["cases"].setdefault(record["case"], []).append({**record, "process": label})
        if proc.returncode not in (0, None) and not any(n["case"] == label for n in out["not_run"]):
            out["not_run"].append({"case": label, "why": f"child exited {proc.returncode}"})
        out["wall_s"] = round(time.time() - started, 1)
        if args.json_out:
            args.json_out.write_text(json.dumps(out, indent=2) + "\n")
    return out


def table(out: dict) -> str:
    """A text table of the results."""
    rows = [f"{out['device_name']}, torch {out['torch']}, diffusers {out['diffusers']}, {out['dtype']}, "
            f"{out['size']}x{out['size']}, CFG (UNet batch 2), {out['steps']} steps",
            f"{'case':<24}{'process':<22}{'it/s':>8}{'vs sdpa':>9}{'prepare s':>11}"]
    for case, records in out["cases"].items():
        for r in records:
            gain = f"{r['gain_vs_sdpa']:.3f}" if r["gain_vs_sdpa"] else "1"
            rows.append(f"{case:<24}{r['process']:<22}{r['it_per_s']:>8.2f}{gain:>9}{r['prepare_s']:>11.1f}")
    for b in out["batches"]:
        rows.append(f"images/s {b['case']} batch {b['batch']}: " + (f"{b['images_per_s']:.3f} ({b['steps']} steps)"
                                                                  if "images_per_s" in b else b["skipped"]))
    rows += [f"not run: {n['case']} ({n['why']})" for n in out["not_run"]]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--cases", "--levers", nargs="+", default=["sdpa"], choices=[*EAGER, *COMPILED])
    parser.add_argument("--batches", type=int, nargs="*", default=[])
    parser.add_argument("--batch-steps", type=int, default=25)
    parser.add_argument("--budget", type=float, default=600, help="seconds for all cases together")
    parser.add_argument("--tiny", action="store_true", help="a small UNet/VAE (smoke tests)")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    out = parent(args)
    print(json.dumps(out, indent=2))
    print(table(out), file=sys.stderr)


if __name__ == "__main__":
    main()
