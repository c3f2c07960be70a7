"""The door: bounded request values → the same resolved `Item`s the CLI makes (plan/items.py build_items).

Every check runs here, before a request is queued: the key table's bounds (the CLI's own messages,
naming the request's field), the server's limits, the scheduler and its step count, and the init
image and mask (base64 or uploaded bytes, decoded within img2img's file bounds). Nothing a request
says names a file, a model or a network address: init images and masks are written by the server,
named by their hash, under its own private folder, and removed when no request uses them.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from diffcli.errors import PresetError, UsageError
from diffcli.plan.init_image import MAX_BYTES, decode, sha256_hex
from diffcli.plan.items import Item, ModelFacts, PromptLine, build_items
from diffcli.plan.keys import check_value
from diffcli.serve.errors import RequestError
from diffcli.serve.limits import MAX_PROMPT_CHARS, Limits

MAX_BASE64_CHARS = (MAX_BYTES + 2) // 3 * 4 + 256  # the encoded form of the largest init image, plus a data: prefix
RANDOM_SEEDS = 2**32
IMAGE_SUFFIXES = ((b"\x89PNG", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"BM", ".bmp"))


@dataclass
class Wanted:
    """What one request asks for: a prompt, a count, and the preset keys it sets (with its own field names)."""

    prompt: str
    count: int
    count_field: str = "n"
    values: dict[str, tuple[str, Any]] = field(default_factory=dict)  # key → (request field, value)
    init_image: tuple[str, str | bytes] | None = None                 # (request field, base64 text or bytes)
    mask: tuple[str, str | bytes] | None = None                       # inpaint: (request field, white = repaint)
    unset: tuple[str, ...] = ()                                       # preset keys the request turns off


class Door:
    """Turns `Wanted` into items with the server's preset as the defaults; owns the uploads' folder."""

    def __init__(self, preset: Any, facts: ModelFacts, limits: Limits, compatible: list[str], init_dir: Path) -> None:
        self.preset = preset
        self.facts = facts
        self.limits = limits
        self.compatible = compatible
        self.init_dir = init_dir
        self._users: Counter[str] = Counter()
        self._lock = threading.Lock()

    def items(self, wanted: Wanted) -> list[Item]:
        """The request's items, every value checked; raises RequestError (a 4xx) naming the field."""
        check_text("prompt", wanted.prompt)
        if not 1 <= wanted.count <= self.limits.max_images:
            raise RequestError(f"{wanted.count_field}: {wanted.count} images; a request may ask for 1 to "
                               f"{self.limits.max_images}", param=wanted.count_field)
        changes = {key: self._value(key, name, value) for key, (name, value) in wanted.values.items()
                   if value is not None}
        changes.setdefault("seed", secrets.randbelow(RANDOM_SEEDS))
        self._check_limits(wanted, changes)
        changes["num_images"] = wanted.count
        changes.update({key: None for key in wanted.unset})
        paths: list[str] = []
        try:
            if wanted.init_image is not None:
                changes["init_image"] = self._write_upload(*wanted.init_image, paths)
            if wanted.mask is not None:
                changes["mask_image"] = self._write_upload(*wanted.mask, paths)
            preset = self.preset.replace(**changes)
            items = self._attach(preset, build_items(preset, self.facts, [PromptLine(prompt=wanted.prompt)]), wanted)
            self._check_schedule(items[0])
        except UsageError as err:
            self.release(items=[], paths=paths)
            raise _named(err, wanted) from None
        except BaseException:
            self.release(items=[], paths=paths)
            raise
        return items

    def release(self, items: list[Item], paths: Sequence[str] = ()) -> None:
        """A request is done with its init image and mask: each removed once no other request uses it."""
        used = [item.init_image for item in items[:1] if item.init_image] + list(paths)
        used += [item.inpaint.mask_image for item in items[:1] if item.inpaint is not None]
        with self._lock:
            for name in used:
                self._users[name] -= 1
                if self._users[name] <= 0:
                    del self._users[name]
                    Path(name).unlink(missing_ok=True)

    def _value(self, key: str, name: str, value: Any) -> Any:
        if isinstance(value, str):
            check_text(name, value)
        try:
            value = check_value(key, value)
        except ValueError as err:
            raise RequestError(f"{name}: {err}", param=name) from None
        if key == "scheduler" and value not in self.compatible:
            raise RequestError(f"{name}: '{value}' does not work with this model (compatible: "
                               f"{', '.join(self.compatible)})", param=name)
        return value

    def _check_limits(self, wanted: Wanted, changes: dict[str, Any]) -> None:
        named = {key: name for key, (name, _) in wanted.values.items()}
        steps = changes.get("steps", self.preset.steps)
        if steps is not None and steps > self.limits.max_steps:
            raise RequestError(f"{named.get('steps', 'steps')}: {steps} steps; this server makes at most "
                               f"{self.limits.max_steps} (--max-steps)", param=named.get("steps"))
        width = changes.get("width", self.preset.width) or self.facts.width
        height = changes.get("height", self.preset.height) or self.facts.height
        if width * height > self.limits.max_pixels:
            raise RequestError(f"{named.get('width', 'size')}: {width}x{height} is more than the {self.limits.max_pixels:,} "
                               "pixels per image this server makes", param=named.get("width"))

    def _check_schedule(self, item: Item) -> None:
        _schedule_ok(self.facts, item.scheduler, item.scheduler_options, item.steps)

    def _attach(self, preset: Any, items: list[Item], wanted: Wanted) -> list[Item]:
        """The mask and the init image checked and recorded on the items, as the CLI's planning does."""
        from diffcli.plan.attach import attach_init_image, attach_mask, read_inputs

        try:
            inputs = read_inputs(preset)  # the uploads were decoded within the same bounds when written
            items = attach_mask(preset, self.facts, inputs, items)
        except UsageError as err:
            if wanted.mask is None or isinstance(err, RequestError):
                raise
            raise RequestError(f"{wanted.mask[0]}: {err.message}" + (f" ({err.hint})" if err.hint else ""),
                               param=wanted.mask[0]) from None
        return attach_init_image(preset, self.facts, inputs, items)

    def _write_upload(self, name: str, upload: str | bytes, paths: list[str]) -> str:
        """The image (base64 text or bytes) decoded within img2img's bounds and written by its hash under the
        server's folder; its path is added to `paths` (the caller releases them)."""
        data = upload if isinstance(upload, bytes) else _base64(name, upload)
        if len(data) > MAX_BYTES:
            raise RequestError(f"{name}: larger than {MAX_BYTES // 2**20} MB, not read", param=name)
        try:
            decode(data, "image", what=name)
        except UsageError as err:
            raise RequestError(err.message, param=name) from None
        suffix = next((s for magic, s in IMAGE_SUFFIXES if data.startswith(magic)), ".webp")
        path = str(self.init_dir / f"upload-{sha256_hex(data)[:32]}{suffix}")
        with self._lock:
            self._users[path] += 1
            paths.append(path)
            if not Path(path).exists():
                scratch = f"{path}.{secrets.token_hex(4)}.tmp"
                with open(scratch, "wb") as handle:
                    handle.write(data)
                os.replace(scratch, path)
        return path


