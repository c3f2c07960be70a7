"""Command-line options built from the key table, declared once and shared by the commands.

`with_keys(...)` gives a command function the options of the named keys (flag, short name,
help with the default, from `plan/keys.py`) plus the shared run options, and hands the body
only the flags the user typed.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer
from typing_extensions import Annotated

from diffcli.plan.keys import KEYS

GENERATION_KEYS = ("model", "config", "scheduler", "steps", "seed", "num_images", "batch_size", "device", "dtype", "every",
                   "output", "grid", "gallery", "offline", "allow_pickle", "threads", "step_cache", "backend")
PROMPT_KEYS = ("negative_prompt", "guidance_scale", "width", "height", "prompt_syntax", "max_sequence_length", "loras",
               "lora_weight")
TRACE_KEYS = ("show", "animation", "frame_duration")


def _default_text(name: str) -> str:
    key = KEYS[name]
    if key.task_defaults:
        parts = ", ".join(f"{value} for {task}" if task != "txt2img" else "the pipeline's own for txt2img "
                          "(`diffcli inspect` shows it)" for task, value in key.task_defaults.items())
        return f" [default: {parts}, unless the preset sets it]"
    if key.type is bool or key.default in (None, "", ()):
        return ""
    return f" [default: {key.default}, unless the preset sets it]"


def key_parameter(name: str) -> inspect.Parameter:
    """The option for one key: `--num-images/-n INTEGER` with its help and default from the table."""
    key = KEYS[name]
    decls = [key.flag] + ([key.short] if key.short else [])
    values = "" if key.type in (bool, str, list) and not key.choices else f" ({key.describe()})"
    help_text = key.help + (values if key.describe() not in key.help else "") + _default_text(name)
    if key.type is bool and not key.nullable and key.default is False:
        annotation: Any = Annotated[bool, typer.Option(*decls, help=help_text)]
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=False, annotation=annotation)
    if key.type is bool:
        flag = key.flag or ""
        decls = [f"{flag}/--no-{flag[2:]}"]
        annotation = Annotated[Optional[bool], typer.Option(*decls, help=help_text)]
    elif key.type is list:  # repeatable: --lora A --lora B:0.5, --controlnet A --controlnet B
        annotation = Annotated[Optional[List[str]], typer.Option(*decls, help=help_text, show_default=False,
                                                             metavar=metavar_of(key))]
    else:
        annotation = Annotated[Optional[key.type], typer.Option(*decls, help=help_text, show_default=False,
                                                                metavar=metavar_of(key))]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def metavar_of(key: Any) -> str:
    """A conventional metavar: the choices (`plain|weighted`), else INTEGER, NUMBER, PATH or TEXT."""
    if key.choices:
        return "|".join(str(choice) for choice in key.choices)
    if key.name == "loras":
        return "PATH[:WEIGHT]"
    if key.name in ("model", "output", "init_image", "config", "controlnet", "control_image"):
        return "MODEL" if key.name in ("model", "controlnet") else "PATH"
    return {int: "INTEGER", float: "NUMBER"}.get(key.type, "TEXT")


def _param(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


PresetOpt = Annotated[Optional[str], typer.Option("--preset", "-p", metavar="NAME|FILE", help="Shipped preset name or YAML file.")]
SetOpt = Annotated[Optional[List[str]], typer.Option("--set", metavar="KEY=VALUE", help="Set a preset key: key=value (repeatable).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or narration on stderr.")]
PreviewOpt = Annotated[bool, typer.Option("--preview", help=(
    "Show the image forming above the progress bar, then the final images (the preview extra; only in a "
    "terminal, off with --json, --quiet and NO_COLOR)."))]
PreviewEveryOpt = Annotated[Optional[int], typer.Option("--preview-every", metavar="INTEGER", help=(
    "Preview every N steps (implies --preview) [default: steps / 8]."))]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing images.")]
SkipOpt = Annotated[bool, typer.Option("--skip-existing",
                                       help="Keep images that exist (listed with \"existing\": true); make the rest.")]
ExactOpt = Annotated[bool, typer.Option("--exact-frames", help="Decode latent frames with the VAE (slower, exact).")]
OfflineOpt = Annotated[bool, typer.Option("--offline", help=KEYS["offline"].help)]
PickleOpt = Annotated[bool, typer.Option("--allow-pickle", help=KEYS["allow_pickle"].help)]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", metavar="INTEGER", help=KEYS["threads"].help)]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", metavar="DEVICE", help=KEYS["device"].help)]
OutputPathOpt = Annotated[Optional[str], typer.Option("--output", "-o", metavar="PATH", help=KEYS["output"].help)]

RUN_PARAMETERS = (
    _param("preset", PresetOpt, None), _param("sets", SetOpt, None), _param("overwrite", OverwriteOpt, False),
    _param("skip_existing", SkipOpt, False), _param("as_json", JsonOpt, False), _param("quiet", QuietOpt, False),
    _param("preview", PreviewOpt, False), _param("preview_every", PreviewEveryOpt, None),
)


def with_keys(*keys: str, exact_frames: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the key options and the shared run options to a command.

    The body is called as `body(*its own arguments*, flags=..., run=...)`: `flags` holds the
    key options the user typed (not None/False), `run` the shared run options.
    """

    def decorate(body: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for name, p in inspect.signature(body, eval_str=True).parameters.items() if name not in ("flags", "run", "emitter")]
        generated = [key_parameter(name) for name in keys]
        extra = [_param("exact_frames", ExactOpt, False)] if exact_frames else []

        @functools.wraps(body)
        def wrapper(**kwargs: Any) -> Any:
            flags = {name: kwargs.pop(name) for name in keys}
            flags = {k: v for k, v in flags.items() if v is not None and (v is not False or KEYS[k].default is not False)}
            if kwargs.pop("exact_frames", False):
                flags["frame_decode"] = "vae"
            run = {p.name: kwargs.pop(p.name) for p in RUN_PARAMETERS}
            return body(**kwargs, flags=flags, run=run)

        wrapper.__signature__ = inspect.Signature(own + generated + extra + list(RUN_PARAMETERS))  # type: ignore[attr-defined]
        del wrapper.__wrapped__  # Typer must read the signature above, not the body's
        wrapper.__annotations__ = {}
        return wrapper

    return decorate


PromptsFileOpt = Annotated[Optional[Path], typer.Option(
    "--prompts-file", "-f", metavar="PATH", help="Text (one prompt per line) or JSONL file; checked whole before loading.")]
VaryOpt = Annotated[Optional[List[str]], typer.Option(
    "--vary", metavar="KEY=V1,V2,...",
    help="Compare values: every combination with the same seeds, one labelled grid (repeatable: rows, columns, "
         "one grid per value). Keys: scheduler, steps, guidance_scale, seed, prompt, negative_prompt, "
         "noise_level (upscale), width, "
         "height, strength (img2img, inpaint), lora_weight, prompt_syntax, control_scale, scheduler_options.NAME; "
         "quote a value that has a comma.")]
