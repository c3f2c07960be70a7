"""`diffcli serve`: the flags, the key and bind checks, then diffcli.serve (FastAPI and uvicorn load only here)."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from typing_extensions import Annotated

from diffcli.cli.boundary import guarded
from diffcli.cli.emit import Emitter
from diffcli.cli.options import PresetOpt, QuietOpt, SetOpt, key_parameter
from diffcli.errors import UsageError

# Preset keys a server takes as its defaults (per-request fields override the per-image ones).
SERVE_KEYS = ("model", "config", "scheduler", "steps", "negative_prompt", "guidance_scale", "width", "height",
              "strength", "prompt_syntax", "max_sequence_length", "loras", "lora_weight", "device", "dtype", "output",
              "offline", "allow_pickle", "threads", "step_cache", "backend")
REFUSED_KEYS = {"init_image": "init images come with each img2img request",
                "mask_image": "masks come with each edit or inpainting request",
                "every": "a server writes no frames",
                "controlnet": "the server runs no ControlNets: use txt2img, img2img or inpaint --controlnet",
                "control_image": "the server runs no ControlNets: use txt2img, img2img or inpaint --controlnet",
                "hires": "the server has no hires pass: use diffcli txt2img --hires"}


def _opt(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


SERVER_PARAMETERS = (
    _opt("host", Annotated[str, typer.Option("--host", help="Address to listen on (loopback unless told otherwise; "
                                              "another address needs an API key or --insecure-no-key).")], "127.0.0.1"),
    _opt("port", Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one).")], 7860),
    _opt("max_batch", Annotated[int, typer.Option("--max-batch", min=1, max=256,
                                                  help="Images per pipeline call, gathered across requests.")], 8),
    _opt("max_queue", Annotated[int, typer.Option("--max-queue", min=1, max=100000,
                                                  help="Images waiting before requests are refused (429/503).")], 64),
    _opt("max_steps", Annotated[int, typer.Option("--max-steps", min=1, max=10000,
                                                  help="Most denoising steps a request may ask for.")], 150),
    _opt("max_body_mb", Annotated[int, typer.Option("--max-body-mb", min=1, max=1024,
                                                    help="Largest request body read, in MiB.")], 96),
    _opt("api_key_file", Annotated[Optional[Path], typer.Option(
        "--api-key-file", help="File whose first line is the API key (else DIFFCLI_API_KEY); every route then "
                               "needs Authorization: Bearer <key>.")], None),
    _opt("insecure_no_key", Annotated[bool, typer.Option(
        "--insecure-no-key", help="Allow a non-loopback --host without an API key.")], False),
    _opt("preset", PresetOpt, None), _opt("sets", SetOpt, None), _opt("quiet", QuietOpt, False),
)


def with_serve_options(body: Callable[..., Any]) -> Callable[..., Any]:
    """The preset keys of SERVE_KEYS as flags (from the key table) plus the server's own options."""

    @functools.wraps(body)
    def wrapper(**kwargs: Any) -> Any:
        flags = {name: kwargs.pop(name) for name in SERVE_KEYS}
        flags = {k: v for k, v in flags.items() if v is not None and v is not False}
        return body(flags=flags, **kwargs)

    wrapper.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [key_parameter(name) for name in SERVE_KEYS] + list(SERVER_PARAMETERS))
    del wrapper.__wrapped__
    wrapper.__annotations__ = {}
    return wrapper


def register(app: typer.Typer) -> None:
    """Add `diffcli serve` to the app."""

    @app.command("serve")
    @with_serve_options
    @guarded
    def serve(*, flags: dict[str, Any], host: str, port: int, max_batch: int, max_queue: int, max_steps: int,
              max_body_mb: int, api_key_file: Optional[Path], insecure_no_key: bool, preset: Optional[str],
              sets: Optional[list[str]], quiet: bool, emitter: Emitter) -> None:
        """Serve one model over HTTP: OpenAI's Images API and A1111's /sdapi/v1 API (needs the `serve` extra).

        The model loads once (without --preset or --model: the built-in digits-text); requests that
        can share a pipeline call are batched. Every generation option here is the server's default;
        requests override the per-image ones (prompt, seed, steps, size, guidance, sampler). Logs one
        line per request on stderr. SIGTERM or SIGINT: stop accepting, let the running batch finish
        (2 s at most), exit 0. See docs/serving.md.

        Examples:

          diffcli serve --preset digits-text

          DIFFCLI_API_KEY=secret diffcli serve --preset sd15 --host 0.0.0.0 --port 7860 --max-batch 4

          diffcli serve --preset sdxl --scheduler dpm++2m-karras --steps 30 --max-queue 32
        """
        from diffcli.plan.presets import resolve
        from diffcli.serve.security import check_bind, load_key

        key = load_key(api_key_file)
        check_bind(host, key, insecure_no_key)
        import importlib.util

        if any(importlib.util.find_spec(name) is None for name in ("fastapi", "uvicorn", "python_multipart")):
            raise UsageError("diffcli serve needs FastAPI, uvicorn and python-multipart",
                             hint="pip install -e \".[serve]\" in a clone")
        resolved = resolve(preset, "digits-text", sets, flags)
        for name, why in REFUSED_KEYS.items():
            if getattr(resolved.preset, name) not in (None, (), []):  # unset (lists: empty)
                raise UsageError(f"serve: {name} is not a server setting ({why})")
        if resolved.default_used:
            emitter.note("Using the built-in preset 'digits-text' (a tiny model that draws handwritten digits); "
                         "for real pictures pick one, e.g. --preset sd15")
        from diffcli.serve.limits import Limits
        from diffcli.serve.server import Options, serve as run_server

        limits = Limits(max_batch=max_batch, max_queue=max_queue, max_steps=max_steps, max_body=max_body_mb << 20)
        run_server(resolved.preset, Options(host=host, port=port, limits=limits, key=key, quiet=quiet),
                   note=emitter.note)
