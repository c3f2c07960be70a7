"""The command line: the Typer app and its small commands. Imports neither torch nor diffusers.

The generating commands live in cli/generating.py, replay in cli/replaying.py; every command
reports through the emitter (cli/emit.py) and fails through one boundary (cli/boundary.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from diffcli import __version__
from diffcli.cli.boundary import guarded
from diffcli.cli.emit import Emitter
from diffcli.cli.options import JsonOpt, OfflineOpt, OverwriteOpt, PickleOpt, QuietOpt, SetOpt, ThreadsOpt

EXIT_CODES = ("Exit codes: 0 ok, 1 internal error or not enough memory, 2 usage or invalid preset, "
              "3 model not found or not loadable, 4 output problem, 130 interrupted (143 on SIGTERM).")


CONVENTIONAL = {"int": "INTEGER", "int range": "INTEGER", "float": "NUMBER", "float range": "NUMBER", "path": "PATH",
                "str": "TEXT"}


def _conventional_metavars() -> None:
    """Help reads `PROMPT`, `IMAGE`, `--steps INTEGER`, the convention, not Typer 0.2x's `PROMPT <str>` and
    `--steps <int>` (Typer has no setting for it: arguments drop the type label, options without a metavar
    show the conventional one)."""
    from typer.core import TyperArgument, TyperOption

    def option_label(self: TyperOption, ctx: object) -> str | None:
        if self.metavar is not None:
            return self.metavar
        shown = self.display_type(ctx)  # type: ignore[arg-type]
        return CONVENTIONAL.get(shown.strip("<>"), shown) if shown else shown

    def usage_name(self: TyperArgument) -> str:  # `train TARGET`, not `train {TARGET}`; optional ones `[PROMPT]`
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")

    TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]
    TyperArgument._usage_display_name = usage_name  # type: ignore[method-assign]
    TyperOption.display_type_rich = option_label  # type: ignore[method-assign]


_conventional_metavars()
app = typer.Typer(
    name="diffcli",
    help="Scriptable image generation with Hugging Face Diffusers.",
    epilog=EXIT_CODES + " Set DIFFCLI_DEBUG=1 for tracebacks.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: rendering it with rich costs ~0.3 s of imports at every --help
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
presets_app = typer.Typer(help="List and show shipped presets.", invoke_without_command=True)
app.add_typer(presets_app, name="presets")


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

    Exit codes: 0 ok, 1 internal error or not enough memory, 2 usage or invalid preset,
    3 model not found or not loadable, 4 output problem, 130 interrupted (143 on SIGTERM).
    """


@presets_app.callback()
@guarded
def presets_list(ctx: typer.Context, as_json: JsonOpt = False, *, emitter: Emitter) -> None:
    """List the shipped presets, one per line: name, task, description."""
    if ctx.invoked_subcommand is not None:
        return
    from diffcli.plan.presets import locate, preset_summary, shipped_names

    rows = [preset_summary(locate(name)) for name in shipped_names()]
    width = max(len(n) for n, _, _ in rows)
    emitter.document({"presets": [{"name": n, "task": t, "description": d} for n, t, d in rows]},
                     [f"{name:<{width}}  {task:<13}  {description}" for name, task, description in rows])


@presets_app.command("show")
@guarded
def presets_show(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Shipped preset name or YAML file.")],
    sets: SetOpt = None,
    as_json: JsonOpt = False,
    *, emitter: Emitter,
) -> None:
    """Print a preset fully resolved (every key, defaults included) as YAML."""
    from diffcli.plan.presets import resolve, to_yaml

    resolved = resolve(name, None, sets)
    emitter.document({"preset": resolved.preset.to_dict(), "sources": resolved.sources},
                     [to_yaml(resolved.preset).rstrip("\n")])


