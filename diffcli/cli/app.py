"""The command line: declares commands and delegates. Imports neither torch nor diffusers."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer
from typing_extensions import Annotated

from diffcli import __version__
from diffcli.errors import DiffcliError, ExitCode, Interrupted

app = typer.Typer(
    name="diffcli",
    help="Scriptable image generation with Hugging Face Diffusers.",
    epilog="Exit codes: 0 ok, 1 internal error, 2 usage or invalid preset, 3 model not found or not loadable, "
           "4 output problem, 130 interrupted (143 on SIGTERM). Set DIFFCLI_DEBUG=1 for tracebacks.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: rendering it with rich costs ~0.3 s of imports at every --help
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
presets_app = typer.Typer(help="List and show shipped presets.", invoke_without_command=True)
app.add_typer(presets_app, name="presets")

# ------------------------------------------------------------------ shared options

PresetOpt = Annotated[Optional[str], typer.Option("--preset", "-p", help="Shipped preset name or YAML file.")]
SetOpt = Annotated[Optional[List[str]], typer.Option("--set", help="Override a preset key: key=value (repeatable).")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Hub id or local pipeline folder.")]
SchedulerOpt = Annotated[Optional[str], typer.Option("--scheduler", help="Scheduler short name (`diffcli schedulers`).")]
StepsOpt = Annotated[Optional[int], typer.Option("--steps", help="Denoising steps.")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Seed of image 0; image i uses seed + i.")]
NumOpt = Annotated[Optional[int], typer.Option("--num-images", "-n", help="Images to make.")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", "-b", help="Images per forward pass.")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps.")]
DtypeOpt = Annotated[Optional[str], typer.Option("--dtype", help="auto | float32 | float16 | bfloat16.")]
EveryOpt = Annotated[Optional[int], typer.Option("--every", help="Also save every Nth step as a frame.")]
OutputOpt = Annotated[Optional[str], typer.Option("--output", "-o", help="Output folder.")]
OfflineOpt = Annotated[bool, typer.Option("--offline", help="Never touch the network (also HF_HUB_OFFLINE=1).")]
PickleOpt = Annotated[bool, typer.Option("--allow-pickle", help="Allow pickle (.bin) weights: they can run code.")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", help="CPU threads (default: measured best).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing files.")]
SkipOpt = Annotated[bool, typer.Option("--skip-existing", help="Skip images whose file exists.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or narration on stderr.")]


def _debug() -> bool:
    return os.environ.get("DIFFCLI_DEBUG", "") not in ("", "0")


def _fail(message: str, code: int, as_json: bool) -> None:
    from diffcli.run.ranks import is_main_process

    if not is_main_process():  # rank 0 speaks for the whole run
        raise typer.Exit(int(code))
    print(f"Error: {message}", file=sys.stderr, flush=True)
    if as_json:
        _emit_json({"status": "error", "error": {"exit_code": int(code), "message": message}})
    raise typer.Exit(int(code))


def _emit_json(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()


def guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """The one boundary where exceptions become a one-line message and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except DiffcliError as err:
            if _debug():
                raise
            if err.reported:
                raise typer.Exit(int(err.exit_code)) from None
            if isinstance(err, Interrupted) and as_json:
                _emit_partial_report()
            message = err.message + (f" ({err.hint})" if err.hint else "")
            _fail(message, err.exit_code, as_json and not isinstance(err, Interrupted))
        except KeyboardInterrupt:
            if as_json:
                _emit_partial_report()
            _fail("interrupted", ExitCode.INTERRUPTED, False)
        except BrokenPipeError:
            _quiet_broken_pipe()
        except Exception as err:  # noqa: BLE001 - the boundary: anything else is our bug (or out of memory)
            if _debug():
                raise
            first_line = str(err).splitlines()[0] if str(err) else ""
            text = _oom_message(err) or (f"internal error: {type(err).__name__}: {first_line} "
                                         "(set DIFFCLI_DEBUG=1 for the traceback)")
            _fail(text, ExitCode.INTERNAL, as_json)

    return wrapper


def _oom_message(err: Exception) -> str | None:
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError" or "out of memory" in str(err).lower():
        return ("out of memory on the device: use a smaller --batch-size, or set cpu_offload: model, "
                "vae_tiling: true, vae_slicing: true")
    return None


def _emit_partial_report() -> None:
    from diffcli.run.generate import last_report

    report = last_report()
    if report is not None:
        report.status = "interrupted"
        _emit_json(report.to_dict())


def _quiet_broken_pipe() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise typer.Exit(0)


def _install_sigterm() -> None:
    import signal

    def handler(_signum: int, _frame: Any) -> None:
        raise Interrupted("SIGTERM", ExitCode.TERMINATED)

    signal.signal(signal.SIGTERM, handler)


