"""Every `diffcli ...` line in the README parses with the real CLI (commands and flags exist, values have the right types)."""

import re
import shlex
from pathlib import Path

import typer

from diffcli.cli.app import app

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("diffcli ")]


def test_readme_commands_parse():
    commands = readme_commands()
    assert len(commands) >= 12
    root = typer.main.get_command(app)
    for line in commands:
        args = shlex.split(line)[1:]
        ctx = root.make_context("diffcli", [], resilient_parsing=True)
        command = root.get_command(ctx, args[0])
        assert command is not None, line
        rest = args[1:]
        if hasattr(command, "get_command") and rest and command.get_command(ctx, rest[0]) is not None:
            command, rest = command.get_command(ctx, rest[0]), rest[1:]
        command.make_context(args[0], list(rest), parent=ctx)  # raises a usage error on an unknown flag or bad value
