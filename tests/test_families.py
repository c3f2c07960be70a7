"""Every transformer family through the same commands: pixel contract, defaults, frames, inspect, --vary,
img2img, schedulers and the refusals, on tiny pipelines built offline (tests/tiny_families.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.hostile_runner import run  # a real process, forked from a pre-imported server
from tests.test_cli import invoke

# family → (pipeline class, size the test asks for, None: the family's default size)
FAMILIES = {
    "sd3": ("StableDiffusion3Pipeline", 32),
    "flux": ("FluxPipeline", 32),
    "flux-schnell": ("FluxPipeline", 32),
    "chroma": ("ChromaPipeline", 32),
    "pixart-sigma": ("PixArtSigmaPipeline", None),
    "sana": ("SanaPipeline", 64),
    "lumina2": ("Lumina2Pipeline", None),
}
IMG2IMG = {"sd3": "StableDiffusion3Img2ImgPipeline", "flux": "FluxImg2ImgPipeline", "chroma": "ChromaImg2ImgPipeline"}
STEPS = 3


def plain_pipeline(folder):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def size_args(size):
    return [] if size is None else ["--width", str(size), "--height", str(size)]


def run_json(*args):
    result = invoke(*args, "--json", "--quiet")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=int)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_txt2img_equals_plain_pipeline_with_its_defaults(family, tiny_family, tmp_path):
    """Image i equals the plain pipeline with Generator(seed + i); guidance and size are the pipeline's own."""
    class_name, size = FAMILIES[family]
    folder = tiny_family(family)
    doc = run_json("txt2img", "a cat playing bass", "--model", str(folder), "--steps", str(STEPS), "--seed", "5",
                   "-n", "2", "-b", "2", *size_args(size), "-o", str(tmp_path / "out"))
    pipe = plain_pipeline(folder)
    assert type(pipe).__name__ == class_name
    extra = {} if size is None else {"width": size, "height": size}
    for i, entry in enumerate(doc["images"]):
        theirs = pipe("a cat playing bass", num_inference_steps=STEPS, output_type="np",
                      generator=torch.Generator("cpu").manual_seed(5 + i), **extra).images[0]
        theirs = (np.clip(theirs, 0, 1) * 255).round().astype(int)
        ours = pixels(entry["path"])
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).max() <= 2, f"{family} image {i}"
        assert entry["seed"] == 5 + i
    metadata = Image.open(doc["images"][0]["path"]).text
    import inspect

    default = inspect.signature(type(pipe).__call__).parameters["guidance_scale"].default
    assert f"CFG scale: {default:g}" in metadata["parameters"]
    assert f"Steps: {STEPS}" in metadata["parameters"]


def test_flux_defaults_come_from_the_pipeline(tiny_family):
    """Neither flag nor preset: Flux's 28 steps and guidance 3.5, SD3's 28 and 7.0, SD 1.x's 50 and 7.5."""
    from diffcli.plan.presets import Preset
    from diffcli.run.commands import plan_run

    expected = {"flux": (28, 3.5, 512), "sd3": (28, 7.0, 256), "pixart-sigma": (20, 4.5, 300)}
    for family, (steps, guidance, tokens) in expected.items():
        plan = plan_run(Preset(model=str(tiny_family(family)), prompt="a cat"), "txt2img", None)
        facts, items = plan.facts, plan.items
        assert (items[0].steps, items[0].guidance_scale) == (steps, guidance), family
        assert facts.defaults["max_sequence_length"] == tokens


