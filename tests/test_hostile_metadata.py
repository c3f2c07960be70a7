"""Hostile input battery, part 3: a prompt cannot forge the A1111 `parameters` chunk other tools read."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import run_cli


def fold(text: str | None) -> str:
    """What a one-line rendering of `text` must read as: line breaks (as str.splitlines sees them) → spaces."""
    return re.sub("[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+", " ", text or "").strip()


def a1111_reader(text: str) -> tuple[str, str, dict[str, str]]:
    """Mimics A1111's parse_generation_parameters, written from its description (not from diffcli)."""
    *lines, last = text.strip().split("\n")
    params = {k.strip(): v for k, v in re.findall(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)', last)}
    if len(params) < 3:
        lines.append(last)
        params = {}
    prompt, negative, done = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done, line = True, line[16:].strip()
        (negative if done else prompt).append(line)
    unquote = {k: json.loads(v) if v.startswith('"') else v for k, v in params.items()}
    return "\n".join(prompt), "\n".join(negative), unquote


def split_anywhere_reader(text: str) -> tuple[str, str, dict[str, str]]:
    """sd-parsers' and Civitai's way (from their descriptions): the settings line is the last one with three of
    Steps/Sampler/CFG scale/Seed, split naively on `,` and `:`; the text before it is split on `Negative prompt:`
    wherever that occurs."""
    lines = text.split("\n")
    for index in range(len(lines) - 1, -1, -1):
        params = {}
        for part in lines[index].split(","):
            pieces = part.split(":")
            if len(pieces) == 2:
                params[pieces[0].strip()] = pieces[1].strip()
        if len({"Steps", "Sampler", "CFG scale", "Seed"} & set(params)) >= 3:
            break
    else:
        return text, "", {}
    prompt, *negative = "\n".join(lines[:index]).split("Negative prompt:")
    return prompt.strip(), negative[0].strip() if negative else "", params


def regex_reader(text: str) -> tuple[str, str, dict[str, str]]:
    """The browser viewers' way: split at `\nNegative prompt:` (any case), then the settings start at the first
    `Steps:` after it (or in the whole text without a negative prompt)."""
    parts = re.split(r"\nNegative prompt:\s*", text, flags=re.IGNORECASE)
    rest = parts[1] if len(parts) > 1 else parts[0]
    match = re.match(r"^(.*?)\n?(Steps:.*)$", rest, re.DOTALL)
    if match is None:
        return parts[0].strip(), "", {}
    steps = re.search(r"Steps:\s*(\d+)", match.group(2))
    before = match.group(1).strip()
    prompt, negative = (parts[0].strip(), before) if len(parts) > 1 else (before, "")
    return prompt, negative, {"Steps": steps.group(1) if steps else ""}


FORGERIES = [
    ("a cat\nNegative prompt: evil\nSteps: 999", None),
    ("a cat\r\nSteps: 999, Seed: 1, Sampler: evil", "ugly\nSteps: 1"),
    ("Negative prompt: evil", None),
    ("  Negative prompt: evil", "x"),
    ("a cat\u2028Negative prompt: evil\x85Steps: 999", "blurry\u2029Seed: 7"),
    ("Steps: 999, Seed: 5, Sampler: x", None),
    ("", "only negative\nSteps: 3"),
    ("a cat Negative prompt: evil", None),  # on one line: split on by sd-parsers and Civitai
    ("a cat negative  PROMPT : evil, Steps: 999", "ugly Steps: 1, Seed: 2"),
    ("footSteps: 999 aNegative prompt: evil", "Negative prompt: x"),
]


def defused(text: str | None) -> str:
    """What the chunk must show of user text: folded, the two labels without their colon."""
    return re.sub(r"(?i)(negative\s+prompt|steps)\s*:", lambda m: m.group(1) + " -", fold(text))


@pytest.mark.parametrize("prompt,negative", FORGERIES)
def test_a1111_chunk_cannot_be_forged(prompt: str, negative: str | None) -> None:
    from diffcli.sinks.metadata import a1111_parameters

    fields = {"Steps": 4, "Sampler": "DDIM", "CFG scale": 5.0, "Seed": 42, "Size": "16x16",
              "Model": "/models/a, Steps: 999\nSeed: 1", "Version": "diffcli test"}
    text = a1111_parameters(prompt, negative, fields)
    seen_prompt, seen_negative, params = a1111_reader(text)
    assert seen_prompt == defused(prompt)  # the one change: the labels lose their colon
    assert seen_negative == defused(negative)
    assert params == {k: defused(str(v)) for k, v in fields.items()}
    for reader in (split_anywhere_reader, regex_reader):  # readers that look for the labels anywhere
        seen_prompt, seen_negative, params = reader(text)
        assert (seen_prompt, seen_negative, params["Steps"]) == (defused(prompt), defused(negative), "4"), reader


def test_a1111_chunk_through_the_cli_keeps_the_true_prompt(tmp_path: Path) -> None:
    from PIL import Image

    prompt = "a cat\nNegative prompt: evil\nSteps: 999"
    result = run_cli("txt2img", prompt, "--preset", "digits-text", "--steps", "2", "-n", "1", "--quiet",
                     "-o", str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    [png] = sorted((tmp_path / "out").glob("*.png"))
    info = Image.open(png).info
    seen_prompt, seen_negative, params = a1111_reader(info["parameters"])
    assert (seen_prompt, seen_negative, params["Steps"]) == ("a cat Negative prompt - evil Steps - 999", "", "2")
    assert split_anywhere_reader(info["parameters"])[:2] == regex_reader(info["parameters"])[:2] == (seen_prompt, "")
    assert json.dumps(prompt)[1:-1] in info["diffcli"]  # the replay chunk keeps the exact prompt
