"""PNG metadata: the A1111 `parameters` text chunk and diffcli's own replay chunk."""

from __future__ import annotations

import json
from typing import Any

A1111_KEY = "parameters"
DIFFCLI_KEY = "diffcli"


def _quote(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if any(c in text for c in ",:\n") else text


def a1111_parameters(prompt: str | None, negative_prompt: str | None, fields: dict[str, Any]) -> str:
    """The A1111 text: prompt line, optional `Negative prompt:` line, `key: value, ...` line."""
    lines = [prompt or ""]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    lines.append(", ".join(f"{key}: {_quote(value)}" for key, value in fields.items() if value is not None))
    return "\n".join(lines)


def parse_a1111(text: str) -> dict[str, Any]:
    """Parse A1111 text back into prompt, negative prompt and fields (for replay and tests)."""
    lines = text.split("\n")
    last = lines.pop()
    negative_lines = [i for i, line in enumerate(lines) if line.startswith("Negative prompt: ")]
    negative = None
    if negative_lines:
        first = negative_lines[0]
        negative = "\n".join(lines[first:])[len("Negative prompt: "):]
        lines = lines[:first]
    fields: dict[str, Any] = {}
    decoder = json.JSONDecoder()
    i = 0
    while i < len(last):
        colon = last.find(": ", i)
        if colon < 0:
            break
        key, i = last[i:colon].strip(), colon + 2
        if last.startswith('"', i):
            value, i = decoder.raw_decode(last, i)
        else:
            comma = last.find(", ", i)
            comma = len(last) if comma < 0 else comma
            value, i = last[i:comma], comma
        fields[key] = value
        if last.startswith(", ", i):
            i += 2
    return {"prompt": "\n".join(lines), "negative_prompt": negative, "fields": fields}


def diffcli_chunk(record: dict[str, Any]) -> str:
    """The JSON replay record."""
    return json.dumps(record, sort_keys=True, default=str)
