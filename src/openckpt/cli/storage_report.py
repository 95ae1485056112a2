"""``openckpt admin storage`` (logical, deduplicated and compressed bytes per repo) and ``openckpt admin compress``
(pack the xorbs still kept as uploaded now, rather than after the next commit) and ``openckpt admin deltas`` (store
derivatives as deltas against their bases now), on the hub's database and store."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from openckpt.cli._output import guard, human_bytes, out, print_json
from openckpt.cli.accounts import DatabaseUrl, DataDir
from openckpt.cli.storage import AsJson, _hub

__all__ = ["compress_command", "deltas_command", "storage_command"]


def _ratio(before: float, after: float) -> str:
    return f"{before / after:.2f}x" if after else "-"


@guard
def storage_command(
    top: Annotated[int, typer.Option(help="Repos listed, the largest first.")] = 20,
    as_json: AsJson = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Bytes per repo: its files (history), after dedup, and stored (after compression at rest; of it, the xorbs
    stored as deltas against a base)."""
    from openckpt.hub.services.storage.accounting import account

    with _hub(data_dir, database_url) as (_, db, store):
        report = account(db, store)
    if as_json:
        print_json(report.as_dict(xorbs=0))
        return
    table = Table(title="storage", title_justify="left")
    for name in ("repo", "history", "deduplicated", "stored", "of it deltas", "dedup", "compression", "total"):
        table.add_column(name, justify="left" if name == "repo" else "right")
    repos = sorted(report.repos.values(), key=lambda r: (-r.physical_bytes, r.repo_id))
    for usage, name in [*((r, r.repo_id) for r in repos[:top]), (report.total, "[bold]all[/]")]:
        table.add_row(
            name,
            human_bytes(usage.history_bytes),
            human_bytes(round(usage.deduplicated_bytes)),
            human_bytes(round(usage.physical_bytes)),
            human_bytes(round(usage.delta_bytes)),
            _ratio(usage.history_bytes, usage.deduplicated_bytes),
            _ratio(usage.deduplicated_bytes, usage.physical_bytes),
            _ratio(usage.history_bytes, usage.physical_bytes),
        )
    out().print(table)


@guard
def compress_command(
    as_json: AsJson = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Pack every xorb still kept as uploaded (safe while the hub serves: each switches in one transaction)."""
    from openckpt.hub.services.compression import compress
    from openckpt.hub.services.stored_files import raw_blobs

    with _hub(data_dir, database_url) as (_, db, store):
        report = compress(db, raw_blobs(store))
    before = sum(b for b, _ in report.packed.values())
    after = sum(a for _, a in report.packed.values())
    if as_json:
        summary = {"packed": len(report.packed), "kept": len(report.kept), "failed": report.failed}
        print_json({**summary, "bytesBefore": before, "bytesAfter": after})
        return
    out().print(
        f"packed {len(report.packed)} xorb(s): {human_bytes(before)} -> {human_bytes(after)}; "
        f"{len(report.kept)} kept as uploaded (nothing saved), {len(report.failed)} failed"
    )
    for xorb, why in report.failed.items():
        out().print(f"  {xorb}: {why}")


@guard
def deltas_command(
    as_json: AsJson = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Store as deltas against their bases the xorbs of derivatives (a declared base_model the hub holds, or a stored
    file with the same tensors) where that saves (safe while the hub serves: each switches in one transaction)."""
    from openckpt.hub.services.deltas import encode_deltas
    from openckpt.hub.services.stored_files import raw_blobs

    with _hub(data_dir, database_url) as (_, db, store):
        report = encode_deltas(db, raw_blobs(store))
    before = sum(b for b, _ in report.deltas.values())
    after = sum(a for _, a in report.deltas.values())
    if as_json:
        summary = {"deltas": len(report.deltas), "skipped": len(report.skipped), "failed": report.failed}
        print_json({**summary, "bytesBefore": before, "bytesAfter": after})
        return
    out().print(
        f"{len(report.deltas)} xorb(s) stored as deltas: {human_bytes(before)} -> {human_bytes(after)}; "
        f"{len(report.skipped)} without a base or a saving, {len(report.failed)} failed"
    )
    for xorb, why in report.failed.items():
        out().print(f"  {xorb}: {why}")
