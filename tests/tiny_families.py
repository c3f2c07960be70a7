"""Tiny random pipelines of the flow-matching transformer families, built offline in the standard folder format.

Configs follow diffusers' own tests (`tests/pipelines/<family>/`); tokenizers are built in code with the
`tokenizers` library (a Unigram model over a small vocabulary), so nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from tests.tiny import TINY_WORDS

WORDS = TINY_WORDS + ["squirrel", "burger", "painting", "digit", "seven", "bad", "ugly", "handwritten"]


def _unigram(words: list[str], specials: list[str], unk: str, bos: str | None, eos: str | None) -> Any:
    """A SentencePiece-style Unigram tokenizer: specials, one piece per word, and single letters as fallback."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    letters = sorted({ch for word in words for ch in word} | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    vocab = [(token, 0.0) for token in specials]
    vocab += [("\u2581" + word, -1.0) for word in words] + [("\u2581", -2.0)]
    vocab += [(ch, -5.0) for ch in letters]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=specials.index(unk), byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    single = " ".join(([bos] if bos else []) + ["$A"] + ([eos] if eos else []))
    tokens = [(t, specials.index(t)) for t in (bos, eos) if t]
    tokenizer.post_processor = processors.TemplateProcessing(single=single, pair=f"{single} $B", special_tokens=tokens)
    return tokenizer


def t5_tokenizer(max_length: int = 64) -> Any:
    """A T5TokenizerFast (pad 0, eos 1, unk 2) over WORDS."""
    from transformers import T5TokenizerFast

    backend = _unigram(WORDS, ["<pad>", "</s>", "<unk>"], "<unk>", None, "</s>")
    return T5TokenizerFast(tokenizer_object=backend, eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                           extra_ids=0, model_max_length=max_length)


def t5_encoder(vocab_size: int, d_model: int = 32) -> Any:
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                      relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                      dropout_rate=0.0)
    return T5EncoderModel(config).eval()


def gemma_tokenizer(max_length: int = 512) -> Any:
    """A GemmaTokenizerFast (pad 0, eos 1, bos 2, unk 3) over WORDS."""
    from transformers import GemmaTokenizerFast

    backend = _unigram(WORDS, ["<pad>", "<eos>", "<bos>", "<unk>"], "<unk>", "<bos>", None)
    return GemmaTokenizerFast(tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                              unk_token="<unk>", model_max_length=max_length)


def gemma2_encoder(vocab_size: int, hidden: int = 8, head_dim: int = 4) -> Any:
    from transformers import Gemma2Config, Gemma2Model

    config = Gemma2Config(head_dim=head_dim, hidden_size=hidden, intermediate_size=16, num_attention_heads=2,
                          num_hidden_layers=1, num_key_value_heads=2, vocab_size=vocab_size, pad_token_id=0,
                          eos_token_id=1, bos_token_id=2, max_position_embeddings=1024, attn_implementation="eager")
    return Gemma2Model(config).eval()


def _clip(with_projection: bool, hidden: int = 32) -> tuple[Any, Any]:
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from diffcli.builtin.tokenizer import tokenizer_and_text_config

    tokenizer, config = tokenizer_and_text_config(WORDS, hidden_size=hidden, heads=4, max_length=16)
    model = (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)
    return tokenizer, model.eval()


def _flux_vae(latent_channels: int, blocks: int = 2) -> Any:
    """A 1-group AutoencoderKL with 2**(blocks-1) downsampling (Lumina 2 assumes 8: blocks=4)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,) * (blocks - 1) + (8,),
                         layers_per_block=1, down_block_types=("DownEncoderBlock2D",) * blocks,
                         up_block_types=("UpDecoderBlock2D",) * blocks,
                         latent_channels=latent_channels, norm_num_groups=1, use_quant_conv=False,
                         use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)


def build_tiny_flux(folder: Path, guidance_embeds: bool = True, seed: int = 0) -> Path:
    """FluxPipeline: CLIP + T5, a 1+1-layer FluxTransformer2DModel, packed 2x2 latents."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
                                         guidance_embeds=guidance_embeds)
    tokenizer, text_encoder = _clip(False)
    tokenizer_2 = t5_tokenizer()
    text_encoder_2 = t5_encoder(len(tokenizer_2))
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_image_seq_len=256,
                                                max_image_seq_len=4096, base_shift=0.5, max_shift=1.15, shift=3.0)
    FluxPipeline(scheduler=scheduler, vae=_flux_vae(4), text_encoder=text_encoder, tokenizer=tokenizer,
                 text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer,
                 image_encoder=None, feature_extractor=None).save_pretrained(folder)
    return folder


