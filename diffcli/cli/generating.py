"""The generating commands: unconditional, txt2img, img2img, inpaint, denoise-trace. Each narrates and delegates."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from typing_extensions import Annotated

from diffcli.cli.boundary import guarded
from diffcli.cli.emit import Emitter
from diffcli.cli.options import GENERATION_KEYS, PROMPT_KEYS, TRACE_KEYS, PromptsFileOpt, VaryOpt, with_keys

INPAINT_KEYS = ("mask_blur", "padding_mask_crop", "invert_mask")
HIRES_KEYS = ("hires", "hires_strength", "hires_steps", "hires_upscaler")
CONTROL_KEYS = ("controlnet", "control_image", "control", "control_scale", "control_start", "control_end")
from diffcli.errors import UsageError

BUILTIN_NOTES = {
    "digits": "a tiny model of 16x16 handwritten digits",
    "digits-trace": "a tiny model of 16x16 handwritten digits, 1000 DDPM steps",
    "digits-text": "a tiny text-to-image model that draws handwritten digits 0-9 at 16x16",
}


def policy_of(run: dict[str, Any]) -> str:
    """The output policy from --overwrite / --skip-existing."""
    if run["overwrite"] and run["skip_existing"]:
        raise UsageError("--overwrite and --skip-existing exclude each other")
    return "overwrite" if run["overwrite"] else ("skip" if run["skip_existing"] else "new")


def human_lines(report: Any) -> list[str]:
    """What a person sees on stdout: every image, then sheets, animations and the grid."""
    data = report.to_dict()
    lines = [entry["path"] + (" (existing)" if entry.get("existing") else "") for entry in data["images"]]
    lines += [f"sheet: {entry['path']}" for entry in data.get("sheets", [])]
    lines += [f"animation: {entry['path']}" for entry in data.get("animations", [])]
    if data.get("grid"):
        lines += [f"grid: {entry['path']}" for entry in data.get("grids", [{"path": data["grid"]}])]
    if data.get("gallery"):
        lines.append(f"gallery: {data['gallery']}")
    if data.get("frames"):
        lines.append(f"frames: {len(data['frames'])} in {Path(data['frames'][0]['path']).parent}")
    return lines


def generate(command: str, default_preset: str, wanted: str | None, flags: dict[str, Any], run: dict[str, Any],
             emitter: Emitter, prompt: str | None = None, prompts_file: Path | None = None,
             vary: list[str] | None = None) -> None:
    """Resolve, plan, tell the user what a fallback means, run, and emit the report."""
    from diffcli.plan.presets import resolve
    from diffcli.plan.vary import parse_vary
    from diffcli.run.commands import all_kept, plan_run, run_generation
    from diffcli.sinks.folder import OutputFolder
    from diffcli.sinks.preview import NO_COLOR_REASON, preview_blocker, preview_request

    policy = policy_of(run)
    preview = preview_request(run["preview"], run["preview_every"])
    axes = parse_vary(vary or [])
    if prompt is not None and not prompt.strip():
        raise UsageError("the prompt is empty or only whitespace")
    if prompt is not None and prompts_file is not None:
        raise UsageError("give a prompt or --prompts-file, not both")
    if prompt is not None:
        flags = {**flags, "prompt": prompt}
    resolved = resolve(run["preset"], default_preset, run["sets"], flags)
    preset = resolved.preset
    lines = None
    if prompts_file is not None:
        from diffcli.plan.prompts import read_prompts_file

        lines = read_prompts_file(prompts_file)
    folder = OutputFolder(Path(preset.output) if preset.output else None, command, policy)
    folder.check()  # before reading the model
    plan = plan_run(preset, wanted, lines, axes=axes)  # usage and model errors come before any narration
    if resolved.default_used:
        emitter.note(f"Using the built-in preset '{resolved.default_used}' "
                     f"({BUILTIN_NOTES.get(resolved.default_used, 'shipped with diffcli')}); "
                     "for real pictures pick a model, e.g. --preset sd15 (`diffcli presets` lists them).")
    for message in plan.warnings:
        emitter.warn(message)
    if preview is not None and preview_blocker(run["quiet"] or run["as_json"]) == NO_COLOR_REASON:
        emitter.warn("--preview is off: NO_COLOR is set (a preview without colour shows nothing)")
    if not all_kept(plan, folder):
        before_loading(plan, preset, emitter)  # a no-op resume imports neither torch nor diffusers
    report = run_generation(command, preset, wanted, lines, policy, quiet=run["quiet"] or run["as_json"], plan=plan,
                            folder=folder, preview=preview)
    if preset.gallery and report.extra.get("output"):
        from diffcli.sinks.gallery import update_gallery

        report.extra["gallery"] = str(update_gallery(Path(report.extra["output"])))
    emitter.document(report.to_dict(), human_lines(report))
    if not run["as_json"] and report.extra.get("output"):
        emitter.note(f"wrote to {report.extra['output']}")


def before_loading(plan: Any, preset: Any, emitter: Emitter) -> None:
    """The checks a run that makes images needs before its model loads: the schedules, the LoRA files, and the
    prompts' token counts (CLIP's silent truncation said out loud)."""
    from diffcli.run.commands import verify_schedules
    from diffcli.run.loras import check_local_files
    from diffcli.run.prompt_embeds import prompt_warnings

    verify_schedules(plan)
    check_local_files(preset.loras, preset.allow_pickle)  # a missing LoRA fails before the model loads
    for message in prompt_warnings(preset, plan.items, plan.facts):
        emitter.warn(message)


def register(app: typer.Typer) -> None:
    """Add the generating commands to the app."""

    @app.command("unconditional")
    @with_keys(*GENERATION_KEYS, "show")
    @guarded
    def unconditional(vary: VaryOpt = None, *, flags: dict[str, Any], run: dict[str, Any], emitter: Emitter) -> None:
        """Generate images with an unconditional (DDPM-style) model.

        Without --preset or --model this uses the built-in `digits` model (16x16 handwritten digits).

        Examples:

          diffcli unconditional --preset digits -n 16

          diffcli unconditional --preset ddpm-church-256 --scheduler ddim --steps 50 --seed 7 -n 4 -o out/

          diffcli unconditional --preset my.yaml --set steps=25 --every 5 --json
        """
        generate("unconditional", "digits", "unconditional", flags, run, emitter, vary=vary)

    @app.command("txt2img")
    @with_keys(*PROMPT_KEYS, *GENERATION_KEYS, *HIRES_KEYS, *CONTROL_KEYS, "show", exact_frames=True)
    @guarded
    def txt2img(
        prompt: Annotated[Optional[str], typer.Argument(metavar="PROMPT", help="The prompt (or use --prompts-file).")] = None,
        prompts_file: PromptsFileOpt = None, vary: VaryOpt = None, *, flags: dict[str, Any], run: dict[str, Any],
        emitter: Emitter,
    ) -> None:
        """Generate images from a text prompt with a Stable Diffusion-family pipeline.

        Without --preset or --model this uses the built-in `digits-text` model, which draws
        handwritten digits only: pick a real model with --preset sd15 or --model.

        Examples:

          diffcli txt2img "a handwritten digit 7" --preset digits-text

          diffcli txt2img "a cat playing bass" --preset sd15 --steps 25 --scheduler dpm++2m-karras --seed 42 -n 4

          diffcli txt2img --prompts-file prompts.jsonl --preset sdxl --output out/

          diffcli txt2img "a handwritten digit 7" --vary scheduler=ddim,euler,dpm++2m --vary steps=5,10,25 -n 1

          diffcli txt2img "a cat playing bass" --preset sd15 --hires 2 --hires-strength 0.5
        """
        generate("txt2img", "digits-text", "txt2img", flags, run, emitter, prompt, prompts_file, vary)

    @app.command("img2img")
    @with_keys("strength", *PROMPT_KEYS, *GENERATION_KEYS, *CONTROL_KEYS, "show", exact_frames=True)
    @guarded
    def img2img(
        init_image: Annotated[Path, typer.Argument(metavar="INIT_IMAGE", help="The image to start from (PNG, JPEG, WebP or BMP).")],
        prompt: Annotated[Optional[str], typer.Argument(
            metavar="PROMPT", help="The prompt (or use --prompts-file); unconditional models take none.")] = None,
        prompts_file: PromptsFileOpt = None, vary: VaryOpt = None, *, flags: dict[str, Any], run: dict[str, Any],
        emitter: Emitter,
    ) -> None:
        """Redraw an image: start from INIT_IMAGE noised to --strength instead of from pure noise.

        INIT_IMAGE is converted to RGB (L for 1-channel models) and, unless it already has the
        run's width x height, resized to cover that size and centre-cropped to it (Lanczos), so its
        aspect ratio is kept. --strength (0 < s <= 1, default 0.8) is how much is redrawn:
        int(steps * strength) steps run, so 0.05 with 20 steps runs 1 step and gives the image back
        almost unchanged; a strength that runs 0 steps is refused. Text-to-image models run
        diffusers' image-to-image pipeline on the loaded modules; unconditional models run diffcli's
        own loop from the noised image (SDEdit). Metadata records the init image's path and sha256
        and A1111's "Denoising strength". Without --preset or --model this uses digits-text.

        Examples:

          diffcli img2img digit3.png "a handwritten digit 8" --strength 0.6

          diffcli img2img digit3.png --preset digits --strength 0.5

          diffcli img2img digit3.png "a handwritten digit 8" --vary strength=0.3,0.5,0.7,0.9 -n 1

          diffcli img2img photo.png "an oil painting of a harbour" --preset sd15 --strength 0.55 -n 4
        """
        flags = {**flags, "init_image": str(init_image)}
        generate("img2img", "digits-text", None, flags, run, emitter, prompt, prompts_file, vary)

    @app.command("inpaint")
    @with_keys("strength", *INPAINT_KEYS, *PROMPT_KEYS, *GENERATION_KEYS, *CONTROL_KEYS, "show", exact_frames=True)
    @guarded
    def inpaint(
        init_image: Annotated[Path, typer.Argument(metavar="INIT_IMAGE", help="The image to repaint (PNG, JPEG, WebP or BMP).")],
        mask: Annotated[Path, typer.Argument(metavar="MASK", help="White = repaint, black = keep (any mode; "
                                             "transparent = keep; --invert-mask swaps them).")],
        prompt: Annotated[Optional[str], typer.Argument(metavar="PROMPT", help="The prompt (or use --prompts-file).")] = None,
        prompts_file: PromptsFileOpt = None, vary: VaryOpt = None, *, flags: dict[str, Any], run: dict[str, Any],
        emitter: Emitter,
    ) -> None:
        """Repaint the white part of MASK in INIT_IMAGE; the black part is kept.

        INIT_IMAGE and MASK are fitted to the run's width x height as img2img fits its init image
        (cover + centre crop); MASK may be greyscale, 1-bit, a palette or have transparency
        (transparent pixels keep). --strength (default 0.8) is how much of the masked part is
        redrawn; --mask-blur PX softens the mask; --padding-mask-crop PX redraws only the masked
        region plus PX pixels at full size and pastes it back. Inpainting models (9-channel UNets)
        run as loaded; other SD/SDXL models mask their latents, SD3 and Flux use diffusers'
        inpainting pipelines. Metadata records both files' paths and sha256, so replay works.

        Examples:

          diffcli inpaint digit.png mask.png "a handwritten digit 8" --preset digits-text

          diffcli inpaint photo.png mask.png "a red bicycle" --model runwayml/stable-diffusion-inpainting --strength 1

          diffcli inpaint photo.png mask.png "a red bicycle" --preset sd15 --mask-blur 4 --padding-mask-crop 32
        """
        flags = {**flags, "init_image": str(init_image), "mask_image": str(mask)}
        generate("inpaint", "digits-text", None, flags, run, emitter, prompt, prompts_file, vary)

    @app.command("denoise-trace")
    @with_keys(*TRACE_KEYS, *PROMPT_KEYS, *GENERATION_KEYS, "init_image", "strength", exact_frames=True)
    @guarded
    def denoise_trace(
        prompt: Annotated[Optional[str], typer.Option("--prompt", metavar="TEXT", help="Prompt, for text-to-image models.")] = None,
        *, flags: dict[str, Any], run: dict[str, Any], emitter: Emitter,
    ) -> None:
        """Watch a model turn noise into a picture: frames every N steps, a contact sheet and an animation.

        Without --preset or --model this traces the built-in digits model over 1000 DDPM steps
        (with --prompt: the built-in digits-text model). Without --every about 20 frames are taken.

        Examples:

          diffcli denoise-trace --every 50

          diffcli denoise-trace --preset digits --num-images 4 --every 10 --animation webp

          diffcli denoise-trace --preset sd15 --prompt "a cat playing bass" --every 5 --show both

          diffcli denoise-trace --preset digits --init-image digit3.png --strength 0.5 --every 5
        """
        from diffcli.sinks.frames import default_every

        default = "digits-text" if prompt is not None else "digits-trace"
        flags = dict(flags)
        if "every" not in flags and not _every_set(run):
            flags["every"] = None
        generate_trace(default, flags, run, emitter, prompt, default_every)


def _every_set(run: dict[str, Any]) -> bool:
    return any(item.split("=", 1)[0].strip() == "every" for item in run["sets"] or [])


def generate_trace(default: str, flags: dict[str, Any], run: dict[str, Any], emitter: Emitter,
                   prompt: str | None, default_every: Any) -> None:
    """denoise-trace: the generating flow with frames always on (about 20 by default)."""
    from diffcli.plan.keys import KEYS
    from diffcli.plan.presets import resolve

    probe = resolve(run["preset"], default, run["sets"], {k: v for k, v in flags.items() if v is not None})
    if probe.preset.every is None:
        task = probe.preset.task or ("txt2img" if prompt is not None else "unconditional")
        steps = probe.preset.steps or KEYS["steps"].default_for(task)
        flags = {**flags, "every": default_every(steps)}
    flags = {k: v for k, v in flags.items() if v is not None}
    if prompt is None and (probe.preset.task == "txt2img"):
        raise UsageError("this is a text-to-image model: give --prompt \"...\"")
    generate("denoise-trace", default, None, flags, run, emitter, prompt)
