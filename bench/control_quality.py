"""Does the digits-control ControlNet win over the prompt? The judge (diffcli/builtin/judge.py, fitted on the
held-out 20% only) reads images of digits-text steered by the Canny edges of training-split digits while the
prompt names another digit; chance is 10%.

    python bench/control_quality.py                          # shipped models, the digits-control preset
    python bench/control_quality.py --controlnet DIR --per-digit 20 --sheet-dir out/

Prints one JSON document: with the ControlNet (the preset's scale) and without it (scale 0), or at --scales.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diffcli.builtin.quality import contact_sheet, digits_control_quality  # noqa: E402
from diffcli.plan.presets import resolve  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--controlnet", type=Path, help="ControlNet folder (default: the preset's, digits-control)")
    parser.add_argument("--per-digit", type=int, default=20, help="control images per digit")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scales", type=float, nargs="*", help="control scales (default: the preset's and 0)")
    parser.add_argument("--sheet-dir", type=Path)
    args = parser.parse_args()
    preset = resolve("digits-control", None).preset
    controlnet = args.controlnet or Path(preset.controlnet[0])
    results = []
    for scale in args.scales or (preset.control_scale, 0.0):
        started = time.perf_counter()
        res = digits_control_quality(Path(preset.model), controlnet, preset.guidance_scale, args.per_digit,
                                     preset.steps, preset.scheduler, args.device, scale=scale)
        res["seconds"] = round(time.perf_counter() - started, 1)
        if args.sheet_dir:
            args.sheet_dir.mkdir(parents=True, exist_ok=True)
            contact_sheet(res["pixels"], args.per_digit).save(args.sheet_dir / f"digits-control-s{scale:g}.png")
        del res["pixels"]
        results.append(res)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
