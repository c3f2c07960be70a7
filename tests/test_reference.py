from pathlib import Path

from diffcli.cli.reference import render

REPO = Path(__file__).resolve().parent.parent


def test_docs_cli_reference_matches_help():
    assert (REPO / "docs" / "cli.md").read_text() == render(), "regenerate: python -m diffcli.cli.reference > docs/cli.md"


def test_help_shows_conventional_metavars():
    """Arguments read `PROMPT`, `IMAGE`, `TARGET`; no `<str>`, `<path>`, `{target}` or `<list[str]>` anywhere."""
    import re

    from typer.testing import CliRunner

    from diffcli.cli.app import app

    runner = CliRunner()
    for command in ("txt2img", "img2img", "inpaint", "unconditional", "denoise-trace", "inspect", "replay",
                    "gallery", "train", "serve", "schedulers", "presets"):
        text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "120"}).output
        assert text.startswith("Usage: diffcli"), (command, text)
        assert not re.search(r"<(str|path|int|float|list\[[a-z]+\])>|\{[a-z_]+\}", text), (command, text)