@presets_app.command("keys")
@guarded
def presets_keys(as_json: JsonOpt = False, *, emitter: Emitter) -> None:
    """List every preset key: default, values it takes, flag and what it does (from the key table)."""
    from diffcli.plan.keys import KEY_TABLE

    rows = [{"key": k.name, "default": k.default, "task_defaults": k.task_defaults, "values": k.describe(),
             "flag": k.flag, "help": k.help} for k in KEY_TABLE]
    lines = [f"{r['key']}: {json.dumps(r['default'])}  ({r['values']}"
             f"{', flag ' + r['flag'] if r['flag'] else ''})  {r['help']}" for r in rows]
    emitter.document({"keys": rows}, lines)


@app.command("schedulers")
@guarded
def schedulers_list(as_json: JsonOpt = False, *, emitter: Emitter) -> None:
    """List scheduler short names and the diffusers classes behind them."""
    from diffcli.plan.schedulers import SCHEDULERS

    lines = []
    for spec in SCHEDULERS.values():
        options = ", ".join(f"{k}={v}" for k, v in spec.options)
        lines.append(f"{spec.name:<20} {spec.class_name}{f' ({options})' if options else ''}")
    emitter.document({"schedulers": [{"name": s.name, "class": s.class_name, "options": dict(s.options)}
                                     for s in SCHEDULERS.values()]}, lines)


@app.command("inspect")
@guarded
def inspect_cmd(
    target: Annotated[Optional[str], typer.Argument(
        metavar="TARGET", help="Preset name, preset file, local pipeline folder, single-file checkpoint or hub id "
        "(default: the built-in digits-text, as txt2img).")] = None,
    sets: SetOpt = None, offline: OfflineOpt = False, allow_pickle: PickleOpt = False, as_json: JsonOpt = False,
    *, emitter: Emitter,
) -> None:
    """Show what a pipeline is made of: components, classes, parameters, scheduler.

    Examples:

      diffcli inspect digits

      diffcli inspect ./my-pipeline --json

      diffcli inspect google/ddpm-cifar10-32 --offline

      diffcli inspect model.safetensors    # single file: says which architecture was detected
    """
    from diffcli.run.inspection import inspect_target, render

    if target is None:
        target = "digits-text"
        emitter.note("no TARGET given: inspecting the built-in digits-text (diffcli inspect --help shows examples)")
    info = inspect_target(target, sets or [], offline=offline, allow_pickle=allow_pickle)
    if as_json:
        emitter.document(info)
    else:
        emitter.done = True
        render(info)


@app.command("train")
@guarded
def train_cmd(
    target: Annotated[str, typer.Argument(metavar="TARGET", help="digits | digits-text | digits-flow | digits-control")],
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
    threads: ThreadsOpt = None, overwrite: OverwriteOpt = False, as_json: JsonOpt = False, quiet: QuietOpt = False,
    *, emitter: Emitter,
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
    if threads is not None and not 1 <= threads <= 1024:
        raise UsageError("--threads must be between 1 and 1024")
    configure_threads(threads)
    config = TrainConfig(target=target, output=output or Path("trained") / target, steps=steps or DEFAULT_STEPS[target],
                         vae_steps=vae_steps, batch_size=batch_size, lr=lr, seed=seed, device=device,
                         checkpoint_every=checkpoint_every, resume=resume, subset=subset, quiet=quiet,
                         overwrite=overwrite)
    summary = train(config)
    emitter.document({"status": "ok", **summary}, [str(summary["output"])])


from diffcli.cli import generating, replaying, upscaling  # noqa: E402  (commands register themselves on `app`)

generating.register(app)
upscaling.register(app)
replaying.register(app)

from diffcli.cli import gallery_cmd as _gallery_cmd  # noqa: E402  (registers `diffcli gallery`)

_gallery_cmd.register(app)

from diffcli.cli import serve_cmd as _serve_cmd  # noqa: E402  (registers `diffcli serve`; FastAPI loads only when it runs)

_serve_cmd.register(app)


def main() -> None:
    """Console-script entry point (see cli/entry.py for what runs before this)."""
    from diffcli.cli.entry import run_app

    run_app(app)


if __name__ == "__main__":  # pragma: no cover
    main()
