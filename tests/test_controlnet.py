"""ControlNet: pixel contract with diffusers' ControlNet pipelines (SD and SDXL; txt2img, img2img, inpaint; one
and two ControlNets), the control image really steering, Canny preprocessing, A1111 metadata, replay by hash,
--vary control_scale and prompts-file lines, and every bad input refused with one line before loading."""

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import cached_model
from tests.test_cli import invoke
from tests.test_img2img import _png_header_only, random_image
from tests.test_inpaint import half_mask

CPU = ("--device", "cpu", "--quiet", "--json")
PROMPT = "a cat playing bass"


@pytest.fixture(scope="module")
def tiny_controlnet_xl():
    from tests.tiny import build_tiny_controlnet

    return cached_model("tiny-controlnet-xl", lambda folder: build_tiny_controlnet(folder, xl=True))


def run_ok(*args):
    result = invoke(*args, *CPU)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def pixels(path):
    with Image.open(path) as image:
        return np.asarray(image, dtype=int)


def reference(pipe, seeds, **kwargs):
    """The plain pipeline's images, one call per seed with torch.Generator("cpu").manual_seed(seed)."""
    pipe.set_progress_bar_config(disable=True)
    return [np.asarray(pipe(PROMPT, num_inference_steps=4, guidance_scale=5.0, output_type="pil",
                            generator=torch.Generator("cpu").manual_seed(seed), **kwargs).images[0], dtype=int)
            for seed in seeds]


def assert_equal(doc, expected):
    assert len(doc["images"]) == len(expected)
    for entry, theirs in zip(doc["images"], expected):
        assert np.abs(pixels(entry["path"]) - theirs).max() <= 2


COMMON = ("--steps", "4", "-g", "5", "--seed", "3", "-n", "2")


@pytest.mark.parametrize("batch_size", [1, 2])
def test_txt2img_equals_the_plain_controlnet_pipeline_and_the_control_steers(tiny_sd, tiny_controlnet, tmp_path,
                                                                              batch_size):
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    control = random_image(tmp_path / "control.png", seed=5)
    doc = run_ok("txt2img", PROMPT, "--model", str(tiny_sd), "--controlnet", str(tiny_controlnet), "--control-image",
                 str(control), "--control-scale", "0.8", "--control-start", "0.1", "--control-end", "0.9", *COMMON,
                 "-b", str(batch_size), "-o", str(tmp_path / "o"))
    pipe = StableDiffusionControlNetPipeline.from_pretrained(
        tiny_sd, controlnet=ControlNetModel.from_pretrained(tiny_controlnet))
    assert_equal(doc, reference(pipe, [3, 4], image=Image.open(control), controlnet_conditioning_scale=0.8,
                                control_guidance_start=0.1, control_guidance_end=0.9))
    assert [e["control_scale"] for e in doc["images"]] == [0.8, 0.8]
    assert doc["images"][0]["controlnet"] == [{"model": str(tiny_controlnet), "control_image": str(control)}]
    plain = run_ok("txt2img", PROMPT, "--model", str(tiny_sd), *COMMON, "-o", str(tmp_path / "plain"))
    other = random_image(tmp_path / "other.png", seed=6)
    steered = run_ok("txt2img", PROMPT, "--model", str(tiny_sd), "--controlnet", str(tiny_controlnet),
                     "--control-image", str(other), "--control-scale", "0.8", "--control-start", "0.1",
                     "--control-end", "0.9", *COMMON, "-o", str(tmp_path / "other"))
    for ours, without, another in zip(doc["images"], plain["images"], steered["images"]):
        assert np.abs(pixels(ours["path"]) - pixels(without["path"])).max() > 20  # the ControlNet changes it
        assert np.abs(pixels(ours["path"]) - pixels(another["path"])).max() > 20  # and so does its image


