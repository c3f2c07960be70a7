"""The one flow every generating command runs: items → (skip done) → load → batches → sinks → report."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from diffcli.errors import DiffcliError, Interrupted, OutputError, interrupted_by, raise_if_signalled
from diffcli.plan.items import Item
from diffcli.sinks.base import RunInfo, Sinks
from diffcli.sinks.folder import OutputFolder
from diffcli.sinks.images import image_entry


@dataclass
class Report:
    """What a run wrote, seeds and timings (`--json` prints it as one document)."""

    command: str
    status: str = "ok"
    entries: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    preset: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def images(self) -> list[dict[str, Any]]:
        return self.entries.setdefault("images", [])

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status, "command": self.command, "images": self.images,
                                "frames": self.entries.get("frames", []), "skipped": self.skipped}
        for key in ("sheets", "animations"):
            if key in self.entries or self.command == "denoise-trace":
                data[key] = self.entries.get(key, [])
        grid = self.entries.get("grid")
        data["grid"] = grid[0]["path"] if grid else None
        if grid and any("axes" in entry for entry in grid):  # --vary: every grid with its axes
            data["grids"] = grid
        data.update(preset=self.preset, timings=self.timings, **self.extra)
        return data


def split_done(items: list[Item], folder: OutputFolder, report: Report) -> list[Item]:
    """Items still to make. Done items are skipped (`skip`), refused (`new`) or redone (`overwrite`)."""
    todo = []
    for item in items:
        name = f"{item.stem}.png"
        if folder.policy != "overwrite" and folder.is_done(name):
            if folder.policy == "new":
                raise OutputError(f"{folder.path_of(name)} already exists",
                                  hint="use --overwrite to replace or --skip-existing to skip")
            path = str(folder.path_of(name))
            verified = check_existing(item, folder.path_of(name))
            entry = image_entry(item, path, existing=True)
            if not verified:  # no diffcli metadata: kept, but its settings are not known
                entry["verified"] = False
            report.images.append(entry)
            report.skipped.append({"path": path, "seed": item.seed, "index": item.index})
            continue
        todo.append(item)
    return todo


def check_existing(item: Item, path: Any) -> bool:
    """A kept image must be the item: exit 4 when its own metadata (read once, bounded, as replay reads it) says
    other settings; False when it carries no diffcli metadata to check."""
    from diffcli.plan.replay import existing_record, settings_differ

    record = existing_record(path)
    differ = settings_differ(item, record) if record is not None else None
    if differ:
        raise OutputError(f"{path} exists but {differ}", hint="use --overwrite to replace it, or another --output")
    return record is not None


def execute(command: str, task: str, preset: Any, items: list[Item], folder: OutputFolder, sinks: list[Any],
            model_name: str, loaded: Any = None, scheduler_config: dict[str, Any] | None = None) -> Report:
    """Make the items that are not done yet and return the report.

    Under a multi-process launch each rank makes its share and every rank gets the combined
    report; a failure on any rank fails every rank with a message naming it. An interrupt or
    error carries the report so far (`err.report`).
    """
    from diffcli.run.ranks import current, device_for_rank

    report = Report(command=command, preset=preset.to_dict())
    started = time.perf_counter()
    ranks = current()
    try:
        folder.check()
        todo = split_done(items, folder, report)
        if ranks is not None:
            todo = _rank_share(ranks, folder, todo)
            preset = preset.replace(device=device_for_rank(preset.device))
        if folder.peek() is not None:
            folder.cleanup_stale()
        failure = None
        try:
            if todo:
                making = {id(item) for item in todo}  # by identity: `item not in todo` compared dataclasses, O(n^2)
                existing = [(item, str(folder.path_of(f"{item.stem}.png"))) for item in items if id(item) not in making]
                _generate(command, task, preset, todo, folder, sinks, model_name, loaded, report, started, existing,
                          scheduler_config)
        except (KeyboardInterrupt, Interrupted):
            raise
        except Exception as err:  # noqa: BLE001 - under a launch, reported to every rank below
            if ranks is None:
                raise
            failure = err
        if ranks is not None:
            report = _gather(ranks, report, failure)
    except KeyboardInterrupt as err:
        report.status = "interrupted"
        raise interrupted_by(err, report) from None
    except DiffcliError as err:
        report.status = "interrupted" if isinstance(err, Interrupted) else "error"
        err.report = err.report or report
        raise
    finally:
        report.timings["total_s"] = round(time.perf_counter() - started, 3)
        if folder.peek() is not None:
            report.extra["output"] = str(folder.peek())
    report.images.sort(key=lambda entry: entry["index"])
    return report


def _rank_share(ranks: Any, folder: OutputFolder, todo: list[Item]) -> list[Item]:
    """Rank 0 makes the (numbered) folder and tells the others; each rank takes its contiguous share."""
    from pathlib import Path

    if folder.automatic:
        shared = ranks.gather(str(folder.root) if ranks.is_main else None)[0]
        if not ranks.is_main:
            folder.adopt(Path(shared))
    ranks.barrier()  # every rank has checked the names before any rank writes one
    return ranks.share(todo)


def _generate(command: str, task: str, preset: Any, todo: list[Item], folder: OutputFolder, sinks: list[Any],
              model_name: str, loaded: Any, report: Report, started: float,
              existing: list[tuple[Item, str]], scheduler_config: dict[str, Any] | None = None) -> None:
    """Load, then sample batch by batch through the sinks, filling `report` as files land."""
    import torch

    from diffcli.run.pipelines import load_pipeline
    from diffcli.run.ranks import current
    from diffcli.run.sampling import sample_batch
    from diffcli.run.threads import ThreadGovernor, configure_threads

    report.extra["threads"] = configure_threads(preset.threads)
    governor = ThreadGovernor(report.extra["threads"], adaptive=preset.threads is None
                              and not os.environ.get("OMP_NUM_THREADS", "").strip())
    if loaded is None:
        loaded = load_pipeline(preset, task)
    report.timings["load_s"] = round(time.perf_counter() - started, 3)
    folder.root  # made now, after loading (numbered when automatic): a failed load leaves no empty folder
    try:
        report.extra.update(device=str(loaded.device), dtype=str(loaded.dtype).replace("torch.", ""))
        from diffcli.run.loras import lora_hashes

        latent = task == "txt2img" or getattr(loaded.pipe, "vqvae", None) is not None
        run = RunInfo(command=command, task=task, preset=preset, folder=folder, total=len(todo), pipe=loaded.pipe,
                      model_name=model_name, latent=latent, existing=existing, lora_hashes=lora_hashes(preset.loras))
        from diffcli.run.switch import SchedulerSwitch

        switch = SchedulerSwitch(loaded.pipe, preset, scheduler_config)
        fan = Sinks(sinks)
        fan.start(run)
        want_x0 = any(getattr(sink, "kinds", ()) and "x0" in sink.kinds for sink in sinks)
        generate_started = time.perf_counter()
        completed = False
        try:
            for number, batch in enumerate(batches(todo, preset.batch_size)):
                switch.use(batch[0])  # a --vary cell's scheduler, built with from_config (no reload)
                generators = [torch.Generator("cpu").manual_seed(item.seed) for item in batch]
                images = sample_batch(loaded.pipe, task, batch, generators,
                                      lambda step, batch=batch: raise_if_signalled() or governor.check()
                                      or fan.on_step(batch, step), want_x0)
                from diffcli.sinks.pixels import to_uint8

                fan.on_images(batch, to_uint8(images))
                if number == 0:  # with compile: the compilation, or its reuse from the compile cache
                    report.timings["first_batch_s"] = round(time.perf_counter() - generate_started, 3)
            completed = True
        finally:
            if governor.lowest < governor.full:
                report.extra["threads_lowest"] = governor.lowest  # others started running during the run
            fan.entries = {}
            try:
                switch.restore()
                _merge(report, fan.close(completed))
            except BaseException:
                _merge(report, fan.entries)  # what the sinks that closed wrote is still reported
                raise
            finally:
                report.timings["generate_s"] = round(time.perf_counter() - generate_started, 3)
                if preset.compile != "none":
                    from diffcli.run.caches import compile_cache_counts

                    report.extra["compile_cache"] = compile_cache_counts()
    except BaseException:
        if current() is None:  # under a launch the folder is every rank's: it stays
            folder.discard_if_empty()  # failed before its first file: no empty numbered folder is left
        raise


def _merge(report: Report, entries: dict[str, list[dict[str, Any]]]) -> None:
    for key, values in entries.items():
        report.entries.setdefault(key, []).extend(values)


def batches(items: list[Item], size: int) -> list[list[Item]]:
    """Consecutive items with the same batch key, at most `size` per batch."""
    groups: list[list[Item]] = []
    for item in items:
        if groups and len(groups[-1]) < size and groups[-1][0].batch_key() == item.batch_key():
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def _gather(ranks: Any, report: Report, failure: BaseException | None) -> Report:
    """Collect every rank's report (and failure) on every rank; merge them in item order."""
    from diffcli.run.ranks import RankFailed

    error = None
    if failure is not None:
        message = failure.message if isinstance(failure, DiffcliError) else f"{type(failure).__name__}: {failure}"
        code = int(failure.exit_code) if isinstance(failure, DiffcliError) else 1
        error = {"message": message, "exit_code": code}
    everything = ranks.gather({"report": report, "error": error})
    merged = Report(command=report.command, preset=report.preset, skipped=report.skipped,
                    extra={**report.extra, "processes": ranks.world})
    for payload in everything:
        _merge(merged, payload["report"].entries)
        for key, value in payload["report"].timings.items():
            merged.timings[key] = max(merged.timings.get(key, 0.0), value)
    merged.entries["images"] = sorted({e["path"]: e for e in merged.images}.values(), key=lambda e: e["index"])
    merged.entries.get("frames", []).sort(key=lambda f: (f["image_index"], f["step"], f["kind"]))
    for rank, payload in enumerate(everything):
        if payload["error"] is not None:
            failed = RankFailed(rank, payload["error"]["message"], payload["error"]["exit_code"])
            merged.status = "error"
            failed.report = merged
            raise failed
    return merged
