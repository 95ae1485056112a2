"""``openckpt openness DIR|REPO``: the Model Openness Framework class and the OSI Open Source AI Definition check.

Exit codes: 0 shown, 2 errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from openckpt.cli._output import guard, out, print_json
from openckpt.cli._remote import Endpoint, Token, remote

__all__ = ["openness_command", "openness_of_directory"]


def openness_of_directory(directory: Path) -> dict[str, Any]:
    from openckpt.governance.cards import parse_card
    from openckpt.governance.openness import assess

    files = [p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()]
    readme = directory / "README.md"
    card = parse_card(readme.read_text("utf-8", errors="replace"))[0] if readme.is_file() else None
    return assess(files, card or {}).to_dict()


@guard
@remote
def openness_command(
    target: Annotated[str, typer.Argument(help="A model directory, or a repo id on the hub (owner/name).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Each MOF component as verified (a file), declared (the card) or missing, the class awarded, and the OSAID."""
    path = Path(target)
    if path.is_dir():
        report = openness_of_directory(path)
    else:
        from openckpt.client.governance import fetch_report

        report = fetch_report("openness", target, endpoint=endpoint, token=token)
    if as_json:
        print_json(report)
        return
    table = Table("component", "class", "status", "license", "evidence")
    for c in report["components"]:
        colour = {"verified": "green", "declared": "yellow"}.get(c["status"], "red")
        lic = f"{c['license'] or '-'}{'' if c['open_license'] else ' (not open)'}"
        table.add_row(
            c["name"],
            "I" * (4 - c["mof_class"]),
            f"[{colour}]{c['status']}[/]",
            escape(lic),
            escape(", ".join(c["evidence"]) or "-"),
        )
    console = out()
    console.print(table)
    console.print(f"MOF: [bold]{escape(report['mof_label'])}[/]")
    console.print("OSI Open Source AI Definition 1.0: " + ("[green]met[/]" if report["osaid"] else "[red]not met[/]"))
    for reason in report["osaid_reasons"]:
        console.print(f"  - {escape(reason)}", soft_wrap=True)
