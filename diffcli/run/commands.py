"""Service function behind the generating commands: resolved preset → facts → items → sinks → report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffcli.plan.items import Item, ModelFacts, PromptLine, build_items
from diffcli.run.generate import Report, execute
from diffcli.sinks.folder import OutputFolder


def plan_items(preset: Any, wanted_task: str | None, lines: list[PromptLine] | None,
               first_index: int = 0, first_prompt_index: int = 0, axes: Any = ()) -> tuple[ModelFacts, list[Item]]:
    """Read the model's configs (no weights), resolve every item (every `--vary` cell), and check each
    schedule they need."""
    import dataclasses

    from diffcli.plan.vary import expand, schedules
    from diffcli.run.probe import probe_model
    from diffcli.run.schedulers import check_schedule

    facts, scheduler_config = probe_model(preset, wanted_task)
    if lines is None and facts.task == "txt2img" and preset.prompt is not None and preset.prompt.strip():
        lines = [PromptLine(prompt=preset.prompt.strip())]
    facts = dataclasses.replace(facts, scheduler_config=scheduler_config)
    if axes:
        items = expand(preset, facts, lines, list(axes), first_index)
    else:
        items = build_items(preset, facts, lines, first_index, first_prompt_index)
    from diffcli.run.hires import attach_hires
    from diffcli.run.inpaint import attach_mask

    items = attach_mask(preset, facts, items)  # inpaint's refusals come before the init image's
    if preset.init_image:
        from diffcli.run.img2img import attach_init_image

        items = attach_init_image(preset, facts, items)
    items = attach_hires(preset, facts, items)
    from diffcli.families.registry import family_named

    for name, options, steps in schedules(items):
        check_schedule(scheduler_config, name, options, steps, family_named(facts.family))
    return facts, items


def build_sinks(command: str, preset: Any, count: int, quiet: bool, ranks: bool = False,
                vary_items: list[Item] | None = None, preview: int | None = None) -> list[Any]:
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
    if preset.grid and vary_items and not ranks:  # --vary: labelled axes instead of the overview
        from diffcli.sinks.axes import AxesGridSink

        sinks.append(AxesGridSink(vary_items))
    elif preset.grid and count > 1 and not ranks:  # under a launch rank 0 builds it after the gather
        sinks.append(GridSink())
    return sinks


def run_generation(command: str, preset: Any, wanted_task: str | None, lines: list[PromptLine] | None = None,
                   policy: str = "new", quiet: bool = True, loaded: Any = None,
                   planned: tuple[ModelFacts, list[Item]] | None = None, preview: int | None = None) -> Report:
    """Plan (unless `planned`), then make the items; `loaded` reuses an already loaded pipeline."""
    facts, items = planned or plan_items(preset, wanted_task, lines)
    folder = OutputFolder(Path(preset.output) if preset.output else None, command, policy)
    from diffcli.run.ranks import current

    ranks = current()
    vary = bool(items and items[0].cell)
    sinks = build_sinks(command, preset, len(items), quiet, ranks is not None, items if vary else None, preview)
    report = execute(command, facts.task, preset.replace(task=facts.task), items, folder, sinks, facts.name, loaded,
                     scheduler_config=facts.scheduler_config)
    if ranks is not None and ranks.is_main and preset.grid and vary:
        from diffcli.sinks.axes import grids_from_files

        report.entries["grid"] = grids_from_files(folder, items, {e["index"]: e["path"] for e in report.images})
    elif ranks is not None and ranks.is_main and preset.grid and len(items) > 1:
        from diffcli.sinks.grid import grid_from_files

        by_index = {item.index: item for item in items}
        grid = grid_from_files(folder, [(by_index[e["index"]], e["path"]) for e in report.images])
        if grid is not None:
            report.entries["grid"] = [{"path": grid, "images": len(report.images)}]
    return report
