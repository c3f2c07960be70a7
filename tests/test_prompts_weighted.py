"""Long prompts and A1111 weights (prompt_syntax: weighted), and the warning for CLIP's truncation."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from diffcli.plan.prompt_weights import BREAK, chunk_tokens, has_weights, parse_weights
from tests.test_cli import invoke


def test_parser_weights_nesting_and_escapes():
    assert parse_weights("a cat") == [("a cat", 1.0)]
    assert parse_weights("a (cat:1.3) dog") == [("a ", 1.0), ("cat", 1.3), (" dog", 1.0)]
    nested = parse_weights("a (b (c:2) d) [e]")
    assert [text for text, _ in nested] == ["a ", "b ", "c", " d", " ", "e"]
    assert [round(w, 6) for _, w in nested] == [1.0, 1.1, 2.2, 1.1, 1.0, round(1 / 1.1, 6)]
    assert parse_weights("((cat))") == [("cat", pytest.approx(1.21))]
    assert parse_weights(r"\(cat:1.5\) \[x\]") == [("(cat:1.5) [x]", 1.0)]
    assert parse_weights("(cat:1.0)") == [("cat", 1.0)]
    assert parse_weights("(cat:-0.5)") == [("cat", -0.5)]


def test_parser_unbalanced_brackets_as_a1111():
    assert parse_weights("cat) dog]") == [("cat) dog]", 1.0)]  # nothing to close: plain text
    assert parse_weights("a (cat") == [("a ", 1.0), ("cat", 1.1)]  # an unclosed ( weights the rest, as in A1111
    assert parse_weights("(cat:abc)") == [("cat:abc", 1.1)]  # not a number: text, and the ( still weights it
    assert parse_weights("x BREAK y") == [("x", 1.0), (BREAK, None), ("y", 1.0)]
    # a negative weight is a weight, never the break marker: the word stays, the prompt is not split
    assert parse_weights("a (cat:-1) dog") == [("a ", 1.0), ("cat", -1.0), (" dog", 1.0)]
    assert parse_weights("(x:-1) BREAK y") == [("x", -1.0), ("", 1.0), (BREAK, None), ("y", 1.0)]
    with pytest.raises(ValueError, match="not a number"):
        parse_weights("(cat:1.2.3)")
    with pytest.raises(ValueError, match="outside"):
        parse_weights("(cat:1000)")
    assert has_weights("a (cat:1.2)") and not has_weights("a cat (orange)") and not has_weights(r"\(cat:1.2)")


def test_chunking_wraps_pads_and_backtracks_to_a_comma():
    chunks = chunk_tokens([([5] * 7, 1.0)], 3, bos=1, eos=2, pad=0)
    assert [ids for ids, _ in chunks] == [[1, 5, 5, 5, 2], [1, 5, 5, 5, 2], [1, 5, 2, 0, 0]]
    weighted = chunk_tokens([([5], 1.0), ([6, 6], 1.5)], 4, bos=1, eos=2, pad=9)
    assert weighted == [([1, 5, 6, 6, 2, 9], [1.0, 1.0, 1.5, 1.5, 1.0, 1.0])]
    comma = chunk_tokens([([5, 7, 5, 5, 5], 1.0)], 4, bos=1, eos=2, pad=0, comma=7)
    assert [ids for ids, _ in comma] == [[1, 5, 7, 2, 0, 0], [1, 5, 5, 5, 2, 0]]  # text after the comma moved
    broken = chunk_tokens([([5], 1.0), ([], None), ([6], 1.0)], 4, bos=1, eos=2, pad=0)
    negative = chunk_tokens([([5], 1.0), ([7], -1.0), ([6], 1.0)], 4, bos=1, eos=2, pad=0)
    assert negative == [([1, 5, 7, 6, 2, 0], [1.0, 1.0, -1.0, 1.0, 1.0, 1.0])]  # one chunk: -1 is a weight
    assert [ids for ids, _ in broken] == [[1, 5, 2, 0, 0, 0], [1, 6, 2, 0, 0, 0]]
    assert chunk_tokens([], 4, bos=1, eos=2, pad=0) == [([1, 2, 0, 0, 0, 0], [1.0] * 6)]


@pytest.fixture(scope="module")
def clip77():
    """A tiny CLIP text encoder with SD's 77-token window."""
    import torch
    from transformers import CLIPTextModel

    from diffcli.builtin.tokenizer import tokenizer_and_text_config
    from tests.tiny import TINY_WORDS

    torch.manual_seed(0)
    tokenizer, config = tokenizer_and_text_config(TINY_WORDS, hidden_size=16, heads=2, max_length=77)
    encoder = CLIPTextModel(config).eval()
    with torch.no_grad():  # a trained CLIP's outputs have a mean far from 0 (a fresh layer norm's are ~0)
        encoder.final_layer_norm.bias.fill_(0.3)
    return SimpleNamespace(tokenizer=tokenizer, text_encoder=encoder)


