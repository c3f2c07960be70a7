"""`diffcli gallery DIR`: a static index.html for a folder of outputs. Imports neither PIL nor torch until run."""

# No `from __future__ import annotations`: Typer reads the annotations of the nested command at run time.
from pathlib import Path
import typer
from typing_extensions import Annotated

from diffcli.cli.boundary import guarded
from diffcli.cli.emit import Emitter

FolderArg = Annotated[Path, typer.Argument(metavar="DIR", help="Output folder to index (searched recursively).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def register(app: typer.Typer) -> None:
    """Add the `gallery` command to `app`."""

    @app.command("gallery")
    @guarded
    def gallery(folder: FolderArg, emitter: Emitter, as_json: JsonOpt = False) -> None:
        """Write FOLDER/index.html: every image with its prompt, seed, sampler and replay command.

        Works opened from disk (no server, no network). Reruns are incremental: a cache in
        FOLDER/.gallery/ skips files whose size and modification time are unchanged. Frames under
        frames/ are not shown one by one: a trace's contact sheet and animation open with its image.

        Examples:

          diffcli gallery out/

          diffcli gallery out/ --json
        """
        from diffcli.sinks.gallery import build_gallery

        report = build_gallery(folder)
        emitter.document(report.to_dict(), [report.gallery])
