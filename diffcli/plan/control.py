"""ControlNet, planned: the settings checked, the control images read like init images and attached. No torch.

A control image is an untrusted file read with the init image's bounds (plan/init_image.py), hashed,
converted to RGB and fitted to the run's width x height as the init image is (cover + centre crop,
Lanczos); with `control: canny` its edges are then found with OpenCV's Canny (thresholds 100 and 200,
A1111's defaults) and drawn white on black. One control image per ControlNet.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffcli.errors import UsageError
from diffcli.plan.init_image import decode, fit, read_bytes, sha256_hex
from diffcli.plan.keys import MAX_CONTROLNETS  # noqa: F401 - where the settings' bound lives
from diffcli.plan.text import escape_control

WHAT = "--control-image"
CANNY_THRESHOLDS = (100, 200)  # A1111's Canny defaults (its Threshold A and B)
MODULES = ("none", "canny")
OPENCV_HINT = 'install the control extra: pip install -e ".[control]" (opencv-python-headless)'


@dataclass(frozen=True)
class ControlSpec:
    """The ControlNets of a run: models, their control images (by sha256) and when they act."""

    models: tuple[str, ...]
    images: tuple[str, ...]
    sha256: tuple[str, ...]
    module: str = "none"       # the preprocessing: none | canny
    start: float = 0.0         # fraction of the steps at which the ControlNets start acting ...
    end: float = 1.0           # ... and stop


def opencv_available() -> bool:
    """True when OpenCV (the control extra) can be imported."""
    return importlib.util.find_spec("cv2") is not None


def check_control(preset: Any) -> None:
    """The settings alone (exit 2): as many control images as ControlNets, start before end, no hires, step
    cache or OpenVINO, OpenCV for canny."""
    nets, images = len(preset.controlnet), len(preset.control_image)
    if not nets:
        if images:
            raise UsageError(f"--control-image: {images} control image(s) but no --controlnet",
                             hint="give the ControlNet model with --controlnet MODEL")
        return
    if nets != images:
        raise UsageError(f"{_count(nets, 'ControlNet')} (--controlnet or the preset's controlnet) but "
                         f"{_count(images, 'control image')}: give one control image per ControlNet",
                         hint="repeat --control-image in the order of the ControlNets")
    if preset.control_start >= preset.control_end:
        raise UsageError(f"--control-start {preset.control_start:g} must be below --control-end "
                         f"{preset.control_end:g}")
    for refused, why in ((preset.hires, "--hires"), (preset.step_cache > 1, "--step-cache"),
                         (preset.backend != "torch", "--backend openvino")):
        if refused:
            raise UsageError(f"--controlnet: not with {why} (the ControlNet pipelines do not run it)",
                             hint=f"drop {why} for ControlNet runs")
    if preset.control == "canny" and not opencv_available():
        raise UsageError("--control canny needs OpenCV, which is not installed", hint=OPENCV_HINT)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def read_control_images(preset: Any) -> tuple[str, ...]:
    """Check the settings, then read and decode each control image once (before any model loads); their sha256."""
    check_control(preset)
    digests = []
    for path in preset.control_image:
        data = read_bytes(path, WHAT)
        decode(data, escape_control(path), WHAT)
        digests.append(sha256_hex(data))
    return tuple(digests)


@functools.lru_cache(maxsize=16)
def load_control_image(path: str, sha256: str, module: str, width: int, height: int) -> Any:
    """A control image as the ControlNet gets it (RGB, width x height, preprocessed); refused if the file changed
    since planning."""
    data = read_bytes(path, WHAT)
    if sha256 and sha256_hex(data) != sha256:
        raise UsageError(f"{WHAT}: {escape_control(path)} changed while the run was starting")
    image = fit(decode(data, escape_control(path), WHAT), width, height, "RGB")
    return canny(image) if module == "canny" else image


def canny(image: Any) -> Any:
    """OpenCV's Canny edges of an RGB image (A1111's thresholds), white on black, as RGB."""
    import numpy as np
    from PIL import Image

    try:
        import cv2
    except ImportError:
        raise UsageError("--control canny needs OpenCV, which is not installed", hint=OPENCV_HINT) from None
    edges = cv2.Canny(np.asarray(image.convert("RGB")), *CANNY_THRESHOLDS)
    return Image.fromarray(np.stack([edges] * 3, axis=-1), "RGB")


def control_name(model: str) -> str:
    """What metadata calls a ControlNet: a local folder by its name, a hub id as is; no `,` `:` or quotes
    (A1111 splits its ControlNet fields on them)."""
    path = Path(model)
    name = path.name if path.is_absolute() or model.startswith((".", "~")) else model
    return "".join("_" if char in ',:"\\' else char for char in name)


def a1111_units(spec: ControlSpec, scale: float) -> dict[str, str]:
    """A1111 sd-webui-controlnet's infotext fields: `ControlNet 0: "Module: canny, Model: ..., Weight: 1.0, ..."`."""
    units = {}
    for index, model in enumerate(spec.models):
        fields = {"Module": spec.module, "Model": control_name(model), "Weight": float(scale),
                  "Resize Mode": "Crop and Resize", "Guidance Start": float(spec.start),
                  "Guidance End": float(spec.end)}
        if spec.module == "canny":
            fields.update({"Threshold A": CANNY_THRESHOLDS[0], "Threshold B": CANNY_THRESHOLDS[1]})
        units[f"ControlNet {index}"] = ", ".join(f"{key}: {value}" for key, value in fields.items())
    return units
