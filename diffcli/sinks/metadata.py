"""PNG metadata: the A1111 `parameters` text chunk and diffcli's own replay chunk.

The `parameters` chunk is for other tools (A1111, ComfyUI, image browsers), which read it line by
line: the prompt, an optional `Negative prompt:` line, and a last line of `key: value` settings.
User text is folded onto one line there, so no prompt can add a line that readers would take for a
negative prompt or settings, and the two labels readers search for anywhere in the text (`Negative prompt:`, which
sd-parsers and Civitai split on wherever it is, and `Steps:`, where regex readers start the settings) lose their
colon in user text (`Negative prompt -`, `Steps -`); the `diffcli` JSON chunk keeps the exact text for replay.
"""

from __future__ import annotations

import json
import re
from typing import Any

A1111_KEY = "parameters"
from diffcli.plan.replay import DIFFCLI_KEY  # noqa: E402,F401  (the replay chunk, named where replay reads it)
NEGATIVE_LABEL = "Negative prompt:"

# Every character str.splitlines() breaks on, so no reader can split a folded value.
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]+")


# The labels readers find anywhere in the text, inside words too (any case, any spacing before the colon).
_LABELS = re.compile(r"(?i)(negative\s+prompt|steps)\s*:")


def fold(text: str | None) -> str:
    """One line of text: line breaks become single spaces, surrounding whitespace is dropped."""
    return _LINE_BREAKS.sub(" ", text or "").strip()


def defuse(text: str | None) -> str:
    """User text as the `parameters` chunk holds it: folded, and `Negative prompt:` / `Steps:` without their colon."""
    return _LABELS.sub(lambda label: label.group(1) + " -", fold(text))


class Composed(str):
    """A value diffcli composed from parts it defused itself (`Lora hashes: name: hash, ...`): written as is."""


def _quote(value: Any) -> str:
    text = value if isinstance(value, Composed) else defuse(str(value))
    needs_quotes = any(c in text for c in ',:"\\') or not text.isprintable() or text != text.strip()
    return json.dumps(text) if needs_quotes else text


def a1111_parameters(prompt: str | None, negative_prompt: str | None, fields: dict[str, Any], tags: str = "") -> str:
    """The A1111 text: one prompt line (then `tags`, diffcli's `<lora:name:weight>` of defused names), optional
    `Negative prompt:` line, `key: value, ...` settings line."""
    lines = [" ".join(part for part in (defuse(prompt), tags) if part)]
    negative = defuse(negative_prompt)
    if negative:
        lines.append(f"{NEGATIVE_LABEL} {negative}")
    lines.append(", ".join(f"{fold(str(key))}: {_quote(value)}" for key, value in fields.items() if value is not None))
    return "\n".join(lines)


def diffcli_chunk(record: dict[str, Any]) -> str:
    """The JSON replay record (exact prompts, line breaks included)."""
    return json.dumps(record, sort_keys=True, default=str)