def test_img2img_and_inpaint_equal_the_plain_controlnet_pipelines(tiny_sd, tiny_controlnet, tmp_path):
    from diffusers import (ControlNetModel, StableDiffusionControlNetImg2ImgPipeline,
                           StableDiffusionControlNetInpaintPipeline, StableDiffusionPipeline)

    init, control = random_image(tmp_path / "init.png"), random_image(tmp_path / "control.png", seed=5)
    mask = half_mask(tmp_path / "mask.png")
    with_control = ("--controlnet", str(tiny_controlnet), "--control-image", str(control))
    image_doc = run_ok("img2img", str(init), PROMPT, "--model", str(tiny_sd), *with_control, "--strength", "0.75",
                       *COMMON, "-o", str(tmp_path / "i"))
    inpaint_doc = run_ok("inpaint", str(init), str(mask), PROMPT, "--model", str(tiny_sd), *with_control,
                         "--strength", "0.75", *COMMON, "-o", str(tmp_path / "p"))
    base = StableDiffusionPipeline.from_pretrained(tiny_sd)
    net = ControlNetModel.from_pretrained(tiny_controlnet)
    image_pipe = StableDiffusionControlNetImg2ImgPipeline.from_pipe(base, controlnet=net)
    assert_equal(image_doc, reference(image_pipe, [3, 4], image=Image.open(init), control_image=Image.open(control),
                                      strength=0.75))
    inpaint_pipe = StableDiffusionControlNetInpaintPipeline.from_pipe(base, controlnet=net)
    assert_equal(inpaint_doc, reference(inpaint_pipe, [3, 4], image=Image.open(init), mask_image=Image.open(mask),
                                        control_image=Image.open(control), strength=0.75,
                                        controlnet_conditioning_scale=1.0))  # its own default is 0.5


def test_sdxl_txt2img_and_inpaint_equal_the_plain_pipelines(tiny_sdxl, tiny_controlnet_xl, tmp_path):
    from diffusers import (ControlNetModel, StableDiffusionXLControlNetInpaintPipeline,
                           StableDiffusionXLControlNetPipeline)

    init, control = random_image(tmp_path / "init.png"), random_image(tmp_path / "control.png", seed=5)
    mask = half_mask(tmp_path / "mask.png")
    with_control = ("--controlnet", str(tiny_controlnet_xl), "--control-image", str(control), "--width", "16",
                    "--height", "16")
    doc = run_ok("txt2img", PROMPT, "--model", str(tiny_sdxl), *with_control, *COMMON, "-o", str(tmp_path / "t"))
    inpaint_doc = run_ok("inpaint", str(init), str(mask), PROMPT, "--model", str(tiny_sdxl), *with_control,
                         "--strength", "0.75", *COMMON, "-o", str(tmp_path / "p"))
    pipe = StableDiffusionXLControlNetPipeline.from_pretrained(
        tiny_sdxl, controlnet=ControlNetModel.from_pretrained(tiny_controlnet_xl))
    assert_equal(doc, reference(pipe, [3, 4], image=Image.open(control), width=16, height=16))
    inpaint_pipe = StableDiffusionXLControlNetInpaintPipeline.from_pipe(pipe)
    assert_equal(inpaint_doc, reference(inpaint_pipe, [3, 4], image=Image.open(init), mask_image=Image.open(mask),
                                        control_image=Image.open(control), strength=0.75, width=16, height=16,
                                        controlnet_conditioning_scale=1.0))


