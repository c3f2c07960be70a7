"""Weighted, long prompts as embeddings (A1111 style) for Stable Diffusion 1.x/2.x and SDXL pipelines.

Each prompt is parsed (`plan/prompt_weights.py`), tokenized fragment by fragment, cut into chunks
of `model_max_length - 2` tokens each wrapped in BOS/EOS, encoded chunk by chunk and concatenated.
A weight multiplies its tokens' embeddings, then each chunk is rescaled to its original mean
(A1111's "Original" emphasis). Prompt and negative prompt are padded with empty chunks to the same
length. A short prompt without weights gives exactly the embeddings the pipeline makes itself.
"""

from __future__ import annotations

from typing import Any

from diffcli.errors import UsageError
from diffcli.plan.prompt_weights import chunk_tokens, parse_weights
from diffcli.plan.text import one_line

MAX_CHUNKS = 32  # 2,400 tokens; each chunk is one text-encoder pass and widens every cross-attention


def supports_weighted(pipe: Any) -> bool:
    """SD 1.x/2.x (one CLIP text encoder) or SDXL (two, the second with a projection)."""
    if getattr(pipe, "tokenizer", None) is None or getattr(pipe, "text_encoder", None) is None:
        return False
    second = getattr(pipe, "text_encoder_2", None)
    if second is not None:
        return type(second).__name__ == "CLIPTextModelWithProjection" and getattr(pipe, "tokenizer_2", None)
    return type(pipe.text_encoder).__name__ == "CLIPTextModel"


def _chunks(tokenizer: Any, text: str) -> list[tuple[list[int], list[float]]]:
    try:
        fragments = parse_weights(text)
    except ValueError as err:
        raise UsageError(f"prompt {one_line(text, 60)!r}: {err}") from None
    pieces = []
    plain = [piece for piece, weight in fragments if weight is not None]
    encoded = iter(tokenizer(plain, add_special_tokens=False, truncation=False).input_ids if plain else [])
    for piece, weight in fragments:
        pieces.append(([], None) if weight is None else (next(encoded), weight))
    comma = tokenizer.get_vocab().get(",</w>")
    chunks = chunk_tokens(pieces, tokenizer.model_max_length - 2, tokenizer.bos_token_id, tokenizer.eos_token_id,
                          tokenizer.pad_token_id, comma)
    if len(chunks) > MAX_CHUNKS:
        raise UsageError(f"prompt {one_line(text, 60)!r} needs {len(chunks)} chunks of "
                         f"{tokenizer.model_max_length - 2} tokens; at most {MAX_CHUNKS}")
    return chunks


def _empty_chunk(tokenizer: Any) -> tuple[list[int], list[float]]:
    return chunk_tokens([], tokenizer.model_max_length - 2, tokenizer.bos_token_id, tokenizer.eos_token_id,
                        tokenizer.pad_token_id)[0]


def _encode(encoder: Any, chunks: list[tuple[list[int], list[float]]], penultimate: bool) -> tuple[Any, Any]:
    """(hidden states of every chunk concatenated, pooled output of the first chunk)."""
    import torch

    device = encoder.device
    states, pooled = [], None
    for ids, weights in chunks:
        tokens = torch.tensor([ids], device=device)
        mask = None
        if getattr(encoder.config, "use_attention_mask", False):  # as the pipeline: 1 up to EOS, 0 for padding
            eos = ids.index(encoder.config.eos_token_id) if encoder.config.eos_token_id in ids else len(ids) - 1
            mask = torch.tensor([[1] * (eos + 1) + [0] * (len(ids) - eos - 1)], device=device)
        out = encoder(tokens, attention_mask=mask, output_hidden_states=penultimate)
        if pooled is None:
            pooled = out[0]
        hidden = out.hidden_states[-2] if penultimate else out[0]
        multipliers = torch.tensor(weights, device=device, dtype=hidden.dtype)
        if bool((multipliers != 1).any()):
            mean = hidden.mean()
            hidden = hidden * multipliers.reshape(1, -1, 1)
            new_mean = hidden.mean()
            if new_mean.abs() > 1e-4 * hidden.abs().mean():  # a mean near 0 would blow the rescale up
                hidden = hidden * (mean / new_mean)
        states.append(hidden)
    return torch.cat(states, dim=1), pooled


