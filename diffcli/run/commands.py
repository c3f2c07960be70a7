"""Service function behind the generating commands: resolved preset → facts → plan → sinks → report."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from diffcli.plan.items import Item, PromptLine
from diffcli.plan.make_plan import Plan, make_plan
from diffcli.plan.vary import Axis
from diffcli.run.generate import Report, execute
from diffcli.errors import OutputError
from diffcli.sinks.folder import OutputFolder


def plan_run(preset: Any, wanted_task: str | None, lines: list[PromptLine] | None, axes: Sequence[Axis] = (),
             first_index: int = 0, first_prompt_index: int = 0) -> Plan:
    """Read the input files, then the model's facts (its configs, no weights), once each; then plan (plan/make_plan.py)."""
    from diffcli.plan.attach import read_inputs
    from diffcli.run.probe import probe_model

    inputs = read_inputs(preset)  # the settings and the user's files (exit 2) before the model's lookup (exit 3)
    facts = probe_model(preset, wanted_task)
    plan = make_plan(preset, facts, lines, axes, inputs, first_index, first_prompt_index)
    from diffcli.run.controlnet import check_controlnets

    check_controlnets(preset, facts)  # the ControlNets' configs: readable, of the family's class, fitting the model
    return plan


def all_kept(plan: Plan, folder: OutputFolder) -> bool:
    """True when `--skip-existing` keeps every image: nothing needs loading or verifying."""
    return folder.policy == "skip" and all(folder.is_done(name) for name in plan.image_names())


def verify_schedules(plan: Plan) -> None:
    """Dry-run each schedule the plan needs (a scheduler that cannot make a step count: exit 2). Imports
    diffusers, so a run with nothing to make skips it."""
    from diffcli.families.registry import family_named
    from diffcli.run.schedulers import check_schedule

    for schedule in plan.schedules:
        check_schedule(plan.facts.scheduler_config, schedule.scheduler, schedule.options, set(schedule.steps),
                       family_named(plan.facts.family))


def build_sinks(command: str, preset: Any, items: list[Item], quiet: bool, ranks: bool = False,
                vary: bool = False, preview: int | None = None) -> list[Any]:
    """Progress, images, and (as the run asks) the live preview (`preview`: None off, N every N steps, 0 about
    eight per image), frames, trace sheet/animation, and the grid."""
    from diffcli.sinks.frames import FrameSink
    from diffcli.sinks.grid import GridSink
    from diffcli.sinks.images import ImageSink
    from diffcli.sinks.progress import ProgressSink
    from diffcli.sinks.trace import TraceSink

    sinks: list[Any] = [ProgressSink(quiet)]
    if preview is not None:  # first: it asks the terminal what it can draw before the bars start (rank 0 only)
        from diffcli.run.ranks import current
        from diffcli.sinks.preview import preview_sinks

        sinks[:0] = preview_sinks(preview, quiet or (ranks and not current().is_main), sinks[0])
    if preset.every is not None:
        kinds = ("x_t", "x0") if preset.show == "both" else (preset.show,)
        trace = TraceSink(preset.animation, preset.frame_duration) if command == "denoise-trace" else None
        sinks.append(FrameSink(preset.every, kinds, preset.frame_decode,
                               listeners=[trace.on_frame] if trace is not None else None))
        if trace is not None:
            sinks.append(trace)
    sinks.append(ImageSink())  # after frames and trace: the final image marks an item done, so it is written last
    if preset.grid and vary and not ranks:  # --vary: labelled axes instead of the overview
        from diffcli.sinks.axes import AxesGridSink

        sinks.append(AxesGridSink(items))
    elif preset.grid and len(items) > 1 and not ranks:  # under a launch rank 0 builds it after the gather
        sinks.append(GridSink(items))
    return sinks


def run_generation(command: str, preset: Any, wanted_task: str | None, lines: list[PromptLine] | None = None,
                   policy: str = "new", quiet: bool = True, loaded: Any = None, plan: Plan | None = None,
                   preview: int | None = None, folder: OutputFolder | None = None) -> Report:
    """Plan (unless given a `plan`), then make the items into `folder` (by default the preset's output with
    `policy`); `loaded` reuses an already loaded pipeline."""
    if plan is None:
        plan = plan_run(preset, wanted_task, lines)
        verify_schedules(plan)
    facts, items = plan.facts, plan.items
    folder = folder or OutputFolder(Path(preset.output) if preset.output else None, command, policy)
    from diffcli.run.ranks import current

    ranks = current()
    vary = plan.vary
    sinks = build_sinks(command, preset, items, quiet, ranks is not None, vary, preview)
    if policy == "new":  # a grid of another run is never replaced: named by its first image, checked first
        taken = [name for sink in sinks for name in getattr(sink, "names", ()) if folder.is_done(name)]
        if taken:
            raise OutputError(f"{folder.path_of(taken[0])} already exists",
                              hint="use --overwrite to replace or --skip-existing to skip")
    report = execute(command, facts.task, preset.replace(task=facts.task), items, folder, sinks, facts.name, loaded,
                     scheduler_config=facts.scheduler_config)
    kept_all = ranks is None and bool(report.images) and all(entry.get("existing") for entry in report.images)
    if preset.grid and (kept_all or (ranks is not None and ranks.is_main)):
        _grids_from_files(report, folder, items, vary, keep=kept_all)
    return report


def _grids_from_files(report: Report, folder: OutputFolder, items: list[Item], vary: bool, keep: bool) -> None:
    """The grid(s) from the images on disk: rank 0's after a launch, and a `--skip-existing` rerun's that made no
    image (`keep`: a grid file that is already this grid stays untouched; a deleted or other one is made again)."""
    if vary:
        from diffcli.sinks.axes import grids_from_files

        report.entries["grid"] = grids_from_files(folder, items, {e["index"]: e["path"] for e in report.images},
                                                  keep)
    elif len(items) > 1:
        from diffcli.sinks.grid import grid_from_files

        by_index = {item.index: item for item in items}
        grid = grid_from_files(folder, [(by_index[e["index"]], e["path"]) for e in report.images], keep)
        if grid is not None:
            report.entries["grid"] = [grid]
