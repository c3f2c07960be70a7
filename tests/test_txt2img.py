import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from diffcli.errors import PresetError
from diffcli.plan.items import ModelFacts, PromptLine, build_items
from diffcli.plan.presets import Preset
from diffcli.plan.prompts import read_prompts_file
from diffcli.run.commands import run_generation
from tests.test_cli import invoke


def preset_for(model, tmp_path, **kw):
    base = dict(model=str(model), steps=4, seed=42, num_images=3, batch_size=2, device="cpu",
                output=str(tmp_path / "out"), guidance_scale=5.0)
    return Preset(**{**base, **kw})


def run_txt2img(preset, lines):
    return run_generation("txt2img", preset, "txt2img", lines)


def parse_a1111_independently(text):
    """A reader written from the A1111 format description, not from diffcli's code."""
    lines = text.split("\n")
    params = dict(re.findall(r'\s*([\w ]+):\s*("(?:\\.|[^"\\])*"|[^,]*)(?:,|$)', lines[-1]))
    params = {k.strip(): (json.loads(v) if v.startswith('"') else v.strip()) for k, v in params.items()}
    negative = next((l[len("Negative prompt: "):] for l in lines[:-1] if l.startswith("Negative prompt: ")), None)
    return lines[0], negative, params


@pytest.mark.parametrize("batch_size", [1, 2])
def test_sd_pixel_contract(tiny_sd, tmp_path, batch_size):
    from diffusers import StableDiffusionPipeline

    preset = preset_for(tiny_sd, tmp_path, batch_size=batch_size, negative_prompt="blurry")
    report = run_txt2img(preset, [PromptLine("a cat playing bass")])
    reference = StableDiffusionPipeline.from_pretrained(tiny_sd)
    reference.set_progress_bar_config(disable=True)
    assert len(report.images) == 3
    for i, entry in enumerate(report.images):
        theirs = reference("a cat playing bass", negative_prompt="blurry", guidance_scale=5.0, num_inference_steps=4,
                           generator=torch.Generator("cpu").manual_seed(42 + i)).images[0]
        ours = Image.open(entry["path"])
        assert ours.size == theirs.size == (16, 16)
        assert np.abs(np.asarray(ours, dtype=int) - np.asarray(theirs, dtype=int)).max() <= 2
        assert entry["path"].endswith(f"0000-s{42 + i}-a-cat-playing-bass.png")


def test_sdxl_runs_with_frames(tiny_sdxl, tmp_path):
    preset = preset_for(tiny_sdxl, tmp_path, num_images=2, every=2, steps=4)
    report = run_txt2img(preset, [PromptLine("a red dog")])
    assert [e["seed"] for e in report.images] == [42, 43]
    frames = report.to_dict()["frames"]
    assert sorted((f["image_index"], f["step"]) for f in frames) == [(0, 2), (0, 4), (1, 2), (1, 4)]
    last = [f for f in frames if f["step"] == 4 and f["image_index"] == 0][0]
    assert np.array_equal(np.asarray(Image.open(last["path"])), np.asarray(Image.open(report.images[0]["path"])))


def test_metadata_round_trip_and_replay(tiny_sd, tmp_path):
    preset = preset_for(tiny_sd, tmp_path, num_images=1, negative_prompt="blurry, red: no")
    report = run_txt2img(preset, [PromptLine("a cat, playing bass")])
    path = report.images[0]["path"]
    prompt, negative, params = parse_a1111_independently(Image.open(path).info["parameters"])
    assert prompt == "a cat, playing bass" and negative == "blurry, red: no"
    assert params["Steps"] == "4" and params["Seed"] == "42" and params["CFG scale"] == "5.0"
    # a local folder is named by its folder name for other tools; the replay record keeps the full path
    assert params["Size"] == "16x16" and params["Model"] == tiny_sd.name and "Sampler" in params
    assert json.loads(Image.open(path).info["diffcli"])["preset"]["model"] == str(tiny_sd)
    replayed = replay(path, "--output", str(tmp_path / "replay"))
    assert replayed["images"][0]["path"] == str(tmp_path / "replay" / "0000-s42-a-cat-playing-bass.png")
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(replayed["images"][0]["path"])))
    assert json.loads(Image.open(replayed["images"][0]["path"]).info["diffcli"]) == json.loads(
        Image.open(path).info["diffcli"])
    changed = replay(path, "--set", "steps=6", "--set", "seed=99", "--output", str(tmp_path / "r2"))
    assert changed["images"][0]["path"] == str(tmp_path / "r2" / "0000-s99-a-cat-playing-bass.png")
    assert "Steps: 6" in Image.open(changed["images"][0]["path"]).info["parameters"]
    assert "Seed: 99" in Image.open(changed["images"][0]["path"]).info["parameters"]


