"""`diffcli train`: the built-in `digits` (DDPMPipeline), `digits-text` (StableDiffusionPipeline) and
`digits-flow` (StableDiffusion3Pipeline, in train_flow.py) models, and `digits-control` (a ControlNetModel for
digits-text, in train_control.py).

Fixed seeds, EMA weights, periodic checkpoints with `--resume`, and a standard diffusers
pipeline folder (safetensors + model_index.json) as the result (the shared machinery: train_loop.py).
"""

from __future__ import annotations

from typing import Any

from diffcli.builtin.train_loop import (EMA, TrainConfig, batch_indices, check_output, save_pipeline,
                                        train_loop, training_data)
from diffcli.errors import UsageError

TARGETS = ("digits", "digits-text", "digits-flow", "digits-control")
DEFAULT_STEPS = {"digits": 4000, "digits-text": 4000, "digits-flow": 4000, "digits-control": 500}


def train_digits(config: TrainConfig) -> dict[str, Any]:
    """Unconditional UNet2DModel + DDPMScheduler on 16×16 digits → a DDPMPipeline folder."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(config.seed)
    images, _ = training_data(config)
    unet = UNet2DModel(
        sample_size=16, in_channels=1, out_channels=1, layers_per_block=2, block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8,
    ).to(config.device)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    alphas = scheduler.alphas_cumprod.to(config.device)
    ema = EMA(unet)

    def loss_fn(step: int, generator: Any) -> Any:
        x0 = images[batch_indices(generator, len(images), config.batch_size, config.device)]
        noise = torch.randn(x0.shape, generator=generator).to(config.device)
        t = torch.randint(0, 1000, (len(x0),), generator=generator).to(config.device)
        a = alphas[t].view(-1, 1, 1, 1)
        return F.mse_loss(unet(a.sqrt() * x0 + (1 - a).sqrt() * noise, t).sample, noise)

    seconds = train_loop(config, "digits", {"unet": unet}, {"unet": ema}, config.steps, loss_fn)
    pipe = DDPMPipeline(unet=ema.model.to("cpu").float(), scheduler=scheduler)
    save_pipeline(pipe, config)
    return {"target": "digits", "steps": config.steps, "seconds": round(seconds, 1),
            "parameters": sum(p.numel() for p in unet.parameters())}


def train_digits_text(config: TrainConfig) -> dict[str, Any]:
    """AutoencoderKL, then a CLIP text encoder + cross-attention UNet with CFG dropout → a StableDiffusionPipeline."""
    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    from diffcli.builtin.digits import TEMPLATES, VOCAB_WORDS, prompt_for
    from diffcli.builtin.tokenizer import tokenizer_and_text_config

    torch.manual_seed(config.seed)
    images, labels = training_data(config)
    vae = AutoencoderKL(in_channels=1, out_channels=1, latent_channels=4, block_out_channels=(32, 64),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        layers_per_block=1, norm_num_groups=8, sample_size=16).to(config.device)

    def vae_loss(step: int, generator: Any) -> Any:
        x = images[batch_indices(generator, len(images), config.batch_size, config.device)]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=None)).sample
        return F.mse_loss(recon, x) + 1e-6 * posterior.kl().mean()

    vae_ema = EMA(vae)
    seconds = train_loop(config, "digits-text-vae", {"vae": vae}, {"vae": vae_ema}, config.vae_steps, vae_loss)
    vae = vae_ema.model
    with torch.no_grad():
        latents = vae.encode(images).latent_dist.mean
    scaling = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scaling)
    latents = latents * scaling

    tokenizer, text_config = tokenizer_and_text_config(VOCAB_WORDS, hidden_size=64, heads=4)
    text_encoder = CLIPTextModel(text_config).to(config.device)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(64, 128),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=64, attention_head_dim=8, norm_num_groups=16,
    ).to(config.device)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    alphas = scheduler.alphas_cumprod.to(config.device)
    prompts = [[prompt_for(d, k) for k in range(len(TEMPLATES))] + [""] for d in range(10)]
    token_table = {p: tokenizer(p, padding="max_length", max_length=16, truncation=True, return_tensors="pt").input_ids[0]
                   for row in prompts for p in row}
    unet_ema, text_ema = EMA(unet), EMA(text_encoder)

    label_list = labels.tolist()  # host copy: looking labels up on the device would wait for it every step

    def loss_fn(step: int, generator: Any) -> Any:
        index = torch.randint(0, len(latents), (config.batch_size,), generator=generator)  # as batch_indices draws it
        x0, digits = latents[index.to(config.device)], [label_list[i] for i in index.tolist()]
        forms = torch.randint(0, len(TEMPLATES), (len(index),), generator=generator).tolist()
        drop = (torch.rand(len(index), generator=generator) < config.cfg_dropout).tolist()
        ids = torch.stack([token_table["" if d else prompts[g][f]] for g, f, d in zip(digits, forms, drop)])
        context = text_encoder(ids.to(config.device))[0]
        noise = torch.randn(x0.shape, generator=generator).to(config.device)
        t = torch.randint(0, 1000, (len(x0),), generator=generator).to(config.device)
        a = alphas[t].view(-1, 1, 1, 1)
        prediction = unet(a.sqrt() * x0 + (1 - a).sqrt() * noise, t, encoder_hidden_states=context).sample
        return F.mse_loss(prediction, noise)

    seconds += train_loop(config, "digits-text", {"unet": unet, "text_encoder": text_encoder},
                     {"unet": unet_ema, "text_encoder": text_ema}, config.steps, loss_fn)
    pipe = StableDiffusionPipeline(
        vae=vae.to("cpu").float(), text_encoder=text_ema.model.to("cpu").float(), tokenizer=tokenizer,
        unet=unet_ema.model.to("cpu").float(), scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    save_pipeline(pipe, config)
    return {"target": "digits-text", "steps": config.steps, "vae_steps": config.vae_steps, "seconds": round(seconds, 1),
            "parameters": sum(p.numel() for m in (vae, unet, text_encoder) for p in m.parameters())}


def train(config: TrainConfig) -> dict[str, Any]:
    """Train one target and return a summary."""
    if config.target not in TARGETS:
        raise UsageError(f"unknown training target '{config.target}' (choose {', '.join(TARGETS)})")
    import torch

    from diffcli.run.pipelines import quiet_libraries

    check_output(config)
    quiet_libraries()
    import transformers

    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(config.seed)
    from diffcli.builtin.train_control import train_digits_control
    from diffcli.builtin.train_flow import train_digits_flow

    runner = {"digits": train_digits, "digits-text": train_digits_text, "digits-flow": train_digits_flow,
              "digits-control": train_digits_control}[config.target]
    summary = runner(config)
    summary["output"] = str(config.output)
    return summary
