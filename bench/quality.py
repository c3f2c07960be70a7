"""Quality of the built-in digit models, judged by a classifier fitted only on the held-out 20% of
scikit-learn's digits (diffcli/builtin/judge.py), and how close their samples come to training images.

    python bench/quality.py                       # shipped models, presets' scheduler/steps/guidance
    python bench/quality.py --digits DIR --digits-text DIR --device cuda --sheet-dir out/

Prints one JSON document (the judge's own accuracy on real digits, figures per model) and optionally
writes contact sheets.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diffcli.plan.presets import resolve  # noqa: E402
from diffcli.builtin.judge import judge_report  # noqa: E402
from diffcli.builtin.quality import contact_sheet, digits_quality, digits_text_quality  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--digits", type=Path, help="digits pipeline folder (default: the shipped one)")
    parser.add_argument("--digits-text", type=Path, help="digits-text pipeline folder (default: the shipped one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-text", action="store_true")
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--guidance", type=float, nargs="*", help="digits-text guidance scales (default: preset's and 1.0)")
    parser.add_argument("--count", type=int, default=256, help="digits samples")
    parser.add_argument("--per-digit", type=int, default=32, help="digits-text samples per digit and guidance")
    parser.add_argument("--sheet-dir", type=Path)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    results: dict = {"judge": judge_report()}
    results["judge"]["seconds"] = round(time.perf_counter() - started, 1)
    if not args.skip_digits:
        preset = resolve("digits", None).preset
        started = time.perf_counter()
        res = digits_quality(args.digits or Path(preset.model), count=args.count, steps=preset.steps,
                             scheduler=preset.scheduler, device=args.device)
        res["seconds"] = round(time.perf_counter() - started, 1)
        if args.sheet_dir:
            args.sheet_dir.mkdir(parents=True, exist_ok=True)
            contact_sheet(res["pixels"][:64], 16).save(args.sheet_dir / "digits-samples.png")
        del res["pixels"]
        results["digits"] = res
    if not args.skip_text:
        preset = resolve("digits-text", None).preset
        results["digits-text"] = []
        for guidance in args.guidance or [preset.guidance_scale, 1.0]:
            started = time.perf_counter()
            res = digits_text_quality(args.digits_text or Path(preset.model), guidance, per_digit=args.per_digit,
                                      steps=preset.steps, scheduler=preset.scheduler, device=args.device)
            res["seconds"] = round(time.perf_counter() - started, 1)
            if args.sheet_dir:
                args.sheet_dir.mkdir(parents=True, exist_ok=True)
                contact_sheet(res["pixels"], 16).save(args.sheet_dir / f"digits-text-g{guidance:g}.png")
            del res["pixels"]
            results["digits-text"].append(res)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")


if __name__ == "__main__":
    main()
