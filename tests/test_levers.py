"""Speed/memory levers are applied the current diffusers way (checked where a CPU can show it)."""

import pytest
import torch

from diffcli.errors import PresetError
from diffcli.run.pipelines import load_pipeline
from diffcli.plan.presets import Preset


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


def test_attention_backend(tiny_sd):
    pipe = load(tiny_sd, attention_backend="native")
    processors = pipe.unet.attn_processors
    assert processors
    with pytest.raises(PresetError, match="attention_backend: no-such-backend"):
        load(tiny_sd, attention_backend="no-such-backend")


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