def replay(*args):
    result = invoke("replay", *args, "--json", "--quiet")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_replay_refuses_foreign_image(tmp_path):
    from diffcli.errors import UsageError

    Image.new("RGB", (4, 4)).save(tmp_path / "x.png")
    from diffcli.plan.replay import read_record

    with pytest.raises(UsageError, match="no diffcli metadata"):
        read_record(tmp_path / "x.png")
    result = invoke("replay", str(tmp_path / "x.png"))
    assert result.exit_code == 2 and "no diffcli metadata" in result.stderr and not list(tmp_path.glob("outputs"))


def test_size_validation(tiny_sd, tmp_path):
    preset = preset_for(tiny_sd, tmp_path, width=20, num_images=1)
    with pytest.raises(PresetError, match="width: 20 is not divisible by 8"):
        run_txt2img(preset, [PromptLine("a cat")])
    assert not (tmp_path / "out").exists()  # refused before anything was written
    ok = run_txt2img(preset_for(tiny_sd, tmp_path, width=24, height=16, num_images=1), [PromptLine("a cat")])
    assert Image.open(ok.images[0]["path"]).size == (24, 16)


def test_prompts_file_text_and_jsonl(tmp_path):
    text = tmp_path / "p.txt"
    text.write_text("# comment\n\na cat\n  a dog playing bass  \n")
    assert [p.prompt for p in read_prompts_file(text)] == ["a cat", "a dog playing bass"]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "a cat", "seed": 5, "num_images": 2}\n\n{"prompt": "a dog", "steps": 9}\n')
    lines = read_prompts_file(jsonl)
    facts = ModelFacts(task="txt2img", class_name="StableDiffusionPipeline", width=16, height=16, size_multiple=8,
                       fixed_size=False, name="m")
    items = build_items(Preset(model="m", seed=42, num_images=1), facts, lines)
    assert [(i.stem, i.seed, i.steps) for i in items] == [
        ("0000-s5-a-cat", 5, 50), ("0000-s6-a-cat", 6, 50), ("0001-s42-a-dog", 42, 9)]


@pytest.mark.parametrize("content,message", [
    ('{"prompt": "a"}\n{"prompt": "b", "stepz": 3}\n', ":2: stepz: unknown key"),
    ('{"prompt": "a"}\n{not json}\n', ":2: invalid JSON"),
    ('{"prompt": "a", "seed": -1}\n', ":1: seed: expected an integer >= 0"),
    ('{"seed": 3}\n', ":1: prompt: expected a non-empty string"),
    ("\n# only comments\n", "no prompts"),
])
def test_bad_prompts_files(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(PresetError, match=re.escape(message)):
        read_prompts_file(path)


def test_task_mismatch_is_a_model_error(tiny_ddpm, tiny_sd, tmp_path):
    from diffcli.errors import ModelError

    with pytest.raises(ModelError, match="not a txt2img model"):
        run_txt2img(preset_for(tiny_ddpm, tmp_path), [PromptLine("a cat")])
    with pytest.raises(ModelError, match="not an unconditional model"):
        run_generation("unconditional", preset_for(tiny_sd, tmp_path), "unconditional")
    assert not (tmp_path / "out").exists()
