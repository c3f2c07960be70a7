"""Correctness on a GPU: every family's tiny pipeline, the built-in models and the editing commands run on CUDA
through the real CLI (`python -m diffcli ... --device cuda`), each txt2img image compared with the plain
diffusers pipeline on the same device, called with `torch.Generator("cpu").manual_seed(seed + i)`.

Prints one line per case and writes `gpu-check.json` (max |difference| in 8-bit levels per family and dtype; rc
and files for the editing commands). CPU runs of the same comparisons are in the test suite; this is what only
a GPU shows (device placement, dtype casts, generators, CUDA kernels). Lent machine (diffusers travels as a
wheel, see /work/.library/device/README.md):

    run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=480)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPT = "a cat playing bass"
STEPS, SEED = 3, 5


def build(root: Path) -> dict[str, tuple[Path, int | None]]:
    """family → (tiny pipeline folder, size asked for or None: the family's default)."""
    from tests import tiny, tiny_families as tf

    made = {"sd": (tiny.build_tiny_sd(root / "sd"), 32), "sdxl": (tiny.build_tiny_sd(root / "sdxl", xl=True), 32),
            "sd-inpaint": (tiny.build_tiny_sd(root / "sd-inpaint", inpaint=True), 32),
            "controlnet": (tiny.build_tiny_controlnet(root / "controlnet"), None),
            "upscale-x4": (tiny.build_tiny_upscaler(root / "upscale-x4", scale=4), None),
            "upscale-x2": (tiny.build_tiny_upscaler(root / "upscale-x2", scale=2), None),
            "sd3": (tf.build_tiny_sd3(root / "sd3"), 32), "flux": (tf.build_tiny_flux(root / "flux"), 32),
            "flux-schnell": (tf.build_tiny_flux(root / "flux-schnell", guidance_embeds=False), 32),
            "chroma": (tf.build_tiny_chroma(root / "chroma"), 32),
            "pixart-sigma": (tf.build_tiny_pixart_sigma(root / "pixart"), None),
            "sana": (tf.build_tiny_sana(root / "sana"), 64), "lumina2": (tf.build_tiny_lumina2(root / "lumina2"), None)}
    from diffcli.plan.resources import builtin_model

    made["digits-text"] = (builtin_model("digits-text"), None)
    made["digits-flow"] = (builtin_model("digits-flow"), None)
    return made


def cli(*args: str) -> tuple[int, dict, str]:
    done = subprocess.run([sys.executable, "-m", "diffcli", *args, "--json", "--quiet"], capture_output=True,
                          text=True, timeout=300)
    try:
        doc = json.loads(done.stdout) if done.stdout.strip() else {}
    except ValueError:
        doc = {}
    return done.returncode, doc, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""


DEVICE = "cuda"


def compare(name: str, folder: Path, size: int | None, dtype: str, out: Path) -> dict:
    import numpy as np
    import torch
    from diffusers import DiffusionPipeline
    from PIL import Image

    size_args = [] if size is None else ["--width", str(size), "--height", str(size)]
    started = time.perf_counter()
    code, doc, err = cli("txt2img", PROMPT, "--model", str(folder), "--steps", str(STEPS), "--seed", str(SEED),
                         "-n", "2", "-b", "2", *size_args, "--device", DEVICE, "--dtype", dtype,
                         "-o", str(out / f"{name}-{dtype}"))
    result = {"case": f"txt2img {name} {dtype}", "rc": code, "seconds": round(time.perf_counter() - started, 1)}
    if code != 0:
        return {**result, "error": err}
    pipe = DiffusionPipeline.from_pretrained(folder, torch_dtype=getattr(torch, dtype)).to(DEVICE)
    pipe.set_progress_bar_config(disable=True)
    extra = {} if size is None else {"width": size, "height": size}
    worst = 0
    for i, entry in enumerate(doc["images"]):
        theirs = pipe(PROMPT, num_inference_steps=STEPS, output_type="np",
                      generator=torch.Generator("cpu").manual_seed(SEED + i), **extra).images[0]
        theirs = (np.clip(theirs, 0, 1) * 255).round().astype(int)
        ours = np.asarray(Image.open(entry["path"]).convert("RGB" if theirs.shape[-1] == 3 else "L"), dtype=int)
        ours = ours.reshape(theirs.shape)
        worst = max(worst, int(np.abs(ours - theirs).max()))
    del pipe
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    return {**result, "device": doc.get("device"), "dtype": doc.get("dtype"), "max_diff": worst}


def editing(models: dict[str, tuple[Path, int | None]], out: Path) -> list[dict]:
    """The other commands on CUDA: exit 0 and the files they promise."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    image, mask = out / "init.png", out / "mask.png"
    Image.new("RGB", (32, 32), (120, 60, 200)).save(image)
    half = Image.new("L", (32, 32), 0)
    half.paste(255, (0, 0, 16, 32))
    half.save(mask)
    sd, flux = str(models["sd"][0]), str(models["flux"][0])
    size = ["--width", "32", "--height", "32", "--steps", "4", "--device", DEVICE]
    cases = {
        "img2img sd": ["img2img", str(image), PROMPT, "--model", sd, *size],
        "img2img flux": ["img2img", str(image), PROMPT, "--model", flux, *size],
        "inpaint sd (4 channels)": ["inpaint", str(image), str(mask), PROMPT, "--model", sd, *size],
        "inpaint sd-inpaint (9 channels)": ["inpaint", str(image), str(mask), PROMPT, "--model",
                                            str(models["sd-inpaint"][0]), *size],
        "inpaint flux": ["inpaint", str(image), str(mask), PROMPT, "--model", flux, *size],
        "controlnet sd": ["txt2img", PROMPT, "--model", sd, *size, "--controlnet", str(models["controlnet"][0]),
                          "--control-image", str(image)],
        "controlnet inpaint sd": ["inpaint", str(image), str(mask), PROMPT, "--model", sd, *size, "--controlnet",
                                  str(models["controlnet"][0]), "--control-image", str(image)],
        "upscale x4": ["upscale", str(image), PROMPT, "--model", str(models["upscale-x4"][0]), "--steps", "4",
                       "--device", DEVICE],
        "upscale x2": ["upscale", str(image), PROMPT, "--model", str(models["upscale-x2"][0]), "--steps", "4",
                       "--device", DEVICE],
        "hires sd lanczos": ["txt2img", PROMPT, "--model", sd, *size, "--hires", "2"],
        "hires sd latent": ["txt2img", PROMPT, "--model", sd, *size, "--hires", "2", "--hires-upscaler", "latent"],
        "denoise-trace flux": ["denoise-trace", "--prompt", PROMPT, "--model", flux, *size, "--every", "1",
                               "--show", "both"],
        "step cache flux": ["txt2img", PROMPT, "--model", flux, *size, "--set", "step_cache=2", "--steps", "8"],
        "step cache sd3": ["txt2img", PROMPT, "--model", str(models["sd3"][0]), *size, "--set", "step_cache=2",
                           "--steps", "8"],
        "vary digits-text": ["txt2img", "a handwritten digit 7", "--preset", "digits-text", "--device", DEVICE,
                             "--vary", "scheduler=ddim,euler", "--vary", "steps=4,8"],
        "digits-flow bf16": ["txt2img", "a handwritten digit 3", "--preset", "digits-flow", "--device", DEVICE,
                             "--dtype", "bfloat16", "-n", "4"],
    }
    results = []
    for name, args in cases.items():
        started = time.perf_counter()
        code, doc, err = cli(*args, "-o", str(out / name.replace(" ", "-").replace("(", "").replace(")", "")))
        files = [e["path"] for e in doc.get("images", [])]
        ok = code == 0 and files and all(os.path.isfile(p) for p in files)
        results.append({"case": name, "rc": code, "images": len(files), "ok": bool(ok),
                        "frames": len(doc.get("frames", [])), "seconds": round(time.perf_counter() - started, 1),
                        **({"error": err} if code else {})})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/results"))
    parser.add_argument("--work", default="/tmp/gpu-check")
    parser.add_argument("--device", default="cuda", help="cpu: try the script itself here")
    parser.add_argument("--only", nargs="*", help="these families only (and no editing cases)")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0) if DEVICE == 'cuda' else DEVICE}", flush=True)
    models = build(work / "models")
    results = []
    for name, (folder, size) in models.items():
        if name in ("sd-inpaint", "controlnet", "upscale-x4", "upscale-x2") or (args.only and name not in args.only):
            continue
        for dtype in ("float32", "bfloat16"):
            row = compare(name, folder, size, dtype, work / "runs")
            results.append(row)
            print(json.dumps(row), flush=True)
    for row in [] if args.only else editing(models, work / "edit"):
        results.append(row)
        print(json.dumps(row), flush=True)
    (out / "gpu-check.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