def _base64(name: str, text: str) -> bytes:
    """A base64 image field (a `data:` URL prefix allowed) as bytes; bounded before decoding."""
    if len(text) > MAX_BASE64_CHARS:
        raise RequestError(f"{name}: larger than {MAX_BYTES // 2**20} MB, not read", param=name)
    if text.startswith("data:") and "," in text[:100]:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{name}: not valid base64", param=name) from None


def check_text(name: str, text: str) -> None:
    """Prompts are bounded and carry no NUL."""
    if len(text) > MAX_PROMPT_CHARS:
        raise RequestError(f"{name}: {len(text):,} characters; at most {MAX_PROMPT_CHARS:,}", param=name)
    if "\x00" in text:
        raise RequestError(f"{name}: contains a NUL character", param=name)


def _named(err: UsageError, wanted: Wanted) -> RequestError:
    """A planning error as a RequestError whose `param` is the request's field for the key it names."""
    if isinstance(err, RequestError):
        return err
    said = err.message.split()[0] if err.message.startswith("--") else err.message.split(":", 1)[0].strip()
    key = said[2:].replace("-", "_") if said.startswith("--") else said  # "--strength 0 with ...": the key
    name = wanted.values.get(key, (None,))[0]
    message = err.message + (f" ({err.hint})" if err.hint else "")
    if name and name != said:
        message = (name if name == key else f"{name} ({key})") + message[len(said):]
    return RequestError(message, param=name or (key if key.isidentifier() else None))


@functools.lru_cache(maxsize=512)
def _schedule_ok(facts: ModelFacts, name: str, options: tuple[tuple[str, str], ...], steps: int) -> None:
    """`check_schedule` once per (scheduler, options, steps): a step count the scheduler cannot make is a 4xx."""
    from diffcli.families.registry import family_named
    from diffcli.run.schedulers import check_schedule

    try:
        check_schedule(facts.scheduler_config, name or None, {k: json.loads(v) for k, v in options}, {steps},
                       family_named(facts.family))
    except PresetError as err:
        raise RequestError(err.message, param="steps" if err.message.startswith("steps") else None) from None
