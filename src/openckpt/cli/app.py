"""The Typer app behind the ``openckpt`` console script.

Exit codes: 0 success, 1 findings (``verify`` mismatches, ``diff`` differences), 2 errors.
"""

from __future__ import annotations

import typer

from openckpt.cli.convert import convert_command
from openckpt.cli.diff import diff_command
from openckpt.cli.inspect import inspect_command
from openckpt.cli.signature import signature_app
from openckpt.cli.verify import verify_command

__all__ = ["app", "main"]

app = typer.Typer(
    name="openckpt",
    help="Exact, crash-safe, pickle-free AI checkpoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("inspect")(inspect_command)
app.command("verify")(verify_command)
app.command("diff")(diff_command)
app.command("convert")(convert_command)
app.add_typer(signature_app, name="signature")


def main() -> None:
    """Entry point of the console script."""
    app()


if __name__ == "__main__":
    main()
