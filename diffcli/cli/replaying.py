"""`diffcli replay`: regenerate an image from its metadata, trusting the user's flags, not the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typing_extensions import Annotated

from diffcli.cli.boundary import guarded
from diffcli.cli.emit import Emitter
from diffcli.cli.options import (DeviceOpt, JsonOpt, OfflineOpt, OutputPathOpt, OverwriteOpt, PickleOpt, QuietOpt,
                                 SetOpt, SkipOpt, ThreadsOpt)


def register(app: typer.Typer) -> None:
    """Add the replay command to the app."""

    @app.command("replay")
    @guarded
    def replay(
        image: Annotated[Path, typer.Argument(metavar="IMAGE", help="A PNG written by diffcli.")],
        sets: SetOpt = None, output: OutputPathOpt = None, device: DeviceOpt = None, threads: ThreadsOpt = None,
        offline: OfflineOpt = False, allow_pickle: PickleOpt = False, overwrite: OverwriteOpt = False,
        skip_existing: SkipOpt = False, as_json: JsonOpt = False, quiet: QuietOpt = False, *, emitter: Emitter,
    ) -> None:
        """Regenerate an image from its embedded diffcli metadata (identical on the same device and dtype).

        Only the settings that decide the pixels are read from the image, each checked like a
        preset value; pickle weights, network use, output folder, threads and device come from
        your flags alone. The file name derives from the replayed settings.

        Examples:

          diffcli replay out/0003-s42-a-cat-playing-bass.png

          diffcli replay out/0000-s7.png --set steps=100 --output replays/
        """
        from diffcli.cli.generating import human_lines, policy_of
        from diffcli.plan.presets import build_preset, parse_set, validate_layer
        from diffcli.plan.replay import check_init_image, read_record, replay_layers
        from diffcli.run.commands import all_kept, plan_run, run_generation, verify_schedules
        from diffcli.sinks.folder import OutputFolder

        policy = policy_of({"overwrite": overwrite, "skip_existing": skip_existing})
        record = read_record(image)
        flags: dict[str, Any] = {"output": output, "device": device, "threads": threads, "offline": offline,
                                 "allow_pickle": allow_pickle}
        flags = validate_layer({k: v for k, v in flags.items() if v is not None}, "flag", label_flags=True)
        user_sets = parse_set(sets or [])
        check_init_image(record, user_sets)
        values = replay_layers(record, user_sets, flags)
        preset = build_preset(values, f"{image} (diffcli metadata)")
        emitter.note(f"replaying {record.command} with model {preset.model}")
        lines = None
        if record.task == "txt2img":
            from diffcli.plan.items import PromptLine

            lines = [PromptLine(prompt=preset.prompt or "")]
        plan = plan_run(preset, record.task, lines, first_index=record.index, first_prompt_index=record.prompt_index)
        if record.cell:  # a --vary cell keeps its name (keys the user --set no longer describe the image: dropped)
            import dataclasses

            cell = tuple((key, value) for key, value in record.cell if key.split(".", 1)[0] not in user_sets)
            plan = dataclasses.replace(plan, items=[dataclasses.replace(item, cell=cell) for item in plan.items])
        folder = OutputFolder(Path(preset.output) if preset.output else None, "replay", policy)
        if not all_kept(plan, folder):
            verify_schedules(plan)  # a no-op resume imports neither torch nor diffusers
        report = run_generation("replay", preset, record.task, lines, policy, quiet=quiet or as_json, plan=plan,
                                folder=folder)
        emitter.document(report.to_dict(), human_lines(report))
