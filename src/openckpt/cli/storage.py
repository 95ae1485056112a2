"""``openckpt admin gc`` and ``openckpt admin fsck``: the hub's storage, maintained locally on its database and store.

Like the other admin commands they need no running server: run them where the hub's database and store (its data
dir, or ``OPENCKPT_DATABASE_URL`` and ``OPENCKPT_STORAGE_URL``) are reachable. ``gc`` is safe while the hub serves.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table

from openckpt.cli._output import EXIT_FINDINGS, err, guard, human_bytes, out, print_json
from openckpt.cli.accounts import DatabaseUrl, DataDir, _session

if TYPE_CHECKING:
    from pathlib import Path

    from openckpt.hub.db.engine import Database
    from openckpt.hub.services.storage.fsck import FsckReport
    from openckpt.hub.settings import Settings
    from openckpt.store.blobs import BlobStore

__all__ = ["fsck_command", "gc_command", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
AsJson = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]


def parse_duration(value: str) -> timedelta:
    """``90s``, ``30m``, ``1h``, ``2d`` or plain seconds; a ``typer.BadParameter`` otherwise."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value.lower())
    if found is None:
        raise typer.BadParameter(f"{value!r} is not a duration such as 90s, 30m, 1h or 2d")
    return timedelta(seconds=float(found[1]) * _UNITS[found[2] or "s"])


@contextmanager
def _hub(data_dir: Path | None, database_url: str | None) -> Iterator[tuple[Settings, Database, BlobStore]]:
    """The hub's settings, database and blob store (the database must exist)."""
    from openckpt.hub.db.engine import Database
    from openckpt.hub.settings import Settings
    from openckpt.store.url import open_store

    with _session(data_dir, database_url, write=False):
        pass  # refuses a missing or foreign database, like every local admin command
    settings = Settings.configured(data_dir=data_dir, database_url=database_url)
    settings = replace(settings, data_dir=settings.data_dir.resolve())
    db = Database(settings.database())
    try:
        yield settings, db, open_store(settings.storage_url, settings.data_dir)
    finally:
        db.dispose()


@contextmanager
def _phases() -> Iterator[Callable[[str, int, int | None], None]]:
    """A spinner on stderr naming the current phase (only on a terminal)."""
    console = err()
    columns = (SpinnerColumn(), TextColumn("{task.description}"))
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("starting", total=None)

        def note(phase: str, done: int, total: int | None) -> None:
            bar.update(task, description=phase if total is None else f"{phase} {done}/{total}")

        yield note


@guard
def gc_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would go; delete nothing.")] = False,
    grace: Annotated[
        str, typer.Option(help="Keep unreferenced objects younger than this (uploads in flight): 90s, 30m, 1h, 2d.")
    ] = "1h",
    as_json: AsJson = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Remove blobs, xorbs and Xet files no commit uses, and what killed uploads left behind."""
    from openckpt.hub.services.storage.gc import collect

    period = parse_duration(grace)
    with _hub(data_dir, database_url) as (settings, db, store), _phases() as note:
        report = collect(
            db,
            store,
            grace=period,
            url_ttl=timedelta(seconds=settings.signed_url_ttl),
            dry_run=dry_run,
            multipart_dir=settings.data_dir / "multipart",
            progress=note,
        )
    if as_json:
        print_json(report.as_dict())
        return
    verb = "would remove" if dry_run else "removed"
    table = Table(title=f"storage gc ({'dry run, ' if dry_run else ''}grace {grace})", title_justify="left")
    table.add_column("what")
    table.add_column(verb, justify="right")
    table.add_column("bytes", justify="right")
    table.add_row("unreachable commits", str(report.commits), "")
    table.add_row("unused trees", str(report.trees), "")
    table.add_row("blobs", str(report.blobs), human_bytes(report.blob_bytes))
    table.add_row("Xet files", str(report.xet_files), "")
    table.add_row("xorbs", str(report.xorbs), human_bytes(report.xorb_bytes))
    table.add_row("orphan objects", str(report.orphans), human_bytes(report.orphan_bytes))
    table.add_row("abandoned uploads", "-" if dry_run else str(report.abandoned), "")
    table.add_row("[bold]total[/]", "", f"[bold]{human_bytes(report.bytes_reclaimed)}[/]")
    out().print(table)
    if report.spared:
        out().print(f"{report.spared} object(s) were written again during the sweep and kept")


@guard
def fsck_command(
    deep: Annotated[bool, typer.Option("--deep", help="Read every object back and re-hash it.")] = False,
    as_json: AsJson = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Check that every row of the hub names stored objects that agree with it; exit 1 if anything is wrong."""
    from openckpt.hub.services.storage.fsck import check

    with _hub(data_dir, database_url) as (_, db, store), _phases() as note:
        report = check(db, store, deep=deep, progress=note)
    if as_json:
        print_json(report.as_dict())
    else:
        _print_fsck(report, deep)
    if not report.ok:
        raise typer.Exit(EXIT_FINDINGS)


def _print_fsck(report: FsckReport, deep: bool) -> None:
    checked = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in sorted(report.checked.items()))
    out().print(f"checked {checked or 'nothing'}{' (deep)' if deep else ''}")
    if report.unreferenced_objects:
        out().print(f"{report.unreferenced_objects} store object(s) no row names: `openckpt admin gc` reclaims them")
    if report.ok:
        out().print("[green]no problems[/]")
        return
    out().print(f"[red]{len(report.problems)} problem(s):[/]")
    for p in report.problems:  # one per line, hashes unbroken: easy to grep
        out().print(f"[bold]{p.kind}[/] {escape(p.subject)}: {escape(p.detail)}", soft_wrap=True)
