"""Speed/memory levers are applied the current diffusers way (checked where a CPU can show it)."""

import json
import os

import pytest
import torch

from diffcli.errors import PresetError
from diffcli.run.pipelines import load_pipeline
from diffcli.plan.presets import Preset
from tests.conftest import run_cli


def load(model, **levers):
    return load_pipeline(Preset(model=str(model), device="cpu", **levers), None).pipe


def test_channels_last_and_vae_levers(tiny_sd):
    pipe = load(tiny_sd, channels_last=True, vae_tiling=True, vae_slicing=True)
    conv = pipe.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert pipe.vae.use_tiling and pipe.vae.use_slicing
    plain = load(tiny_sd)
    assert plain.unet.conv_in.weight.is_contiguous() and not plain.vae.use_tiling and not plain.vae.use_slicing


def test_compile_wraps_the_denoiser(tiny_sd):
    pipe = load(tiny_sd, compile="default")
    assert type(pipe.unet).__name__ == "OptimizedModule"


def test_attention_backend_is_set_on_a_transformer():
    import types

    from diffusers import FluxTransformer2DModel

    from diffcli.run.levers import apply_levers

    transformer = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                         attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
                                         pooled_projection_dim=8, axes_dims_rope=(2, 2, 4))
    pipe = types.SimpleNamespace(transformer=transformer)
    processors = transformer.attn_processors.values()
    assert processors and all(p._attention_backend is None for p in processors)
    apply_levers(pipe, Preset(model="x", attention_backend="_native_math"), torch.device("cpu"))
    assert {str(p._attention_backend) for p in transformer.attn_processors.values()} == {
        "AttentionBackendName._NATIVE_MATH"}
    with pytest.raises(PresetError, match="attention_backend: no-such-backend: .*must be one of"):
        apply_levers(pipe, Preset(model="x", attention_backend="no-such-backend"), torch.device("cpu"))


def test_attention_backend_refused_on_a_unet(tiny_sd):
    with pytest.raises(PresetError, match="attention_backend: native: only transformer pipelines use it"):
        load(tiny_sd, attention_backend="native")


def test_cpu_offload_needs_an_accelerator(tiny_sd):
    with pytest.raises(PresetError, match="cpu_offload: model: needs an accelerator"):
        load(tiny_sd, cpu_offload="model")


def test_vae_levers_refused_without_vae(tiny_ddpm):
    with pytest.raises(PresetError, match="vae_tiling: this pipeline has no VAE"):
        load(tiny_ddpm, vae_tiling=True)


def test_dtype_and_device_resolution():
    from diffcli.run.pipelines import resolve_device, resolve_dtype

    cpu = resolve_device("auto") if not torch.cuda.is_available() else torch.device("cpu")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16
    assert resolve_dtype("bfloat16", cpu) == torch.bfloat16
    if not torch.cuda.is_available():
        with pytest.raises(PresetError, match="CUDA is not available"):
            resolve_device("cuda")


def test_thread_defaults(monkeypatch):
    from diffcli.run import threads

    monkeypatch.setattr(threads, "available_cpus", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert threads.default_threads() == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert threads.default_threads() == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_threads() == 3


@pytest.mark.slow
def test_second_compile_process_reuses_the_first_ones_artefacts(tmp_path, monkeypatch):
    """compile: the graphs and kernels go to diffcli's compile cache (beside HF_HOME, not /tmp), and a
    second process loads them instead of compiling: cache hits and no misses."""
    from tests.tiny import build_minimal_unconditional

    model = build_minimal_unconditional(tmp_path / "model")
    for variable in ("TORCHINDUCTOR_CACHE_DIR", "DIFFCLI_COMPILE_CACHE"):
        monkeypatch.delenv(variable, raising=False)
    env = {"HF_HOME": str(tmp_path / "hf")}
    runs = []
    for name in ("cold", "warm"):
        result = run_cli("unconditional", "--model", str(model), "--set", "compile=default", "--steps", "1",
                         "-o", str(tmp_path / name), "--json", env=env, timeout=600)
        assert result.returncode == 0, result.stderr
        runs.append(json.loads(result.stdout))
    cold, warm = (run["compile_cache"] for run in runs)
    folder = tmp_path / "hf" / "diffcli" / "inductor"
    assert cold["folder"] == warm["folder"] == str(folder) and any(folder.iterdir())
    assert cold["misses"] > 0
    assert warm["hits"] >= cold["misses"] and warm["misses"] == 0
    assert all(run["timings"]["first_batch_s"] <= run["timings"]["generate_s"] for run in runs)


def test_compile_cache_folder_rules(tmp_path, monkeypatch):
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    from diffcli.run.caches import use_compile_cache

    monkeypatch.delenv("DIFFCLI_COMPILE_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))  # the user's choice stays
    assert use_compile_cache() == str(tmp_path / "mine")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())  # what importing diffusers sets
    assert use_compile_cache() == str(tmp_path / "hf" / "diffcli" / "inductor")
    assert (tmp_path / "hf" / "diffcli" / "inductor").is_dir()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("DIFFCLI_COMPILE_CACHE", str(tmp_path / "file" / "inductor"))  # cannot be made
    assert use_compile_cache() == "" and os.environ["TORCHINDUCTOR_CACHE_DIR"] == default_cache_dir()
