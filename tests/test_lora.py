"""LoRAs: diffcli's images equal diffusers' load_lora_weights + set_adapters; refusals; metadata; replay."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffcli.plan.keys import check_value
from diffcli.plan.loras import check_loras, parse_spec
from tests.test_cli import invoke

STEPS = "3"


def add_random_lora(model, seed: int) -> dict:
    """A peft LoRA (rank 4) on `model`'s attention with random lora_B weights, so it changes the output; its
    state dict, ready for a pipeline's `save_lora_weights`."""
    import torch
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    model.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return get_peft_model_state_dict(model)


def make_lora(unet, folder: Path, seed: int) -> Path:
    """A LoRA for `unet` (`add_random_lora`), saved as diffusers saves SD LoRAs."""
    from diffusers import StableDiffusionPipeline

    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=add_random_lora(unet, seed))
    return folder / "pytorch_lora_weights.safetensors"


@pytest.fixture(scope="module")
def loras(tiny_sd, tmp_path_factory):
    """Two LoRAs for the tiny SD UNet, one for a UNet with other channel sizes, and a pickle copy."""
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    root = tmp_path_factory.mktemp("loras")
    made = {}
    for name, seed in (("ink", 1), ("glow", 2)):
        made[name] = make_lora(UNet2DConditionModel.from_pretrained(tiny_sd / "unet"), root / name, seed)
    config = dict(UNet2DConditionModel.load_config(tiny_sd / "unet"), block_out_channels=(32, 64))
    made["wrong"] = make_lora(UNet2DConditionModel.from_config(config), root / "wrong", 3)
    made["pickle"] = root / "ink.bin"
    torch.save(load_file(made["ink"]), made["pickle"])
    return made