def build_tiny_chroma(folder: Path, seed: int = 0) -> Path:
    """ChromaPipeline: T5 only, a Flux-style transformer with a modulation approximator, packed latents."""
    import torch
    from diffusers import ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler

    torch.manual_seed(seed)
    transformer = ChromaTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                           attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                           axes_dims_rope=[4, 4, 8], approximator_hidden_dim=32,
                                           approximator_layers=1, approximator_num_channels=16)
    tokenizer = t5_tokenizer()
    ChromaPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=_flux_vae(4), text_encoder=t5_encoder(len(tokenizer)),
                   tokenizer=tokenizer, transformer=transformer, image_encoder=None,
                   feature_extractor=None).save_pretrained(folder)
    return folder


def build_tiny_sd3(folder: Path, seed: int = 0, latent_channels: int = 4) -> Path:
    """StableDiffusion3Pipeline: two CLIPs with projection + T5, a 1-layer SD3Transformer2DModel
    (16 latent channels: what diffusers' SD3 inpainting pipeline accepts)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(seed)
    # 4 heads of 6: a width no other tiny family shares, so a LoRA made for another family does not fit
    transformer = SD3Transformer2DModel(sample_size=16, patch_size=1, in_channels=latent_channels,
                                        num_layers=1, attention_head_dim=6, num_attention_heads=4,
                                        caption_projection_dim=24, joint_attention_dim=32, pooled_projection_dim=64,
                                        out_channels=latent_channels)
    tokenizer, text_encoder = _clip(True)
    tokenizer_2, text_encoder_2 = _clip(True)
    tokenizer_3 = t5_tokenizer()
    StableDiffusion3Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=_flux_vae(latent_channels),
                             text_encoder=text_encoder, tokenizer=tokenizer, text_encoder_2=text_encoder_2,
                             tokenizer_2=tokenizer_2, text_encoder_3=t5_encoder(len(tokenizer_3)),
                             tokenizer_3=tokenizer_3, transformer=transformer, image_encoder=None,
                             feature_extractor=None).save_pretrained(folder)
    return folder


def build_tiny_pixart_sigma(folder: Path, seed: int = 0) -> Path:
    """PixArtSigmaPipeline: T5 + a 2-layer PixArtTransformer2DModel (DiT, learned sigma) + an SD-style VAE."""
    import torch
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

    torch.manual_seed(seed)
    transformer = PixArtTransformer2DModel(sample_size=32, num_layers=2, patch_size=2, attention_head_dim=8,
                                           num_attention_heads=3, caption_channels=32, in_channels=4,
                                           cross_attention_dim=24, out_channels=8, attention_bias=True,
                                           activation_fn="gelu-approximate", num_embeds_ada_norm=1000,
                                           norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6)
    # sample_size 32 selects the 256-pixel resolution bins; the VAE downsamples 8x, as the real model's
    vae = _flux_vae(4, blocks=4)
    tokenizer = t5_tokenizer(max_length=300)
    PixArtSigmaPipeline(tokenizer=tokenizer, text_encoder=t5_encoder(len(tokenizer)), vae=vae,
                        transformer=transformer, scheduler=DPMSolverMultistepScheduler()).save_pretrained(folder)
    return folder


def build_tiny_sana(folder: Path, seed: int = 0) -> Path:
    """SanaPipeline: Gemma 2 + a 1-layer SanaTransformer2DModel (linear attention) + a DC-AE."""
    import torch
    from diffusers import AutoencoderDC, FlowMatchEulerDiscreteScheduler, SanaPipeline, SanaTransformer2DModel

    torch.manual_seed(seed)
    transformer = SanaTransformer2DModel(patch_size=1, in_channels=4, out_channels=4, num_layers=1,
                                         num_attention_heads=2, attention_head_dim=4, num_cross_attention_heads=2,
                                         cross_attention_head_dim=4, cross_attention_dim=8, caption_channels=8,
                                         sample_size=16)  # 16: the 512-pixel resolution bins
    vae = AutoencoderDC(in_channels=3, latent_channels=4, attention_head_dim=2,
                        encoder_block_types=("ResBlock",) * 5 + ("EfficientViTBlock",),
                        decoder_block_types=("ResBlock",) * 5 + ("EfficientViTBlock",),
                        encoder_block_out_channels=(8,) * 6, decoder_block_out_channels=(8,) * 6,
                        encoder_qkv_multiscales=((),) * 5 + ((5,),), decoder_qkv_multiscales=((),) * 5 + ((5,),),
                        encoder_layers_per_block=(1,) * 6, decoder_layers_per_block=[1] * 6,
                        downsample_block_type="conv", upsample_block_type="interpolate",
                        decoder_norm_types="rms_norm", decoder_act_fns="silu", scaling_factor=0.41407)
    tokenizer = gemma_tokenizer()
    SanaPipeline(tokenizer=tokenizer, text_encoder=gemma2_encoder(len(tokenizer), hidden=8, head_dim=16), vae=vae,
                 transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0)).save_pretrained(folder)
    return folder


def build_tiny_lumina2(folder: Path, seed: int = 0) -> Path:
    """Lumina2Pipeline: Gemma 2 + a 2-layer Lumina2Transformer2DModel (Next-DiT)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, Lumina2Pipeline, Lumina2Transformer2DModel

    torch.manual_seed(seed)
    transformer = Lumina2Transformer2DModel(sample_size=4, patch_size=2, in_channels=4, hidden_size=8, num_layers=2,
                                            num_attention_heads=1, num_kv_heads=1, multiple_of=16,
                                            ffn_dim_multiplier=None, norm_eps=1e-5, scaling_factor=1.0,
                                            axes_dim_rope=[4, 2, 2], cap_feat_dim=8)
    tokenizer = gemma_tokenizer()
    Lumina2Pipeline(transformer=transformer, vae=_flux_vae(4, blocks=4), scheduler=FlowMatchEulerDiscreteScheduler(),
                    text_encoder=gemma2_encoder(len(tokenizer), hidden=8, head_dim=4),
                    tokenizer=tokenizer).save_pretrained(folder)
    return folder


