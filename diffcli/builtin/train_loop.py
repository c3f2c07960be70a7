"""The machinery every `diffcli train` recipe shares: the config, EMA weights, the optimisation loop with
checkpoints and `--resume`, the digits data, and writing the pipeline folder."""

from __future__ import annotations

import copy
import json
import shutil
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable


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


def train_loop(config: TrainConfig, name: str, modules: dict[str, Any], emas: dict[str, EMA], steps: int,
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


def training_data(config: TrainConfig) -> tuple[Any, Any]:
    """Images (N×1×16×16 in [-1, 1]) and labels of the configured split, on the training device."""
    import torch

    from diffcli.builtin.digits import load_split, to_model_space

    images, labels = load_split(config.split)
    if config.subset:
        images, labels = images[: config.subset], labels[: config.subset]
    return to_model_space(images).to(config.device), torch.as_tensor(labels).to(config.device)


def batch_indices(generator: Any, count: int, size: int, device: str) -> Any:
    import torch

    return torch.randint(0, count, (size,), generator=generator).to(device)


def save_pipeline(pipe: Any, config: TrainConfig) -> None:
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
