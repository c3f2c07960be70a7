"""The one flow every generating command runs: plan → load → sample batches → write → report."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from diffcli import __version__
from diffcli.errors import Interrupted, OutputError
from diffcli.sinks.frames import FrameSink
from diffcli.sinks.pixels import to_pil, to_uint8
from diffcli.sinks.metadata import A1111_KEY, DIFFCLI_KEY, a1111_parameters, diffcli_chunk
from diffcli.sinks.folder import prepare_dir, save_png
from diffcli.plan.presets import Preset
from diffcli.sinks.progress import Progress
from diffcli.step import Step


@dataclass(frozen=True)
class Item:
    """One image to make. Its seed and name derive from the item, never from a rank or batch."""

    index: int
    seed: int
    stem: str
    prompt: str | None = None
    negative_prompt: str | None = None
    prompt_index: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    width: int | None = None
    height: int | None = None

    def batch_key(self) -> tuple:
        """Items with equal keys can share one batch."""
        return (self.steps, self.guidance_scale, self.width, self.height, self.negative_prompt is None)


@dataclass
class Options:
    """What the command line adds beyond the preset."""

    command: str
    overwrite: bool = False
    skip_existing: bool = False
    quiet: bool = False
    frames: bool = False
    frame_kinds: tuple[str, ...] = ("x_t",)
    frames_dir: str = "frames"


@dataclass
class Report:
    """What was written, seeds and timings (`--json` prints it as one document)."""

    images: list[dict[str, Any]] = field(default_factory=list)
    frames: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    preset: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"

    def to_dict(self) -> dict[str, Any]:
        data = {"status": self.status, "images": self.images, "frames": self.frames, "skipped": self.skipped,
                "preset": self.preset, "timings": self.timings}
        data.update(self.extra)
        return data


def unconditional_items(preset: Preset) -> list[Item]:
    """Image i is seeded `seed + i` and named `<i>-s<seed>`."""
    return [Item(index=i, seed=preset.seed + i, stem=f"{i:04d}-s{preset.seed + i}") for i in range(preset.num_images)]


def plan_outputs(items: list[Item], output_dir: Path, options: Options, report: Report) -> list[Item]:
    """Check names before any weights load: refuse existing files unless --overwrite / --skip-existing."""
    prepare_dir(output_dir)
    todo = []
    for item in items:
        path = output_dir / f"{item.stem}.png"
        if path.exists() and not options.overwrite:
            if options.skip_existing:
                report.skipped.append({"path": str(path), "seed": item.seed, "index": item.index})
                continue
            raise OutputError(f"{path} already exists", hint="use --overwrite to replace or --skip-existing to skip")
        todo.append(item)
    if options.frames and todo:
        prepare_dir(output_dir / options.frames_dir)
    return todo


def batches(items: list[Item], size: int) -> list[list[Item]]:
    """Consecutive items with the same batch key, at most `size` per batch."""
    groups: list[list[Item]] = []
    for item in items:
        if groups and len(groups[-1]) < size and groups[-1][0].batch_key() == item.batch_key():
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


Sampler = Callable[[Any, list[Item], list[Any], Callable[[Step], None] | None, bool], Any]


Finalize = Callable[[Any, Preset, list[Item]], tuple[Preset, list[Item]]]


def run(preset: Preset, task: str, items: list[Item], options: Options, sampler: Sampler,
        metadata: Callable[[Any, Preset, Item], dict[str, str]], loaded: Any = None,
        finalize: Finalize | None = None) -> Report:
    """Load (unless given), sample every batch, write images and frames; always returns a report.

    `finalize(loaded, preset, items)` fills in what needs the loaded model (e.g. default sizes).
    Under a multi-process launch each rank takes its share of the items and rank 0 gets the
    combined report; a failure on any rank fails every rank with a message naming it.
    """
    from diffcli.run.ranks import current, device_for_rank
    from diffcli.run.threads import configure_threads

    ranks = current()
    report = Report(preset=preset.to_dict())
    output_dir = Path(preset.output)
    todo = plan_outputs(items, output_dir, options, report)
    if ranks is not None:
        ranks.barrier()  # every rank has checked the names before any rank writes one
        todo = ranks.share(todo)
        options.quiet = options.quiet or not ranks.is_main
        preset = preset.replace(device=device_for_rank(preset.device))
    started = time.perf_counter()
    report.extra["threads"] = configure_threads(preset.threads)
    failure: BaseException | None = None
    try:
        _generate(preset, task, todo, options, sampler, metadata, loaded, finalize, report, started)
    except (KeyboardInterrupt, Interrupted):
        raise
    except Exception as err:  # noqa: BLE001 - under a launch, reported to every rank below
        if ranks is None:
            raise
        failure = err
    if ranks is not None:
        report = _gather(ranks, report, failure)
    return report


def _generate(preset: Preset, task: str, todo: list[Item], options: Options, sampler: Sampler,
              metadata: Callable[[Any, Preset, Item], dict[str, str]], loaded: Any, finalize: Finalize | None,
              report: Report, started: float) -> None:
    """Load, then sample and write batch by batch, filling `report` as files land."""
    import torch

    from diffcli.run.pipelines import load_pipeline

    if loaded is None:
        loaded = load_pipeline(preset, task)
    report.timings["load_s"] = round(time.perf_counter() - started, 3)
    report.extra.update(device=str(loaded.device), dtype=str(loaded.dtype).replace("torch.", ""))
    if finalize is not None:
        preset, todo = finalize(loaded, preset, todo)
        report.preset = preset.to_dict()
    pipe = loaded.pipe
    output_dir = Path(preset.output)
    sink = _frame_sink(preset, options, output_dir, pipe, loaded.task) if options.frames else None
    generate_started = time.perf_counter()
    _last_report[0] = report
    try:
        with Progress(len(todo), options.quiet) as progress:
            for batch in batches(todo, preset.batch_size):
                progress.start_batch(batch[0].index, len(batch))
                generators = [torch.Generator("cpu").manual_seed(item.seed) for item in batch]
                if sink is not None:
                    sink.start_batch([(item.index, item.seed, item.stem) for item in batch])

                def on_step(step: Step) -> None:
                    progress.advance_step(step.call, step.total_calls)
                    if sink is not None:
                        sink.on_step(step)

                images = sampler(pipe, batch, generators, on_step, sink is not None and "x0" in options.frame_kinds)
                pixels = to_uint8(images)
                if sink is not None:
                    sink.finish_batch(pixels)
                for item, image in zip(batch, pixels):
                    path = save_png(output_dir / f"{item.stem}.png", to_pil(image), metadata(pipe, preset, item),
                                    options.overwrite)
                    report.images.append(_image_entry(path, item, preset, image.shape))
                progress.finish_batch(len(batch))
    except KeyboardInterrupt:
        report.status = "interrupted"
        _drain(sink, report)
        raise Interrupted() from None
    except Interrupted:
        report.status = "interrupted"
        _drain(sink, report)
        raise
    finally:
        report.timings["generate_s"] = round(time.perf_counter() - generate_started, 3)
        report.timings["total_s"] = round(time.perf_counter() - started, 3)
    _drain(sink, report)


def _gather(ranks: Any, report: Report, failure: BaseException | None) -> Report:
    """Collect every rank's report (and failure) on every rank; merge them in item order."""
    from diffcli.run.ranks import RankFailed
    from diffcli.errors import DiffcliError

    error = None
    if failure is not None:
        message = failure.message if isinstance(failure, DiffcliError) else f"{type(failure).__name__}: {failure}"
        code = int(failure.exit_code) if isinstance(failure, DiffcliError) else 1
        error = {"message": message, "exit_code": code}
    everything = ranks.gather({"report": report.to_dict(), "error": error})
    for rank, payload in enumerate(everything):
        if payload["error"] is not None:
            failed = RankFailed(rank, payload["error"]["message"], payload["error"]["exit_code"])
            if ranks.is_main:  # say it before any launcher tears the other ranks down
                import sys

                print(f"Error: {failed.message}", file=sys.stderr, flush=True)
            ranks.barrier()
            failed.reported = True
            raise failed
    merged = Report(preset=report.preset, skipped=report.skipped, extra={**report.extra, "processes": ranks.world})
    for payload in everything:
        merged.images.extend(payload["report"]["images"])
        merged.frames.extend(payload["report"]["frames"])
        for key, value in payload["report"]["timings"].items():
            merged.timings[key] = max(merged.timings.get(key, 0.0), value)
    merged.images.sort(key=lambda entry: entry["index"])
    merged.frames.sort(key=lambda frame: (frame["image_index"], frame["step"], frame["kind"]))
    _last_report[0] = merged
    return merged


