"""``openckpt evaluate bias REPO[@REV]|DIR --suite fairness|crows-pairs|weat``: bias evaluations into the model card.

A hub repo is pulled, verified and scanned first (anything but clean is refused); a directory is scanned in place.
Results go into the card (``model-index`` and a "Bias, Risks, and Limitations" section): a directory's README.md
is rewritten atomically (``--no-card`` skips it); a hub repo gets a new commit with ``--push``.

Exit codes: 0 evaluated, 2 errors (including a suite that does not fit the model).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from openckpt.cli._gate import refuse_unclean
from openckpt.cli._output import err, guard, out, print_json
from openckpt.cli._remote import Endpoint, Token, remote
from openckpt.evaluate.models import Suite

if TYPE_CHECKING:
    from openckpt.evaluate.report import BiasReport

__all__ = ["bias_command", "evaluate_app"]

evaluate_app = typer.Typer(name="evaluate", help="Evaluate checkpoints: bias and fairness.", no_args_is_help=True)

CARD = "README.md"


def _local_files(directory: Path) -> dict[str, Path]:
    files = {p.relative_to(directory).as_posix(): p for p in sorted(directory.rglob("*")) if p.is_file()}
    return {rel: p for rel, p in files.items() if not {".git", ".cache"} & set(rel.split("/"))}


def _run(suite: Suite, directory: Path, options: dict[str, Any]) -> BiasReport:
    if suite is Suite.fairness:
        from openckpt.evaluate.fairness import evaluate_fairness

        data = options["data"]
        if data is None or not options["sensitive_cols"]:
            raise typer.BadParameter("--suite fairness needs --data CSV and at least one --sensitive-col",
                                     param_hint="--data")  # fmt: skip
        return evaluate_fairness(directory, data, sensitive_cols=options["sensitive_cols"],
                                 text_col=options["text_col"], label_col=options["label_col"],
                                 pos_label=options["pos_label"], limit=options["limit"])  # fmt: skip
    if options["data"] is not None:
        raise typer.BadParameter("--data is for --suite fairness only", param_hint="--data")
    if suite is Suite.crows_pairs:
        from openckpt.evaluate.crows_pairs import evaluate_crows_pairs

        return evaluate_crows_pairs(directory, limit=options["limit"])
    from openckpt.evaluate.weat import evaluate_weat

    return evaluate_weat(directory, permutations=options["permutations"], seed=options["seed"])


def _new_card(directory: Path, report: BiasReport, name: str) -> str:
    """The directory's README.md (generated from openckpt.json when it has none) with ``report`` added."""
    from openckpt.evaluate.card import update_card
    from openckpt.format.manifest import MANIFEST_NAME

    readme = directory / CARD
    text = None
    if readme.is_file():
        text = readme.read_text("utf-8")
    elif (directory / MANIFEST_NAME).is_file():
        from openckpt.governance.cards import generate_card

        text = generate_card(directory, name=name)
    return update_card(text, report, model_name=name)


def _print(report: BiasReport, where: str) -> None:
    console = out()
    table = Table(*report.columns, title=f"{report.title}: {where}")
    for row in report.rows:
        table.add_row(*(escape(c) for c in row))
    console.print(table)
    for note in report.notes:
        console.print(escape(note.replace("**", "").replace("`", "")), soft_wrap=True)


@evaluate_app.command("bias")
@guard
@remote
def bias_command(
    target: Annotated[str, typer.Argument(metavar="REPO[@REV]|DIR", help="A model directory, or a repo on the hub.")],
    suite: Annotated[Suite, typer.Option(help="fairness: classifier; crows-pairs: masked LM; weat: sentence encoder.")],
    data: Annotated[Path | None, typer.Option(help="fairness: a labelled CSV.", dir_okay=False, exists=True)] = None,
    text_col: Annotated[str, typer.Option(help="fairness: the column of texts to classify.")] = "text",
    label_col: Annotated[str, typer.Option(help="fairness: the column of true labels (ids or names).")] = "label",
    sensitive_col: Annotated[
        list[str] | None, typer.Option(help="fairness: a sensitive-feature column (repeat for intersections).")
    ] = None,
    pos_label: Annotated[
        str | None, typer.Option(help="fairness: the positive label (default: id 1 of a binary classifier).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N pairs (crows-pairs) or rows.")] = None,
    permutations: Annotated[int, typer.Option(min=100, help="weat: random re-partitions per test.")] = 10_000,
    seed: Annotated[int, typer.Option(help="weat: seed of the permutation test.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    push: Annotated[bool, typer.Option("--push", help="Commit the updated card to the hub repo.")] = False,
    no_card: Annotated[bool, typer.Option("--no-card", help="Leave a directory's README.md as it is.")] = False,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Run one bias suite on a model offline and record the results in its card."""
    from openckpt.fsutil import atomic_write

    local = Path(target)
    repo_id = commit = revision = None
    if local.is_dir():
        if push:
            raise typer.BadParameter("--push is for hub repos; a directory's README.md is updated without it",
                                     param_hint="--push")  # fmt: skip
        directory, name = local, local.resolve().name
        refuse_unclean(_local_files(directory), what=f"evaluate {target}")
    else:
        from openckpt.client.api import split_revision
        from openckpt.client.pull import pull

        try:
            repo_id, revision = split_revision(target)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="REPO[@REV]") from None
        pulled = pull(repo_id, revision=revision, endpoint=endpoint, token=token)
        refuse_unclean({f.path: pulled.directory / f.path for f in pulled.files}, what=f"evaluate {target}")
        directory, name, commit = pulled.directory, repo_id.split("/")[-1], pulled.commit
    options = {"data": data, "sensitive_cols": sensitive_col or [], "text_col": text_col, "label_col": label_col,
               "pos_label": pos_label, "limit": limit, "permutations": permutations, "seed": seed}  # fmt: skip
    report = _run(suite, directory, options)
    card: dict[str, Any] = {"written": False}
    if repo_id is None and not no_card:
        atomic_write(directory / CARD, _new_card(directory, report, name).encode())
        card = {"written": True, "path": str(directory / CARD)}
    elif repo_id is not None and push:
        from huggingface_hub import CommitOperationAdd

        from openckpt.client.api import hf_api

        text = _new_card(directory, report, name).encode()
        info = hf_api(endpoint, token).create_commit(
            repo_id, [CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=text)], revision=revision,
            commit_message=f"Add {suite.value} bias evaluation", parent_commit=commit,
        )  # fmt: skip
        card = {"written": True, "repo": repo_id, "commit": info.oid, "commit_url": info.commit_url}
    where = f"{repo_id}@{commit[:12]}" if repo_id and commit else str(directory)
    if as_json:
        print_json({"target": target, "commit": commit, "report": report.to_json(), "card": card})
        return
    _print(report, where)
    if "path" in card:
        err().print(f"[green]updated[/] {escape(card['path'])}", soft_wrap=True)
    elif "commit" in card:
        err().print(f"[green]committed[/] the card to {escape(str(repo_id))}: {escape(card['commit_url'])}")
    elif repo_id is not None:
        err().print(f"add --push to commit these results to the card of {escape(repo_id)}")
