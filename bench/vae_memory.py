"""Peak memory and time of an SD 1.5-architecture VAE decode (or another architecture file's): plain, with tiling,
with slicing.

    python bench/vae_memory.py --size 1024 --batch 2
    python bench/vae_memory.py --arch sd-x4-upscaler --size 2048 --batch 1 --modes plain tiling

Each mode runs in a fresh process (peak RSS is per process); weights are random, shapes are real.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def child(mode: str, size: int, batch: int, arch_name: str) -> None:
    sys.path.insert(0, str(REPO))
    import torch
    from diffusers import AutoencoderKL

    arch = json.loads((REPO / "bench" / f"{arch_name}-architecture.json").read_text())["vae"]
    vae = AutoencoderKL(**{k: v for k, v in arch.items() if not k.startswith("_")}).eval()
    factor = 2 ** (len(arch["block_out_channels"]) - 1)
    if mode == "tiling":
        vae.enable_tiling()
    elif mode == "slicing":
        vae.enable_slicing()
    latents = torch.randn(batch, 4, size // factor, size // factor)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with torch.inference_mode():
        vae.decode(latents).sample
    print(json.dumps({"mode": mode, "seconds": round(time.perf_counter() - started, 2),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "before_decode_mib": round(base / 1024, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--arch", default="sd15", help="bench/<ARCH>-architecture.json (sd15, sd-x4-upscaler)")
    parser.add_argument("--modes", nargs="+", default=["plain", "tiling", "slicing"])
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.size, args.batch, args.arch)
        return
    results = []
    for mode in args.modes:
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--size", str(args.size), "--batch",
                              str(args.batch), "--arch", args.arch], capture_output=True, text=True, env=os.environ)
        if out.returncode != 0:
            raise SystemExit(out.stderr[-2000:])
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    plain = results[0]["peak_rss_mib"]
    for r in results:
        r["rss_ratio_vs_plain"] = round(r["peak_rss_mib"] / plain, 3)
    print(json.dumps({"arch": args.arch, "size": args.size, "batch": args.batch, "results": results}, indent=2))


if __name__ == "__main__":
    main()
