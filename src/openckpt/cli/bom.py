"""``openckpt bom DIR|REPO [-o bom.json]``: a CycloneDX 1.6 ML-BOM of a model.

Exit codes: 0 written, 2 errors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from openckpt.cli._output import err, guard
from openckpt.cli._remote import Endpoint, Token, remote

__all__ = ["bom_command"]


@guard
@remote
def bom_command(
    target: Annotated[str, typer.Argument(help="A model directory, or a repo id on the hub (owner/name).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the BOM here (default: stdout).")] = None,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """The model (sha256 of each weight file, license, model card), its datasets, base models and libraries."""
    from openckpt import __version__

    path = Path(target)
    if path.is_dir():
        from openckpt.governance.bom import bom_of_directory

        bom = bom_of_directory(path, tool_version=__version__)
    else:
        from openckpt.client.governance import fetch_report

        bom = fetch_report("bom", target, endpoint=endpoint, token=token)
    text = json.dumps(bom, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        from openckpt.fsutil import atomic_write

        atomic_write(output, text.encode())
        err().print(f"wrote {escape(str(output))}")
