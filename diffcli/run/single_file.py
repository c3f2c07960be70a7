"""Single-file checkpoints (the original Stable Diffusion layout): detect, lay out configs, load offline.

The architecture is read from the file's tensor names and shapes with diffusers'
`infer_diffusers_model_type`, the detector `from_single_file` itself uses; for a .safetensors file
only its header is read (bounded), never the weights. The configs come from `--config DIR` or from
the folders diffcli ships for SD 1.x, SD 2.x and SDXL base (configs/README.md), laid out once per
process in a temporary folder with the CLIP tokenizer files derived from the shipped BPE merges,
so `from_single_file(..., config=folder, local_files_only=True)` makes no hub call.
"""

from __future__ import annotations

import atexit
import json
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffcli.errors import ModelError
from diffcli.plan.text import escape_control, json_nesting_ok

SAFE_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
MAX_HEADER_BYTES = 64 * 1024 * 1024  # an SDXL checkpoint's header is a few hundred KiB
MAX_MERGES_BYTES = 4 * 1024 * 1024
SHIPPED = {"v1": "sd15", "v2": "sd21", "xl_base": "sdxl"}  # diffusers' model type → configs/<folder>
LABELS = {"v1": "SD 1.x", "v2": "SD 2.x (768x768, v-prediction)", "xl_base": "SDXL base",
          "xl_refiner": "SDXL refiner", "inpainting": "SD 1.x inpainting", "inpainting_v2": "SD 2.x inpainting",
          "xl_inpaint": "SDXL inpainting", "playground-v2-5": "Playground v2.5", "upscale": "SD x4 upscaler"}


@dataclass(frozen=True)
class Detected:
    """What a checkpoint is and which config folder loads it."""

    model_type: str  # diffusers' name (v1, v2, xl_base, ...)
    label: str       # what diffcli says (SD 1.x, ...)
    config: Path     # the folder with model_index.json, component configs and tokenizers
    shipped: bool    # True: diffcli's own configs; False: the user's --config


class _Shape:
    """Stands in for a tensor where the detector only asks for `.shape`."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape


def looks_single_file(model: str) -> bool:
    """True for a model value naming a checkpoint file (by its suffix), whether or not it exists."""
    return bool(model) and Path(model).suffix.lower() in (SAFE_SUFFIX, *PICKLE_SUFFIXES) \
        and not Path(model).expanduser().is_dir()


def read_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from a safetensors header (bounded); no tensor data is read."""
    shown = escape_control(str(path))
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
                raise ModelError(f"{shown}: not a safetensors file (bad header length)")
            text = handle.read(length).decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ModelError(f"{shown}: cannot read the safetensors header ({type(err).__name__})") from None
    if not json_nesting_ok(text, 4):
        raise ModelError(f"{shown}: corrupt safetensors header (nested too deeply)")
    try:
        header = json.loads(text)
    except ValueError:
        raise ModelError(f"{shown}: corrupt safetensors header (not JSON)") from None
    if not isinstance(header, dict):
        raise ModelError(f"{shown}: corrupt safetensors header (not an object)")
    shapes: dict[str, tuple[int, ...]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        if not (isinstance(shape, list) and len(shape) <= 8
                and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**40 for n in shape)):
            raise ModelError(f"{shown}: corrupt safetensors header (tensor {escape_control(str(name))[:80]})")
        shapes[name] = tuple(shape)
    return shapes


