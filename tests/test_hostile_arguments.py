"""Hostile input battery: arguments, presets, model folders and prompts files through the real CLI, each
with --json (tests/hostile_runner.py): the exit code, one `Error:` line, one JSON document, nothing
written outside the output folder, no temp files. test_hostile_inputs.py and test_hostile_models.py
hold the deeper cases of the same areas (bombs, nesting, the fake hub) without the --json contract.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.hostile_runner import Case, pngs, run_case

UNCOND = ["unconditional", "--model", "{ddpm}", "--steps", "2", "-o", "{dir}/out", "--quiet"]
TXT = ["txt2img", "a cat", "--model", "{sd}", "--steps", "2", "-o", "{dir}/out", "--quiet"]
PROMPTS = ["txt2img", "--model", "{sd}", "--steps", "2", "-o", "{dir}/out", "--quiet", "--prompts-file"]
SHOW = ["presets", "show", "{dir}/p.yaml"]


def write(name: str, content: str | bytes) -> Callable[[Path], None]:
    def prepare(folder: Path) -> None:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content.replace("{dir}", str(folder)))
    return prepare


def chain(length: int) -> Callable[[Path], None]:
    def prepare(folder: Path) -> None:
        for i in range(length):
            (folder / f"c{i}.yaml").write_text(f"extends: c{i + 1}.yaml\n" if i + 1 < length else "extends: digits\n")
        (folder / "p.yaml").write_text("extends: c0.yaml\n")
    return prepare


MODEL: dict[str, Path] = {}


def model_copy(change: Callable[[Path], None]) -> Callable[[Path], None]:
    """{dir}/model: a copy of the tiny DDPM folder, then `change(folder)`."""
    def prepare(folder: Path) -> None:
        shutil.copytree(MODEL["ddpm"], folder / "model")
        change(folder / "model")
    return prepare


UNET = "unet/diffusion_pytorch_model.safetensors"


def pickle_weights(folder: Path) -> None:
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(folder / UNET), (folder / UNET).with_suffix(".bin"))
    (folder / UNET).unlink()


class Payload:
    """Unpickling it runs `touch <marker>`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def pickle_payload(folder: Path) -> None:
    import torch

    torch.save({"conv_in.weight": Payload(folder.parent / "pwned")}, (folder / UNET).with_suffix(".bin"))
    (folder / UNET).unlink()


def weights(how: Callable[[Path], None]) -> Callable[[Path], None]:
    return lambda folder: how(folder / UNET)


def replace_link(target: str) -> Callable[[Path], None]:
    return lambda path: (path.unlink(), path.symlink_to(target)) and None


def config(**changes: Any) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        path = folder / "unet" / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return change


def no_pwned(folder: Path, doc: dict[str, Any]) -> None:
    assert not (folder / "pwned").exists(), "the pickle payload ran"


def made(count: int) -> Callable[[Path, dict[str, Any]], None]:
    def check(folder: Path, doc: dict[str, Any]) -> None:
        assert len(doc["images"]) == count and len(pngs(folder / "out", [Path(e["path"]).name
                                                                          for e in doc["images"]])) == count
    return check


MODEL_RUN = ["unconditional", "--model", "{dir}/model", "--steps", "2", "-o", "{dir}/out", "--quiet"]
HEADER_2_63 = struct.pack("<Q", 2**63) + b"{}"

