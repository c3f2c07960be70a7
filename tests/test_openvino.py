"""`backend: openvino`: the converted UNet gives torch's pixels, converts once per shape, stays optional."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from diffcli.errors import PresetError
from diffcli.plan.presets import Preset
from diffcli.run.pipelines import load_pipeline
from diffcli.run.sampling import sample_txt2img, sample_unconditional
from tests.conftest import REPO, run_cli

from tests.conftest import require_dev_extra  # noqa: E402

ov = require_dev_extra("openvino")

from diffcli.backends.openvino import backend as openvino_backend, convert as ov_convert  # noqa: E402 - openvino's adapter only where openvino is present
from diffcli.plan.resources import OPENVINO, cache_folder  # noqa: E402
from diffcli.backends.openvino.cache import compile_cached, load_or_convert, weights_fingerprint  # noqa: E402

DIGITS_TEXT = REPO / "models" / "digits-text"
DIGITS = REPO / "models" / "digits"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch) -> Path:
    """Each test converts into its own cache folder."""
    folder = tmp_path / "ov-cache"
    monkeypatch.setenv("DIFFCLI_OPENVINO_CACHE", str(folder))
    return folder


def load(model: Path, backend: str = "torch", **keys):
    return load_pipeline(Preset(model=str(model), device="cpu", backend=backend, **keys), None).pipe


def txt2img(pipe, prompts, steps: int = 8):
    generators = [torch.Generator("cpu").manual_seed(i) for i in range(len(prompts))]
    return sample_txt2img(pipe, {"prompt": list(prompts), "guidance_scale": 4.0, "generator": generators}, steps, None)


def uint8(images) -> np.ndarray:
    return (np.clip(np.asarray(images), 0, 1) * 255).round().astype(int)


def test_txt2img_pixels_match_torch():
    folder, prompts = DIGITS_TEXT, [f"a handwritten digit {d}" for d in range(10)]
    reference = txt2img(load(folder), prompts)
    pipe = load(folder, "openvino")
    assert type(pipe.unet).__name__ == "OpenVINOUNet"
    assert type(pipe.vae.decode).__name__ == "OpenVINODecoder"
    converted = txt2img(pipe, prompts)
    assert pipe.unet.runner.compiled and pipe.vae.decode.runner.compiled  # both ran through OpenVINO
    # float32 on both sides; OpenVINO's kernels sum in another order: within 1e-3, at most 1 grey level
    assert np.abs(converted - reference).max() < 1e-3
    assert np.abs(uint8(converted) - uint8(reference)).max() <= 1


def test_dtype_bfloat16_compiles_for_bf16_and_stays_close_to_float32(tiny_sd):
    prompts = ["a cat", "a red dog"]
    if "BF16" not in ov_convert.cpu_capabilities(ov):  # the refusal itself is tested in test_refusals
        pytest.skip("this CPU's OpenVINO plugin lists no BF16 inference precision")
    reference = txt2img(load(tiny_sd), prompts)
    pipe = load(tiny_sd, "openvino", dtype="bfloat16")
    converted = np.asarray(txt2img(pipe, prompts), dtype=np.float32)
    for runner in (pipe.unet.runner, pipe.vae.decode.runner):
        (compiled,) = runner.compiled.values()
        assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16
    assert pipe.unet.dtype == torch.bfloat16 and all(p.dtype == torch.bfloat16 for p in pipe.vae.parameters())
    difference = np.abs(converted - np.asarray(reference))
    # bf16 keeps 8 bits of mantissa: measured max 0.010, mean 0.0018 (torch bf16 itself: 0.008, 0.0016);
    # on digits-text max 0.013, mean 0.0015
    assert difference.mean() < 0.005 and difference.max() < 0.05
    assert difference.max() > 1e-4  # it did not run float32


def test_unconditional_unet2dmodel_matches_torch():
    generators = lambda: [torch.Generator("cpu").manual_seed(i) for i in range(4)]  # noqa: E731
    reference = sample_unconditional(load(DIGITS, scheduler="ddim"), 10, generators(), None)
    converted = sample_unconditional(load(DIGITS, "openvino", scheduler="ddim"), 10, generators(), None)
    assert (converted - reference).abs().max() < 1e-3


def test_converted_once_then_read_from_the_disk_cache(tiny_sd, _cache):
    before = dict(ov_convert.STATS)
    txt2img(load(tiny_sd, "openvino"), ["a cat"], steps=3)
    assert ov_convert.STATS["conversions"] == before["conversions"] + 2  # the UNet and the VAE decoder
    entries = [p for p in _cache.iterdir() if not p.name.startswith(".")]
    keys = {key["part"]: key for key in (json.loads((e / "key.json").read_text()) for e in entries)}
    assert sorted(keys) == ["unet", "vae_decoder"] and all((e / "model.xml").is_file() for e in entries)
    assert keys["unet"]["shapes"][0] == [2, 4, 8, 8] and keys["unet"]["model"] == str(tiny_sd)  # CFG: batch 2
    assert keys["vae_decoder"]["shapes"] == [[1, 4, 8, 8]]
    txt2img(load(tiny_sd, "openvino"), ["a dog"], steps=3)  # a new process would do the same: a fresh pipeline
    assert ov_convert.STATS["conversions"] == before["conversions"] + 2
    assert ov_convert.STATS["disk_hits"] == before["disk_hits"] + 2
    txt2img(load(tiny_sd, "openvino"), ["a cat", "a dog"], steps=3)  # another batch: other static shapes
    assert ov_convert.STATS["conversions"] == before["conversions"] + 4
    assert not list(_cache.glob(".tmp-*"))


def test_cache_root_and_concurrent_writers(monkeypatch, tmp_path, _cache):
    assert cache_folder(OPENVINO) == _cache
    monkeypatch.delenv("DIFFCLI_OPENVINO_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert cache_folder(OPENVINO) == tmp_path / "hf" / "diffcli" / "openvino"
    monkeypatch.setenv("DIFFCLI_OPENVINO_CACHE", str(_cache))
    model = ov.Model([ov.opset13.relu(param := ov.opset13.parameter([2], ov.Type.f32))], [param])
    key = {"k": 1}

    def convert_while_another_process_finishes_first():
        load_or_convert(ov, key, lambda: model)  # the other process's complete entry lands first
        return model

    _, converted, xml = load_or_convert(ov, key, convert_while_another_process_finishes_first)
    assert converted and len([p for p in _cache.iterdir()]) == 1  # theirs kept, ours discarded, no temp left
    assert xml == next(_cache.iterdir()) / "model.xml"
    _, converted, _ = load_or_convert(ov, key, lambda: pytest.fail("read from disk, not converted"))
    assert not converted
    entry = next(_cache.iterdir())
    (entry / "model.xml").write_text("not a model")  # a damaged entry is converted again and replaced
    _, converted, _ = load_or_convert(ov, key, lambda: model)
    assert converted and load_or_convert(ov, key, lambda: pytest.fail("replaced"))[1] is False


def test_compiled_model_cache_beside_the_entry_and_its_failures(tmp_path):
    model = ov.Model([ov.opset13.relu(param := ov.opset13.parameter([2], ov.Type.f32))], [param])
    _, _, xml = load_or_convert(ov, {"k": 2}, lambda: model)
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    compiled = compile_cached(ov, model, xml, config)
    assert compiled([np.array([-1.0, 2.0], np.float32)])[0].tolist() == [0.0, 2.0]
    assert list((xml.parent / "compiled").glob("*.blob"))  # OpenVINO's blob for the next run
    for blob in (xml.parent / "compiled").glob("*.blob"):
        blob.write_bytes(b"damaged")
    assert compile_cached(ov, model, xml, config)([np.array([-3.0, 4.0], np.float32)])[0].tolist() == [0.0, 4.0]
    unwritable = tmp_path / "file"
    unwritable.write_text("a file, not a folder")
    assert compile_cached(ov, model, unwritable / "model.xml", config)([np.array([5.0, -6.0], np.float32)])[0].tolist() \
        == [5.0, 0.0]


def test_weights_fingerprint_changes_with_the_weights(tiny_sd):
    unet = load(tiny_sd).unet
    first = weights_fingerprint(unet)
    assert weights_fingerprint(unet) == first
    with torch.no_grad():
        unet.conv_out.bias += 0.01
    second = weights_fingerprint(unet)
    assert second != first
    # one value in the middle of the largest tensor, between any evenly strided samples, changes the key too
    largest = max(unet.parameters(), key=lambda p: p.numel())
    assert largest.numel() > 10_000
    with torch.no_grad():
        largest.view(-1)[largest.numel() // 2 + 1] += 1e-3
    assert weights_fingerprint(unet) != second


def test_refusals(tiny_sd, monkeypatch):
    with pytest.raises(PresetError, match="backend: openvino: runs the whole UNet each call"):
        load(tiny_sd, "openvino", step_cache=2)
    with pytest.raises(PresetError, match="backend: openvino: replaces torch.compile"):
        load(tiny_sd, "openvino", compile="default")
    monkeypatch.setattr(ov_convert, "cpu_capabilities", lambda ov: ["FP32", "INT8"])
    with pytest.raises(PresetError, match="backend: openvino: this CPU has no BF16 inference") as err:
        load(tiny_sd, "openvino", dtype="bfloat16")
    assert err.value.hint == "set dtype: float32"
    monkeypatch.undo()
    transformer = types.SimpleNamespace(transformer=torch.nn.Linear(1, 1))
    with pytest.raises(PresetError, match="supports UNet2DConditionModel and UNet2DModel denoisers, not Linear"):
        openvino_backend.use_openvino(transformer, Preset(model="x", backend="openvino"), torch.device("cpu"))
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    with pytest.raises(PresetError, match="the openvino package cannot be imported") as err:
        load(tiny_sd, "openvino")
    assert 'pip install -e ".[openvino]"' in err.value.hint


def test_cli_run_and_torch_path_never_imports_openvino(tiny_sd, tmp_path, _cache):
    script = ("import sys; from diffcli.__main__ import main; sys.argv = ['diffcli', 'txt2img', 'a cat', '--model', "
              f"{str(tiny_sd)!r}, '--steps', '2', '-o', {str(tmp_path / 'torch')!r}, '--quiet']\n"
              "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
              "print('openvino' in sys.modules, 'torch' in sys.modules)")
    # two independent single-threaded processes: run side by side
    torch_run = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    result = run_cli("txt2img", "a cat", "--model", str(tiny_sd), "--backend", "openvino", "--steps", "3",
                     "-o", str(tmp_path / "ov"), "--json", env={"DIFFCLI_OPENVINO_CACHE": str(_cache)})
    out, err = torch_run.communicate(timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["preset"]["backend"] == "openvino" and list(_cache.iterdir())
    assert torch_run.returncode == 0, err
    assert out.split()[-2:] == ["False", "True"]  # after the image path it printed
