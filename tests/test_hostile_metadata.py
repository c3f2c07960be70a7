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


FORGERIES = [
    ("a cat\nNegative prompt: evil\nSteps: 999", None),
    ("a cat\r\nSteps: 999, Seed: 1, Sampler: evil", "ugly\nSteps: 1"),
    ("Negative prompt: evil", None),
    ("  Negative prompt: evil", "x"),
    ("a cat\u2028Negative prompt: evil\x85Steps: 999", "blurry\u2029Seed: 7"),
    ("Steps: 999, Seed: 5, Sampler: x", None),
    ("", "only negative\nSteps: 3"),
]


@pytest.mark.parametrize("prompt,negative", FORGERIES)
def test_a1111_chunk_cannot_be_forged(prompt: str, negative: str | None) -> None:
    from diffcli.sinks.metadata import a1111_parameters

    fields = {"Steps": 4, "Sampler": "DDIM", "CFG scale": 5.0, "Seed": 42, "Size": "16x16",
              "Model": "/models/a, Steps: 999\nSeed: 1", "Version": "diffcli test"}
    seen_prompt, seen_negative, params = a1111_reader(a1111_parameters(prompt, negative, fields))
    expected = fold(prompt)
    if expected.startswith("Negative prompt:"):  # the one change: it must not read as the negative prompt
        expected = "Negative prompt -" + expected[len("Negative prompt:"):]
    assert seen_prompt == expected
    assert seen_negative == fold(negative)
    assert params == {k: str(v) for k, v in fields.items()}


def test_a1111_chunk_through_the_cli_keeps_the_true_prompt(tmp_path: Path) -> None:
    from PIL import Image

    prompt = "a cat\nNegative prompt: evil\nSteps: 999"
    result = run_cli("txt2img", prompt, "--preset", "digits-text", "--steps", "2", "-n", "1", "--quiet",
                     "-o", str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    [png] = sorted((tmp_path / "out").glob("*.png"))
    info = Image.open(png).info
    seen_prompt, seen_negative, params = a1111_reader(info["parameters"])
    assert (seen_prompt, seen_negative, params["Steps"]) == ("a cat Negative prompt: evil Steps: 999", "", "2")
    assert json.dumps(prompt)[1:-1] in info["diffcli"]  # the replay chunk keeps the exact prompt
