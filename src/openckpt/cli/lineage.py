"""``openckpt lineage verify DIR|REPO[@REV]``: does the model come, by its weights, from the base it declares?

Exit codes: 0 consistent, 1 not derived, 6 unverifiable (a base absent, private, gated or unreachable, or none
declared); errors exit as every command's do (2 usage, 3 the model itself not found, 4 auth, 5 network).

``--card`` records the verdict in a directory's README.md, ``--push`` commits it to a hub repo's card (a block of its
"Bias, Risks, and Limitations" section, :mod:`openckpt.governance.provenance_card`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from openckpt.cli._output import EXIT_FINDINGS, err, fmt_float, guard, out, print_json
from openckpt.cli._remote import Endpoint, Token, remote

if TYPE_CHECKING:
    from openckpt.governance.lineage import Edge
    from openckpt.governance.provenance import Unavailable

__all__ = ["EXIT_UNVERIFIABLE", "lineage_app"]

EXIT_UNVERIFIABLE = 6
"""The claim could not be checked: a declared base is absent, private, gated or unreachable, or none is declared."""

lineage_app = typer.Typer(
    help="Lineage of models: check by the weights that a model comes from its declared base.", no_args_is_help=True
)

_STYLE = {"consistent": "green", "not_derived": "red", "unverifiable": "yellow"}
_SHOWN = 10


def _overrides(values: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for value in values:
        key, sep, path = value.rpartition("=")
        out[key if sep else ""] = Path(path)
    return out


def _resolver(overrides: dict[str, Path], *, offline: bool, endpoint: str | None, token: str | None) -> Any:
    from openckpt.governance.provenance import Unavailable

    def resolve(edge: Edge) -> Path | Unavailable:
        path = overrides.get(edge.base) or overrides.get("")
        if path is not None:
            return path if path.exists() else Unavailable(f"{path} does not exist")
        if Path(edge.base).is_dir():
            return Path(edge.base)
        if "://" in edge.base:
            return Unavailable("an id of another hub: only repos of this hub are fetched")
        if offline:
            return Unavailable("not fetched (--offline)")
        from openckpt.client.weights import fetch_weights, why_unavailable

        try:
            return fetch_weights(edge.base, revision=edge.revision, endpoint=endpoint, token=token)
        except Exception as e:
            reason = why_unavailable(e)
            if reason is None:
                raise
            return Unavailable(reason)

    return resolve


def _tensor_table(parent: dict[str, Any], show_all: bool) -> Table | None:
    rows = [t for t in parent["tensors"] if show_all or (t["status"] != "identical" and t["informative"])]
    if not show_all:
        rows = sorted(rows, key=lambda t: (t["cosine"] is not None, t["cosine"] or 0.0))[:_SHOWN]
    if not rows:
        return None
    table = Table(box=None)
    for column in ("tensor", "status", "dtype", "shape", "cosine", "rel L2", "note"):
        table.add_column(column, overflow="fold", justify="right" if column in ("cosine", "rel L2") else "left")
    for t in rows:
        table.add_row(
            escape(t["name"]),
            t["status"],
            t["dtype"],
            str(t["shape"]),
            fmt_float(t["cosine"]),
            fmt_float(t["rel_l2"]),
            escape(t["note"] or ""),
        )
    return table


def _module_table(parent: dict[str, Any], show_all: bool) -> Table | None:
    rows = [m for m in parent["modules"] if show_all or not m["ok"]]
    if not rows:
        return None
    table = Table(box=None)
    for column in ("module", "base weight", "lora_A", "lora_B", "update", "note"):
        table.add_column(column, overflow="fold")
    for m in rows:
        table.add_row(
            escape(m["module"]),
            str(m.get("base_shape", "-")),
            str(m.get("lora_A", "-")),
            str(m.get("lora_B", "-")),
            fmt_float(m.get("rel_update")),
            escape(m.get("note", "")),
        )
    return table


_FIGURES = (
    "identical",
    "changed",
    "missing",
    "added",
    "fraction_identical",
    "related_fraction",
    "median_cosine",
    "mean_cosine",
    "min_cosine",
    "median_rel_l2",
    "modules",
    "fitting",
    "rank",
    "median_rel_update",
)


def _print(result: dict[str, Any], target: str, show_all: bool) -> None:
    console = out()
    verdict = result["verdict"]
    console.print(
        f"[bold]{escape(target)}[/] ({escape(str(result['relation']))}) → "
        f"[bold {_STYLE[verdict]}]{verdict}[/]: {escape(result['reason'])}",
        soft_wrap=True,
    )
    for parent in result["parents"]:
        console.print(
            f"  base {escape(parent['base'])}: [{_STYLE[parent['verdict']]}]{parent['verdict']}[/] "
            f"— {escape(parent['reason'])}",
            soft_wrap=True,
        )
        figures = [
            f"{k} {fmt_float(v) if isinstance(v, float) else v}"
            for k, v in parent["summary"].items()
            if k in _FIGURES and v is not None
        ]
        if figures:
            console.print("    " + ", ".join(figures), soft_wrap=True)
        for note in parent["notes"]:
            console.print(f"    [dim]{escape(note)}[/]", soft_wrap=True)
        for table in (_module_table(parent, show_all), _tensor_table(parent, show_all)):
            if table is not None:
                console.print(table)
    t = result["thresholds"]
    console.print(
        f"[dim]consistent when ≥ {t['min_related']:.0%} of the base's informative parameters have cosine "
        f"≥ {t['related_cosine']} with the model's[/]"
    )


@lineage_app.command("verify")
def verify_command(
    target: Annotated[str, typer.Argument(metavar="DIR|REPO[@REV]", help="A model directory, or owner/name[@rev].")],
    base: Annotated[
        list[str] | None,
        typer.Option("--base", metavar="[ID=]PATH", help="Read base ID (or the one declared base) from PATH."),
    ] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Fetch no base from the hub.")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="List every tensor and adapted module.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict and its figures as JSON.")] = False,
    card: Annotated[bool, typer.Option("--card", help="Record the verdict in the directory's README.md.")] = False,
    push: Annotated[bool, typer.Option("--push", help="Commit the verdict to the hub repo's card.")] = False,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Compare a model with each base it declares (card base_model, openckpt.json lineage, adapter_config.json),
    tensor by tensor, one pair of tensors in memory at a time.

    Verdicts: consistent (a fine-tune, quantization, adapter or merge of the base, as base_model_relation says),
    not_derived (the weights do not come from it), unverifiable (a base cannot be read). Exit codes: 0 consistent,
    1 not_derived, 6 unverifiable; errors as for every command. Bases that are directories on disk are read from
    there; others are fetched from the hub (safetensors, configs and cards only).

    With --card (a directory) or --push (a hub repo) the verdict and its figures go into the model card, in its
    "Bias, Risks, and Limitations" section, replacing an earlier verdict there.
    """
    local = Path(target).exists()
    if push and local:
        raise typer.BadParameter(
            "--push is for hub repos; use --card to update a directory's README.md", param_hint="--push"
        )
    if card and not local:
        raise typer.BadParameter(
            "--card is for directories; use --push to commit to a hub repo's card", param_hint="--card"
        )
    result, directory = _verify(target, base or [], offline=offline, endpoint=endpoint, token=token)
    recorded = _record(result, directory, target, card=card, push=push, endpoint=endpoint, token=token)
    if as_json:
        print_json({**result, "card": recorded} if card or push else result)
    else:
        _print(result, target, show_all)
    if "path" in recorded:
        err().print(f"[green]recorded[/] the verdict in {escape(recorded['path'])}", soft_wrap=True)
    elif "commit" in recorded:
        err().print(f"[green]committed[/] the verdict to the card: {escape(recorded['commit_url'])}", soft_wrap=True)
    if result["verdict"] == "not_derived":
        raise typer.Exit(EXIT_FINDINGS)
    if result["verdict"] == "unverifiable":
        raise typer.Exit(EXIT_UNVERIFIABLE)


