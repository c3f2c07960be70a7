"""`diffcli train`: the built-in `digits` (DDPMPipeline), `digits-text` (StableDiffusionPipeline) and
`digits-flow` (StableDiffusion3Pipeline, in train_flow.py) models.

Fixed seeds, EMA weights, periodic checkpoints with `--resume`, and a standard diffusers
pipeline folder (safetensors + model_index.json) as the result.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from diffcli.errors import UsageError

TARGETS = ("digits", "digits-text", "digits-flow")


@dataclass
class TrainConfig:
    """Hyper-parameters; defaults are the shipped models' recipe."""

    target: str
    output: Path
    steps: int
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    device: str = "cpu"
    checkpoint_every: int = 500
    resume: bool = False
    subset: int | None = None
    split: str = "train"  # "train": the fixed 80% (digits.split_indices); the 20% held out judge quality
    vae_steps: int = 1500
    cfg_dropout: float = 0.15
    quiet: bool = False
    overwrite: bool = False


DEFAULT_STEPS = {"digits": 4000, "digits-text": 4000, "digits-flow": 4000}


class EMA:
    """Exponential moving average of a model's weights, with the usual warm-up."""

    def __init__(self, model: Any, decay: float = 0.999) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay

    def update(self, model: Any, step: int) -> None:
        import torch

        decay = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(list(self.model.parameters()), list(model.parameters()), 1 - decay)


def _progress(total: int, quiet: bool, label: str) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.console import Console

    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), disable=quiet)


