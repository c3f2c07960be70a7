"""A CLIP tokenizer over a small byte-level BPE vocabulary written by diffcli (no download)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffcli.plan.clip_bpe import bytes_to_unicode


def write_tokenizer_files(folder: Path, words: list[str]) -> Path:
    """A CLIP byte-level BPE vocabulary: every byte, the CLIP specials, and merges for `words`.

    Each word gets merges that build it from its bytes, so it encodes as one token
    (with CLIP's end-of-word marker `</w>`). Returns the folder holding vocab.json and merges.txt.
    """
    import json

    folder.mkdir(parents=True, exist_ok=True)
    byte_chars = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for char in byte_chars:
        vocab[char] = len(vocab)
    for char in byte_chars:
        vocab[char + "</w>"] = len(vocab)
    merges: list[str] = []
    for word in words:
        symbols = [ch for ch in word[:-1]] + [word[-1] + "</w>"]
        while len(symbols) > 1:
            pair = (symbols[0], symbols[1])
            merged = pair[0] + pair[1]
            line = f"{pair[0]} {pair[1]}"
            if line not in merges:
                merges.append(line)
            if merged not in vocab:
                vocab[merged] = len(vocab)
            symbols = [merged] + symbols[2:]
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return folder


def build_tokenizer(folder: Path, words: list[str], max_length: int = 16):
    """A CLIPTokenizer over `write_tokenizer_files`' vocabulary."""
    from transformers import CLIPTokenizer

    write_tokenizer_files(folder, words)
    return CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"),
                         model_max_length=max_length, pad_token="<|endoftext|>")


def tokenizer_and_text_config(words: list[str], hidden_size: int, heads: int, layers: int = 2,
                              max_length: int = 16) -> tuple[Any, Any]:
    """A CLIPTokenizer over `words` and a matching CLIPTextConfig (its bos/eos/pad ids set to the tokenizer's)."""
    import tempfile

    from transformers import CLIPTextConfig

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_tokenizer(Path(tmp), words, max_length=max_length)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=max_length,
        projection_dim=hidden_size, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return tokenizer, config
