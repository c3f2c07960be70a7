"""Running the app: the process-level boundary for what happens outside a command.

Click's own usage errors (unknown flag, bad value, unknown command), Ctrl-C before a command
starts, a closed stdout pipe and a full stdout all end here with one line and the documented
exit code (one JSON document too when `--json` was asked for).
"""

from __future__ import annotations

import os
import sys
from typing import Any

EXIT_BROKEN_PIPE = 141  # as a shell reports a process ended by SIGPIPE (`yes | head`)


def _wants_json(argv: list[str]) -> bool:
    return "--json" in argv


def _error(message: str, code: int, as_json: bool) -> int:
    from diffcli.cli.emit import Emitter

    try:
        Emitter(as_json=as_json).error(message, code)
    except BrokenPipeError:
        return _broken_pipe()
    except Exception:  # noqa: BLE001 - stdout unusable: the stderr line is what is left
        pass
    return code


def _broken_pipe() -> int:
    """Quiet exit when the reader went away; stdout is pointed at /dev/null so the final flush is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
    return EXIT_BROKEN_PIPE


def run_app(app: Any, argv: list[str] | None = None) -> None:
    """Run the Typer app without click's own exit handling, and exit with the right code."""
    import typer

    from diffcli.cli.emit import StdoutError

    try:  # typer vendors click; its exceptions are typer's own classes
        from typer._click import exceptions as click_exceptions
    except ImportError:  # pragma: no cover - older typer uses click itself
        from click import exceptions as click_exceptions

    args = sys.argv[1:] if argv is None else argv
    as_json = _wants_json(args)
    try:
        code = app(args=args, prog_name="diffcli", standalone_mode=False)
        code = code if isinstance(code, int) else 0
    except typer.Exit as done:
        code = done.exit_code
    except click_exceptions.NoArgsIsHelpError as err:
        try:
            print(err.ctx.get_help() if err.ctx is not None else "", flush=True)
            code = 0
        except BrokenPipeError:
            code = _broken_pipe()
    except click_exceptions.UsageError as err:
        message = err.format_message().strip().replace("\n", " ")
        code = _error(message + " (see --help)", 2, as_json)
    except typer.Abort:
        code = _error("interrupted", 130, as_json)
    except KeyboardInterrupt:
        code = _error("interrupted", 130, as_json)
    except BrokenPipeError:
        code = _broken_pipe()
    except StdoutError as err:
        print(f"Error: cannot write the result to stdout: {err}", file=sys.stderr, flush=True)
        code = 4
    except Exception as err:  # noqa: BLE001 - outside any command: still one line, never a traceback
        from diffcli.cli.boundary import debug, describe

        if debug():
            raise
        message, code = describe(err)
        code = _error(message, code, as_json)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = _broken_pipe()
    except OSError:
        code = code or 4
    sys.exit(code)