_last_report: list[Report | None] = [None]


def last_report() -> Report | None:
    """The report of the most recent run, also when it was interrupted (for --json on Ctrl-C)."""
    return _last_report[0]


def _drain(sink: FrameSink | None, report: Report) -> None:
    if sink is None:
        return
    sink.close()
    report.frames = [asdict(record) for record in sink.records if Path(record.path).exists()]


def _frame_sink(preset: Preset, options: Options, output_dir: Path, pipe: Any, task: str) -> FrameSink:
    latent = task == "txt2img"
    size = None
    if latent:
        size = (preset.width or 0, preset.height or 0) if preset.width and preset.height else None
    return FrameSink(output_dir / options.frames_dir, preset.every or 1, options.frame_kinds,
                     pipe, latent, preset.frame_decode, options.overwrite, size)


def _image_entry(path: Path, item: Item, preset: Preset, shape: tuple) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": str(path), "seed": item.seed, "index": item.index,
                             "steps": item.steps or preset.steps, "width": int(shape[1]), "height": int(shape[0])}
    if item.prompt is not None:
        entry.update(prompt=item.prompt, negative_prompt=item.negative_prompt, prompt_index=item.prompt_index,
                     guidance_scale=item.guidance_scale if item.guidance_scale is not None else preset.guidance_scale)
    return entry


def versions() -> dict[str, str]:
    """Package versions recorded for replay."""
    import diffusers
    import torch

    return {"diffcli": __version__, "diffusers": diffusers.__version__, "torch": torch.__version__}


def image_metadata(pipe: Any, preset: Preset, item: Item, task: str, fields: dict[str, Any]) -> dict[str, str]:
    """A1111 `parameters` plus the `diffcli` replay chunk for one image."""
    from diffcli.plan.schedulers import name_for

    replay = {**preset.to_dict(), "seed": item.seed, "num_images": 1, "batch_size": 1,
              "scheduler": preset.scheduler or name_for(pipe.scheduler)}
    for key in ("prompt", "negative_prompt", "steps", "guidance_scale", "width", "height"):
        value = getattr(item, key)
        if value is not None:
            replay[key] = value
    record = {"task": task, "preset": replay, "stem": item.stem, "index": item.index,
              "scheduler_config": dict(pipe.scheduler.config), "versions": versions()}
    text = a1111_parameters(item.prompt, item.negative_prompt, {**fields, "Version": f"diffcli {__version__}"})
    return {A1111_KEY: text, DIFFCLI_KEY: diffcli_chunk(record)}