CASES = [
    # arguments
    Case("prompt-whitespace", ["txt2img", "   ", *TXT[2:]], 2, "empty or only whitespace"),
    Case("prompt-empty", ["txt2img", "", *TXT[2:]], 2, "empty"),
    Case("prompt-and-prompts-file", TXT + ["--prompts-file", "{dir}/p.txt"], 2, "not both", prepare=write("p.txt", "a")),
    Case("steps-100000", UNCOND + ["--steps", "100000"], 2, "steps"),
    Case("steps-zero", UNCOND + ["--steps", "0"], 2, "steps"),
    Case("unipc-1000-steps", UNCOND + ["--scheduler", "unipc", "--steps", "1000"], 2, "steps"),
    Case("width-100000", UNCOND + ["--width", "100000"], 2, "--width"),
    Case("size-100000-square", UNCOND + ["--width", "100000", "--height", "100000"], 2, "--width"),
    Case("width-not-multiple-of-8", TXT + ["--width", "17"], 2, "17"),
    Case("device-arabic-digit", UNCOND + ["--device", "cuda:\u0663"], 2, "--device"),
    Case("device-huge-index", UNCOND + ["--device", "cuda:99999999999999999999"], 2, "--device"),
    Case("device-unknown", UNCOND + ["--device", "tpu"], 2, "--device"),
    Case("threads-huge", UNCOND + ["--threads", "99999999999"], 2, "--threads"),
    Case("threads-zero", UNCOND + ["--threads", "0"], 2, "--threads"),
    Case("frame-duration-huge", ["denoise-trace", *UNCOND[1:], "--every", "1", "--frame-duration", "99999999"], 2,
         "--frame-duration"),
    Case("seed-negative", UNCOND + ["--seed", "-1"], 2, "--seed"),
    Case("seed-2**64", UNCOND + ["--seed", str(2**64)], 2, "--seed"),
    Case("seed-plus-count-overflows", UNCOND + ["--seed", str(2**63 - 1), "-n", "2"], 2, "seed"),
    Case("num-images-zero", UNCOND + ["-n", "0"], 2, "--num-images"),
    Case("num-images-1e9", UNCOND + ["-n", "1000000000"], 2, "--num-images"),
    Case("batch-size-zero", UNCOND + ["--batch-size", "0"], 2, "--batch-size"),
    Case("every-zero", UNCOND + ["--every", "0"], 2, "--every"),
    Case("scheduler-unknown", UNCOND + ["--scheduler", "ddmi"], 2, "ddim"),
    Case("dtype-unknown", UNCOND + ["--dtype", "float8"], 2, "--dtype"),
    Case("timesteps-zero", UNCOND + ["--set", "scheduler_options={num_train_timesteps: 0}"], 2, "scheduler_options"),
    Case("trained-betas-short", UNCOND + ["--set", "scheduler_options={trained_betas: [0.1, 0.2]}"], 2,
         "scheduler_options"),
    Case("beta-end-nan", UNCOND + ["--set", "scheduler_options={beta_end: .nan}"], 2, "beta_end"),
    Case("set-unknown-key", UNCOND + ["--set", "stepz=3"], 2, "steps"),
    Case("set-no-equals", UNCOND + ["--set", "steps"], 2, "--set"),
    Case("set-steps-float", UNCOND + ["--set", "steps=1e9"], 2, "steps"),
    Case("unknown-flag", UNCOND + ["--bogus"], 2, "--bogus"),
    Case("bad-value", UNCOND + ["--steps", "abc"], 2, "--steps"),
    Case("missing-value", UNCOND + ["--steps"], 2, "--steps"),
    Case("unknown-command", ["generate", "x"], 2, "generate"),
    Case("preset-unknown", UNCOND + ["--preset", "nosuch\x1b[2J"], 2, "nosuch\\x1b[2J"),
    # presets
    Case("extends-cycle", SHOW, 2, "", prepare=lambda f: [write("p.yaml", "extends: q.yaml\n")(f),
                                                          write("q.yaml", "extends: p.yaml\n")(f)]),
    Case("extends-self", SHOW, 2, "", prepare=write("p.yaml", "extends: p.yaml\n")),
    Case("extends-passwd", SHOW, 2, "", prepare=write("p.yaml", "extends: /etc/passwd\n")),
    Case("extends-300-chain", SHOW, 0, "digits", prepare=chain(300)),
    Case("preset-utf16", SHOW, 2, "", prepare=write("p.yaml", "model: x\nsteps: 3\n".encode("utf-16"))),
    Case("preset-latin1", SHOW, 2, "", prepare=write("p.yaml", "model: x\nprompt: caf\xe9\n".encode("latin-1"))),
    Case("preset-binary-tag", SHOW, 2, "", prepare=write("p.yaml", "model: !!binary aGVsbG8=\n")),
    Case("preset-custom-tag", SHOW, 2, "", prepare=write("p.yaml", "model: !evil x\n")),
    Case("preset-custom-pipeline", SHOW, 2, "custom_pipeline", prepare=write("p.yaml", "model: x\ncustom_pipeline: e\n")),
    Case("preset-trust-remote-code", SHOW, 2, "trust_remote_code",
         prepare=write("p.yaml", "model: x\ntrust_remote_code: true\n")),
    Case("preset-is-list", SHOW, 2, "", prepare=write("p.yaml", "- model: x\n")),
    Case("preset-nul-byte", SHOW, 2, "", prepare=write("p.yaml", b"model: x\0y\n")),
    # model folders
    Case("pickle-only", MODEL_RUN, 3, "--allow-pickle", prepare=model_copy(pickle_weights)),
    Case("pickle-only-allowed", MODEL_RUN + ["--allow-pickle"], 0, prepare=model_copy(pickle_weights), check=made(1)),
    Case("pickle-payload", MODEL_RUN, 3, "--allow-pickle", prepare=model_copy(pickle_payload), check=no_pwned),
    Case("pickle-payload-allowed", MODEL_RUN + ["--allow-pickle"], 3, "", prepare=model_copy(pickle_payload),
         check=no_pwned),
    Case("weights-passwd", MODEL_RUN, 3, "", prepare=model_copy(weights(replace_link("/etc/passwd")))),
    Case("weights-truncated", MODEL_RUN, 3, "",
         prepare=model_copy(weights(lambda p: p.write_bytes(p.read_bytes()[:100])))),
    Case("weights-header-2**63", MODEL_RUN, 3, "", prepare=model_copy(weights(lambda p: p.write_bytes(HEADER_2_63)))),
    Case("index-library-os", MODEL_RUN, 3, "library 'os'", prepare=model_copy(lambda f: (f / "model_index.json")
         .write_text(json.dumps({"_class_name": "DDPMPipeline", "unet": ["os", "system"]})))),
    Case("config-sample-size", MODEL_RUN, 3, "sample_size", prepare=model_copy(config(sample_size=100_000))),
    Case("model-is-file", MODEL_RUN, 3, "", prepare=write("model", "x")),
    Case("model-empty-folder", MODEL_RUN, 3, "", prepare=lambda f: (f / "model").mkdir()),
    Case("model-symlink-loop", MODEL_RUN, 3, "", prepare=lambda f: (f / "model").symlink_to(f / "model")),
    # prompts files
    Case("prompts-binary", PROMPTS + ["{dir}/p.txt"], 2, "p.txt", prepare=write("p.txt", bytes(range(256)) * 4)),
    Case("prompts-nul", PROMPTS + ["{dir}/p.txt"], 2, "p.txt", prepare=write("p.txt", b"a cat\0\nb\n")),
    Case("prompts-utf16", PROMPTS + ["{dir}/p.txt"], 2, "p.txt", prepare=write("p.txt", "a cat\n".encode("utf-16"))),
    Case("prompts-seed-overflow", PROMPTS + ["{dir}/p.jsonl"], 2, "seed",
         prepare=write("p.jsonl", '{"prompt": "a cat", "seed": 9223372036854775807, "num_images": 2}\n')),
    Case("prompts-crlf-and-blank", PROMPTS + ["{dir}/p.txt"], 0, prepare=write("p.txt", "a cat\r\n\r\n  \r\na dog\r\n"),
         check=made(2)),
]


