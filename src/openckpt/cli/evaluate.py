"""``openckpt evaluate bias REPO[@REV]|DIR --suite fairness|crows-pairs|weat``: bias evaluations into the model card.

``openckpt evaluate backdoor REPO[@REV]|DIR``: a backdoor scan (Neural Cleanse, trigger-token search or a causal-LM
probe, by the kind of model) into the same card section; its PNGs go to DIR/backdoor, or into the commit with --push.

A hub repo is pulled, verified and scanned first (anything but clean is refused); a directory is scanned in place.
Results go into the card (``model-index`` and a "Bias, Risks, and Limitations" section): a directory's README.md
is rewritten atomically (``--no-card`` skips it); a hub repo gets a new commit with ``--push``.

Exit codes: 0 evaluated, 2 errors (including a suite that does not fit the model).
"""

from __future__ import annotations

from dataclasses import dataclass
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

__all__ = ["backdoor_command", "bias_command", "evaluate_app"]

evaluate_app = typer.Typer(
    name="evaluate", help="Evaluate checkpoints: bias, fairness and backdoors.", no_args_is_help=True
)

CARD = "README.md"


def _local_files(directory: Path) -> dict[str, Path]:
    files = {p.relative_to(directory).as_posix(): p for p in sorted(directory.rglob("*")) if p.is_file()}
    return {rel: p for rel, p in files.items() if not {".git", ".cache"} & set(rel.split("/"))}


def _run(suite: Suite, directory: Path, options: dict[str, Any]) -> BiasReport:
    if suite is Suite.fairness:
        from openckpt.evaluate.fairness import evaluate_fairness

        data = options["data"]
        if data is None or not options["sensitive_cols"]:
            raise typer.BadParameter(
                "--suite fairness needs --data CSV and at least one --sensitive-col", param_hint="--data"
            )
        return evaluate_fairness(
            directory,
            data,
            sensitive_cols=options["sensitive_cols"],
            text_col=options["text_col"],
            label_col=options["label_col"],
            pos_label=options["pos_label"],
            limit=options["limit"],
        )
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


@dataclass(frozen=True)
class _Model:
    """The model evaluated: its directory and name; for a pulled hub repo, its id, the revision asked and commit."""

    directory: Path
    name: str
    repo_id: str | None = None
    revision: str | None = None
    commit: str | None = None

    def where(self) -> str:
        """``repo@commit`` for a hub repo, else the directory."""
        return f"{self.repo_id}@{self.commit[:12]}" if self.repo_id and self.commit else str(self.directory)


def _open(target: str, *, push: bool, endpoint: str | None, token: str | None) -> _Model:
    """A model directory, or a hub repo pulled; refused unless clean."""
    local = Path(target)
    if local.is_dir():
        if push:
            hint = "--push is for hub repos; a directory's README.md is updated without it"
            raise typer.BadParameter(hint, param_hint="--push")
        refuse_unclean(_local_files(local), what=f"evaluate {target}")
        return _Model(local, local.resolve().name)
    from openckpt.client.api import split_revision
    from openckpt.client.pull import pull

    try:
        repo_id, revision = split_revision(target)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="REPO[@REV]") from None
    pulled = pull(repo_id, revision=revision, endpoint=endpoint, token=token)
    refuse_unclean({f.path: pulled.directory / f.path for f in pulled.files}, what=f"evaluate {target}")
    return _Model(pulled.directory, repo_id.split("/")[-1], repo_id, revision, pulled.commit)


def _record(
    report: BiasReport,
    model: _Model,
    *,
    push: bool,
    no_card: bool,
    message: str,
    endpoint: str | None,
    token: str | None,
    extra: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """Write the card with ``report`` (a directory's, atomically) or commit it (and ``extra`` files) to the hub."""
    from openckpt.fsutil import atomic_write

    directory = model.directory
    if model.repo_id is None and not no_card:
        atomic_write(directory / CARD, _new_card(directory, report, model.name).encode())
        return {"written": True, "path": str(directory / CARD)}
    if model.repo_id is None or model.commit is None or not push:
        return {"written": False}
    from huggingface_hub import CommitOperationAdd

    from openckpt.client.api import hf_api

    text = _new_card(directory, report, model.name).encode()
    operations = [CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=text)]
    operations += [CommitOperationAdd(path_in_repo=k, path_or_fileobj=str(v)) for k, v in (extra or {}).items()]
    api = hf_api(endpoint, token)
    info = api.create_commit(
        model.repo_id, operations, revision=model.revision, commit_message=message, parent_commit=model.commit
    )
    return {"written": True, "repo": model.repo_id, "commit": info.oid, "commit_url": info.commit_url}