def build_tiny_transformer_controlnet(folder: Path, family: str, seed: int = 1) -> Path:
    """A FluxControlNetModel or SD3ControlNetModel fitting the tiny Flux or SD3 transformer above; its
    zero-initialised layers (the control input embedding, the output blocks) get random N(0, 0.3) weights."""
    import torch
    from diffusers import FluxControlNetModel, SD3ControlNetModel

    torch.manual_seed(seed)
    if family == "flux":
        net = FluxControlNetModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                  attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                  pooled_projection_dim=32, axes_dims_rope=[4, 4, 8], guidance_embeds=True)
    else:
        net = SD3ControlNetModel(sample_size=16, patch_size=1, in_channels=4, num_layers=1, attention_head_dim=6,
                                 num_attention_heads=4, joint_attention_dim=32, caption_projection_dim=24,
                                 pooled_projection_dim=64)
    with torch.no_grad():
        for name, parameter in net.named_parameters():
            if name.startswith(("controlnet_", "pos_embed_input")):
                parameter.normal_(0, 0.3)
    net.save_pretrained(folder)
    return folder


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "sd3": build_tiny_sd3,
    "sd3-16": lambda folder: build_tiny_sd3(folder, latent_channels=16),
    "flux": build_tiny_flux,
    "flux-schnell": lambda folder: build_tiny_flux(folder, guidance_embeds=False),
    "chroma": build_tiny_chroma,
    "pixart-sigma": build_tiny_pixart_sigma,
    "sana": build_tiny_sana,
    "lumina2": build_tiny_lumina2,
}
