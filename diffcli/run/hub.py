"""The Hugging Face Hub side of model loading: id checks, a fast metadata probe, errors mapped by type.

diffcli asks the hub for one file itself, `model_index.json`, before diffusers loads anything:
offline (or on a cache miss with `--offline`) no request is made at all; online one HEAD request
with a short timeout and no retries tells "no network" apart from "no such model" in seconds,
instead of huggingface_hub's ~25 s of backoff. Errors are recognised by their exception type.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path

from diffcli.errors import ModelError
from diffcli.plan.text import escape_control

PROBE_TIMEOUT_S = 5.0  # one HEAD request; HF_HUB_ETAG_TIMEOUT, when set, wins
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")


def check_hub_id(model: str) -> None:
    """A malformed hub id is refused before any network access."""
    if not _HUB_ID.fullmatch(model) or ".." in model or model.endswith("."):
        raise ModelError(f"'{escape_control(model)}' is neither an existing local folder nor a valid hub id",
                         hint="hub ids look like owner/name; local folders must exist")


def probe_timeout() -> float:
    """Seconds the metadata probe waits for the hub."""
    try:
        return float(os.environ["HF_HUB_ETAG_TIMEOUT"])
    except (KeyError, ValueError):
        return PROBE_TIMEOUT_S


def fetch_model_index(model: str, revision: str | None, offline: bool) -> Path:
    """The cached path of the hub model's `model_index.json` (downloaded when online); ModelError otherwise."""
    return fetch_file(model, "model_index.json", revision, offline)


def fetch_file(model: str, filename: str, revision: str | None, offline: bool, subfolder: str | None = None) -> Path:
    """The cached path of one small file of a hub model (a config), fetched without retry loops.

    Offline: the cache only, no request. Online: one HEAD request (no retries, `probe_timeout()`);
    if the hub cannot be reached, a cached copy is used; otherwise the file is downloaded.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    def cached() -> Path:
        return Path(hf_hub_download(model, filename, subfolder=subfolder, revision=revision, local_files_only=True))

    with warnings.catch_warnings():  # huggingface_hub's deprecation UserWarnings are not the user's business
        warnings.simplefilter("ignore")
        try:
            if offline:
                return cached()
            try:  # one request, no retries: a dead network fails here in seconds
                get_hf_file_metadata(hf_hub_url(model, filename, subfolder=subfolder, revision=revision),
                                     timeout=probe_timeout())
            except Exception as err:  # noqa: BLE001 - network errors fall back to the cache, the rest are final
                if not isinstance(err, network_errors()):
                    raise
                try:
                    return cached()
                except Exception:  # noqa: BLE001 - not cached either: report the network error
                    raise err from None
            return Path(hf_hub_download(model, filename, subfolder=subfolder, revision=revision,
                                        etag_timeout=probe_timeout()))
        except Exception as err:  # noqa: BLE001 - mapped by type in hub_error
            raise hub_error(model, err, offline, f"{subfolder}/{filename}" if subfolder else filename) from None


def network_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the hub could not be reached" (from the HTTP libraries already loaded)."""
    types: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, names in (("httpx2", ("TransportError",)), ("httpx", ("TransportError",)),
                          ("requests", ("ConnectionError", "Timeout"))):
        loaded = sys.modules.get(module)
        for name in names:
            typ = getattr(getattr(loaded, "exceptions", loaded), name, None) if loaded else None
            if isinstance(typ, type) and issubclass(typ, BaseException):
                types.append(typ)
    return tuple(types)


def _causes(err: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in chain and len(chain) < 16:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def builtins() -> str:
    """The hint naming the built-in models (they work offline)."""
    from diffcli.plan.resources import builtin_names

    names = builtin_names()
    return "the built-in models work offline: --preset " + ", ".join(names) if names else "give a local folder"


def hub_error(model: str, err: BaseException, offline: bool, filename: str = "model_index.json") -> ModelError:
    """One-line ModelError for a huggingface_hub failure, chosen by exception type (and HTTP status)."""
    from huggingface_hub import errors as hub

    shown = escape_control(model)
    chain = _causes(err)

    def caused_by(*types: type[BaseException]) -> bool:
        return any(isinstance(e, types) for e in chain)

    if caused_by(hub.HFValidationError):
        return ModelError(f"'{shown}' is not a valid hub id or an existing local folder",
                          hint="hub ids look like owner/name")
    if caused_by(hub.GatedRepoError):
        return ModelError(f"'{shown}' is a gated model on the hub: accept its terms and log in (`hf auth login`)")
    if caused_by(hub.RepositoryNotFoundError):
        return ModelError(f"'{shown}' was not found on the hub (and is not a local folder)",
                          hint="check the id; private models need `hf auth login`")
    if caused_by(hub.RevisionNotFoundError):
        return ModelError(f"'{shown}': revision not found on the hub", hint="check `revision:` / --set revision=")
    if offline or caused_by(hub.OfflineModeIsEnabled):
        return ModelError(f"'{shown}' is not in the local cache and diffcli is offline",
                          hint="run once online (without --offline / HF_HUB_OFFLINE) to download it, "
                               f"or give a local folder; {builtins()}")
    if caused_by(*network_errors()):
        return ModelError(f"cannot reach the Hugging Face Hub for '{shown}', and it is not in the local cache",
                          hint=f"check the network, or use a local folder / a cached model with --offline; {builtins()}")
    remote_missing = getattr(hub, "RemoteEntryNotFoundError", hub.EntryNotFoundError)
    if any(isinstance(e, remote_missing) and not isinstance(e, hub.LocalEntryNotFoundError) for e in chain):
        # a 404 for the file: the repo exists but lacks it
        what = ": not a diffusers pipeline" if filename == "model_index.json" else ""
        return ModelError(f"'{shown}' has no {escape_control(filename)} on the hub{what}")
    status = next((getattr(getattr(e, "response", None), "status_code", None) for e in chain
                   if isinstance(e, hub.HfHubHTTPError)), None)
    if status in (401, 403):
        return ModelError(f"'{shown}': the hub refused access (HTTP {status})", hint="log in with `hf auth login`")
    if status is not None:
        return ModelError(f"'{shown}': the hub answered HTTP {status}", hint="try again later, or use --offline")
    text = escape_control(str(err).strip().splitlines()[0]) if str(err).strip() else type(err).__name__
    return ModelError(f"cannot load '{shown}' from the hub: {text[:200]}",
                      hint="no network? use --offline with a cached model or a local folder")