def _loop(config: TrainConfig, name: str, modules: dict[str, Any], emas: dict[str, EMA], steps: int,
          loss_fn: Callable[[int, Any], Any]) -> float:
    """Adam over `modules`, EMA after each step, checkpoint every N steps; returns seconds spent."""
    import torch

    params = [p for m in modules.values() for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 200) * max(0.05, 1 - s / max(steps, 1)))
    generator = torch.Generator(device="cpu").manual_seed(config.seed + zlib.crc32(name.encode()) % 1000)
    ckpt = config.output.parent / f".{config.output.name}-checkpoints" / f"{name}.pt"
    start = 0
    if config.resume and ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)  # RNG states must stay CPU tensors
        for key, module in modules.items():
            module.load_state_dict(state["modules"][key])
        for key, ema in emas.items():
            ema.model.load_state_dict(state["emas"][key])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        start = int(state["step"])
    started = time.perf_counter()
    with _progress(steps, config.quiet, name) as progress:
        task = progress.add_task(name, total=steps, completed=start, loss=0.0)
        for step in range(start, steps):
            loss = loss_fn(step, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            for key, ema in emas.items():
                ema.update(modules[key], step)
            # reading the loss waits for the device: only as often as the bar can show it
            shown = {"loss": float(loss.detach())} if not config.quiet and step % 10 == 0 else {}
            progress.update(task, advance=1, **shown)
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == steps:
                ckpt.parent.mkdir(parents=True, exist_ok=True)
                tmp = ckpt.with_suffix(".tmp")
                torch.save({"modules": {k: m.state_dict() for k, m in modules.items()},
                            "emas": {k: e.model.state_dict() for k, e in emas.items()},
                            "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                            "generator": generator.get_state(), "step": step + 1}, tmp)
                tmp.replace(ckpt)
    return time.perf_counter() - started


def _data(config: TrainConfig) -> tuple[Any, Any]:
    """Images (N×1×16×16 in [-1, 1]) and labels of the configured split, on the training device."""
    import torch

    from diffcli.builtin.digits import load_split, to_model_space

    images, labels = load_split(config.split)
    if config.subset:
        images, labels = images[: config.subset], labels[: config.subset]
    return to_model_space(images).to(config.device), torch.as_tensor(labels).to(config.device)


def _batch(generator: Any, count: int, size: int, device: str) -> Any:
    import torch

    return torch.randint(0, count, (size,), generator=generator).to(device)


def train_digits(config: TrainConfig) -> dict[str, Any]:
    """Unconditional UNet2DModel + DDPMScheduler on 16×16 digits → a DDPMPipeline folder."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(config.seed)
    images, _ = _data(config)
    unet = UNet2DModel(
        sample_size=16, in_channels=1, out_channels=1, layers_per_block=2, block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8,
    ).to(config.device)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    alphas = scheduler.alphas_cumprod.to(config.device)
    ema = EMA(unet)

    def loss_fn(step: int, generator: Any) -> Any:
        x0 = images[_batch(generator, len(images), config.batch_size, config.device)]
        noise = torch.randn(x0.shape, generator=generator).to(config.device)
        t = torch.randint(0, 1000, (len(x0),), generator=generator).to(config.device)
        a = alphas[t].view(-1, 1, 1, 1)
        return F.mse_loss(unet(a.sqrt() * x0 + (1 - a).sqrt() * noise, t).sample, noise)

    seconds = _loop(config, "digits", {"unet": unet}, {"unet": ema}, config.steps, loss_fn)
    pipe = DDPMPipeline(unet=ema.model.to("cpu").float(), scheduler=scheduler)
    _save(pipe, config)
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
    images, labels = _data(config)
    vae = AutoencoderKL(in_channels=1, out_channels=1, latent_channels=4, block_out_channels=(32, 64),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        layers_per_block=1, norm_num_groups=8, sample_size=16).to(config.device)

    def vae_loss(step: int, generator: Any) -> Any:
        x = images[_batch(generator, len(images), config.batch_size, config.device)]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=None)).sample
        return F.mse_loss(recon, x) + 1e-6 * posterior.kl().mean()

    vae_ema = EMA(vae)
    seconds = _loop(config, "digits-text-vae", {"vae": vae}, {"vae": vae_ema}, config.vae_steps, vae_loss)
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
        index = torch.randint(0, len(latents), (config.batch_size,), generator=generator)  # as _batch draws it
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

    seconds += _loop(config, "digits-text", {"unet": unet, "text_encoder": text_encoder},
                     {"unet": unet_ema, "text_encoder": text_ema}, config.steps, loss_fn)
    pipe = StableDiffusionPipeline(
        vae=vae.to("cpu").float(), text_encoder=text_ema.model.to("cpu").float(), tokenizer=tokenizer,
        unet=unet_ema.model.to("cpu").float(), scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    _save(pipe, config)
    return {"target": "digits-text", "steps": config.steps, "vae_steps": config.vae_steps, "seconds": round(seconds, 1),
            "parameters": sum(p.numel() for m in (vae, unet, text_encoder) for p in m.parameters())}


def _save(pipe: Any, config: TrainConfig) -> None:
    """Write the pipeline folder beside the target, then swap it in with two renames (old → aside, new → in)."""
    tmp = config.output.with_name(f".{config.output.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    recipe = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()
              if k not in ("quiet", "resume", "overwrite")}
    (tmp / "training.json").write_text(json.dumps(recipe, indent=2) + "\n", encoding="utf-8")
    old = config.output.with_name(f".{config.output.name}.old")
    if config.output.exists():  # allowed by check_output: empty, or --overwrite
        config.output.rename(old)
    tmp.rename(config.output)
    shutil.rmtree(old, ignore_errors=True)


def check_output(config: TrainConfig) -> None:
    """Refuse to replace a non-empty folder (or any file) unless --overwrite, before any training."""
    from diffcli.errors import OutputError

    output = config.output
    if output.exists() and not output.is_dir():
        raise OutputError(f"{output} is a file, not a folder")
    if output.is_dir() and any(output.iterdir()) and not config.overwrite:
        raise OutputError(f"{output} exists and is not empty", hint="use --overwrite to replace it")


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
    from diffcli.builtin.train_flow import train_digits_flow

    runner = {"digits": train_digits, "digits-text": train_digits_text, "digits-flow": train_digits_flow}[config.target]
    summary = runner(config)
    summary["output"] = str(config.output)
    return summary
