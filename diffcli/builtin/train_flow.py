"""`diffcli train digits-flow`: a flow-matching `StableDiffusion3Pipeline` for the built-in digits.

An MMDiT (`SD3Transformer2DModel`, 3 joint blocks, width 120) over the 8x8x4 latents of the digits-text
autoencoder (the shipped one, trained on the same 80% split), two small CLIP text encoders with projection
trained with it, and no T5 (`text_encoder_3=None`: the pipeline feeds zeros in its place, which SD3 allows).
Rectified flow: x_t = (1 - s) x0 + s noise, the model predicts v = noise - x0, s drawn logit-normal as SD3
was trained; the prompt is dropped 15% of the time so classifier-free guidance works. The T5 slot is
`max_sequence_length` (16) zero tokens: the preset sets the same value, since the zeros take part in
attention.
"""

from __future__ import annotations

from typing import Any

from diffcli.builtin.train_loop import TrainConfig

MAX_SEQUENCE_LENGTH = 16


def train_digits_flow(config: TrainConfig) -> dict[str, Any]:
    """Train the transformer and text encoders; save a StableDiffusion3Pipeline folder."""
    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    from diffcli.builtin.digits import TEMPLATES, VOCAB_WORDS, prompt_for
    from diffcli.builtin.tokenizer import tokenizer_and_text_config
    from diffcli.builtin.train_loop import EMA, save_pipeline, train_loop, training_data
    from diffcli.plan.resources import builtin_models_dir

    torch.manual_seed(config.seed)
    images, labels = training_data(config)
    vae = AutoencoderKL.from_pretrained(builtin_models_dir() / "digits-text" / "vae").to(config.device).eval()
    vae.register_to_config(shift_factor=0.0)  # SD3 decodes latents / scaling + shift
    with torch.no_grad():
        latents = vae.encode(images).latent_dist.mean * vae.config.scaling_factor
    tokenizer, text_config = tokenizer_and_text_config(VOCAB_WORDS, hidden_size=64, heads=4)
    encoders = [CLIPTextModelWithProjection(text_config).to(config.device) for _ in range(2)]
    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=1, in_channels=4, out_channels=4, num_layers=3, attention_head_dim=30,
        num_attention_heads=4, joint_attention_dim=128, caption_projection_dim=120, pooled_projection_dim=128,
        pos_embed_max_size=8,
    ).to(config.device)
    prompts = [[prompt_for(d, k) for k in range(len(TEMPLATES))] + [""] for d in range(10)]
    token_table = {p: tokenizer(p, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                                return_tensors="pt").input_ids[0] for row in prompts for p in row}
    label_list = labels.tolist()
    emas = {"transformer": EMA(transformer), "text_encoder": EMA(encoders[0]), "text_encoder_2": EMA(encoders[1])}

    def loss_fn(step: int, generator: Any) -> Any:
        index = torch.randint(0, len(latents), (config.batch_size,), generator=generator)
        x0, digits = latents[index.to(config.device)], [label_list[i] for i in index.tolist()]
        forms = torch.randint(0, len(TEMPLATES), (len(index),), generator=generator).tolist()
        drop = (torch.rand(len(index), generator=generator) < config.cfg_dropout).tolist()
        ids = torch.stack([token_table["" if d else prompts[g][f]] for g, f, d in zip(digits, forms, drop)])
        hidden, pooled = encode(encoders, ids.to(config.device))
        noise = torch.randn(x0.shape, generator=generator).to(config.device)
        sigma = torch.sigmoid(torch.randn(len(x0), generator=generator)).to(config.device)  # logit-normal
        s = sigma.view(-1, 1, 1, 1)
        prediction = transformer(hidden_states=(1 - s) * x0 + s * noise, encoder_hidden_states=hidden,
                                 pooled_projections=pooled, timestep=sigma * 1000).sample
        return F.mse_loss(prediction, noise - x0)

    modules = {"transformer": transformer, "text_encoder": encoders[0], "text_encoder_2": encoders[1]}
    seconds = train_loop(config, "digits-flow", modules, emas, config.steps, loss_fn)
    pipe = StableDiffusion3Pipeline(
        transformer=emas["transformer"].model.to("cpu").float(), scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0),
        vae=vae.to("cpu").float(), text_encoder=emas["text_encoder"].model.to("cpu").float(), tokenizer=tokenizer,
        text_encoder_2=emas["text_encoder_2"].model.to("cpu").float(), tokenizer_2=tokenizer, text_encoder_3=None,
        tokenizer_3=None,
    )
    save_pipeline(pipe, config)
    return {"target": "digits-flow", "steps": config.steps, "seconds": round(seconds, 1),
            "parameters": sum(p.numel() for m in modules.values() for p in m.parameters())}


def encode(encoders: list[Any], ids: Any) -> tuple[Any, Any]:
    """(prompt embeddings, pooled) exactly as StableDiffusion3Pipeline.encode_prompt makes them without T5:
    each CLIP's penultimate hidden states side by side, then MAX_SEQUENCE_LENGTH zero tokens."""
    import torch

    outputs = [encoder(ids, output_hidden_states=True) for encoder in encoders]
    clip = torch.cat([out.hidden_states[-2] for out in outputs], dim=-1)
    zeros = torch.zeros(len(ids), MAX_SEQUENCE_LENGTH, clip.shape[-1], device=clip.device, dtype=clip.dtype)
    return torch.cat([clip, zeros], dim=-2), torch.cat([out[0] for out in outputs], dim=-1)