def _pad(chunks: list[Any], count: int, tokenizer: Any) -> list[Any]:
    return chunks + [_empty_chunk(tokenizer)] * (count - len(chunks))


def weighted_kwargs(pipe: Any, prompts: list[str], negatives: list[str] | None) -> dict[str, Any]:
    """`prompt_embeds`/`negative_prompt_embeds` (and SDXL's pooled ones) for the pipeline call."""
    import torch

    if not supports_weighted(pipe):
        raise UsageError(f"prompt_syntax: weighted works with Stable Diffusion 1.x/2.x and SDXL pipelines, "
                         f"not {type(pipe).__name__}", hint="use prompt_syntax: plain for this model")
    xl = getattr(pipe, "text_encoder_2", None) is not None
    pairs = [(pipe.tokenizer, pipe.text_encoder)] + ([(pipe.tokenizer_2, pipe.text_encoder_2)] if xl else [])
    zero_negative = xl and not negatives and bool(pipe.config.get("force_zeros_for_empty_prompt", False))
    texts = list(prompts) + ([] if zero_negative else list(negatives or [""] * len(prompts)))
    per_encoder = [[_chunks(tokenizer, text) for text in texts] for tokenizer, _ in pairs]
    count = max(len(chunks) for encoder_chunks in per_encoder for chunks in encoder_chunks)
    embeds, pooled = [], []
    with torch.inference_mode():
        for (tokenizer, encoder), encoder_chunks in zip(pairs, per_encoder):
            results = [_encode(encoder, _pad(chunks, count, tokenizer), penultimate=xl) for chunks in encoder_chunks]
            embeds.append(torch.cat([hidden for hidden, _ in results]))
            pooled.append(torch.cat([first for _, first in results]))
    hidden = torch.cat(embeds, dim=-1).to(dtype=pairs[-1][1].dtype)
    n = len(prompts)
    kwargs: dict[str, Any] = {"prompt_embeds": hidden[:n]}
    negative = torch.zeros_like(hidden[:n]) if zero_negative else hidden[n:]
    kwargs["negative_prompt_embeds"] = negative
    if xl:
        kwargs["pooled_prompt_embeds"] = pooled[-1][:n]
        kwargs["negative_pooled_prompt_embeds"] = torch.zeros_like(pooled[-1][:n]) if zero_negative else pooled[-1][n:]
    return kwargs


def dropped_words(tokenizer: Any, text: str) -> str | None:
    """What CLIP's truncation drops from a plain prompt (tokens past `model_max_length - 2`), decoded."""
    ids = tokenizer(text, add_special_tokens=False, truncation=False).input_ids
    keep = tokenizer.model_max_length - 2
    if len(ids) <= keep:
        return None
    return tokenizer.decode(ids[keep:]).strip()


MAX_WARNINGS = 3


def _long_encoder_warnings(preset: Any, facts: Any, subfolder: str, texts: list[str]) -> list[str]:
    """T5 reads max_sequence_length tokens (the preset's, else the pipeline's): say how many a prompt loses."""
    limit = preset.max_sequence_length or facts.defaults.get("max_sequence_length")
    tokenizer = _quiet_tokenizer(preset, subfolder)
    if tokenizer is None or not isinstance(limit, int):
        return []
    messages = []
    for text in texts:
        count = len(tokenizer(text, truncation=False).input_ids)
        if count > limit:
            messages.append(f"prompt {one_line(text, 40)!r} is {count} tokens; the T5 encoder reads "
                            f"max_sequence_length={limit}, so {count - limit} are dropped "
                            "(--max-sequence-length raises it where the model allows)")
    return messages[:MAX_WARNINGS] + ([f"and {len(messages) - MAX_WARNINGS} more prompts are cut"]
                                      if len(messages) > MAX_WARNINGS else [])


