"""``openckpt admin xet-ingest``: chunk files the hub stores as whole blobs into its Xet CAS.

The hub ingests what commits add in the background (``OPENCKPT_XET_INGEST``); this command catches up with blobs
stored before, or left behind when a background ingestion failed. hf_xet uploads to the hub's CAS, so the hub must
be serving (at ``--endpoint``, default its public URL); the command itself runs where the hub's database and store
are reachable, like ``admin gc``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from openckpt.cli._output import EXIT_FINDINGS, err, guard, out, print_json
from openckpt.cli.accounts import DatabaseUrl, DataDir
from openckpt.cli.storage import AsJson, _hub

__all__ = ["xet_ingest_command"]


@guard
def xet_ingest_command(
    sha256: Annotated[list[str] | None, typer.Argument(help="sha256 of the blobs to ingest.")] = None,
    all_blobs: Annotated[bool, typer.Option("--all", help="Ingest every blob not yet backed by xorbs.")] = False,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the whole blobs once ingested.")] = False,
    endpoint: Annotated[str | None, typer.Option(help="The hub's URL (default: its public URL).")] = None,
    as_json: AsJson = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Chunk stored blobs (of at least 64 KiB) into the hub's Xet CAS and drop the whole copies; exit 1 if any
    failed (they stay stored as they were)."""
    from openckpt.hub.services.hub_secret import settle_secret
    from openckpt.hub.services.xet.ingest import ingest
    from openckpt.hub.services.xet.tokens import CAS_PATH

    if not all_blobs and not sha256:
        raise typer.BadParameter("name the blobs to ingest, or pass --all")
    with _hub(data_dir, database_url) as (settings, db, store):
        settings = replace(settings, secret=settle_secret(db, settings))
        url = (endpoint or settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")
        with err().status("ingesting"):
            report = ingest(
                db, store, settings, cas_url=url + CAS_PATH, sha256s=None if all_blobs else sha256, drop=not keep
            )
    if as_json:
        print_json({"ingested": report.ingested, "dropped": report.dropped, "failed": report.failed})
    else:
        out().print(f"{len(report.ingested)} file(s) ingested, {len(report.dropped)} whole blob(s) dropped")
        for name, why in report.failed.items():
            out().print(f"[red]failed[/] {name}: {why}", soft_wrap=True)
    if report.failed:
        raise typer.Exit(EXIT_FINDINGS)
