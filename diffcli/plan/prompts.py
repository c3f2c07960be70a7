"""Prompts files: plain text (one prompt per line) or JSONL (one object per line with overrides).

The file must be a regular UTF-8 file of at most 16 MiB with lines of at most 64 KiB; a leading
BOM is dropped. It is JSONL when its name ends in `.jsonl` or its first content line starts with `{`.
Blank lines and `#` comments are skipped. Every line is checked before any generation, and all bad
lines (up to `MAX_REPORTED`) are reported in one message.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from diffcli.errors import PresetError
from diffcli.plan.items import PromptLine
from diffcli.plan.keys import PER_IMAGE_KEYS
from diffcli.plan.text import escape_control, json_nesting_ok, one_line, read_text_file

OVERRIDES = PER_IMAGE_KEYS
MAX_FILE_BYTES = 16 << 20
MAX_LINE_CHARS = 64 << 10
MAX_JSON_DEPTH = 8  # a line is one flat object; anything deeper is refused before json.loads
MAX_REPORTED = 20


class _BadLine(ValueError):
    """One line's problem (without the `path:line:` prefix)."""


def read_prompts_file(path: Path) -> list[PromptLine]:
    """Parse and validate the whole file before any generation; errors name every bad line."""
    shown = escape_control(str(path))
    text = read_text_file(path, MAX_FILE_BYTES, "prompts file")
    lines = [(number, raw.rstrip("\r").strip()) for number, raw in enumerate(text.split("\n"), start=1)]
    content = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not content:
        raise PresetError(f"{shown}: no prompts (empty file, or only blank lines and # comments)")
    is_jsonl = path.suffix.lower() == ".jsonl" or content[0][1].startswith("{")
    parse = _parse_json_line if is_jsonl else _parse_text_line
    parsed: list[PromptLine] = []
    problems: list[str] = []
    for number, line in content:
        try:
            if len(line) > MAX_LINE_CHARS:
                raise _BadLine(f"line longer than {MAX_LINE_CHARS // 1024} KiB ({len(line):,} characters)")
            parsed.append(parse(number, line))
        except _BadLine as bad:
            problems.append(f"{shown}:{number}: {bad}")
    if problems:
        shown_problems = problems[:MAX_REPORTED]
        more = len(problems) - len(shown_problems)
        raise PresetError("; ".join(shown_problems) + (f"; and {more} more bad lines" if more else ""))
    return parsed


def _parse_text_line(number: int, line: str) -> PromptLine:
    if "\x00" in line:
        raise _BadLine("prompt contains a NUL character")
    return PromptLine(prompt=line, line=number)


def _refuse_constant(name: str) -> Any:
    raise _BadLine(f"{name} is not a number JSON allows")


def _parse_json_line(number: int, line: str) -> PromptLine:
    from diffcli.plan.keys import check_value

    if not json_nesting_ok(line, MAX_JSON_DEPTH):
        raise _BadLine(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        data = json.loads(line, parse_constant=_refuse_constant)
    except json.JSONDecodeError as err:
        raise _BadLine(f"invalid JSON: {err.msg} (column {err.colno})") from None
    except (ValueError, RecursionError) as err:  # _BadLine, or an integer of more than 4300 digits
        raise _BadLine(str(err) if isinstance(err, _BadLine) else f"invalid JSON: {one_line(str(err), 80)}") from None
    if not isinstance(data, dict):
        raise _BadLine('expected a JSON object with a "prompt"')
    prompt = data.pop("prompt", None)
    if not isinstance(prompt, str) or not prompt.strip() or "\x00" in prompt:
        raise _BadLine("prompt: expected a non-empty string")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in OVERRIDES:
            close = difflib.get_close_matches(key, ("prompt",) + OVERRIDES, n=1, cutoff=0.6)
            raise _BadLine(f"{one_line(key, 60)}: unknown key" + (f" (did you mean '{close[0]}'?)" if close else ""))
        try:
            values[key] = check_value(key, value)
        except ValueError as err:
            raise _BadLine(f"{key}: {escape_control(str(err))}") from None
    return PromptLine(prompt=prompt.strip(), line=number, values=values)