def test_200_token_prompt_is_three_chunks_of_77(clip77):
    from diffcli.run.prompt_embeds import weighted_kwargs

    prompt = "a cat playing bass " * 50
    assert len(clip77.tokenizer(prompt, add_special_tokens=False).input_ids) == 200
    kwargs = weighted_kwargs(clip77, [prompt], None)
    assert tuple(kwargs["prompt_embeds"].shape) == (1, 3 * 77, 16)
    assert tuple(kwargs["negative_prompt_embeds"].shape) == (1, 3 * 77, 16)  # "" padded with empty chunks
    short = weighted_kwargs(clip77, ["a cat"], [prompt])
    assert tuple(short["prompt_embeds"].shape) == (1, 3 * 77, 16)


def test_weight_one_is_plain_and_other_weights_keep_the_mean(clip77):
    import torch

    from diffcli.run.prompt_embeds import weighted_kwargs

    plain = weighted_kwargs(clip77, ["a cat playing bass"], None)["prompt_embeds"]
    same = weighted_kwargs(clip77, ["a (cat:1.0) playing bass"], None)["prompt_embeds"]
    assert torch.equal(plain, same)
    ids = clip77.tokenizer("a cat playing bass", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(plain, clip77.text_encoder(ids)[0])  # what the pipeline itself encodes
    heavy = weighted_kwargs(clip77, ["a (cat:1.5) playing bass"], None)["prompt_embeds"]
    assert not torch.allclose(heavy, plain)
    assert torch.allclose(heavy.mean(), plain.mean(), atol=1e-6)  # A1111: rescaled to the original mean
    unscaled = plain.clone()
    unscaled[0, 2] *= 1.5  # token 2 is "cat" (after BOS and "a")
    assert torch.allclose(heavy, unscaled * (plain.mean() / unscaled.mean()), atol=1e-6)


def run_json(*args):
    result = invoke(*args, "--json", "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def pixels(path):
    return np.asarray(Image.open(path), dtype=int)


def test_short_plain_prompt_is_pixel_equal_to_plain_diffusers(tiny_sd, tmp_path):
    import torch
    from diffusers import DiffusionPipeline

    doc = run_json("txt2img", "a cat", "--model", str(tiny_sd), "--steps", "3", "--seed", "2",
                   "--negative-prompt", "blurry dog", "--prompt-syntax", "weighted", "-o", str(tmp_path / "w"))
    pipe = DiffusionPipeline.from_pretrained(tiny_sd)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a cat", negative_prompt="blurry dog", num_inference_steps=3,
                 generator=[torch.Generator("cpu").manual_seed(2)], output_type="np").images[0]
    assert np.abs(pixels(doc["images"][0]["path"]) - np.round(image * 255)).max() <= 2


@pytest.mark.parametrize("negative", [[], ["--negative-prompt", "blurry dog"]])
def test_sdxl_short_prompt_weighted_equals_plain(tiny_sdxl, tmp_path, negative):
    """SDXL: both text encoders' penultimate states, the pooled output, and zeros for an empty negative."""
    made = {syntax: run_json("txt2img", "a cat", "--model", str(tiny_sdxl), "--steps", "3", "--seed", "2", *negative,
                             "--prompt-syntax", syntax, "-o", str(tmp_path / syntax))["images"][0]["path"]
            for syntax in ("plain", "weighted")}
    assert np.array_equal(pixels(made["plain"]), pixels(made["weighted"]))
    heavy = run_json("txt2img", "a (cat:1.5)", "--model", str(tiny_sdxl), "--steps", "3", "--seed", "2", *negative,
                     "--prompt-syntax", "weighted", "-o", str(tmp_path / "heavy"))["images"][0]["path"]
    assert not np.array_equal(pixels(made["plain"]), pixels(heavy))


def test_weighted_long_prompt_runs_records_and_replays(tiny_sd, tmp_path):
    prompt = "a (cat:1.4) playing bass, " + "blue dog " * 12
    doc = run_json("txt2img", prompt, "--model", str(tiny_sd), "--steps", "2", "--prompt-syntax", "weighted",
                   "-o", str(tmp_path / "w"))
    path = doc["images"][0]["path"]
    info = Image.open(path).info
    assert info["parameters"].splitlines()[0] == prompt.strip()
    assert json.loads(info["diffcli"])["preset"]["prompt_syntax"] == "weighted"
    plain = run_json("txt2img", prompt, "--model", str(tiny_sd), "--steps", "2", "-o", str(tmp_path / "p"))
    assert not np.array_equal(pixels(plain["images"][0]["path"]), pixels(path))
    again = run_json("replay", path, "-o", str(tmp_path / "r"))
    assert np.array_equal(pixels(again["images"][0]["path"]), pixels(path))


def test_truncation_warning_names_the_dropped_words(tiny_sd, tmp_path):
    prompt = "a cat playing bass " * 4 + "blue red photo"  # 19 tokens; the tiny CLIP reads 14
    result = invoke("txt2img", prompt, "--model", str(tiny_sd), "--steps", "2", "-o", str(tmp_path / "t"),
                    "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]
    assert len(warnings) == 1 and "dropped: 'playing bass blue red photo'" in warnings[0], result.stderr
    json.loads(result.stdout)
    quiet = invoke("txt2img", prompt, "--model", str(tiny_sd), "--steps", "2", "-o", str(tmp_path / "w"),
                   "--device", "cpu", "--prompt-syntax", "weighted")
    assert quiet.exit_code == 0 and "Warning" not in quiet.stderr, quiet.output


def test_plain_syntax_points_out_weights_and_bad_weight_is_exit_2(tiny_sd, tmp_path):
    result = invoke("txt2img", "a (cat:1.3)", "--model", str(tiny_sd), "--steps", "2", "-o", str(tmp_path / "a"),
                    "--device", "cpu")
    assert result.exit_code == 0 and "--prompt-syntax weighted" in result.stderr, result.output
    bad = invoke("txt2img", "a (cat:1.2.3)", "--model", str(tiny_sd), "--steps", "2", "-o", str(tmp_path / "b"),
                 "--device", "cpu", "--prompt-syntax", "weighted")
    assert bad.exit_code == 2 and bad.stderr.startswith("Error: prompt ") and "not a number" in bad.stderr
    assert not (tmp_path / "b").exists()


def test_vary_prompt_syntax(tiny_sd, tmp_path):
    doc = run_json("txt2img", "a (cat:1.5) playing", "--model", str(tiny_sd), "--steps", "2",
                   "--vary", "prompt_syntax=plain,weighted", "-o", str(tmp_path / "v"))
    first, second = (entry["path"] for entry in doc["images"])
    assert not np.array_equal(pixels(first), pixels(second))
    assert json.loads(Image.open(second).info["diffcli"])["preset"]["prompt_syntax"] == "weighted"


def test_vary_prompt_syntax_checks_weights_before_loading(tiny_sd, tmp_path):
    """A bad weight in the weighted cell is exit 2 before the model loads: no cell's image is written."""
    result = invoke("txt2img", "a (cat:1.2.3)", "--model", str(tiny_sd), "--steps", "2", "--device", "cpu",
                    "--vary", "prompt_syntax=plain,weighted", "-o", str(tmp_path / "v"), "--json")
    assert result.exit_code == 2 and "not a number" in result.stderr, result.output
    assert json.loads(result.stdout)["status"] == "error"
    assert not (tmp_path / "v").exists()