def test_denoise_trace_unpacks_flux_latents_and_x0_reaches_the_image(tiny_family, tmp_path):
    """Flux's packed latents are unpacked for frames; at the last Euler step x0 = x_t - sigma * v is the result."""
    folder = tiny_family("flux")
    doc = run_json("denoise-trace", "--model", str(folder), "--prompt", "a cat", "--steps", "4", "--every", "1",
                   "--show", "both", "--width", "32", "--height", "32", "--set", "frame_decode=vae",
                   "-o", str(tmp_path / "trace"))
    frames = doc["frames"]
    assert sorted({(f["step"], f["kind"]) for f in frames}) == [(s, k) for s in (1, 2, 3, 4) for k in ("x0", "x_t")]
    assert doc["sheets"] and doc["animations"]
    final = pixels(doc["images"][0]["path"])
    last_x0 = pixels(next(f["path"] for f in frames if f["step"] == 4 and f["kind"] == "x0"))
    first_x0 = pixels(next(f["path"] for f in frames if f["step"] == 1 and f["kind"] == "x0"))
    assert last_x0.shape == final.shape == (32, 32, 3)
    assert np.abs(last_x0 - final).max() <= 2
    assert np.abs(first_x0 - final).max() > 2  # earlier estimates differ: the frames show the process


@pytest.mark.parametrize("family", ["sd3", "sana", "lumina2"])
def test_denoise_trace_runs_for_unpacked_flow_families(family, tiny_family, tmp_path):
    size = ["--width", "64", "--height", "64"] if family == "sana" else []
    doc = run_json("denoise-trace", "--model", str(tiny_family(family)), "--prompt", "a cat", "--steps", "2",
                   "--every", "1", "--show", "x0", *size, "-o", str(tmp_path / "trace"))
    assert len(doc["frames"]) == 2 and all(f["kind"] == "x0" for f in doc["frames"])


