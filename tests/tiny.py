"""Tiny random pipelines in the standard on-disk format, built offline (tests, benchmarks, demos)."""

from __future__ import annotations

from pathlib import Path

from diffcli.builtin.tokenizer import tokenizer_and_text_config


def build_tiny_unconditional(folder: Path, sample_size: int = 8, channels: int = 3, seed: int = 0) -> Path:
    """A DDPMPipeline folder with a ~20K-parameter UNet2DModel and a 1000-step DDPMScheduler."""
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=sample_size, in_channels=channels, out_channels=channels, layers_per_block=1,
        block_out_channels=(8, 16), norm_num_groups=4,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    )
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000)).save_pretrained(folder)
    return folder



def build_minimal_unconditional(folder: Path) -> Path:
    """A DDPMPipeline folder with the smallest UNet2DModel diffusers builds (one block, no mid block, ~7K
    parameters): the fewest kernels for torch.compile to generate."""
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8,),
                       norm_num_groups=4, down_block_types=("DownBlock2D",), up_block_types=("UpBlock2D",),
                       mid_block_type=None)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000)).save_pretrained(folder)
    return folder

TINY_WORDS = ["a", "cat", "dog", "playing", "bass", "photo", "of", "the", "blurry", "red", "blue"]


def build_tiny_sd(folder: Path, seed: int = 0, xl: bool = False, inpaint: bool = False) -> Path:
    """A tiny StableDiffusionPipeline (or StableDiffusionXLPipeline) folder with random weights; `inpaint`: a
    StableDiffusionInpaintPipeline whose UNet takes 9 channels (latents, mask, masked-image latents)."""
    import torch
    from diffusers import (AutoencoderKL, EulerDiscreteScheduler, PNDMScheduler, StableDiffusionInpaintPipeline,
                           StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel)
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    tokenizer, text_config = tokenizer_and_text_config(TINY_WORDS, hidden_size=16, heads=2)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=4, sample_size=16)
    unet_kwargs = dict(sample_size=8, in_channels=9 if inpaint else 4, out_channels=4, layers_per_block=1,
                       block_out_channels=(16, 32), norm_num_groups=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=4)
    if not xl:
        unet = UNet2DConditionModel(cross_attention_dim=16, **unet_kwargs)
        scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  skip_prk_steps=True, steps_offset=1)
        pipe_cls = StableDiffusionInpaintPipeline if inpaint else StableDiffusionPipeline
        pipe = pipe_cls(vae=vae, text_encoder=CLIPTextModel(text_config), tokenizer=tokenizer, unet=unet,
                        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    else:
        unet = UNet2DConditionModel(cross_attention_dim=32, addition_embed_type="text_time",
                                    addition_time_embed_dim=4, projection_class_embeddings_input_dim=16 + 6 * 4,
                                    transformer_layers_per_block=1, **unet_kwargs)
        scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                           steps_offset=1, timestep_spacing="leading")
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=CLIPTextModel(text_config), tokenizer=tokenizer,
                                         text_encoder_2=CLIPTextModelWithProjection(text_config),
                                         tokenizer_2=tokenizer, unet=unet, scheduler=scheduler)
    pipe.save_pretrained(folder)
    return folder


def build_tiny_controlnet(folder: Path, xl: bool = False, seed: int = 1) -> Path:
    """A tiny ControlNetModel fitting `build_tiny_sd`'s UNet (SDXL's with `xl`), made with diffusers'
    `ControlNetModel.from_unet`; its zero-initialised output convolutions (controlnet_down_blocks,
    controlnet_mid_block) and the control image's embedding (whose conv_out starts at zero too) get random
    N(0, 0.3) weights, so the control image really changes the picture."""
    import tempfile

    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    with tempfile.TemporaryDirectory() as scratch:
        build_tiny_sd(Path(scratch) / "sd", xl=xl)
        unet = UNet2DConditionModel.from_pretrained(Path(scratch) / "sd" / "unet")
    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16))  # 2x down: the tiny VAE's
    with torch.no_grad():
        for conv in [*net.controlnet_down_blocks, net.controlnet_mid_block]:
            conv.weight.normal_(0, 0.3)
            conv.bias.normal_(0, 0.1)
        for parameter in net.controlnet_cond_embedding.parameters():
            parameter.normal_(0, 0.3)
    net.save_pretrained(folder)
    return folder


def build_tiny_upscaler(folder: Path, scale: int = 4, seed: int = 0) -> Path:
    """A tiny StableDiffusionUpscalePipeline (`scale` 4: pixels condition a 7-channel UNet, VAE factor 4) or
    StableDiffusionLatentUpscalePipeline (`scale` 2: a K-UNet on the source's latents, VAE factor 2), shaped as
    diffusers' own fast tests build them; the VAE's sample_size is small, so `enable_tiling` tiles outputs above
    32 (x4) or 16 (x2) pixels a side."""
    import torch
    from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler,
                           StableDiffusionLatentUpscalePipeline, StableDiffusionUpscalePipeline, UNet2DConditionModel)
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    tokenizer, text_config = tokenizer_and_text_config(TINY_WORDS, hidden_size=16, heads=2)
    text_encoder = CLIPTextModel(text_config)
    if scale == 4:
        unet = UNet2DConditionModel(
            sample_size=16, in_channels=7, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
            norm_num_groups=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16, attention_head_dim=4,
            use_linear_projection=True, only_cross_attention=(True, False), num_class_embeds=100)
        vae = AutoencoderKL(block_out_channels=(8, 8, 16), in_channels=3, out_channels=3, latent_channels=4,
                            norm_num_groups=4, down_block_types=("DownEncoderBlock2D",) * 3,
                            up_block_types=("UpDecoderBlock2D",) * 3, scaling_factor=0.08333, sample_size=32)
        betas = dict(beta_schedule="scaled_linear", beta_start=0.0001, beta_end=0.02)
        pipe = StableDiffusionUpscalePipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, max_noise_level=350,
            low_res_scheduler=DDPMScheduler(**betas),
            scheduler=DDIMScheduler(prediction_type="v_prediction", clip_sample=False, set_alpha_to_one=False,
                                    steps_offset=1, **betas))
    else:  # the K-UNet needs 32+ channels per block and four levels; time_cond = 128 noise-level + pooled text
        unet = UNet2DConditionModel(
            act_fn="gelu", attention_head_dim=8, norm_num_groups=None, block_out_channels=(32, 32, 64, 64),
            time_cond_proj_dim=128 + 16, conv_in_kernel=1, conv_out_kernel=1, cross_attention_dim=16,
            down_block_types=("KDownBlock2D",) + ("KCrossAttnDownBlock2D",) * 3, in_channels=8, layers_per_block=1,
            mid_block_type=None, only_cross_attention=False, out_channels=5, resnet_time_scale_shift="scale_shift",
            time_embedding_type="fourier", timestep_post_act="gelu",
            up_block_types=("KCrossAttnUpBlock2D",) * 3 + ("KUpBlock2D",))
        vae = AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4,
                            norm_num_groups=4, down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, sample_size=16)
        pipe = StableDiffusionLatentUpscalePipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                                    scheduler=EulerDiscreteScheduler(prediction_type="sample"))
    pipe.save_pretrained(folder)
    return folder
