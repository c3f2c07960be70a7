"""The gallery page: which files make one card, and the self-contained HTML (inline CSS and JS, no network).

Every piece of file data is untrusted: text goes through `html.escape` (content and attributes), paths
are percent-encoded in `src`/`href`, and a Content-Security-Policy allows only this page's own script.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shlex
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from diffcli.sinks.gallery_assets import CSS, SCRIPT

FRAME_NAME = re.compile(r"^(?P<stem>.+)-step\d+-t\d+-[a-z0-9]+\.png$")
TRACE_NAME = re.compile(r"^(?P<stem>.+)-(?:sheet\.png|trace\.(?:gif|webp))$")
THUMB_NAME = re.compile(r"^[0-9a-f]{20}\.webp$")
FIELDS = (("seed", "Seed"), ("steps", "Steps"), ("scheduler", "Sampler"), ("guidance", "CFG scale"),
          ("size", "Size"), ("model", "Model"))
PIXEL_ART = 128  # images no larger than this are scaled up with hard pixel edges
EAGER = 48  # the first cards load at once; the rest when scrolled near


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def group(records: dict[str, dict[str, Any]], frames: list[str]) -> tuple[list[dict[str, Any]], int, int]:
    """Cards in path order: `STEM-sheet.png` and `STEM-trace.gif|webp` join `STEM.png`; frames under
    `frames/` are counted on the card of the final image beside that folder.

    Returns (cards, frames grouped, frames left out because their final image is missing).
    """
    def card(rel: str) -> dict[str, Any]:
        return {**records[rel], "path": rel, "frames": 0, "sheet": None, "animation": None}

    cards: dict[str, dict[str, Any]] = {}
    traces: list[tuple[str, str]] = []
    for rel in sorted(records):
        parent, _, name = rel.rpartition("/")
        match = TRACE_NAME.match(name)
        if match and _join(parent, match["stem"] + ".png") in records:
            traces.append((rel, _join(parent, match["stem"] + ".png")))
        else:
            cards[rel] = card(rel)
    for rel, final in traces:
        if final in cards:
            cards[final]["sheet" if rel.endswith("-sheet.png") else "animation"] = rel
        else:
            cards[rel] = card(rel)
    grouped = 0
    for rel in frames:
        folder, _, name = rel.rpartition("/")
        match = FRAME_NAME.match(name)
        final = _join(folder.rpartition("/")[0], match["stem"] + ".png") if match else None
        if final in cards:
            cards[final]["frames"] += 1
            grouped += 1
    return [cards[rel] for rel in sorted(cards)], grouped, len(frames) - grouped


def _text(value: Any) -> str:
    """A displayable string from untrusted data ("" for anything but a string or number)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return ""
    return str(value).encode("utf-8", "replace").decode("utf-8")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _display(rel: str) -> str:
    """A path as text (undecodable bytes of a file name shown as U+FFFD)."""
    return os.fsencode(rel).decode("utf-8", "replace")


def url(rel: str) -> str:
    """A relative path percent-encoded for src/href (`#`, `?`, `%`, quotes, spaces, `:` and non-ASCII)."""
    return quote(os.fsencode(rel), safe="/")


def _label(card: dict[str, Any]) -> str:
    prompt = _text(card.get("prompt")).strip()
    if prompt:
        return prompt if len(prompt) <= 250 else prompt[:250] + "…"
    model, seed = _text(card.get("model")), _text(card.get("seed"))
    if model or seed:
        return " ".join(part for part in (model or "image", f"seed {seed}" if seed else "") if part)
    return f"image {_display(card['path'])}"


def _img(src: str, alt: str, card: dict[str, Any], lazy: bool) -> str:
    width, height = _int(card.get("width")), _int(card.get("height"))
    size = f' width="{width}" height="{height}"' if width and height else ""
    pixel = ' class="thumb px"' if 0 < max(width, height) <= PIXEL_ART else ' class="thumb"'
    loading = ' loading="lazy"' if lazy else ""
    return f'<img{pixel} src="{escape(src)}" alt="{escape(alt)}"{size}{loading} decoding="async">'


def _axes(card: dict[str, Any]) -> str:
    axes = card.get("axes") if isinstance(card.get("axes"), list) else []
    parts = []
    for axis in axes:
        if isinstance(axis, dict) and _text(axis.get("key")):
            values = axis.get("values") if isinstance(axis.get("values"), list) else []
            shown = " · ".join(escape(_text(v)) for v in values if _text(v))
            parts.append(f"<b>{escape(_text(axis['key']))}</b> {shown}")
    if not parts and not card["path"].rpartition("/")[2].lower().startswith("grid"):
        return ""
    return f'<p class="axes"><span class="k">Grid</span> {" × ".join(parts)}</p>'


