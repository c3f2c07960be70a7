"""Single-file checkpoints: a tiny SD pipeline written in the original layout loads pixel-equal to its
folder; architectures are detected from the header alone; the shipped configs and tokenizers are the
published ones; pickle, partial and unknown files are refused."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from tests.ldm_layout import write_single_file
from tests.test_cli import invoke

CPU = ("--device", "cpu", "--quiet", "--json")


@pytest.fixture(scope="module")
def tiny_file(tiny_sd, tmp_path_factory):
    return write_single_file(tiny_sd, tmp_path_factory.mktemp("single") / "tiny-sd.safetensors")


def run_ok(*args):
    result = invoke(*args, *CPU)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def same_pixels(a, b):
    return np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_single_file_is_pixel_equal_to_its_folder(tiny_sd, tiny_file, tmp_path):
    common = ("a cat playing bass", "--steps", "3", "--seed", "5", "-n", "2")
    folder = run_ok("txt2img", *common, "--model", str(tiny_sd), "-o", str(tmp_path / "folder"))
    single = run_ok("txt2img", *common, "--model", str(tiny_file), "--config", str(tiny_sd), "-o", str(tmp_path / "f"))
    for ours, theirs in zip(single["images"], folder["images"]):
        assert same_pixels(ours["path"], theirs["path"])
    with Image.open(single["images"][0]["path"]) as image:
        record = json.loads(image.info["diffcli"])
        assert "Model: tiny-sd.safetensors" in image.info["parameters"]
    assert record["preset"]["model"] == str(tiny_file) and record["preset"]["config"] == str(tiny_sd)
    replayed = run_ok("replay", single["images"][0]["path"], "-o", str(tmp_path / "r"))
    assert same_pixels(replayed["images"][0]["path"], single["images"][0]["path"])


def test_img2img_on_a_single_file(tiny_sd, tiny_file, tmp_path):
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "i.png")
    args = ("img2img", str(tmp_path / "i.png"), "a red dog", "--steps", "4", "--strength", "0.5", "-n", "1")
    folder = run_ok(*args, "--model", str(tiny_sd), "-o", str(tmp_path / "a"))
    single = run_ok(*args, "--model", str(tiny_file), "--config", str(tiny_sd), "-o", str(tmp_path / "b"))
    assert same_pixels(single["images"][0]["path"], folder["images"][0]["path"])


def test_pickle_checkpoint_needs_allow_pickle(tiny_sd, tiny_file, tmp_path):
    from safetensors.torch import load_file

    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": load_file(tiny_file)}, ckpt)
    refused = invoke("txt2img", "a cat", "--model", str(ckpt), "--config", str(tiny_sd), "-o", str(tmp_path / "o"),
                     *CPU)
    assert refused.exit_code == 3 and "--allow-pickle" in refused.output
    assert not (tmp_path / "o").exists()
    allowed = run_ok("txt2img", "a cat", "--steps", "2", "--model", str(ckpt), "--config", str(tiny_sd),
                     "--allow-pickle", "-o", str(tmp_path / "p"))
    folder = run_ok("txt2img", "a cat", "--steps", "2", "--model", str(tiny_sd), "-o", str(tmp_path / "q"))
    assert same_pixels(allowed["images"][0]["path"], folder["images"][0]["path"])


def test_inspect_names_the_detected_architecture(tiny_sd, tiny_file):
    result = invoke("inspect", str(tiny_file), "--set", f"config={tiny_sd}", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["single_file"] == {"architecture": "SD 1.x", "model_type": "v1", "config": str(tiny_sd)}
    assert doc["pipeline"] == "StableDiffusionPipeline"
    human = invoke("inspect", str(tiny_file), "--set", f"config={tiny_sd}")
    assert "single file: SD 1.x (diffusers' v1)" in human.stdout


def fake_checkpoint(path, kind):
    """Only the tensors diffusers' detector looks at (tiny), so nothing big is written or read."""
    tensors = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1, 4, 1, 1)}
    if kind == "v2":
        tensors["model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"] = torch.zeros(1, 1024)
    if kind == "xl_base":
        tensors["conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias"] = torch.zeros(1)
    if kind == "inpainting":
        tensors["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(1, 9, 1, 1)
    if kind == "lora":
        tensors = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(1, 1)}
    save_file(tensors, str(path))
    return path