def _flags(**values: Any) -> dict[str, Any]:
    """Flags given on the command line (None and False mean 'not given')."""
    return {key: value for key, value in values.items() if value is not None and value is not False}


COMMON_KEYS = ("model", "scheduler", "steps", "seed", "num_images", "batch_size", "device", "dtype", "every", "output",
               "offline", "allow_pickle", "threads")


def _common_flags(values: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The shared generation flags of a command (its `locals()`), plus command-specific ones."""
    return _flags(**{key: values[key] for key in COMMON_KEYS}, **extra)


def _print_paths(report: Any, as_json: bool) -> None:
    from diffcli.run.ranks import is_main_process

    if not is_main_process():
        return
    if as_json:
        _emit_json(report.to_dict())
        return
    for entry in report.images:
        print(entry["path"])


def version_callback(value: bool) -> None:
    if value:
        print(f"diffcli {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[Optional[bool], typer.Option("--version", callback=version_callback, is_eager=True,
                                                    help="Show the version and exit.")] = None,
) -> None:
    """Scriptable image generation with Hugging Face Diffusers.

    Exit codes: 0 ok, 1 internal error, 2 usage or invalid preset, 3 model not found or
    not loadable, 4 output problem, 130 interrupted (143 on SIGTERM).
    """


# ------------------------------------------------------------------ presets


@presets_app.callback()
@guarded
def presets_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the shipped presets, one per line: name, task, description."""
    if ctx.invoked_subcommand is not None:
        return
    from diffcli.plan.presets import locate, preset_summary, shipped_names

    rows = [preset_summary(locate(name)) for name in shipped_names()]
    if as_json:
        _emit_json({"presets": [{"name": n, "task": t, "description": d} for n, t, d in rows]})
        return
    width = max(len(n) for n, _, _ in rows)
    for name, task, description in rows:
        print(f"{name:<{width}}  {task:<13}  {description}")


@presets_app.command("show")
@guarded
def presets_show(
    name: Annotated[str, typer.Argument(help="Shipped preset name or YAML file.")],
    sets: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a preset fully resolved (every key, defaults included) as YAML."""
    from diffcli.plan.presets import resolve, to_yaml

    resolved = resolve(name, None, sets)
    if as_json:
        _emit_json({"preset": resolved.preset.to_dict(), "sources": resolved.sources})
    else:
        sys.stdout.write(to_yaml(resolved.preset))


@presets_app.command("keys")
@guarded
def presets_keys() -> None:
    """List every preset key with its default."""
    from diffcli.plan.presets import Preset

    for key, value in Preset().to_dict().items():
        print(f"{key}: {json.dumps(value)}")


@app.command("schedulers")
@guarded
def schedulers_list(as_json: JsonOpt = False) -> None:
    """List scheduler short names and the diffusers classes behind them."""
    from diffcli.plan.schedulers import SCHEDULERS

    if as_json:
        _emit_json({"schedulers": [{"name": s.name, "class": s.class_name, "options": dict(s.options)}
                                   for s in SCHEDULERS.values()]})
        return
    for spec in SCHEDULERS.values():
        options = ", ".join(f"{k}={v}" for k, v in spec.options)
        print(f"{spec.name:<20} {spec.class_name}{f' ({options})' if options else ''}")


# ------------------------------------------------------------------ generating commands


@app.command("unconditional")
@guarded
def unconditional(
    preset: PresetOpt = None, sets: SetOpt = None, model: ModelOpt = None, scheduler: SchedulerOpt = None,
    steps: StepsOpt = None, seed: SeedOpt = None, num_images: NumOpt = None, batch_size: BatchOpt = None,
    device: DeviceOpt = None, dtype: DtypeOpt = None, every: EveryOpt = None, output: OutputOpt = None,
    offline: OfflineOpt = False, allow_pickle: PickleOpt = False, threads: ThreadsOpt = None,
    overwrite: OverwriteOpt = False, skip_existing: SkipOpt = False, as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Generate images with an unconditional (DDPM-style) model.

    Examples:

      diffcli unconditional --preset digits -n 16

      diffcli unconditional --preset ddpm-church-256 --scheduler ddim --steps 50 --seed 7 -n 4 -o out/

      diffcli unconditional --preset my.yaml --set steps=25 --every 5 --json
    """
    from diffcli.run.commands import run_unconditional
    from diffcli.run.generate import Options
    from diffcli.plan.presets import resolve

    _install_sigterm()
    resolved = resolve(preset, "digits", sets, _common_flags(locals()))
    _check_exclusive(overwrite, skip_existing)
    p = resolved.preset
    options = Options("unconditional", overwrite=overwrite, skip_existing=skip_existing, quiet=quiet,
                      frames=p.every is not None, frame_kinds=_kinds(p.show))
    _print_paths(run_unconditional(p, options), as_json)


def _kinds(show: str) -> tuple[str, ...]:
    return ("x_t", "x0") if show == "both" else (show,)


def _check_exclusive(overwrite: bool, skip_existing: bool) -> None:
    if overwrite and skip_existing:
        from diffcli.errors import UsageError

        raise UsageError("--overwrite and --skip-existing exclude each other")


@app.command("txt2img")
@guarded
def txt2img(
    prompt: Annotated[Optional[str], typer.Argument(help="The prompt (or use --prompts-file).")] = None,
    prompts_file: Annotated[Optional[Path], typer.Option("--prompts-file", "-f",
                                                         help="Text (one prompt per line) or JSONL file.")] = None,
    negative_prompt: Annotated[Optional[str], typer.Option("--negative-prompt", help="What to steer away from.")] = None,
    guidance_scale: Annotated[Optional[float], typer.Option("--guidance-scale", "-g", help="CFG scale.")] = None,
    width: Annotated[Optional[int], typer.Option("--width", help="Image width (default: the model's).")] = None,
    height: Annotated[Optional[int], typer.Option("--height", help="Image height (default: the model's).")] = None,
    exact_frames: Annotated[bool, typer.Option("--exact-frames", help="Decode --every frames with the VAE.")] = False,
    preset: PresetOpt = None, sets: SetOpt = None, model: ModelOpt = None, scheduler: SchedulerOpt = None,
    steps: StepsOpt = None, seed: SeedOpt = None, num_images: NumOpt = None, batch_size: BatchOpt = None,
    device: DeviceOpt = None, dtype: DtypeOpt = None, every: EveryOpt = None, output: OutputOpt = None,
    offline: OfflineOpt = False, allow_pickle: PickleOpt = False, threads: ThreadsOpt = None,
    overwrite: OverwriteOpt = False, skip_existing: SkipOpt = False, as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Generate images from a text prompt with a Stable Diffusion-family pipeline.

    Examples:

      diffcli txt2img "a handwritten digit 7" --preset digits-text

      diffcli txt2img "a cat playing bass" --preset sd15 --steps 25 --scheduler dpm++2m-karras --seed 42 -n 4

      diffcli txt2img --prompts-file prompts.jsonl --preset sdxl --output out/
    """
    from diffcli.run.commands import run_txt2img
    from diffcli.errors import UsageError
    from diffcli.run.generate import Options
    from diffcli.plan.presets import resolve
    from diffcli.plan.prompts import PromptLine, read_prompts_file

    _install_sigterm()
    if prompt is not None and prompts_file is not None:
        raise UsageError("give a prompt or --prompts-file, not both")
    resolved = resolve(preset, "digits-text", sets, _common_flags(
        locals(), negative_prompt=negative_prompt, guidance_scale=guidance_scale, width=width, height=height,
        prompt=prompt, frame_decode="vae" if exact_frames else None))
    _check_exclusive(overwrite, skip_existing)
    p = resolved.preset
    if prompts_file is not None:
        lines = read_prompts_file(prompts_file)
    elif p.prompt:
        lines = [PromptLine(prompt=p.prompt)]
    else:
        raise UsageError("no prompt: give one, use --prompts-file, or set prompt: in the preset")
    options = Options("txt2img", overwrite=overwrite, skip_existing=skip_existing, quiet=quiet,
                      frames=p.every is not None, frame_kinds=_kinds(p.show))
    _print_paths(run_txt2img(p, options, lines), as_json)


@app.command("denoise-trace")
@guarded
def denoise_trace(
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="Prompt, for text-to-image presets.")] = None,
    show: Annotated[Optional[str], typer.Option("--show", help="x_t | x0 | both.")] = None,
    animation_format: Annotated[Optional[str], typer.Option("--animation", help="gif | webp | none.")] = None,
    frame_duration: Annotated[Optional[int], typer.Option("--frame-duration", help="Milliseconds per frame.")] = None,
    exact_frames: Annotated[bool, typer.Option("--exact-frames", help="Decode latent frames with the VAE.")] = False,
    negative_prompt: Annotated[Optional[str], typer.Option("--negative-prompt")] = None,
    guidance_scale: Annotated[Optional[float], typer.Option("--guidance-scale", "-g")] = None,
    preset: PresetOpt = None, sets: SetOpt = None, model: ModelOpt = None, scheduler: SchedulerOpt = None,
    steps: StepsOpt = None, seed: SeedOpt = None, num_images: NumOpt = None, batch_size: BatchOpt = None,
    device: DeviceOpt = None, dtype: DtypeOpt = None, every: EveryOpt = None, output: OutputOpt = None,
    offline: OfflineOpt = False, allow_pickle: PickleOpt = False, threads: ThreadsOpt = None,
    overwrite: OverwriteOpt = False, skip_existing: SkipOpt = False, as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Watch a model turn noise into a picture: frames every N steps, a contact sheet and an animation.

    Examples:

      diffcli denoise-trace --preset digits --num-images 4 --every 10 --animation webp

      diffcli denoise-trace --preset ddpm-church-256 --every 50

      diffcli denoise-trace --preset sd15 --prompt "a cat playing bass" --every 5 --show both
    """
    from diffcli.run.commands import run_trace
    from diffcli.run.generate import Options
    from diffcli.plan.presets import resolve

    _install_sigterm()
    resolved = resolve(preset, "digits", sets, _common_flags(
        locals(), prompt=prompt, negative_prompt=negative_prompt, guidance_scale=guidance_scale, show=show,
        animation=animation_format, frame_duration=frame_duration, frame_decode="vae" if exact_frames else None))
    _check_exclusive(overwrite, skip_existing)
    p = resolved.preset
    options = Options("denoise-trace", overwrite=overwrite, skip_existing=skip_existing, quiet=quiet, frames=True,
                      frame_kinds=_kinds(p.show))
    _print_paths(run_trace(p, options), as_json)


@app.command("replay")
@guarded
def replay(
    image: Annotated[Path, typer.Argument(help="A PNG written by diffcli.")],
    sets: SetOpt = None, output: OutputOpt = None, device: DeviceOpt = None,
    offline: OfflineOpt = False, overwrite: OverwriteOpt = False, as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Regenerate an image from its embedded diffcli metadata (identical on the same device and dtype).

    Examples:

      diffcli replay out/0003-s42-a-cat-playing-bass.png

      diffcli replay out/0000-s7.png --set steps=100 --output replays/
    """
    from diffcli.run.replay import run_replay

    _install_sigterm()
    flags = _flags(output=output or "replays", device=device, offline=offline)
    _print_paths(run_replay(image, sets or [], flags, overwrite=overwrite, quiet=quiet), as_json)


# ------------------------------------------------------------------ inspect


@app.command("inspect")
@guarded
def inspect_cmd(
    target: Annotated[str, typer.Argument(help="Preset name, preset file, local pipeline folder or hub id.")],
    sets: SetOpt = None, offline: OfflineOpt = False, allow_pickle: PickleOpt = False, as_json: JsonOpt = False,
) -> None:
    """Show what a pipeline is made of: components, classes, parameters, scheduler.

    Examples:

      diffcli inspect digits

      diffcli inspect ./my-pipeline --json

      diffcli inspect google/ddpm-cifar10-32 --offline
    """
    from diffcli.run.inspection import inspect_target, render

    info = inspect_target(target, sets or [], offline=offline, allow_pickle=allow_pickle)
    if as_json:
        _emit_json(info)
    else:
        render(info)


@app.command("train")
@guarded
def train_cmd(
    target: Annotated[str, typer.Argument(help="digits | digits-text")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Pipeline folder to write.")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Training steps (denoiser).")] = None,
    vae_steps: Annotated[int, typer.Option("--vae-steps", help="digits-text: autoencoder steps.")] = 1500,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b")] = 64,
    lr: Annotated[float, typer.Option("--lr")] = 1e-3,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu | cuda | mps.")] = "cpu",
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every")] = 500,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint.")] = False,
    subset: Annotated[Optional[int], typer.Option("--subset", help="Train on the first N images only.")] = None,
    threads: ThreadsOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Train a built-in offline model from scikit-learn's handwritten digits (needs the `train` extra).

    Examples:

      diffcli train digits --output models/digits

      diffcli train digits-text --output models/digits-text --device cuda
    """
    from diffcli.errors import UsageError
    from diffcli.run.threads import configure_threads
    from diffcli.builtin.training import DEFAULT_STEPS, TARGETS, TrainConfig, train

    if target not in TARGETS:
        raise UsageError(f"unknown training target '{target}' (choose {', '.join(TARGETS)})")
    for name, value in (("--steps", steps), ("--vae-steps", vae_steps), ("--batch-size", batch_size),
                        ("--checkpoint-every", checkpoint_every), ("--subset", subset)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be >= 1")
    configure_threads(threads)
    config = TrainConfig(target=target, output=output or Path("trained") / target, steps=steps or DEFAULT_STEPS[target],
                         vae_steps=vae_steps, batch_size=batch_size, lr=lr, seed=seed, device=device,
                         checkpoint_every=checkpoint_every, resume=resume, subset=subset, quiet=quiet)
    summary = train(config)
    if as_json:
        _emit_json(summary)
    else:
        print(summary["output"])


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except BrokenPipeError:
        _quiet_broken_pipe()


if __name__ == "__main__":  # pragma: no cover
    main()