def test_two_controlnets_and_canny_equal_the_plain_multi_controlnet_pipeline(tiny_sd, tiny_controlnet, tmp_path):
    """Two ControlNets as diffusers' MultiControlNetModel; --control canny feeds OpenCV's Canny edges."""
    import cv2
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    first, second = random_image(tmp_path / "a.png", seed=5), random_image(tmp_path / "b.png", size=(24, 16))
    doc = run_ok("txt2img", PROMPT, "--model", str(tiny_sd), "--controlnet", str(tiny_controlnet), "--controlnet",
                 str(tiny_controlnet), "--control-image", str(first), "--control-image", str(second), "--control",
                 "canny", "--control-scale", "0.6", *COMMON, "-o", str(tmp_path / "o"))
    net = ControlNetModel.from_pretrained(tiny_controlnet)
    pipe = StableDiffusionControlNetPipeline.from_pretrained(tiny_sd, controlnet=[net, net])
    assert type(pipe.controlnet).__name__ == "MultiControlNetModel"

    def edges(path):  # fitted to 16x16 as the init image is (cover + centre crop), then Canny 100/200
        from PIL import ImageOps

        fitted = ImageOps.fit(Image.open(path).convert("RGB"), (16, 16), method=Image.Resampling.LANCZOS)
        found = cv2.Canny(np.asarray(fitted), 100, 200)
        return Image.fromarray(np.stack([found] * 3, axis=-1))

    assert_equal(doc, reference(pipe, [3, 4], image=[edges(first), edges(second)],
                                controlnet_conditioning_scale=[0.6, 0.6]))
    with Image.open(doc["images"][0]["path"]) as image:
        parameters = image.info["parameters"]
    name = tiny_controlnet.name
    for unit in (0, 1):
        assert (f'ControlNet {unit}: "Module: canny, Model: {name}, Weight: 0.6, Resize Mode: Crop and Resize, '
                f'Guidance Start: 0.0, Guidance End: 1.0, Threshold A: 100, Threshold B: 200"') in parameters


def test_replay_reproduces_and_finds_control_images_by_hash(tiny_sd, tiny_controlnet, tmp_path):
    control = random_image(tmp_path / "control.png", seed=5)
    doc = run_ok("txt2img", PROMPT, "--model", str(tiny_sd), "--controlnet", str(tiny_controlnet), "--control-image",
                 str(control), "--control-scale", "1.5", "--control-end", "0.5", "--steps", "4", "-n", "1",
                 "-o", str(tmp_path / "o"))
    made = doc["images"][0]["path"]
    with Image.open(made) as image:
        record = json.loads(image.info["diffcli"])
    assert record["control_image"] == [{"name": "control.png",
                                        "sha256": hashlib.sha256(control.read_bytes()).hexdigest()}]
    assert record["preset"]["controlnet"] == [str(tiny_controlnet)] and record["preset"]["control_scale"] == 1.5
    again = run_ok("replay", made, "-o", str(tmp_path / "r1"))
    assert np.array_equal(pixels(again["images"][0]["path"]), pixels(made))
    kept = tmp_path / "kept.png"
    kept.write_bytes(control.read_bytes())
    random_image(control, seed=9)  # the recorded path now holds another image
    changed = invoke("replay", made, "-o", str(tmp_path / "r2"), *CPU)
    assert changed.exit_code == 2 and "--set control_image=" in changed.output and "sha256" in changed.output
    assert not (tmp_path / "r2").exists()
    fixed = run_ok("replay", made, "--set", f"control_image={kept}", "-o", str(tmp_path / "r3"))
    assert np.array_equal(pixels(fixed["images"][0]["path"]), pixels(made))


def test_vary_control_scale_and_prompts_file_lines(tiny_sd, tiny_controlnet, tmp_path):
    control = random_image(tmp_path / "control.png", seed=5)
    with_control = ("--model", str(tiny_sd), "--controlnet", str(tiny_controlnet), "--control-image", str(control),
                    "--steps", "3", "-n", "1")
    varied = run_ok("txt2img", PROMPT, *with_control, "--vary", "control_scale=0,1.0", "-o", str(tmp_path / "v"))
    assert [(e["cell"], e["control_scale"]) for e in varied["images"]] == [({"control_scale": 0.0}, 0.0),
                                                                           ({"control_scale": 1.0}, 1.0)]
    assert varied["grids"]
    zero, one = (pixels(e["path"]) for e in varied["images"])
    plain = run_ok("txt2img", PROMPT, "--model", str(tiny_sd), "--steps", "3", "-n", "1", "-o", str(tmp_path / "p"))
    assert np.abs(zero - pixels(plain["images"][0]["path"])).max() <= 2  # scale 0: the ControlNet adds nothing
    assert np.abs(one - zero).max() > 20
    again = run_ok("replay", varied["images"][1]["path"], "-o", str(tmp_path / "r"))
    assert np.array_equal(pixels(again["images"][0]["path"]), one)
    lines = tmp_path / "p.jsonl"
    lines.write_text(f'{{"prompt": "{PROMPT}", "control_scale": 0}}\n{{"prompt": "{PROMPT}"}}\n')
    from_file = run_ok("txt2img", "--prompts-file", str(lines), *with_control, "-o", str(tmp_path / "f"))
    assert [e["control_scale"] for e in from_file["images"]] == [0.0, 1.0]
    assert np.abs(pixels(from_file["images"][0]["path"]) - zero).max() <= 2
    refused = invoke("txt2img", PROMPT, "--model", str(tiny_sd), "--vary", "control_scale=0,1", *CPU)
    assert refused.exit_code == 2 and "needs a ControlNet" in refused.output