@pytest.mark.parametrize("kind, side, pipeline, label", [
    ("v1", 512, "StableDiffusionPipeline", "SD 1.x"),
    ("v2", 768, "StableDiffusionPipeline", "SD 2.x (768x768, v-prediction)"),
    ("xl_base", 1024, "StableDiffusionXLPipeline", "SDXL base"),
])
def test_probe_reads_the_header_and_the_shipped_configs(tmp_path, kind, side, pipeline, label):
    from diffcli.plan.presets import Preset
    from diffcli.run.probe import probe_model
    from diffcli.run.single_file import describe

    preset = Preset(model=str(fake_checkpoint(tmp_path / f"{kind}.safetensors", kind)))
    facts = probe_model(preset, "txt2img")
    scheduler = facts.scheduler_config
    assert (facts.class_name, facts.width, facts.height, facts.name) == (pipeline, side, side, f"{kind}.safetensors")
    assert describe(preset) == {"architecture": label, "model_type": kind,
                                "config": f"shipped ({ {'v1': 'sd15', 'v2': 'sd21', 'xl_base': 'sdxl'}[kind]})"}
    assert scheduler["prediction_type" if kind == "v2" else "_class_name"] == (
        "v_prediction" if kind == "v2" else {"v1": "PNDMScheduler", "xl_base": "EulerDiscreteScheduler"}[kind])


def test_shipped_tokenizers_are_clips(tmp_path):
    from transformers import CLIPTokenizer

    from diffcli.run.single_file import lay_out

    for name, pads in (("sd15", ["<|endoftext|>"]), ("sd21", ["!"]), ("sdxl", ["<|endoftext|>", "!"])):
        folder = lay_out(name)
        subfolders = sorted(p.name for p in folder.glob("tokenizer*"))
        assert len(subfolders) == len(pads)
        for subfolder, pad in zip(subfolders, pads):
            tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder=subfolder, local_files_only=True)
            assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
            assert len(tokenizer) == 49408 and tokenizer.pad_token == pad and tokenizer.model_max_length == 77


@pytest.mark.parametrize("name, expected", [
    ("sd15", {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}),
    ("sd21", {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840}),
    ("sdxl", {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840}),
])
def test_shipped_configs_build_the_published_architectures(name, expected):
    """Parameter counts of the published models, built on the meta device from the shipped configs."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from diffcli.plan.resources import shipped_configs_dir

    folder = shipped_configs_dir() / name
    counts = {}
    with init_empty_weights():
        counts["unet"] = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        counts["vae"] = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        for part in ("text_encoder", "text_encoder_2"):
            if (folder / part).is_dir():
                config = CLIPTextConfig.from_pretrained(folder / part)
                cls = CLIPTextModelWithProjection if part.endswith("_2") else CLIPTextModel
                counts[part] = cls(config)
    assert {k: sum(p.numel() for p in m.parameters()) for k, m in counts.items()} == expected


@pytest.mark.parametrize("case, code, needle", [
    ("missing", 3, "not found"), ("lora", 3, "no Stable Diffusion UNet"), ("inpainting", 3, "--config"),
    ("corrupt", 3, "safetensors"), ("config-for-folder", 2, "--config is for single-file"),
])
def test_refusals(tiny_sd, tmp_path, case, code, needle):
    model = tmp_path / f"{case}.safetensors"
    extra = []
    if case in ("lora", "inpainting"):
        fake_checkpoint(model, case)
    elif case == "corrupt":
        model.write_bytes(b"\xff" * 64)
    elif case == "config-for-folder":
        model, extra = tiny_sd, ["--config", str(tiny_sd)]
    result = invoke("txt2img", "a cat", "--model", str(model), *extra, "-o", str(tmp_path / "o"), *CPU)
    assert result.exit_code == code, result.output
    assert needle in json.loads(result.stdout)["error"]["message"]