# ------------------------------------------------------------------ numbers from files and brackets (hostile-findings-2.md)
LORA: dict[str, Path] = {}


def lora_copy(name: str, change: Callable[[dict[str, Any]], None] | None = None) -> Callable[[Path], None]:
    """{dir}/<name>: the tiny SD LoRA, its tensors edited by `change` (a dict of name → tensor)."""
    def prepare(folder: Path) -> None:
        from safetensors.torch import load_file, save_file

        tensors = load_file(LORA["sd"])
        if change is not None:
            change(tensors)
        save_file(tensors, folder / name)
    return prepare


def poison(value: float) -> Callable[[dict[str, Any]], None]:
    def change(tensors: dict[str, Any]) -> None:
        name = next(k for k in sorted(tensors) if "lora_B" in k or "lora.up" in k)
        tensors[name][0, 0] = value
    return change


def image16(name: str) -> Callable[[Path], None]:
    """A 16-bit greyscale PNG (`I;16`) whose mean is mid-grey (127/255)."""
    def prepare(folder: Path) -> None:
        import numpy as np
        from PIL import Image

        Image.fromarray(np.full((64, 64), 127 * 257, dtype=np.uint16)).save(folder / name)
    return prepare


def mid_grey_init(folder: Path, doc: dict[str, Any]) -> None:
    import numpy as np

    from diffcli.plan.init_image import decode, fit

    pixels = np.asarray(fit(decode((folder / "i16.png").read_bytes(), "i16.png"), 64, 64, "RGB"))
    assert abs(float(pixels.mean()) - 127) < 1, pixels.mean()


