"""The door: bounded request values → the same resolved `Item`s the CLI makes (plan/items.py build_items).

Every check runs here, before a request is queued: the key table's bounds (the CLI's own messages,
naming the request's field), the server's limits, the scheduler and its step count, and the init
image (base64 decoded within img2img's file bounds). Nothing a request says names a file, a model
or a network address: an init image is written by the server under its own private folder.
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
from typing import Any

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
    init_image: tuple[str, str] | None = None                         # (request field, base64 text)


class Door:
    """Turns `Wanted` into items with the server's preset as the defaults; owns the init-image folder."""

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
        path = None
        if wanted.init_image is not None:
            path = self._write_init(*wanted.init_image)
            changes["init_image"] = path
        try:
            preset = self.preset.replace(**changes)
            items = build_items(preset, self.facts, [PromptLine(prompt=wanted.prompt)])
            if path is not None:
                from diffcli.plan.attach import attach_init_image, read_inputs

                items = attach_init_image(preset, self.facts, read_inputs(preset), items)
            self._check_schedule(items[0])
        except UsageError as err:
            if path is not None:
                self.release(items=[], path=path)
            raise _named(err, wanted) from None
        return items

    def release(self, items: list[Item], path: str | None = None) -> None:
        """A request is done with its init image: removed once no other request uses it."""
        paths = {item.init_image for item in items if item.init_image} | ({path} if path else set())
        with self._lock:
            for name in paths:
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

    def _write_init(self, name: str, text: str) -> str:
        """The base64 image decoded within img2img's bounds and written (by its hash) under the server's folder."""
        if len(text) > MAX_BASE64_CHARS:
            raise RequestError(f"{name}: larger than {MAX_BYTES // 2**20} MB, not read", param=name)
        if text.startswith("data:") and "," in text[:100]:
            text = text.split(",", 1)[1]
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(f"{name}: not valid base64", param=name) from None
        if len(data) > MAX_BYTES:
            raise RequestError(f"{name}: larger than {MAX_BYTES // 2**20} MB, not read", param=name)
        try:
            decode(data, "image", what=name)
        except UsageError as err:
            raise RequestError(err.message, param=name) from None
        suffix = next((s for magic, s in IMAGE_SUFFIXES if data.startswith(magic)), ".webp")
        path = str(self.init_dir / f"init-{sha256_hex(data)[:32]}{suffix}")
        with self._lock:
            self._users[path] += 1
            if not Path(path).exists():
                scratch = f"{path}.{secrets.token_hex(4)}.tmp"
                with open(scratch, "wb") as handle:
                    handle.write(data)
                os.replace(scratch, path)
        return path


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
    key = err.message.split(":", 1)[0].strip()
    name = wanted.values.get(key, (None,))[0]
    message = err.message + (f" ({err.hint})" if err.hint else "")
    if name and name != key:
        message = f"{name} ({key}){message[len(key):]}"
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
