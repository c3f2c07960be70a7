"""LoRAs: find each file, refuse pickle unless allowed, load it as a named peft adapter, set weights.

Loading is diffusers' own `pipe.load_lora_weights(..., adapter_name=name)`; weights are set with
`pipe.set_adapters(names, weights)` before each batch, so they change per image without reloading.
A hub LoRA is `owner/name` (its `pytorch_lora_weights.safetensors`) or `owner/name/FILE`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from diffcli.errors import ModelError
from diffcli.plan.loras import looks_local
from diffcli.plan.text import escape_control

DEFAULT_FILE = "pytorch_lora_weights.safetensors"  # what diffusers' save_lora_weights writes
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def _pick(folder: Path, shown: str) -> Path:
    """The weights file of a LoRA folder: diffusers' default name, else its only .safetensors file."""
    if (folder / DEFAULT_FILE).is_file():
        return folder / DEFAULT_FILE
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".safetensors", *PICKLE_SUFFIXES))
    safe = [p for p in files if p.suffix.lower() == ".safetensors"]
    if len(safe) == 1:
        return safe[0]
    if len(safe) > 1 or len(files) > 1:
        raise ModelError(f"LoRA folder {shown} holds several weights files",
                         hint=f"name one: {escape_control(str(files[0]))}")
    if files:
        return files[0]
    raise ModelError(f"LoRA folder {shown} holds no weights file (.safetensors)")


def lora_file(path: str, offline: bool, fetch: bool = True) -> Path | None:
    """The local weights file of a LoRA entry's path (hub files are fetched unless `fetch` is off)."""
    local = Path(path).expanduser()
    shown = escape_control(path)
    if looks_local(path) or local.exists():
        if not local.exists():
            if not fetch:
                return None
            raise ModelError(f"LoRA not found: {shown}", hint="give a .safetensors file, a folder, or a hub id")
        return _pick(local, shown) if local.is_dir() else local
    from diffcli.run.hub import check_hub_id, fetch_file

    parts = path.split("/")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:]) or DEFAULT_FILE
    check_hub_id(repo)
    if not fetch:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(repo, filename)
            return Path(cached) if isinstance(cached, str) else None
        except Exception:  # noqa: BLE001 - a record without a hash is still a record
            return None
    return fetch_file(repo, filename, None, offline)


def check_suffix(file: Path, allow_pickle: bool, shown: str) -> None:
    """Safetensors only, unless pickle is allowed; anything else is not a LoRA file."""
    suffix = file.suffix.lower()
    if suffix == ".safetensors" and file.suffix != suffix:  # diffusers tells safetensors by the exact suffix
        raise ModelError(f"LoRA {shown}: the suffix {escape_control(file.suffix)} must be lower-case .safetensors "
                         "(diffusers would read the file as a pickle)", hint="rename it to end in .safetensors")
    if suffix in PICKLE_SUFFIXES and not allow_pickle:
        raise ModelError(f"LoRA {shown}: pickle weights ({suffix}), which can run code when loaded",
                         hint="if you trust this file, opt in with --allow-pickle or `allow_pickle: true`")
    if suffix != ".safetensors" and suffix not in PICKLE_SUFFIXES:
        raise ModelError(f"LoRA {shown}: not a weights file (.safetensors expected)")


def check_local_files(loras: tuple[dict[str, Any], ...], allow_pickle: bool) -> None:
    """Before the model loads: every local LoRA exists and is safetensors (or pickle is allowed)."""
    for entry in loras:
        if looks_local(entry["path"]) or Path(entry["path"]).expanduser().exists():
            file = lora_file(entry["path"], offline=True)
            assert file is not None
            check_suffix(file, allow_pickle, escape_control(entry["path"]))


def apply_loras(pipe: Any, loras: tuple[dict[str, Any], ...], allow_pickle: bool, offline: bool) -> None:
    """Load each LoRA as a named adapter and set its weight; ModelError (exit 3) when one does not fit."""
    if not loras:
        return
    if not hasattr(pipe, "load_lora_weights"):
        raise ModelError(f"{type(pipe).__name__} does not take LoRAs", hint="drop --lora / loras: for this model")
    try:
        import peft  # noqa: F401 - diffusers' LoRA loading needs it
    except ImportError:
        raise ModelError("LoRAs need the peft package", hint="pip install 'peft>=0.17'") from None
    for entry in loras:
        shown = escape_control(entry["path"])
        file = lora_file(entry["path"], offline)
        assert file is not None
        check_suffix(file, allow_pickle, shown)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pipe.load_lora_weights(str(file.parent), weight_name=file.name, adapter_name=entry["name"],
                                       use_safetensors=file.suffix.lower() == ".safetensors", local_files_only=True)
        except Exception as err:  # noqa: BLE001 - every loader failure becomes one line
            raise lora_error(shown, type(pipe).__name__, err) from None
        if not any(entry["name"] in names for names in pipe.get_list_adapters().values()):
            raise ModelError(f"LoRA {shown} matched no layer of this {type(pipe).__name__}",
                             hint="is it made for another model family?")
        check_finite(pipe, entry["name"], shown)
    set_lora_weights(pipe, tuple((entry["name"], entry["weight"]) for entry in loras))


def check_finite(pipe: Any, adapter: str, shown: str) -> None:
    """ModelError (exit 3) when a loaded adapter holds NaN or infinite values (they would blacken every image)."""
    import torch

    marker = f".{adapter}."
    for component in getattr(pipe, "components", {}).values():
        if not isinstance(component, torch.nn.Module):
            continue
        for name, tensor in component.named_parameters():
            if marker in name and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise ModelError(f"LoRA {shown} holds NaN or infinite values ({escape_control(name)[:120]})",
                                 hint="the file is damaged; use another copy")


def set_lora_weights(pipe: Any, loras: tuple[tuple[str, float], ...]) -> None:
    """Activate exactly these adapters at these weights (cheap: no weights are reloaded)."""
    if loras:
        pipe.set_adapters([name for name, _ in loras], [weight for _, weight in loras])


def lora_error(shown: str, pipeline: str, err: Exception) -> ModelError:
    """A loader failure as one line: a shape mismatch says the LoRA is for another architecture."""
    from safetensors import SafetensorError

    text = str(err)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    mismatch = next((line for line in lines if line.startswith("size mismatch")), None)
    if mismatch is not None:
        return ModelError(f"LoRA {shown} does not fit this {pipeline} (made for another architecture): "
                          f"{escape_control(mismatch)[:240]}")
    if isinstance(err, SafetensorError):
        return ModelError(f"LoRA {shown}: corrupt or not a safetensors file: {escape_control(text)[:160]}")
    first = escape_control(lines[0])[:200] if lines else type(err).__name__
    return ModelError(f"LoRA {shown} cannot be loaded into this {pipeline}: {first}")


def lora_hashes(entries: tuple[dict[str, Any], ...]) -> dict[str, str]:
    """A1111's short hash (`Lora hashes: name: 0123456789ab`) of each LoRA file, read once per run."""
    from diffcli.plan.loras import short_hash

    hashes = {}
    for entry in entries:
        file = lora_file(entry["path"], offline=True, fetch=False)
        digest = short_hash(str(file)) if file is not None and file.is_file() else None
        if digest:
            hashes[entry["name"]] = digest
    return hashes