@guard
@remote
def _verify(
    target: str, base: list[str], *, offline: bool, endpoint: str | None, token: str | None
) -> tuple[dict[str, Any], Path]:
    from openckpt.governance.provenance import declared_edges, verify_lineage

    if Path(target).exists():
        directory, name = Path(target), Path(target).resolve().name
    else:
        from openckpt.client.api import split_revision
        from openckpt.client.weights import fetch_weights

        repo_id, revision = split_revision(target)
        directory, name = fetch_weights(repo_id, revision=revision, endpoint=endpoint, token=token), target
    overrides = _overrides(base)
    resolve = _resolver(overrides, offline=offline, endpoint=endpoint, token=token)
    edges = declared_edges(directory)
    relation = edges[0].relation if edges else "finetune"
    bases: dict[str, Path | Unavailable] = {e.base: resolve(e) for e in edges}
    if not edges:
        bases = {key or str(path): path for key, path in overrides.items()}
    return verify_lineage(directory, bases, relation=relation if bases else None, name=name).to_dict(), directory


@guard
def _record(
    result: dict[str, Any],
    directory: Path,
    target: str,
    *,
    card: bool,
    push: bool,
    endpoint: str | None,
    token: str | None,
) -> dict[str, Any]:
    """Write the verdict into the directory's card (atomically) or commit it to the repo's, on the fetched commit."""
    import datetime

    from openckpt.governance.provenance_card import update_card

    if not (card or push):
        return {}
    readme = directory / "README.md"
    text = readme.read_text("utf-8") if readme.is_file() else None
    name = Path(target).resolve().name if card else target.partition("@")[0].rsplit("/", 1)[-1]
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    new = update_card(text, result, model_name=name, checked_on=today).encode()
    if card:
        from openckpt.fsutil import atomic_write

        atomic_write(readme, new)
        return {"written": True, "path": str(readme)}
    from huggingface_hub import CommitOperationAdd

    from openckpt.client.api import hf_api, split_revision

    repo_id, revision = split_revision(target)
    operations = [CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=new)]
    info = hf_api(endpoint, token).create_commit(
        repo_id,
        operations,
        revision=revision,
        commit_message=f"Record the provenance verdict: {result['verdict'].replace('_', ' ')}",
        parent_commit=directory.name,  # the commit the weights were fetched at (the cache names snapshots by it)
    )
    return {"written": True, "repo": repo_id, "commit": info.oid, "commit_url": info.commit_url}