def run_json(*args):
    result = invoke(*args, "--json", "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def txt2img(model, out, *extra):
    return run_json("txt2img", "a cat", "--model", str(model), "--steps", STEPS, "--seed", "4", "-o", str(out), *extra)


def pixels(path):
    return np.asarray(Image.open(path), dtype=int)


def diffusers_image(model, adapters):
    """Plain diffusers: load_lora_weights + set_adapters, the same call as diffcli's."""
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    for name, (path, _) in adapters.items():
        pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
    if adapters:
        pipe.set_adapters(list(adapters), [weight for _, weight in adapters.values()])
    image = pipe("a cat", num_inference_steps=int(STEPS), generator=[torch.Generator("cpu").manual_seed(4)],
                 output_type="np").images[0]
    return np.round(image * 255).astype(int)


def test_lora_matches_diffusers_and_weight_zero_is_no_lora(tiny_sd, loras, tmp_path):
    plain = pixels(txt2img(tiny_sd, tmp_path / "plain")["images"][0]["path"])
    one = pixels(txt2img(tiny_sd, tmp_path / "one", "--lora", f"{loras['ink']}:0.8")["images"][0]["path"])
    reference = diffusers_image(tiny_sd, {"ink": (loras["ink"], 0.8)})
    assert np.abs(one - reference).max() <= 2
    assert np.abs(one - plain).max() > 10  # the LoRA really changes the image
    zero = pixels(txt2img(tiny_sd, tmp_path / "zero", "--lora", f"{loras['ink']}:0")["images"][0]["path"])
    assert np.abs(zero - plain).max() <= 2
    scaled = txt2img(tiny_sd, tmp_path / "scaled", "--lora", f"{loras['ink']}:1.6", "--lora-weight", "0.5")
    assert np.abs(pixels(scaled["images"][0]["path"]) - one).max() <= 2  # 1.6 x 0.5 == 0.8
    assert scaled["images"][0]["loras"] == [{"name": "ink", "weight": 0.8}]


def test_two_loras_at_once(tiny_sd, loras, tmp_path):
    doc = txt2img(tiny_sd, tmp_path / "two", "--lora", f"{loras['ink']}:0.7", "--lora", f"{loras['glow']}:-0.5")
    reference = diffusers_image(tiny_sd, {"ink": (loras["ink"], 0.7), "glow": (loras["glow"], -0.5)})
    assert np.abs(pixels(doc["images"][0]["path"]) - reference).max() <= 2
    only_ink = pixels(txt2img(tiny_sd, tmp_path / "ink", "--lora", f"{loras['ink']}:0.7")["images"][0]["path"])
    assert np.abs(pixels(doc["images"][0]["path"]) - only_ink).max() > 2


def test_metadata_shows_loras_and_replay_reproduces(tiny_sd, loras, tmp_path):
    from diffcli.plan.loras import short_hash

    glow = tmp_path / "more_Steps.safetensors"  # a name ending in "Steps": the tag and hash keep their colons
    glow.write_bytes(loras["glow"].read_bytes())
    doc = txt2img(tiny_sd, tmp_path / "m", "--lora", f"{loras['ink']}:0.75", "--lora", str(glow))
    path = doc["images"][0]["path"]
    info = Image.open(path).info
    first, settings = info["parameters"].splitlines()
    assert first == "a cat <lora:ink:0.75> <lora:more_Steps:1>"
    assert f'Lora hashes: "ink: {short_hash(str(loras["ink"]))}, more_Steps: {short_hash(str(glow))}"' in settings
    assert len(short_hash(str(loras["ink"]))) == 12
    record = json.loads(info["diffcli"])["preset"]
    assert record["loras"] == [{"path": str(loras["ink"]), "weight": 0.75, "name": "ink"},
                               {"path": str(glow), "weight": 1.0, "name": "more_Steps"}]
    again = run_json("replay", path, "-o", str(tmp_path / "replayed"))
    assert np.array_equal(pixels(again["images"][0]["path"]), pixels(path))


def test_wrong_architecture_is_exit_3_with_one_line(tiny_sd, loras, tmp_path):
    result = invoke("txt2img", "a cat", "--model", str(tiny_sd), "--steps", "2", "--lora", str(loras["wrong"]),
                    "-o", str(tmp_path / "w"), "--device", "cpu")
    assert result.exit_code == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: LoRA ") and "does not fit" in lines[0], lines
    assert "Traceback" not in result.output and not (tmp_path / "w").exists()


def test_pickle_lora_refused_without_allow_pickle(tiny_sd, loras, tmp_path):
    result = invoke("txt2img", "a cat", "--model", str(tiny_sd), "--steps", "2", "--lora", str(loras["pickle"]),
                    "-o", str(tmp_path / "p"), "--device", "cpu")
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith("Error: LoRA ") and "--allow-pickle" in result.stderr
    allowed = txt2img(tiny_sd, tmp_path / "allowed", "--lora", f"{loras['pickle']}:0.8", "--allow-pickle")
    reference = diffusers_image(tiny_sd, {"ink": (loras["ink"], 0.8)})
    assert np.abs(pixels(allowed["images"][0]["path"]) - reference).max() <= 2


def test_replay_never_takes_pickle_from_a_tampered_record(tiny_sd, loras, tmp_path):
    from PIL.PngImagePlugin import PngInfo

    doc = txt2img(tiny_sd, tmp_path / "t", "--lora", str(loras["ink"]))
    image = Image.open(doc["images"][0]["path"])
    record = json.loads(image.info["diffcli"])
    record["preset"].update(allow_pickle=True, loras=[{"path": str(loras["pickle"]), "weight": 1, "name": "x"}])
    info = PngInfo()
    info.add_text("diffcli", json.dumps(record))
    forged = tmp_path / "forged.png"
    image.save(forged, pnginfo=info)
    result = invoke("replay", str(forged), "-o", str(tmp_path / "r"), "--device", "cpu")
    assert result.exit_code == 3 and "--allow-pickle" in result.stderr, result.output


def test_preset_loras_resolve_against_the_preset_file(tiny_sd, loras, tmp_path):
    folder = loras["ink"].parent
    preset = folder.parent / "with-lora.yaml"
    preset.write_text(f"model: {tiny_sd}\nloras:\n  - path: ink/pytorch_lora_weights.safetensors\n"
                      "    weight: 0.8\n    name: inky\n", encoding="utf-8")
    doc = run_json("txt2img", "a cat", "--preset", str(preset), "--steps", STEPS, "--seed", "4",
                   "-o", str(tmp_path / "p"))
    assert doc["images"][0]["loras"] == [{"name": "inky", "weight": 0.8}]
    reference = diffusers_image(tiny_sd, {"inky": (loras["ink"], 0.8)})
    assert np.abs(pixels(doc["images"][0]["path"]) - reference).max() <= 2


def test_loras_key_validation():
    assert parse_spec("C:\\models\\ink.safetensors") == {"path": "C:\\models\\ink.safetensors"}
    assert parse_spec("owner/name:-0.5") == {"path": "owner/name", "weight": -0.5}
    named = check_loras(["a/ink.safetensors", "b/ink.safetensors:0.5", {"path": "owner/style"}])
    assert [(e["name"], e["weight"]) for e in named] == [("ink", 1.0), ("ink_2", 0.5), ("style", 1.0)]
    for bad, message in (([{"path": ""}], "path"), ([{"path": "x", "weight": 10.5}], "weight"),
                         (["x"] * 17, "at most 16"), ([{"path": "x", "scale": 1}], "unknown field"),
                         ([{"path": "x", "name": "a:b"}], "name"), ([{"path": "x", "weight": True}], "weight"),
                         (7, "list")):
        with pytest.raises(ValueError, match=message):
            check_value("loras", bad)
    with pytest.raises(ValueError):
        check_value("lora_weight", 10.5)


def test_vary_lora_weight_changes_weights_without_reloading(tiny_sd, loras, tmp_path):
    doc = run_json("txt2img", "a cat", "--model", str(tiny_sd), "--steps", STEPS, "--seed", "4", "-b", "3",
                   "--lora", str(loras["ink"]), "--vary", "lora_weight=0,0.5,1", "-o", str(tmp_path / "v"))
    assert [entry["cell"] for entry in doc["images"]] == [{"lora_weight": w} for w in (0, 0.5, 1)]
    plain = pixels(txt2img(tiny_sd, tmp_path / "plain")["images"][0]["path"])
    assert np.abs(pixels(doc["images"][0]["path"]) - plain).max() <= 2
    for entry, weight in zip(doc["images"][1:], (0.5, 1.0)):
        reference = diffusers_image(tiny_sd, {"ink": (loras["ink"], weight)})
        assert np.abs(pixels(entry["path"]) - reference).max() <= 2, weight
        assert f"<lora:ink:{weight:g}>" in Image.open(entry["path"]).info["parameters"].splitlines()[0]
    refused = invoke("txt2img", "a cat", "--model", str(tiny_sd), "--vary", "lora_weight=0,1", "-o", str(tmp_path / "r"))
    assert refused.exit_code == 2 and "needs a LoRA" in refused.stderr


def test_prompts_file_line_sets_lora_weight(tiny_sd, loras, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a cat", "lora_weight": 0}\n{"prompt": "a cat", "seed": 4}\n', encoding="utf-8")
    doc = run_json("txt2img", "--prompts-file", str(prompts), "--model", str(tiny_sd), "--steps", STEPS, "--seed", "4",
                   "--lora", f"{loras['ink']}:0.8", "-o", str(tmp_path / "f"))
    assert [entry["loras"] for entry in doc["images"]] == [[{"name": "ink", "weight": 0.0}],
                                                           [{"name": "ink", "weight": 0.8}]]
    plain = pixels(txt2img(tiny_sd, tmp_path / "plain")["images"][0]["path"])
    assert np.abs(pixels(doc["images"][0]["path"]) - plain).max() <= 2
    reference = diffusers_image(tiny_sd, {"ink": (loras["ink"], 0.8)})
    assert np.abs(pixels(doc["images"][1]["path"]) - reference).max() <= 2
