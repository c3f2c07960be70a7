"""Test helper: a diffusers SD 1.x pipeline folder → one original-layout (LDM) checkpoint file.

The inverse of diffusers' `convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint` and the CLIP
text-encoder mapping, written for any number of blocks and layers (the published conversion script
hard-codes SD 1.5's four blocks), so the tiny test pipelines can be written as single files.
"""

from __future__ import annotations

import json
from pathlib import Path

RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
          ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection"))
VAE_ATTENTION = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))


def _rename(key: str, pairs: tuple[tuple[str, str], ...]) -> str:
    """`key` with its first matching prefix (in `pairs` order) replaced."""
    for old, new in pairs:
        if key.startswith(old + "."):
            return new + key[len(old):]
    return key


def _split(key: str, prefixes: dict[str, str]) -> tuple[str, str, str]:
    """(diffusers prefix, its LDM prefix, the rest) for the longest prefix of `key`, or (``, ``, key)."""
    for old in sorted(prefixes, key=len, reverse=True):
        if key.startswith(old + "."):
            return old, prefixes[old], key[len(old) + 1:]
    return "", "", key


def unet_prefixes(config: dict) -> dict[str, str]:
    """diffusers module prefix → LDM prefix, for every block of a UNet2DConditionModel config."""
    layers = config["layers_per_block"]
    blocks = len(config["block_out_channels"])
    ups_with_attention = {i for i, kind in enumerate(config["up_block_types"]) if "CrossAttn" in kind}
    prefixes = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
                "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
                "mid_block.resnets.0": "middle_block.0", "mid_block.attentions.0": "middle_block.1",
                "mid_block.resnets.1": "middle_block.2"}
    for i in range(blocks):
        for j in range(layers):
            prefixes[f"down_blocks.{i}.resnets.{j}"] = f"input_blocks.{(layers + 1) * i + j + 1}.0"
            prefixes[f"down_blocks.{i}.attentions.{j}"] = f"input_blocks.{(layers + 1) * i + j + 1}.1"
        if i < blocks - 1:
            prefixes[f"down_blocks.{i}.downsamplers.0.conv"] = f"input_blocks.{(layers + 1) * (i + 1)}.0.op"
        for j in range(layers + 1):
            prefixes[f"up_blocks.{i}.resnets.{j}"] = f"output_blocks.{(layers + 1) * i + j}.0"
            prefixes[f"up_blocks.{i}.attentions.{j}"] = f"output_blocks.{(layers + 1) * i + j}.1"
        if i < blocks - 1:
            slot = 2 if i in ups_with_attention else 1
            prefixes[f"up_blocks.{i}.upsamplers.0"] = f"output_blocks.{(layers + 1) * i + layers}.{slot}"
    return prefixes


def unet_to_ldm(state: dict, config: dict) -> dict:
    prefixes = unet_prefixes(config)
    out = {}
    for key, tensor in state.items():
        old, new, rest = _split(key, prefixes)
        if "resnets" in old:
            rest = _rename(rest, RESNET)
        out["model.diffusion_model." + (f"{new}.{rest}" if old else rest)] = tensor
    return out


def vae_prefixes(config: dict) -> dict[str, str]:
    layers = config["layers_per_block"]
    blocks = len(config["block_out_channels"])
    prefixes = {"encoder.conv_norm_out": "encoder.norm_out", "decoder.conv_norm_out": "decoder.norm_out"}
    for side in ("encoder", "decoder"):
        prefixes[f"{side}.mid_block.resnets.0"] = f"{side}.mid.block_1"
        prefixes[f"{side}.mid_block.resnets.1"] = f"{side}.mid.block_2"
        prefixes[f"{side}.mid_block.attentions.0"] = f"{side}.mid.attn_1"
    for i in range(blocks):
        for j in range(layers):
            prefixes[f"encoder.down_blocks.{i}.resnets.{j}"] = f"encoder.down.{i}.block.{j}"
        for j in range(layers + 1):
            prefixes[f"decoder.up_blocks.{i}.resnets.{j}"] = f"decoder.up.{blocks - 1 - i}.block.{j}"
        if i < blocks - 1:
            prefixes[f"encoder.down_blocks.{i}.downsamplers.0"] = f"encoder.down.{i}.downsample"
            prefixes[f"decoder.up_blocks.{i}.upsamplers.0"] = f"decoder.up.{blocks - 1 - i}.upsample"
    return prefixes


def vae_to_ldm(state: dict, config: dict) -> dict:
    prefixes = vae_prefixes(config)
    out = {}
    for key, tensor in state.items():
        old, new, rest = _split(key, prefixes)
        if "resnets" in old:
            rest = _rename(rest, (("conv_shortcut", "nin_shortcut"),))
        if "attentions" in old:
            rest = _rename(rest, VAE_ATTENTION)
            if rest.endswith("weight") and tensor.ndim == 2 and not rest.startswith("norm"):
                tensor = tensor.reshape(*tensor.shape, 1, 1)  # LDM's attention uses 1x1 convolutions
        out["first_stage_model." + (f"{new}.{rest}" if old else rest)] = tensor
    return out


def write_single_file(pipeline_folder: Path, target: Path) -> Path:
    """The folder's unet, vae and text encoder as one LDM-layout .safetensors file."""
    from safetensors.torch import load_file, save_file

    folder = Path(pipeline_folder)
    unet_config = json.loads((folder / "unet" / "config.json").read_text())
    vae_config = json.loads((folder / "vae" / "config.json").read_text())
    state = {}
    state.update(unet_to_ldm(load_file(folder / "unet" / "diffusion_pytorch_model.safetensors"), unet_config))
    state.update(vae_to_ldm(load_file(folder / "vae" / "diffusion_pytorch_model.safetensors"), vae_config))
    for key, tensor in load_file(folder / "text_encoder" / "model.safetensors").items():
        key = key if key.startswith("text_model.") else "text_model." + key  # transformers 5 saves without it
        state["cond_stage_model.transformer." + key] = tensor
    save_file({k: v.contiguous() for k, v in state.items()}, str(target))
    return target
