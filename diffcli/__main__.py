"""`python -m diffcli` entry point (also what `accelerate launch -m diffcli` runs).

Ctrl-C (and SIGTERM) is answered with one line, one JSON document with `--json`, and exit
130 (143) from the first instruction on, before the (slower) imports of the app; `run_app`
takes over once its boundary is in place.
"""

import os
import signal
import sys

_EARLY_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _early_interrupt(signum, _frame):  # type: ignore[no-untyped-def]
    code = _EARLY_CODES.get(signum, 130)
    if os.environ.get("RANK", "0").strip() in ("", "0"):  # under a launcher only rank 0 speaks
        try:
            if "--json" in sys.argv[1:]:
                os.write(1, b'{"status": "interrupted", "error": {"exit_code": %d, "message": "interrupted"}}\n' % code)
            os.write(2, b"Error: interrupted\n")
        except OSError:
            pass
    os._exit(code)


def _reserve_standard_fds() -> None:
    """Point a closed stdin/stdout/stderr at /dev/null, so no file diffcli opens takes its number
    (a stray write to fd 1 must not land in a weights or image file)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one


def main() -> None:
    """Install the early signal answers, then run the app (which installs its own)."""
    import atexit
    import gc

    # Registered first, so it runs after every other exit handler: the collector then skips the millions of
    # objects torch, diffusers and transformers leave (interpreter teardown went from ~0.8 s to ~0.1 s).
    atexit.register(gc.freeze)
    _reserve_standard_fds()
    for signum in _EARLY_CODES:
        signal.signal(signum, _early_interrupt)
    from diffcli.run.threads import prepare_openmp

    prepare_openmp()  # before anything imports torch: OpenMP reads its wait policy when it loads
    from diffcli.cli.app import app
    from diffcli.cli.entry import run_app

    run_app(app)


if __name__ == "__main__":
    main()