def _trace(card: dict[str, Any]) -> str:
    parts = []
    if isinstance(card.get("sheet"), str):
        parts.append(f'<a href="{escape(url(card["sheet"]))}">contact sheet</a>')
    if isinstance(card.get("animation"), str):
        parts.append(f'<a href="{escape(url(card["animation"]))}">animation</a>')
    if card.get("frames"):
        parts.append(f"{card['frames']} frames in frames/")
    return f'<p class="trace"><span class="k">Trace</span> {" · ".join(parts)}</p>' if parts else ""


def _card(card: dict[str, Any], folder: Path, number: int) -> str:
    rel, label = card["path"], _label(card)
    full = url(rel)
    thumb = card.get("thumb")
    src = f".gallery/thumbs/{thumb}" if isinstance(thumb, str) and THUMB_NAME.match(thumb) else full
    error = _text(card.get("error"))
    picture = (f'<div class="frame broken">{escape(error)}</div>' if error
               else f'<div class="frame">{_img(src, label, card, number >= EAGER)}</div>')
    lines = []
    if _text(card.get("prompt")):
        lines.append(f'<p class="prompt">{escape(_text(card["prompt"]))}</p>')
    if _text(card.get("negative_prompt")):
        lines.append(f'<p class="negative"><span class="k">Negative</span> {escape(_text(card["negative_prompt"]))}</p>')
    fields = "".join(f"<div><dt>{name}</dt> <dd>{escape(_text(card.get(key)))}</dd></div>"
                     for key, name in FIELDS if _text(card.get(key)))
    if fields:
        lines.append(f'<dl class="fields">{fields}</dl>')
    lines += [_axes(card), _trace(card)]
    if error:
        lines.append(f'<p class="error">{escape(error)}</p>')
    if card.get("replayable") is True:
        command = "diffcli replay " + shlex.quote(_display(str(folder / rel)))
        lines.append(f'<div class="replay"><code>{escape(command)}</code><button type="button" class="copy" '
                     'aria-label="Copy the replay command">Copy</button></div>')
    width, height = _int(card.get("width")), _int(card.get("height"))
    dims = f" · {width}×{height}" if width and height else ""
    lines.append(f'<p class="file"><a href="{escape(full)}">{escape(_display(rel))}</a>{dims}</p>')
    data = {"full": full, "sheet": card.get("sheet"), "anim": card.get("animation")}
    attributes = "".join(f' data-{key}="{escape(url(value))}"' for key, value in data.items()
                         if isinstance(value, str) and not (key == "full" and error))
    pixel = ' data-px="1"' if 0 < max(width, height) <= PIXEL_ART else ""
    return (f'<article class="card" tabindex="0" aria-label="{escape(label)}"{attributes}{pixel}>{picture}'
            f'<div class="meta">{"".join(line for line in lines if line)}</div></article>')


def _hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii") + "'"


def render_page(cards: list[dict[str, Any]], folder: Path, grouped: int, left_out: int) -> str:
    """The whole index.html for these cards; `folder` (absolute) makes the replay commands."""
    title = f"diffcli gallery: {_display(folder.name or str(folder))}"
    total = len(cards)
    notes = [f"{total} image{'s' if total != 1 else ''}"]
    if grouped or left_out:
        notes.append(f"{grouped + left_out} denoising frames not shown one by one (each trace's contact sheet and "
                     f"animation open with its final image)")
    policy = (f"default-src 'none'; img-src 'self' file: data:; style-src {_hash(CSS)}; script-src {_hash(SCRIPT)}; "
              "base-uri 'none'; form-action 'none'")
    body = "\n".join(_card(card, folder, i) for i, card in enumerate(cards)) or '<p class="empty">No images yet.</p>'
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{escape(policy)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>{escape(title)}</h1>
<p class="summary">{escape(" · ".join(notes))}</p>
<div class="search"><label for="filter">Filter</label>
<input id="filter" type="search" placeholder="prompt, seed, sampler, file…" aria-controls="cards" autocomplete="off">
<span id="count" role="status" aria-live="polite">{total} of {total} shown</span></div>
</header>
<main id="cards" class="cards">
{body}
</main>
<dialog id="viewer" aria-label="Enlarged image">
<button type="button" class="close" aria-label="Close (Escape)">×</button>
<div class="media"></div>
<div class="caption"></div>
</dialog>
<script>{SCRIPT}</script>
</body>
</html>
"""
