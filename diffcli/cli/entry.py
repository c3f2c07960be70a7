"""Running the app: the process-level boundary for what happens outside a command.

Click's own usage errors (unknown flag, bad value, unknown command), Ctrl-C before a command
starts, a closed stdout pipe and a full stdout all end here with one line and the documented
exit code (one JSON document too when `--json` was asked for).
"""

from __future__ import annotations

import errno
import io
import os
import sys
from typing import Any

EXIT_BROKEN_PIPE = 141  # as a shell reports a process ended by SIGPIPE (`yes | head`)


def _wants_json(argv: list[str]) -> bool:
    return "--json" in argv


def _error(message: str, code: int, as_json: bool, every_rank: bool = False) -> int:
    from diffcli.cli.emit import Emitter, spoken

    if spoken():  # the command already printed its document or error: say nothing twice
        return code
    try:
        emitter = Emitter(as_json=as_json)
        emitter.main = emitter.main or every_rank
        emitter.error(message, code)
    except BrokenPipeError:
        return _broken_pipe()
    except Exception:  # noqa: BLE001 - stdout unusable: the stderr line is what is left
        pass
    return code


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:  # stderr unusable too: the exit code is what is left
        pass


class _ClosedStdout(io.TextIOBase):
    """What sys.stdout is when the process started with it closed."""

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "stdout is closed")


def _broken_pipe() -> int:
    """Quiet exit when the reader went away; stdout is pointed at /dev/null so the final flush is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
    return EXIT_BROKEN_PIPE


def _escape_unencodable() -> None:
    """Characters the terminal's encoding lacks (PYTHONIOENCODING=ascii, a C locale) are written as
    `\\xe9`, never a UnicodeEncodeError after the work is done."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            pass


def run_app(app: Any, argv: list[str] | None = None) -> None:
    """Run the Typer app without click's own exit handling, and exit with the right code."""
    import typer

    from diffcli.cli.boundary import install_signals
    from diffcli.cli.emit import StdoutError
    from diffcli.errors import pending_interrupt

    try:  # typer vendors click; its exceptions are typer's own classes
        from typer._click import exceptions as click_exceptions
    except ImportError:  # pragma: no cover - older typer uses click itself
        from click import exceptions as click_exceptions

    args = sys.argv[1:] if argv is None else argv
    as_json = _wants_json(args)
    if sys.stdout is None:  # started with stdout closed: writing the result fails (exit 4), not a crash
        sys.stdout = _ClosedStdout()
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    _escape_unencodable()
    from diffcli.errors import DiffcliError
    from diffcli.plan.environment import check_environment

    try:  # before any library reads them (huggingface_hub parses its timeouts at import)
        check_environment(os.environ)
    except DiffcliError as err:  # said by every process: a bad launch environment has no trusted rank 0
        sys.exit(_error(err.message + (f" ({err.hint})" if err.hint else ""), int(err.exit_code), as_json, True))
    try:
        install_signals(owns_process=True)  # from here a signal is answered here (or by the command's boundary)
        code = app(args=args, prog_name="diffcli", standalone_mode=False)
        code = code if isinstance(code, int) else 0
        if code == 130:  # typer turns a signal outside a command into a silent 130
            pending = pending_interrupt()
            code = _error("interrupted", int(pending.exit_code) if pending else 130, as_json)
    except typer.Exit as done:
        code = done.exit_code
    except click_exceptions.NoArgsIsHelpError as err:
        try:
            print(err.ctx.get_help() if err.ctx is not None else "", flush=True)
            code = 0
        except BrokenPipeError:
            code = _broken_pipe()
    except click_exceptions.UsageError as err:
        from diffcli.cli.usage import usage_message

        code = _error(usage_message(err), 2, as_json)
    except typer.Abort:
        code = _error("interrupted", 130, as_json)
    except KeyboardInterrupt as err:
        from diffcli.errors import Terminated

        code = _error("interrupted", 143 if isinstance(err, Terminated) else 130, as_json)
    except BrokenPipeError:
        code = _broken_pipe()
    except StdoutError as err:
        if err.errno == errno.EPIPE:
            code = _broken_pipe()
        else:
            if not err.reported:
                _say(f"Error: cannot write the result to stdout: {err}")
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
    from diffcli.cli.boundary import settle_signals

    settle_signals(int(code))  # said and flushed: a signal in an exit hook now only ends the exit early
    if code in (130, 143):
        _exit_interrupted(code)
    sys.exit(code)


def _exit_interrupted(code: int) -> None:
    """Exit with exactly `code`. A Ctrl-C that lands inside `exec()` of a string (dataclasses and
    namedtuple do that while modules import) marks it unhandled in CPython, whose normal exit then
    re-raises SIGINT (status -2) even though the boundary answered it."""
    import atexit

    run_exit_functions = getattr(atexit, "_run_exitfuncs", None)
    try:
        if run_exit_functions is not None:
            run_exit_functions()
        sys.stderr.flush()
        sys.stdout.flush()
    except BaseException:  # noqa: BLE001 - exiting anyway; the code is what counts now
        pass
    os._exit(code)