def _bad_controlnet(tmp_path, tiny_sd, case):
    """A ControlNet folder that is wrong in one way."""
    folder = tmp_path / "net"
    folder.mkdir()
    if case == "no-config":
        (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    elif case == "bad-json":
        (folder / "config.json").write_text('{"_class_name": "ControlNetModel", ')
        (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    elif case == "wrong-class":
        (folder / "config.json").write_text((tiny_sd / "unet" / "config.json").read_text())
        (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    elif case == "pickle-only":
        (folder / "config.json").write_text('{"_class_name": "ControlNetModel"}')
        (folder / "diffusion_pytorch_model.bin").write_bytes(b"x")
    elif case == "huge":
        (folder / "config.json").write_text('{"_class_name": "ControlNetModel", "block_out_channels": [1e9]}')
        (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    return folder


@pytest.mark.parametrize("case, needle", [
    ("no-config", "no config.json"), ("bad-json", "corrupt config.json"), ("wrong-class", "names 'UNet2DConditionModel'"),
    ("pickle-only", "only pickle weights"), ("huge", "more than diffcli allows"), ("missing", "folder not found"),
])
def test_bad_controlnet_folders_exit_3_before_loading(tiny_sd, tmp_path, case, needle):
    folder = tmp_path / "nowhere" if case == "missing" else _bad_controlnet(tmp_path, tiny_sd, case)
    control = random_image(tmp_path / "control.png")
    result = invoke("txt2img", PROMPT, "--model", str(tiny_sd), "--controlnet", str(folder), "--control-image",
                    str(control), "-o", str(tmp_path / "o"), *CPU)
    assert result.exit_code == 3, result.output
    assert needle in json.loads(result.stdout)["error"]["message"]
    assert not (tmp_path / "o").exists()


def test_sdxl_controlnet_on_an_sd_model_names_the_mismatch(tiny_sd, tiny_controlnet_xl, tmp_path):
    control = random_image(tmp_path / "control.png")
    result = invoke("txt2img", PROMPT, "--model", str(tiny_sd), "--controlnet", str(tiny_controlnet_xl),
                    "--control-image", str(control), "-o", str(tmp_path / "o"), *CPU)
    assert result.exit_code == 3, result.output
    message = json.loads(result.stdout)["error"]["message"]
    assert "cross_attention_dim / addition_embed_type differ" in message and "'text_time' vs the model's None" in message
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("case, needle", [
    ("missing", "not found"), ("folder", "not found (or not a file)"), ("truncated", "not a readable image"),
    ("bomb", "more pixels than"), ("more-images", "1 ControlNet (--controlnet or the preset's controlnet) but 2"),
    ("no-image", "1 ControlNet (--controlnet or the preset's controlnet) but 0 control images"),
    ("no-image-hub-model", "but 0 control images"),  # the settings are checked before the model is looked up
    ("no-controlnet", "but no --controlnet"),
    ("start-after-end", "--control-start 0.8 must be below --control-end 0.5"),
    ("with-hires", "not with --hires"),
])
def test_bad_control_inputs_exit_2_before_loading(tiny_sd, tiny_controlnet, tmp_path, case, needle):
    control = random_image(tmp_path / "control.png")
    model = str(tiny_sd)
    images, nets, extra = [str(control)], [str(tiny_controlnet)], []
    if case == "missing":
        images = [str(tmp_path / "nope.png")]
    elif case == "folder":
        images = [str(tmp_path)]
    elif case == "truncated":
        (tmp_path / "cut.png").write_bytes(control.read_bytes()[:60])
        images = [str(tmp_path / "cut.png")]
    elif case == "bomb":
        images = [str(_png_header_only(tmp_path / "bomb.png", 40000, 40000))]
    elif case == "more-images":
        images = images * 2
    elif case == "no-image":
        images = []
    elif case == "no-image-hub-model":
        images, model = [], "nobody/not-a-model"
    elif case == "no-controlnet":
        nets = []
    elif case == "start-after-end":
        extra = ["--control-start", "0.8", "--control-end", "0.5"]
    else:
        extra = ["--hires", "2"]
    args = [arg for net in nets for arg in ("--controlnet", net)] + [arg for image in images
                                                                   for arg in ("--control-image", image)]
    result = invoke("txt2img", PROMPT, "--model", model, *args, *extra, "-o", str(tmp_path / "o"), *CPU)
    assert result.exit_code == 2, result.output
    assert needle in json.loads(result.stdout)["error"]["message"]
    assert not (tmp_path / "o").exists()


def test_canny_without_opencv_names_the_extra(tiny_sd, tiny_controlnet, tmp_path, monkeypatch):
    import diffcli.plan.control as control_module

    monkeypatch.setattr(control_module, "opencv_available", lambda: False)
    control = random_image(tmp_path / "control.png")
    result = invoke("txt2img", PROMPT, "--model", str(tiny_sd), "--controlnet", str(tiny_controlnet),
                    "--control-image", str(control), "--control", "canny", "-o", str(tmp_path / "o"), *CPU)
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)["error"]
    assert "needs OpenCV" in error["message"] and ".[control]" in error["message"]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("family", ["unconditional", "pixart-sigma"])
def test_models_without_controlnet_pipelines_exit_2(tiny_ddpm, tiny_family, tiny_controlnet, tmp_path, family):
    control = random_image(tmp_path / "control.png")
    with_control = ("--controlnet", str(tiny_controlnet), "--control-image", str(control))
    if family == "unconditional":
        result = invoke("img2img", str(control), "--model", str(tiny_ddpm), *with_control, "-o", str(tmp_path / "o"),
                        *CPU)
        needle = "needs a text-to-image model"
    else:
        result = invoke("txt2img", PROMPT, "--model", str(tiny_family(family)), *with_control,
                        "-o", str(tmp_path / "o"), *CPU)
        needle = "no ControlNet text-to-image pipeline for PixArtSigmaPipeline"
    assert result.exit_code == 2, result.output
    assert needle in json.loads(result.stdout)["error"]["message"]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_flux_and_sd3_txt2img_equal_their_controlnet_pipelines(tiny_family, tmp_path, family):
    """Flux (txt2img, img2img, inpaint) and SD3 (txt2img) ControlNets; SD3 ControlNet img2img is refused before
    loading."""
    import diffusers

    from tests.tiny_families import build_tiny_transformer_controlnet

    model = tiny_family(family)
    net_folder = cached_model(f"tiny-controlnet-{family}", lambda folder: build_tiny_transformer_controlnet(folder,
                                                                                                         family))
    init, control = random_image(tmp_path / "init.png"), random_image(tmp_path / "control.png", seed=5)
    with_control = ("--controlnet", str(net_folder), "--control-image", str(control), "--width", "16", "--height",
                    "16", "--steps", "3", "-g", "5", "--seed", "3", "-n", "2")
    doc = run_ok("txt2img", PROMPT, "--model", str(model), *with_control, "-o", str(tmp_path / "t"))
    names = {"flux": ("FluxPipeline", "FluxControlNetModel", "FluxControlNetPipeline"),
             "sd3": ("StableDiffusion3Pipeline", "SD3ControlNetModel", "StableDiffusion3ControlNetPipeline")}[family]
    base = getattr(diffusers, names[0]).from_pretrained(model)
    net = getattr(diffusers, names[1]).from_pretrained(net_folder)
    pipe = getattr(diffusers, names[2]).from_pipe(base, controlnet=net)
    pipe.set_progress_bar_config(disable=True)

    def theirs(call, **kwargs):
        return [np.asarray(call(PROMPT, num_inference_steps=3, guidance_scale=5.0, width=16, height=16,
                                generator=torch.Generator("cpu").manual_seed(seed), **kwargs).images[0], dtype=int)
                for seed in (3, 4)]

    assert_equal(doc, theirs(pipe, control_image=Image.open(control)))
    if family == "flux":
        assert np.abs(pixels(doc["images"][0]["path"]) - theirs(base)[0]).max() > 20  # the ControlNet changes it
        mask = half_mask(tmp_path / "mask.png")
        inpaint_doc = run_ok("inpaint", str(init), str(mask), PROMPT, "--model", str(model), *with_control,
                             "--strength", "0.75", "-o", str(tmp_path / "p"))
        inpaint_pipe = diffusers.FluxControlNetInpaintPipeline.from_pipe(base, controlnet=net)
        inpaint_pipe.set_progress_bar_config(disable=True)
        assert_equal(inpaint_doc, theirs(inpaint_pipe, image=Image.open(init), mask_image=Image.open(mask),
                                         control_image=Image.open(control), strength=0.75))
        image_doc = run_ok("img2img", str(init), PROMPT, "--model", str(model), *with_control, "--strength", "0.75",
                           "-o", str(tmp_path / "i"))
        image_pipe = diffusers.FluxControlNetImg2ImgPipeline.from_pipe(base, controlnet=net)
        image_pipe.set_progress_bar_config(disable=True)
        assert_equal(image_doc, theirs(image_pipe, image=Image.open(init), control_image=Image.open(control),
                                       strength=0.75))
    else:
        refused = invoke("img2img", str(init), PROMPT, "--model", str(model), *with_control,
                         "-o", str(tmp_path / "i"), *CPU)
        assert refused.exit_code == 2, refused.output
        assert ("no ControlNet image-to-image pipeline for StableDiffusion3Pipeline"
                in json.loads(refused.stdout)["error"]["message"])
        assert not (tmp_path / "i").exists()


def test_img2img_with_a_controlnet_on_a_greyscale_model(tmp_path):
    """digits-text's VAE takes one channel; diffusers' ControlNet img2img makes init images RGB unless told not to
    (it crashed in the VAE). The control image steers the picture, and replay gives the same file."""
    init = random_image(tmp_path / "init.png", seed=1)
    docs = []
    for name, seed in (("a", 2), ("b", 3)):
        control = random_image(tmp_path / f"control-{name}.png", seed=seed)
        docs.append(run_ok("img2img", str(init), "a handwritten digit 8", "--preset", "digits-control",
                           "--control-image", str(control), "--steps", "4", "-n", "1", "-o", str(tmp_path / name)))
    first, second = (pixels(doc["images"][0]["path"]) for doc in docs)
    assert first.shape == (16, 16) and np.abs(first - second).max() > 0
    again = run_ok("replay", docs[0]["images"][0]["path"], "-o", str(tmp_path / "replay"))
    assert np.array_equal(pixels(again["images"][0]["path"]), first)


@pytest.mark.parametrize("damage, needle", [
    ("nan", "holds NaN or infinite values"),
    ("truncated", "cannot load"),  # a damaged safetensors file is not a pickle-only folder: no --allow-pickle hint
])
def test_damaged_controlnet_weights_exit_3_in_one_line(tiny_sd, tiny_controlnet, tmp_path, damage, needle):
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "net"
    shutil.copytree(tiny_controlnet, folder)
    weights = next(folder.glob("*.safetensors"))
    if damage == "nan":
        tensors = load_file(weights)
        name = max(tensors, key=lambda key: tensors[key].numel())
        tensors[name] = torch.full_like(tensors[name], float("nan"))
        save_file(tensors, weights)
    else:
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    control = random_image(tmp_path / "control.png")
    result = invoke("txt2img", PROMPT, "--model", str(tiny_sd), "--controlnet", str(folder), "--control-image",
                    str(control), "--steps", "2", "-o", str(tmp_path / "o"), *CPU)
    assert result.exit_code == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "allow-pickle" not in lines[0], lines
    assert not any((tmp_path / "o").glob("*.png"))