WEIGHTED = TXT + ["--prompt-syntax", "weighted"]
IMG2IMG = ["img2img", "{dir}/init.png", "a cat", *TXT[2:]]
NUMBER_CASES = [
    Case("weighted-10000-nested", ["txt2img", "(" * 10000 + "cat" + ")" * 10000, *WEIGHTED[2:]], 2, "nested too deep"),
    Case("weighted-10000-unclosed", ["txt2img", "(" * 10000 + "cat", *WEIGHTED[2:]], 2, "weight inf"),
    Case("weighted-60-nested", ["txt2img", "(" * 60 + "cat" + ")" * 60, *WEIGHTED[2:]], 2, "weight 304"),
    Case("weighted-10000-square", ["txt2img", "[" * 10000 + "cat" + "]" * 10000, *WEIGHTED[2:]], 0, check=made(1)),
    Case("lora-nan-tensor", TXT + ["--lora", "{dir}/nan.safetensors"], 3, "NaN or infinite",
         prepare=lora_copy("nan.safetensors", poison(float("nan")))),
    Case("lora-inf-tensor", TXT + ["--lora", "{dir}/inf.safetensors"], 3, "NaN or infinite",
         prepare=lora_copy("inf.safetensors", poison(float("inf")))),
    Case("lora-weight-nan", TXT + ["--lora", "{dir}/l.safetensors:nan"], 2, "weight", prepare=lora_copy("l.safetensors")),
    Case("lora-weight-inf", TXT + ["--lora", "{dir}/l.safetensors:inf"], 2, "weight", prepare=lora_copy("l.safetensors")),
    Case("lora-weight-empty", TXT + ["--lora", "{dir}/l.safetensors:"], 2, "weight", prepare=lora_copy("l.safetensors")),
    Case("lora-weight-1e308", TXT + ["--lora", "{dir}/l.safetensors:1e308"], 2, "weight",
         prepare=lora_copy("l.safetensors")),
    Case("lora-upper-case-suffix", TXT + ["--lora", "{dir}/l.SAFETENSORS"], 3, "lower-case",
         prepare=lora_copy("l.SAFETENSORS")),
    Case("lora-garbage", TXT + ["--lora", "{dir}/g.safetensors"], 3, "", prepare=write("g.safetensors", b"garbage")),
    Case("lora-empty", TXT + ["--lora", "{dir}/g.safetensors"], 3, "", prepare=write("g.safetensors", b"")),
    Case("lora-dev-zero", TXT + ["--lora", "{dir}/z.safetensors"], 3, "",
         prepare=lambda f: (f / "z.safetensors").symlink_to("/dev/zero")),
    Case("single-file-upper-case-suffix", ["txt2img", "a cat", "--model", "{dir}/m.SAFETENSORS", *TXT[4:]], 3,
         "lower-case", prepare=write("m.SAFETENSORS", b"x")),
    Case("init-image-16-bit", ["img2img", "{dir}/i16.png", "a cat", *TXT[2:], "--strength", "0.5"], 0,
         prepare=image16("i16.png"), check=mid_grey_init),
    Case("init-image-dev-zero", IMG2IMG, 2, "init", prepare=lambda f: (f / "init.png").symlink_to("/dev/zero")),
    Case("init-image-fifo", IMG2IMG, 2, "init", prepare=lambda f: os.mkfifo(f / "init.png")),
    Case("init-image-folder", IMG2IMG, 2, "init", prepare=lambda f: (f / "init.png").mkdir()),
    Case("step-cache-nan", TXT + ["--step-cache", "nan"], 2, "step"),
]


@pytest.mark.parametrize("case", NUMBER_CASES, ids=[case.id for case in NUMBER_CASES])
def test_hostile_number(case: Case, tmp_path: Path, tiny_sd: Path, tmp_path_factory) -> None:
    if "sd" not in LORA:
        import torch
        from diffusers import UNet2DConditionModel

        from tests.test_lora import make_lora

        torch.manual_seed(0)
        LORA["sd"] = make_lora(UNet2DConditionModel.from_pretrained(tiny_sd / "unet"),
                               tmp_path_factory.mktemp("lora"), 1)
    run_case(case, tmp_path, ddpm=tiny_sd, sd=tiny_sd)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_argument(case: Case, tmp_path: Path, tiny_ddpm: Path, tiny_sd: Path) -> None:
    MODEL["ddpm"] = tiny_ddpm
    run_case(case, tmp_path, ddpm=tiny_ddpm, sd=tiny_sd)