def test_inspect_explains_the_transformer_family(tiny_family):
    result = invoke("inspect", str(tiny_family("flux")), "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    family = info["family"]
    assert family["name"] == "flux" and family["denoiser"] == "transformer"
    assert family["objective"].startswith("flow matching") and family["latents"] == "packed 2x2 patches"
    assert "T5" in family["text_encoders"]
    assert family["defaults"] == {"num_inference_steps": 28, "guidance_scale": 3.5, "max_sequence_length": 512}
    assert family["shift"]["use_dynamic_shifting"] is True
    assert info["scheduler"]["compatible"] == ["flow-euler", "flow-unipc", "flow-lcm"]
    human = invoke("inspect", str(tiny_family("sd3")))
    assert "family: sd3" in human.stdout and "guidance_scale 7.0" in human.stdout


def test_vary_and_replay_on_flux(tiny_family, tmp_path):
    folder = tiny_family("flux")
    doc = run_json("txt2img", "a cat", "--model", str(folder), "--steps", "2", "--width", "32", "--height", "32",
                   "--vary", "steps=2,3", "--vary", "scheduler=flow-euler,flow-unipc", "-o", str(tmp_path / "v"))
    assert len(doc["images"]) == 4 and doc["grid"]
    original = doc["images"][3]["path"]
    replayed = run_json("replay", original, "-o", str(tmp_path / "r"))
    assert np.array_equal(pixels(replayed["images"][0]["path"]), pixels(original))
    assert "Sampler: UniPC" in Image.open(original).text["parameters"]


@pytest.mark.parametrize("family", list(IMG2IMG))
def test_img2img_uses_the_family_image_pipeline(family, tiny_family, tmp_path):
    import diffusers

    folder = tiny_family(family)
    init = tmp_path / "init.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(init)
    doc = run_json("img2img", str(init), "a cat", "--model", str(folder), "--steps", "4", "--strength", "0.5",
                   "--width", "32", "--height", "32", "--seed", "3", "-o", str(tmp_path / "out"))
    sibling = getattr(diffusers, IMG2IMG[family]).from_pipe(plain_pipeline(folder))
    theirs = sibling("a cat", image=Image.open(init).convert("RGB"), strength=0.5, num_inference_steps=4,
                     width=32, height=32, output_type="np", generator=torch.Generator("cpu").manual_seed(3)).images[0]
    theirs = (np.clip(theirs, 0, 1) * 255).round().astype(int)
    assert np.abs(pixels(doc["images"][0]["path"]) - theirs).max() <= 2


def test_flow_schedulers_listed_and_checked(tiny_family, tmp_path):
    listed = invoke("schedulers")
    for name in ("flow-euler", "flow-heun", "flow-dpm++2m", "flow-unipc", "flow-lcm"):
        assert name in listed.stdout
    sd3 = str(tiny_family("sd3"))
    for name in ("flow-heun", "flow-dpm++2m", "flow-unipc"):
        doc = run_json("txt2img", "a cat", "--model", sd3, "--steps", "3", "--width", "32", "--height", "32",
                       "--scheduler", name, "-o", str(tmp_path / name))
        assert len(doc["images"]) == 1
    refused = invoke("txt2img", "a cat", "--model", str(tiny_family("flux")), "--scheduler", "flow-heun",
                     "-o", str(tmp_path / "no"))
    assert refused.exit_code == 2
    assert "cannot take the sigmas and mu that FluxPipeline passes" in refused.stderr
    wrong = invoke("txt2img", "a cat", "--model", sd3, "--scheduler", "euler", "-o", str(tmp_path / "no"))
    assert wrong.exit_code == 2 and "compatible: flow-euler" in wrong.stderr
    assert not (tmp_path / "no").exists()


def test_refusals_are_one_line_before_loading(tiny_family, tmp_path):
    flux = str(tiny_family("flux"))
    cases = [
        (["txt2img", "(a cat:1.3)", "--model", flux, "--prompt-syntax", "weighted"], 2, "no 77-token CLIP chunks"),
        (["txt2img", "a cat", "--model", flux, "--width", "36"], 2, "not divisible by 8"),
        (["img2img", "init.png", "a cat", "--model", str(tiny_family("pixart-sigma"))], 2,
         "no image-to-image pipeline for PixArtSigmaPipeline"),
    ]
    Image.new("RGB", (32, 32)).save(tmp_path / "init.png")
    for args, code, text in cases:
        result = run([*args, "-o", str(tmp_path / "out")], tmp_path)  # a real process (forked: no re-imports)
        assert result.returncode == code, result.stderr
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ") and text in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_text_encoder_is_a_model_error(tiny_family, tmp_path):
    import shutil

    broken = tmp_path / "no-t5"
    shutil.copytree(tiny_family("flux"), broken)
    index = json.loads((broken / "model_index.json").read_text())
    index["text_encoder_2"] = [None, None]
    (broken / "model_index.json").write_text(json.dumps(index))
    result = run(["txt2img", "a cat", "--model", str(broken), "--json"], tmp_path)
    assert result.returncode == 3
    assert "has no text_encoder_2" in result.stderr and json.loads(result.stdout)["status"] == "error"


def test_long_t5_prompt_warns_with_the_count(tiny_family, tmp_path):
    prompt = " ".join(["cat"] * 20)
    result = invoke("txt2img", prompt, "--model", str(tiny_family("flux")), "--max-sequence-length", "8",
                    "--steps", "1", "--width", "32", "--height", "32", "-o", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    assert "is 21 tokens; the T5 encoder reads max_sequence_length=8, so 13 are dropped" in result.stderr


def test_step_cache_on_flux_uses_diffusers_hooks(tiny_family, tmp_path):
    """step_cache 2 attaches TaylorSeer through transformer.enable_cache: a different, finite image; the
    same image twice in one process (the cache is reset between runs); SD3 (no CacheMixin) gets the hooks with
    one context per run; Lumina 2 (two unnamed calls per step) is refused."""
    folder = str(tiny_family("flux"))
    common = ["txt2img", "a cat", "--model", folder, "--steps", "6", "--width", "32", "--height", "32"]
    plain = run_json(*common, "-o", str(tmp_path / "plain"))
    cached = run_json(*common, "--step-cache", "2", "-n", "2", "--seed", "0", "-b", "1", "-o", str(tmp_path / "c"))
    again = run_json(*common, "--step-cache", "2", "--seed", "1", "-o", str(tmp_path / "again"))
    first = pixels(cached["images"][0]["path"])
    assert np.abs(first - pixels(plain["images"][0]["path"])).max() > 0
    assert np.array_equal(pixels(cached["images"][1]["path"]), pixels(again["images"][0]["path"]))
    sd3 = ["txt2img", "a cat", "--model", str(tiny_family("sd3")), "--steps", "6", "--width", "32", "--height", "32"]
    sd3_plain = pixels(run_json(*sd3, "-o", str(tmp_path / "sd3"))["images"][0]["path"])
    sd3_cached = [pixels(run_json(*sd3, "--step-cache", "3", "-o", str(tmp_path / f"sd3c{i}"))["images"][0]["path"])
                  for i in range(2)]
    assert np.array_equal(*sd3_cached) and np.abs(sd3_cached[0] - sd3_plain).max() > 0
    refused = invoke("txt2img", "a cat", "--model", str(tiny_family("lumina2")), "--step-cache", "2",
                     "-o", str(tmp_path / "no"))
    assert refused.exit_code == 2 and "cannot follow Lumina2Pipeline's" in refused.stderr


def make_transformer_lora(folder, family, out, seed):
    """A random LoRA on the family's transformer (`add_random_lora`), saved with the pipeline's save_lora_weights."""
    import diffusers

    from tests.test_lora import add_random_lora

    pipe_cls = getattr(diffusers, FAMILIES[family][0])
    layers = add_random_lora(plain_pipeline(folder).transformer, seed)
    pipe_cls.save_lora_weights(out, transformer_lora_layers=layers)
    return out / "pytorch_lora_weights.safetensors"


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_transformer_lora_equals_load_lora_weights(family, tiny_family, tmp_path):
    folder = tiny_family(family)
    lora = make_transformer_lora(folder, family, tmp_path / "lora", seed=1)
    doc = run_json("txt2img", "a cat", "--model", str(folder), "--steps", "3", "--width", "32", "--height", "32",
                   "--lora", f"{lora}:0.8", "--seed", "2", "-o", str(tmp_path / "out"))
    pipe = plain_pipeline(folder)
    plain = pipe("a cat", num_inference_steps=3, width=32, height=32, output_type="np",
                 generator=torch.Generator("cpu").manual_seed(2)).images[0]
    pipe.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name="x")
    pipe.set_adapters(["x"], [0.8])
    theirs = pipe("a cat", num_inference_steps=3, width=32, height=32, output_type="np",
                  generator=torch.Generator("cpu").manual_seed(2)).images[0]
    theirs, plain = ((np.clip(a, 0, 1) * 255).round().astype(int) for a in (theirs, plain))
    ours = pixels(doc["images"][0]["path"])
    assert np.abs(ours - theirs).max() <= 2 and np.abs(ours - plain).max() > 2
    assert "Lora hashes: " in Image.open(doc["images"][0]["path"]).text["parameters"]
    other = "sd3" if family == "flux" else "flux"
    wrong = run(["txt2img", "a cat", "--model", str(tiny_family(other)), "--lora", str(lora), "--steps", "1",
                 "--width", "32", "--height", "32", "-o", str(tmp_path / "wrong")], tmp_path)
    assert wrong.returncode == 3, wrong.stderr
    assert wrong.stderr.count("\n") == 1 and wrong.stderr.startswith("Error: LoRA ")


@pytest.mark.parametrize("args,message", [
    (["--width", "32", "--height", "32"], "Error: width: 32 is more than the 16 pixels this model's denoiser can make"),
    (["--hires", "2"], "Error: --hires 2: 16x16 becomes 32x32, more than the 16 pixels a side this model's denoiser"),
])
def test_sizes_beyond_sd3_position_embeddings_are_refused_before_loading(tmp_path, monkeypatch, args, message):
    """digits-flow's transformer has position embeddings for 8 patches of 2 latents of 8 pixels a side: 16 px.
    diffusers raises in the transformer beyond that (exit 1, and --hires lost its first pass)."""
    import diffcli.run.pipelines as pipelines

    monkeypatch.setattr(pipelines, "load_pipeline", lambda *a, **k: pytest.fail("loaded the model"))
    result = invoke("txt2img", "a handwritten digit 8", "--preset", "digits-flow", *args, "-o", str(tmp_path / "o"),
                    "--json")
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().startswith(message), result.stderr
    assert json.loads(result.stdout)["status"] == "error" and not (tmp_path / "o").exists()
