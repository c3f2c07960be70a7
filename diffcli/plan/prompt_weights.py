"""A1111 prompt emphasis: `(word:1.3)`, `(word)` ×1.1, `[word]` ÷1.1, `\\(` escapes, `BREAK`.

The same rules as AUTOMATIC1111's `parse_prompt_attention`: brackets nest and multiply; an
unclosed `(` or `[` weights the rest of the prompt (×1.1 or ÷1.1); a `)` or `]` with nothing
to close is plain text; `BREAK` (upper case, a word of its own) starts a new 75-token chunk.
Prompt editing (`[a:b:0.5]`) and alternation (`[a|b]`) are not supported: they read as text.
No torch here.
"""

from __future__ import annotations

import math
import re

BREAK = "BREAK"  # a fragment with this text and weight None marks a chunk break (no number can be one)
ROUND = 1.1
SQUARE = 1 / 1.1
MAX_WEIGHT = 100.0  # `(word:1e9)` would overflow the embeddings; A1111 has no bound, diffcli refuses it

_ATTENTION = re.compile(r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|
]|
[^\\()\[\]:]+|
:
""", re.X)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
_HAS_WEIGHTS = re.compile(r"(?<!\\)\([^()]*:\s*[+-]?[.\d]+\s*\)|\bBREAK\b")


def parse_weights(text: str) -> list[tuple[str, float | None]]:
    """The prompt as (text, weight) fragments, runs of equal weight merged; `(BREAK, None)` marks a break.

    ValueError for a weight that is not a finite number in -100..100, as written or after nesting
    (60 unclosed `(` make 1.1^60 = 304; 10,000 make infinity, which would turn the embeddings into NaN).
    """
    fragments: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for fragment in fragments[start:]:
            if fragment[1] is not None:
                fragment[1] *= factor

    for match in _ATTENTION.finditer(text):
        piece, weight = match.group(0), match.group(1)
        if piece.startswith("\\"):
            fragments.append([piece[1:], 1.0])  # a lone backslash is dropped, as in A1111
        elif piece == "(":
            round_open.append(len(fragments))
        elif piece == "[":
            square_open.append(len(fragments))
        elif weight is not None and round_open:
            multiply(round_open.pop(), _weight(weight))
        elif piece == ")" and round_open:
            multiply(round_open.pop(), ROUND)
        elif piece == "]" and square_open:
            multiply(square_open.pop(), SQUARE)
        else:
            for i, part in enumerate(_BREAK.split(piece)):
                if i > 0:
                    fragments.append([BREAK, None])
                fragments.append([part, 1.0])
    for start in round_open:
        multiply(start, ROUND)
    for start in square_open:
        multiply(start, SQUARE)
    if not fragments:
        fragments = [["", 1.0]]
    merged: list[list] = []
    for fragment in fragments:
        if merged and merged[-1][1] == fragment[1] and fragment[1] is not None:
            merged[-1][0] += fragment[0]
        else:
            merged.append(fragment)
    for piece, weight in merged:
        if weight is not None and not (math.isfinite(weight) and abs(weight) <= MAX_WEIGHT):
            raise ValueError(f"brackets nested too deep: {str(piece).strip()[:30]!r} would get weight {weight:g}, "
                             f"outside -{MAX_WEIGHT:g}..{MAX_WEIGHT:g}")
    return [(str(piece), None if weight is None else float(weight)) for piece, weight in merged]


def _weight(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"weight '{text}' is not a number") from None
    if not -MAX_WEIGHT <= value <= MAX_WEIGHT:
        raise ValueError(f"weight {value:g} is outside -{MAX_WEIGHT:g}..{MAX_WEIGHT:g}")
    return value


def has_weights(text: str) -> bool:
    """True when a prompt looks like it uses A1111 weights (`(word:1.2)`) or `BREAK`."""
    return bool(_HAS_WEIGHTS.search(text))


COMMA_BACKTRACK = 20  # A1111's default: text after a comma this close to a chunk's end moves to the next chunk


def chunk_tokens(pieces: list[tuple[list[int], float | None]], length: int, bos: int, eos: int, pad: int,
                 comma: int | None = None) -> list[tuple[list[int], list[float]]]:
    """Token ids with weights → chunks of `length` tokens, each wrapped as [BOS] tokens [EOS] pad...

    As A1111's `tokenize_line`: a chunk is cut at `length` tokens, or after a comma when one is
    within `COMMA_BACKTRACK` tokens of the cut; a piece of weight None (`BREAK`) ends the chunk.
    Each chunk is `length + 2` ids with a weight per id (1.0 for BOS, EOS and padding).
    """
    chunks: list[tuple[list[int], list[float]]] = []
    tokens: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def close() -> None:
        nonlocal tokens, weights, last_comma
        padding = length - len(tokens)
        ids = [bos] + tokens + [eos] + [pad] * padding
        chunks.append((ids, [1.0] + weights + [1.0] + [1.0] * padding))
        tokens, weights, last_comma = [], [], -1

    for ids, weight in pieces:
        if weight is None:
            close()
            continue
        for token in ids:
            if token == comma:
                last_comma = len(tokens)
            elif len(tokens) == length and last_comma != -1 and len(tokens) - last_comma <= COMMA_BACKTRACK:
                cut = last_comma + 1
                moved_tokens, moved_weights = tokens[cut:], weights[cut:]
                tokens, weights = tokens[:cut], weights[:cut]
                close()
                tokens, weights = moved_tokens, moved_weights
            if len(tokens) == length:
                close()
            tokens.append(token)
            weights.append(weight)
    if tokens or not chunks:
        close()
    return chunks
