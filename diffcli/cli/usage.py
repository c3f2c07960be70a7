"""Click's usage errors in diffcli's words: an unknown option names the close spellings of this command's own
options and the commands that do take it (click suggests any option sharing the leading `--`)."""

from __future__ import annotations

import difflib
from typing import Any

CLOSE = 0.75  # difflib ratio on the names without dashes: `--stpes` finds `--steps`, `--hires` not `--threads`


def usage_message(err: Any) -> str:
    """One line for a click UsageError (ending in "(see --help)")."""
    try:  # typer vendors click; its exceptions are typer's own classes
        from typer._click.exceptions import NoSuchOption
    except ImportError:  # pragma: no cover - older typer uses click itself
        from click.exceptions import NoSuchOption

    message = err.format_message().strip().replace("\n", " ")
    name, ctx = getattr(err, "option_name", None), getattr(err, "ctx", None)
    if not isinstance(err, NoSuchOption) or not name or ctx is None or not name.startswith("--"):
        return message + " (see --help)"
    path = ctx.command_path or "diffcli"  # "diffcli presets show"
    command = path.split(" ", 1)[1] if " " in path else ""
    own = _long_options(ctx.command)
    close = [option[2:] for option in own if option.startswith(name)][:3]  # --guidance: --guidance-scale
    close = close or difflib.get_close_matches(name[2:], [option[2:] for option in own], n=3, cutoff=CLOSE)
    takers = [other for other, options in _commands(ctx.find_root().command) if name in options and other != command]
    said = f"No such option for {command}: {name}" if command else f"No such option: {name}"
    if close:
        said += " (did you mean " + " or ".join(f"--{option}" for option in close) + "?)"
    elif takers:
        more = f" and {len(takers) - 4} more" if len(takers) > 4 else ""
        said += f" ({', '.join(takers[:4])}{more} {'takes' if len(takers) == 1 else 'take'} it)"
    return said + f" (see {path} --help)"


def _long_options(command: Any) -> list[str]:
    return [opt for param in getattr(command, "params", []) for opt in (*param.opts, *param.secondary_opts)
            if opt.startswith("--")]


def _commands(group: Any, prefix: str = "") -> list[tuple[str, list[str]]]:
    """(name, long options) of every command under the root, sub-commands as `presets show`."""
    found = []
    for name, command in sorted(getattr(group, "commands", {}).items()):
        full = f"{prefix}{name}"
        found.append((full, _long_options(command)))
        found += _commands(command, full + " ")
    return found
