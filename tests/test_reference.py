from pathlib import Path

from diffcli.cli.reference import render

REPO = Path(__file__).resolve().parent.parent


def test_docs_cli_reference_matches_help():
    assert (REPO / "docs" / "cli.md").read_text() == render(), "regenerate: python -m diffcli.cli.reference > docs/cli.md"
