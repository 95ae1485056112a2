"""``openckpt card generate CHECKPOINT_DIR`` and ``openckpt card lint README.md``: model cards per the Hub's
conventions.

Exit codes: 0 done (lint: no errors), 1 the card has errors, 2 errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from openckpt.cli._output import EXIT_FINDINGS, err, guard, out

__all__ = ["card_app", "generate_command", "lint_command"]

card_app = typer.Typer(name="card", help="Generate and lint model cards (README.md).", no_args_is_help=True)


@card_app.command("generate")
@guard
def generate_command(
    directory: Annotated[Path, typer.Argument(help="A checkpoint directory (with openckpt.json).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the card here (default: stdout).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Model name in the card (default: the directory's name).")] = None,
) -> None:
    """Write a README.md whose YAML front matter (license, base_model, datasets, model-index) comes from the
    checkpoint's manifest."""
    from openckpt.fsutil import atomic_write
    from openckpt.governance.cards import generate_card

    text = generate_card(directory, name=name)
    if output is None:
        typer.echo(text, nl=False)
    else:
        atomic_write(output, text.encode())
        err().print(f"wrote {escape(str(output))}")


@card_app.command("lint")
@guard
def lint_command(path: Annotated[Path, typer.Argument(help="A README.md with YAML front matter.")]) -> None:
    """Check a card's metadata as the hub does on upload: errors (exit 1) and warnings."""
    from openckpt.governance.cards import validate_card

    _, errors, warnings = validate_card(path.read_text("utf-8"))
    console = out()
    for e in errors:
        console.print(f"[red]error:[/] {escape(e)}", soft_wrap=True)
    for w in warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}", soft_wrap=True)
    if not errors and not warnings:
        console.print(f"{escape(str(path))}: ok")
    if errors:
        raise typer.Exit(EXIT_FINDINGS)