def _quiet_tokenizer(preset: Any, subfolder: str) -> Any:
    """`_tokenizer`, or None when it cannot be read (these are warnings only: the load reports real problems)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _tokenizer(preset, subfolder)
    except Exception:  # noqa: BLE001
        return None


def _tokenizer(preset: Any, subfolder: str = "tokenizer") -> Any:
    """The model's own tokenizer class from its folder (hub models: from the cache only), or None."""
    import json
    from pathlib import Path

    import transformers

    from diffcli.plan.loras import looks_local

    folder = Path(preset.model).expanduser()
    local = folder.is_dir()
    if local:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    elif not looks_local(preset.model):
        from diffcli.run.hub import fetch_model_index

        index = json.loads(fetch_model_index(preset.model, preset.revision, True).read_text(encoding="utf-8"))
    else:
        return None
    spec = index.get(subfolder)
    if not (isinstance(spec, list) and len(spec) == 2 and spec[0] == "transformers"):
        return None
    cls = getattr(transformers, str(spec[1]), None)
    if cls is None:
        return None
    return cls.from_pretrained(preset.model, subfolder=subfolder, revision=None if local else preset.revision,
                               local_files_only=True)


def prompt_warnings(preset: Any, items: list[Any], facts: Any = None) -> list[str]:
    """Before loading, over every item (a `--vary prompt_syntax` cell included): weighted prompts are parsed
    (a bad weight is a usage error; a model without CLIP chunks refuses them); plain prompts that the text
    encoder will cut are named with what it drops, and A1111 weights typed in plain mode are pointed out."""
    prompted = [item for item in items if item.task == "txt2img"]
    weighted = [item for item in prompted if item.prompt_syntax == "weighted"]
    if weighted and facts is not None and not facts.weighted_prompts:
        raise UsageError(f"--prompt-syntax weighted: {facts.class_name} encodes prompts with a T5/Gemma encoder, "
                         "which has no 77-token CLIP chunks to weight", hint="use plain prompts with this model")
    for text in dict.fromkeys(t for item in weighted for t in (item.prompt, item.negative_prompt) if t):
        try:
            parse_weights(text)
        except ValueError as err:
            raise UsageError(f"prompt {one_line(text, 60)!r}: {err}") from None
    texts = list(dict.fromkeys(t for item in prompted if item.prompt_syntax != "weighted"
                               for t in (item.prompt, item.negative_prompt) if t))
    if not texts:
        return []
    from diffcli.families.registry import family_named

    family = family_named(facts.family) if facts is not None else None
    if family is not None and family.long_tokenizer:
        return _long_encoder_warnings(preset, facts, family.long_tokenizer, texts)
    from diffcli.plan.prompt_weights import has_weights

    messages = []
    if any(has_weights(text) for text in texts):
        messages.append("the prompt has A1111 weights such as (word:1.2), which plain syntax passes on as text; "
                        "use --prompt-syntax weighted to apply them")
    tokenizer = _quiet_tokenizer(preset, "tokenizer")
    if tokenizer is None:
        return messages
    cut = [(text, dropped) for text in texts if (dropped := dropped_words(tokenizer, text))]
    limit = tokenizer.model_max_length - 2
    # chunks help a model trained on 77-token CLIP prompts; a model with a shorter limit never saw longer ones
    helps = " (--prompt-syntax weighted reads it all, in 75-token chunks)" if limit >= 75 else ""
    for text, dropped in cut[:MAX_WARNINGS]:
        messages.append(f"prompt {one_line(text, 40)!r} is longer than the {limit} tokens this model's text encoder "
                        f"reads; dropped: {one_line(dropped, 120)!r}{helps}")
    if len(cut) > MAX_WARNINGS:
        messages.append(f"and {len(cut) - MAX_WARNINGS} more prompts are cut")
    return messages