def _said(card: dict[str, Any], repo_id: str | None) -> None:
    if "path" in card:
        err().print(f"[green]updated[/] {escape(card['path'])}", soft_wrap=True)
    elif "commit" in card:
        err().print(f"[green]committed[/] the card to {escape(str(repo_id))}: {escape(card['commit_url'])}")
    elif repo_id is not None:
        err().print(f"add --push to commit these results to the card of {escape(repo_id)}")


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
    text_col: Annotated[
        str, typer.Option("--text-column", "--text-col", help="fairness: the column of texts to classify.")
    ] = "text",
    label_col: Annotated[
        str, typer.Option("--label-column", "--label-col", help="fairness: the column of true labels (ids or names).")
    ] = "label",
    sensitive_col: Annotated[
        list[str] | None,
        typer.Option(
            "--sensitive-column",
            "--sensitive-col",
            help="fairness: a sensitive-feature column (repeat for intersections).",
        ),
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
    model = _open(target, push=push, endpoint=endpoint, token=token)
    options = {
        "data": data,
        "sensitive_cols": sensitive_col or [],
        "text_col": text_col,
        "label_col": label_col,
        "pos_label": pos_label,
        "limit": limit,
        "permutations": permutations,
        "seed": seed,
    }
    report = _run(suite, model.directory, options)
    message = f"Add {suite.value} bias evaluation"
    card = _record(report, model, push=push, no_card=no_card, message=message, endpoint=endpoint, token=token)
    if as_json:
        print_json({"target": target, "commit": model.commit, "report": report.to_json(), "card": card})
        return
    _print(report, model.where())
    _said(card, model.repo_id)


def _progress_bars() -> tuple[Any, Any]:
    """(rich Progress on stderr, a ``(label, done, total)`` callback that draws one bar per label)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err(),
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def update(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bars.add_task(label, total=total)
        bars.update(tasks[label], completed=done, total=total)

    return bars, update


@evaluate_app.command("backdoor")
@guard
@remote
def backdoor_command(
    target: Annotated[str, typer.Argument(metavar="REPO[@REV]|DIR", help="A model directory, or a repo on the hub.")],
    data: Annotated[
        Path | None,
        typer.Option(
            help="Clean inputs: images (a folder, .npz or .pt), texts (.txt lines, .csv, .jsonl) or LM prompts. "
            "Default: a synthetic set (weaker).",
            exists=True,
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most N clean inputs or prompts.")] = None,
    budget: Annotated[
        float | None, typer.Option(min=1, help="Seconds of optimisation at most (results then depend on speed).")
    ] = None,
    steps: Annotated[int, typer.Option(min=10, help="Images: optimisation steps per class.")] = 300,
    max_tokens: Annotated[int, typer.Option(min=1, max=3, help="Texts: the longest trigger searched.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    device: Annotated[str, typer.Option(help="torch device: cpu, cuda, cuda:1...")] = "cpu",
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch CPU threads (default: torch's; 1 is fastest for small models).")
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Images: where the recovered masks and patterns go as PNGs (default: DIR/backdoor).",
            file_okay=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    push: Annotated[bool, typer.Option("--push", help="Commit the updated card (and PNGs) to the hub repo.")] = False,
    no_card: Annotated[bool, typer.Option("--no-card", help="Leave a directory's README.md as it is.")] = False,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Scan a model for a planted backdoor trigger offline and record the results in its card."""
    import tempfile

    from openckpt.evaluate.backdoor import scan_backdoor

    model = _open(target, push=push, endpoint=endpoint, token=token)
    with tempfile.TemporaryDirectory() as tmp:
        out_path = out_dir
        if out_path is None and model.repo_id is None and not no_card:
            out_path = model.directory / "backdoor"
        elif out_path is None and push:
            out_path = Path(tmp) / "backdoor"
        bars, update = _progress_bars()
        with bars:
            report = scan_backdoor(
                model.directory,
                data=data,
                limit=limit,
                budget=budget,
                steps=steps,
                max_tokens=max_tokens,
                seed=seed,
                device=device,
                threads=threads,
                out=out_path,
                progress=None if as_json else update,
            )
        extra = {p: out_path.parent / p for p in report.images} if out_path is not None else {}
        card = _record(
            report.to_bias_report(),
            model,
            push=push,
            no_card=no_card,
            message=f"Add backdoor scan: {report.verdict}",
            endpoint=endpoint,
            token=token,
            extra=extra,
        )
    if as_json:
        print_json({"target": target, "commit": model.commit, "report": report.to_json(), "card": card})
        return
    _print(report.to_bias_report(), model.where())
    _said(card, model.repo_id)
