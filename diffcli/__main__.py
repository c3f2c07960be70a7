"""`python -m diffcli` entry point (also what `accelerate launch -m diffcli` runs).

Ctrl-C is answered with one line and exit 130 from the first instruction on, before the
(slower) imports of the app.
"""

import os
import signal
import sys


def _early_interrupt(_signum, _frame):  # type: ignore[no-untyped-def]
    if "--json" in sys.argv[1:]:
        os.write(1, b'{"status": "interrupted", "error": {"exit_code": 130, "message": "interrupted"}}\n')
    os.write(2, b"Error: interrupted\n")
    os._exit(130)


def main() -> None:
    """Install the early Ctrl-C answer, then run the app (which installs its own)."""
    previous = signal.signal(signal.SIGINT, _early_interrupt)
    from diffcli.cli.app import app
    from diffcli.cli.entry import run_app

    signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    run_app(app)


if __name__ == "__main__":
    main()
