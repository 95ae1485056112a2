"""``openckpt scan PATH...``: scan model files for code that would run when they are loaded.

Exit codes: 0 every file clean, opaque or needing code (the packages are listed), 1 a suspicious or malicious file,
2 inconclusive or error, 3 a path that does not exist.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from openckpt.cli._output import err, guard, out, print_json

__all__ = ["scan_command"]


@guard
def scan_command(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories (scanned recursively).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    sarif: Annotated[bool, typer.Option("--sarif", help="Print the report as SARIF 2.1.0.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also list info-level findings.")] = False,
    time_budget: Annotated[float, typer.Option(help="Seconds allowed per file before it is inconclusive.")] = 120.0,
) -> None:
    """Scan without importing, unpickling or executing anything: clean, opaque, needs_code, inconclusive,
    suspicious or malicious.

    Exit 0 if every file is clean, opaque or needs code (its packages are listed), 1 if one is suspicious or
    malicious, 2 if one is inconclusive (treat it as unsafe), 3 if a path does not exist.
    """
    from openckpt import __version__
    from openckpt.scan.api import scan
    from openckpt.scan.limits import Limits
    from openckpt.scan.report import print_table, to_sarif

    if as_json and sarif:
        raise typer.BadParameter("choose one of --json and --sarif")
    if missing := [str(p) for p in paths if not p.exists() and not p.is_symlink()]:
        raise FileNotFoundError(f"no such file or directory: {', '.join(missing)}")
    report = scan(paths, limits=Limits(time_budget=time_budget))
    if sarif:
        typer.echo(json.dumps(to_sarif(report, version=__version__), indent=2, ensure_ascii=False))
    elif as_json:
        print_json(report.to_dict())
    else:
        print_table(report, out(), verbose=verbose)
        if report.exit_code == 2:
            err().print("[magenta]inconclusive:[/] some content could not be inspected; treat it as unsafe")
    if report.exit_code:
        raise typer.Exit(report.exit_code)