def _pickle_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    from diffusers.loaders.single_file_utils import load_single_file_checkpoint

    try:
        checkpoint = load_single_file_checkpoint(str(path), local_files_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is one message
        raise ModelError(f"{escape_control(str(path))}: cannot read checkpoint ({type(err).__name__})") from None
    return {k: tuple(getattr(v, "shape", ())) for k, v in checkpoint.items() if isinstance(k, str)}


_DETECTED: dict[tuple, Detected] = {}


def detect(preset: Any) -> Detected:
    """The checkpoint's architecture and config folder (cached per file, size, mtime and --config)."""
    path = Path(preset.model).expanduser()
    shown = escape_control(preset.model)
    if not path.is_file():
        raise ModelError(f"model file not found: {shown}", hint="check the path (a single-file .safetensors checkpoint)")
    if path.suffix.lower() == SAFE_SUFFIX and path.suffix != SAFE_SUFFIX:  # diffusers matches the suffix exactly
        raise ModelError(f"{shown}: the suffix {escape_control(path.suffix)} must be lower-case {SAFE_SUFFIX} "
                         "(diffusers would read the file as a pickle)", hint=f"rename it to end in {SAFE_SUFFIX}")
    pickled = path.suffix.lower() in PICKLE_SUFFIXES
    if pickled and not preset.allow_pickle:
        raise ModelError(f"{shown}: a pickle checkpoint ({path.suffix}), which can run code when loaded",
                         hint="prefer a .safetensors file; if you trust this one, opt in with --allow-pickle")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, preset.config, bool(preset.allow_pickle))
    if key in _DETECTED:
        return _DETECTED[key]
    shapes = _pickle_shapes(path) if pickled else read_shapes(path)
    if not any(name.startswith("model.diffusion_model.") for name in shapes):
        raise ModelError(f"{shown}: no Stable Diffusion UNet in this file (no model.diffusion_model.* tensors)",
                         hint="diffcli loads whole SD 1.x/2.x/SDXL checkpoints; LoRA or VAE files are not models")
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    try:
        model_type = infer_diffusers_model_type({name: _Shape(shape) for name, shape in shapes.items()})
    except (KeyError, IndexError, TypeError) as err:
        raise ModelError(f"{shown}: cannot tell this checkpoint's architecture ({type(err).__name__})") from None
    label = LABELS.get(model_type, model_type)
    if preset.config:
        detected = Detected(model_type, label, Path(preset.config).expanduser(), shipped=False)
    elif model_type in SHIPPED:
        detected = Detected(model_type, label, lay_out(SHIPPED[model_type]), shipped=True)
    else:
        raise ModelError(f"{shown}: detected {label} (diffusers' '{model_type}'); diffcli ships configs for "
                         "SD 1.x, SD 2.x and SDXL base only",
                         hint="pass --config DIR: a local diffusers folder of that architecture "
                              "(model_index.json, component configs, tokenizers)")
    _DETECTED[key] = detected
    return detected


def clip_vocabulary() -> tuple[dict[str, int], str]:
    """(vocab.json, merges.txt) of the CLIP tokenizer, from the shipped merges (configs/README.md)."""
    import gzip

    from diffcli.plan.clip_bpe import clip_vocab
    from diffcli.plan.resources import shipped_configs_dir

    with gzip.open(shipped_configs_dir() / "clip" / "merges.txt.gz", "rb") as handle:
        merges_text = handle.read(MAX_MERGES_BYTES).decode("utf-8")
    return clip_vocab([line for line in merges_text.split("\n")[1:] if line]), merges_text


_LAID_OUT: dict[str, Path] = {}


def lay_out(name: str) -> Path:
    """A complete config folder for a shipped architecture (tokenizer files written), once per process."""
    from diffcli.plan.resources import shipped_configs_dir

    folder = _LAID_OUT.get(name)
    if folder is not None and folder.is_dir():
        return folder
    folder = Path(tempfile.mkdtemp(prefix=f"diffcli-{name}-"))
    atexit.register(shutil.rmtree, folder, True)
    shutil.copytree(shipped_configs_dir() / name, folder, dirs_exist_ok=True)
    vocab, merges = clip_vocabulary()
    for tokenizer in sorted(folder.glob("tokenizer*")):
        (tokenizer / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        (tokenizer / "merges.txt").write_text(merges, encoding="utf-8")
    _LAID_OUT[name] = folder
    return folder


def single_file_index(preset: Any) -> dict[str, Any]:
    """The config folder's model_index.json, read bounded and checked like a pipeline folder's."""
    from diffcli.run.model_files import check_component_configs, check_index, read_json

    folder = detect(preset).config
    shown = escape_control(str(folder))
    if not (folder / "model_index.json").is_file():
        raise ModelError(f"config folder {shown}: not a diffusers pipeline folder (no model_index.json)")
    index = check_index(read_json(folder / "model_index.json", "model_index.json"), shown)
    check_component_configs(folder, index)
    return index


def load_single_file(preset: Any, index: dict[str, Any], dtype: Any) -> Any:
    """`<Pipeline>.from_single_file(checkpoint, config=<folder>, local_files_only=True)`."""
    import diffusers

    detected = detect(preset)
    pipeline_class = getattr(diffusers, index["_class_name"])
    return pipeline_class.from_single_file(str(Path(preset.model).expanduser()), config=str(detected.config),
                                           local_files_only=True, dtype=dtype)


def describe(preset: Any) -> dict[str, Any]:
    """What `diffcli inspect` shows about a single-file model."""
    detected = detect(preset)
    return {"architecture": detected.label, "model_type": detected.model_type,
            "config": f"shipped ({SHIPPED[detected.model_type]})" if detected.shipped else str(detected.config)}
