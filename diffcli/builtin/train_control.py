"""`diffcli train digits-control`: a ControlNet for the built-in `digits-text` model, steered by Canny edges.

The control image is what `--control canny` makes of a digit: the 16x16 image as RGB, OpenCV's Canny with
thresholds 100/200 (plan/control.py), white edges on black. The ControlNet mirrors the digits-text UNet's
encoder (its conv_in, time embedding and ResNet blocks start from the UNet's weights) but has no attention,
so it never reads the prompt: the edges alone decide what it adds. The UNet, text encoder and autoencoder stay
frozen (the shipped digits-text). Prompts are the image's own digit 40% of the time, another digit 30%, empty
30%, so the edges learn to win over a prompt that names another digit. Trained on the fixed 80% split only.
"""

from __future__ import annotations

from typing import Any

from diffcli.builtin.train_loop import TrainConfig

CONDITIONING = (16, 32)  # the control embedding's channels: one 2x downsampling, 16x16 edges → 8x8 latents


def canny_edges(images: Any) -> Any:
    """N×1×16×16 images in [-1, 1] → N×3×16×16 edge maps in [0, 1], exactly as `--control canny` makes them."""
    import numpy as np
    import torch
    from PIL import Image

    from diffcli.plan.control import canny

    pixels = ((images[:, 0].cpu() + 1) / 2 * 255).round().clamp(0, 255).byte().numpy()
    edges = [np.asarray(canny(Image.fromarray(p, "L").convert("RGB")), dtype=np.float32) / 255.0 for p in pixels]
    return torch.from_numpy(np.stack(edges)).permute(0, 3, 1, 2).contiguous()


def make_controlnet(unet: Any) -> Any:
    """A ControlNetModel shaped like `unet`'s encoder without attention, its shared layers copied from `unet`."""
    from diffusers import ControlNetModel

    config = unet.config
    net = ControlNetModel(in_channels=config.in_channels, conditioning_channels=3,
                          down_block_types=("DownBlock2D",) * len(config.block_out_channels),
                          block_out_channels=tuple(config.block_out_channels), layers_per_block=config.layers_per_block,
                          cross_attention_dim=config.cross_attention_dim, attention_head_dim=config.attention_head_dim,
                          norm_num_groups=config.norm_num_groups, mid_block_type="UNetMidBlock2D",
                          conditioning_embedding_out_channels=CONDITIONING)
    for name in ("conv_in", "time_proj", "time_embedding"):
        getattr(net, name).load_state_dict(getattr(unet, name).state_dict())
    for ours, theirs in zip(net.down_blocks, unet.down_blocks):
        ours.resnets.load_state_dict(theirs.resnets.state_dict())
        if ours.downsamplers is not None:
            ours.downsamplers.load_state_dict(theirs.downsamplers.state_dict())
    for ours, theirs in zip(net.mid_block.resnets, unet.mid_block.resnets):  # diffusers builds it with one
        ours.load_state_dict(theirs.state_dict())
    return net


def train_digits_control(config: TrainConfig) -> dict[str, Any]:
    """Train the ControlNet on the frozen shipped digits-text; save a ControlNetModel folder (float16 weights)."""
    import torch
    import torch.nn.functional as F
    from diffusers import StableDiffusionPipeline

    from diffcli.builtin.digits import TEMPLATES, prompt_for
    from diffcli.builtin.train_loop import EMA, save_pipeline, train_loop, training_data
    from diffcli.plan.resources import builtin_models_dir

    torch.manual_seed(config.seed)
    images, labels = training_data(config)
    base = StableDiffusionPipeline.from_pretrained(builtin_models_dir() / "digits-text").to(config.device)
    for module in (base.unet, base.vae, base.text_encoder):
        module.eval().requires_grad_(False)
    with torch.no_grad():
        latents = base.vae.encode(images).latent_dist.mean * base.vae.config.scaling_factor
        forms = [[prompt_for(d, k) for k in range(len(TEMPLATES))] for d in range(10)]
        ids = base.tokenizer([p for row in forms for p in row] + [""], padding="max_length", max_length=16,
                             truncation=True, return_tensors="pt").input_ids
        contexts = base.text_encoder(ids.to(config.device))[0]  # 10 x len(TEMPLATES) prompts, then ""
    edges = canny_edges(images).to(config.device)
    alphas = base.scheduler.alphas_cumprod.to(config.device)
    net = make_controlnet(base.unet).to(config.device).train()
    ema = EMA(net)
    label_list, templates = labels.tolist(), len(TEMPLATES)

    def loss_fn(step: int, generator: Any) -> Any:
        index = torch.randint(0, len(latents), (config.batch_size,), generator=generator)
        x0, control = latents[index.to(config.device)], edges[index.to(config.device)]
        kind = torch.rand(len(index), generator=generator).tolist()  # < 0.4 own digit, < 0.7 another, else ""
        other = torch.randint(1, 10, (len(index),), generator=generator).tolist()
        form = torch.randint(0, templates, (len(index),), generator=generator).tolist()
        rows = []
        for i, digit in enumerate(label_list[j] for j in index.tolist()):
            named = digit if kind[i] < 0.4 else (digit + other[i]) % 10
            rows.append(len(contexts) - 1 if kind[i] >= 0.7 else named * templates + form[i])
        context = contexts[torch.tensor(rows, device=config.device)]
        noise = torch.randn(x0.shape, generator=generator).to(config.device)
        t = torch.randint(0, len(alphas), (len(x0),), generator=generator).to(config.device)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        down, mid = net(noisy, t, encoder_hidden_states=context, controlnet_cond=control, return_dict=False)
        prediction = base.unet(noisy, t, encoder_hidden_states=context, down_block_additional_residuals=down,
                               mid_block_additional_residual=mid).sample
        return F.mse_loss(prediction, noise)

    seconds = train_loop(config, "digits-control", {"controlnet": net}, {"controlnet": ema}, config.steps, loss_fn)
    save_pipeline(ema.model.to("cpu").to(torch.float16), config)  # float16: half the size; loads as float32
    return {"target": "digits-control", "steps": config.steps, "seconds": round(seconds, 1),
            "parameters": sum(p.numel() for p in net.parameters())}
