"""On-disk cache of OpenVINO-converted models (UNet or transformer, VAE decoder): one folder per model, part,
inputs, shapes and versions.

The folder is `$DIFFCLI_OPENVINO_CACHE`, else `$HF_HOME/diffcli/openvino`, else
`~/.cache/diffcli/openvino` (`caches.py`). An entry is `<key hash>/model.xml` + `model.bin` + `key.json` (and
OpenVINO's compiled-model cache in `compiled/`, see `compile_cached`), written
into a temporary folder beside it and renamed into place, so a reader never sees half an entry
and two processes converting at once both succeed (the second rename loses and is discarded).
The key holds a fingerprint of the weights (every byte of every tensor), so a retrained or
edited model never reuses a stale conversion.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from diffcli.plan.resources import OPENVINO, cache_folder

STALE_TEMP_S = 24 * 3600  # temporary folders older than this were left by a killed process


def weights_fingerprint(module: Any) -> str:
    """blake2b over every tensor's name, shape, dtype and every byte of its values: an edit anywhere in a local
    model's weights gives a new key (sampling a few values per tensor missed edits between the samples)."""
    import torch

    digest = hashlib.blake2b(digest_size=32)
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            flat = tensor.detach().to("cpu").contiguous().reshape(-1)
            digest.update(memoryview(flat.view(torch.uint8).numpy()))
    return digest.hexdigest()


def cache_key(module: Any, source: dict[str, Any], part: str, shapes: tuple[tuple[int, ...], ...],
              openvino_version: str, inputs: tuple[str, ...] = ()) -> dict:
    """Everything a converted model depends on (`part`: which of the pipeline's modules, e.g. unet or transformer;
    `inputs`: the names of the converted model's inputs, in order, as the family adapter gives them)."""
    import diffusers
    import torch

    from diffcli import __version__

    config = {k: v for k, v in dict(module.config).items() if not k.startswith("_")}
    return {"format": 4, "model": source.get("model"), "revision": source.get("revision"),
            "variant": source.get("variant"), "part": part, "class": type(module).__name__, "config": config,
            "weights": weights_fingerprint(module), "inputs": list(inputs), "shapes": [list(s) for s in shapes],
            "openvino": openvino_version, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "diffcli": __version__}


def key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]


def load_or_convert(ov: Any, key: dict, convert: Callable[[], Any]) -> tuple[Any, bool, Path | None]:
    """The cached model for `key` (read from disk), else `convert()` saved into the cache.

    Returns (model, converted, the entry's model.xml or None when it could not be written): a cache
    that cannot be written costs nothing but the reuse.
    """
    root = cache_folder(OPENVINO)
    entry = root / key_hash(key)
    xml = entry / "model.xml"
    if xml.is_file() and (entry / "key.json").is_file():
        model = _read_entry(ov, entry, key)
        if model is not None:
            return model, False, xml
        shutil.rmtree(entry, ignore_errors=True)  # damaged or another entry's files: converted again, replaced
    model = convert()
    try:
        root.mkdir(parents=True, exist_ok=True)
        _drop_stale_temps(root)
        temp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    except OSError:
        return model, True, None
    try:
        ov.save_model(model, str(temp / "model.xml"), compress_to_fp16=False)
        (temp / "key.json").write_text(json.dumps(key, indent=1, sort_keys=True, default=str) + "\n")
        try:
            os.rename(temp, entry)
        except OSError:  # another process put the same entry in place first: keep theirs
            if not (entry / "key.json").is_file():
                raise
    except OSError:
        return model, True, None
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return model, True, xml


def _read_entry(ov: Any, entry: Path, key: dict) -> Any:
    """The entry's model if it is what `key` describes: its key.json, an IR model.xml (checked before OpenVINO
    reads it, so no other frontend gets to parse and log about it) and inputs of the key's shapes; else None."""
    from diffcli.sinks.inside import read_bounded

    stored = read_bounded(entry / "key.json", 1 << 20)
    try:
        with open(entry / "model.xml", "rb") as handle:  # a regular file (checked by the caller)
            head = handle.read(4096)
    except OSError:
        return None
    try:
        if stored is None or json.loads(stored) != json.loads(json.dumps(key, default=str)):
            return None
    except (ValueError, RecursionError):
        return None
    if b"<net " not in head:
        return None
    try:
        model = ov.Core().read_model(str(entry / "model.xml"), str(entry / "model.bin"))
        shapes = [[dim.get_length() for dim in port.get_partial_shape()] for port in model.inputs]
    except Exception:  # noqa: BLE001 - an unreadable entry is converted again (and replaced)
        return None
    return model if shapes == [list(shape) for shape in key.get("shapes", shapes)] else None


def compile_cached(ov: Any, model: Any, xml: Path | None, config: dict[str, Any]) -> Any:
    """Compile for the CPU; from a cache entry, with OpenVINO's own compiled-model cache beside it.

    That cache (`<entry>/compiled/`, CACHE_MODE OPTIMIZE_SIZE: about 1 MB, the weights stay in model.bin)
    halves the compile time of later runs. An unwritable or damaged one is skipped, not an error.
    """
    core = ov.Core()
    if xml is not None:
        try:
            return core.compile_model(str(xml), "CPU", {**config, "CACHE_DIR": str(xml.parent / "compiled"),
                                                          "CACHE_MODE": "OPTIMIZE_SIZE"})
        except Exception:  # noqa: BLE001 - OpenVINO raises RuntimeError for any cache problem
            pass
    return core.compile_model(model, "CPU", config)


def _drop_stale_temps(root: Path) -> None:
    now = time.time()
    for temp in root.glob(".tmp-*"):
        try:
            if now - temp.stat().st_mtime > STALE_TEMP_S:
                shutil.rmtree(temp, ignore_errors=True)
        except OSError:
            continue
