"""``openckpt reproduce DIR|REPO[@REV] [--out DIR] [--steps N] [--data FILE] [--push]``: re-run a recorded training
from its recipe and compare the result with the recorded one."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from openckpt.cli._output import err, guard, out, print_json
from openckpt.cli._remote import Endpoint, Token, remote

if TYPE_CHECKING:
    from openckpt.finetune.licensing import BaseModel
    from openckpt.finetune.reproduce import Recorded, ReproduceResult

__all__ = ["reproduce_command"]


def _source(source: str, endpoint: str | None, token: str | None) -> tuple[Path, str | None, str | None, str | None]:
    """(directory, repo id, revision, commit) of a local recorded run or a pulled hub repo."""
    if Path(source).is_dir():
        return Path(source), None, None, None
    from openckpt.client.api import split_revision
    from openckpt.client.pull import pull

    try:
        repo_id, revision = split_revision(source)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="DIR|REPO[@REV]") from None
    pulled = pull(repo_id, revision=revision, endpoint=endpoint, token=token)
    err().print(f"pulled {escape(repo_id)}@{escape(pulled.revision)} (commit {pulled.commit[:12]})")
    return pulled.directory, repo_id, revision, pulled.commit


def _base(recorded: Recorded, endpoint: str | None, token: str | None) -> BaseModel:
    """The recorded base: the hub repo at the recorded revision, or the local directory it was read from."""
    from openckpt.finetune.licensing import BaseModel

    config = recorded.recipe.config
    if config.get("base_revision"):
        from openckpt.client.pull import pull

        pulled = pull(str(config["base"]), revision=str(config["base_revision"]), endpoint=endpoint, token=token)
        return BaseModel(pulled.directory, pulled.repo_id, pulled.commit)
    path = Path(str(config.get("base_path") or ""))
    if not path.is_dir():
        raise typer.BadParameter(
            f"the recorded base was the local directory {path}, which is not here", param_hint="DIR|REPO[@REV]"
        )
    err().print(f"[yellow]warning:[/] the base is the local directory {escape(str(path))}: no revision pins it")
    return BaseModel(path, str(config.get("base") or path.name))


def _push(result: ReproduceResult, directory: Path, repo_id: str, commit: str | None, **remote: Any) -> str:
    from huggingface_hub import CommitOperationAdd

    from openckpt.client.api import hf_api
    from openckpt.finetune.reproduce_card import update_card

    card = directory / "README.md"
    text = update_card(
        card.read_text("utf-8") if card.is_file() else None, result.to_dict(), model_name=repo_id.split("/")[-1]
    )
    api = hf_api(remote["endpoint"], remote["token"])
    info = api.create_commit(
        repo_id,
        [CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=text.encode())],
        commit_message="Reproduction results (openckpt reproduce)",
        parent_commit=commit,
    )
    return str(info.commit_url)


def _print(result: ReproduceResult) -> None:
    console = out()
    c = result.comparison
    color = "green" if result.reproduced else "red"
    differ = f", {len(c.differing)} differ (max |diff| {c.max_abs_diff:.3g})" if c.differing else ""
    console.print(f"[{color}]{c.verdict}[/]: {escape(c.what)}, {c.tensors} tensors{differ}")
    for name, (a, b) in sorted(c.metrics.items()):
        console.print(f"  {escape(name)}: recorded {a}, re-run {b}")
    for note in c.notes:
        console.print(f"  {escape(note)}")
    expected = "expected" if result.expected_bitwise else "not expected (other device or nondeterministic kernels)"
    console.print(f"bitwise identity {expected}; re-run in {escape(str(result.output))}", soft_wrap=True)
    for w in result.warnings:
        err().print(f"[yellow]environment:[/] {escape(w)}", soft_wrap=True)


@guard
@remote
def reproduce_command(
    source: Annotated[str, typer.Argument(metavar="DIR|REPO[@REV]", help="A recorded run: a dir, or a hub repo.")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", "--output", help="Fresh directory for the re-run. Default: a temp dir.")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(min=1, help="Re-run only the first N steps; compare with the checkpoint at step N.")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="The data file, if not at its recorded path (its sha256 must match).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="Default: the recorded device if present here.")] = None,
    rtol: Annotated[float, typer.Option(help="Relative tolerance for weights when bitwise is not expected.")] = 1e-3,
    atol: Annotated[float, typer.Option(help="Absolute tolerance for weights.")] = 1e-5,
    push: Annotated[bool, typer.Option("--push", help="Commit the result to the hub repo's card.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Re-run a recorded openckpt finetune (or a CheckpointManager script) from its recipe and compare.

    Same base revision, same data (a file whose sha256 differs is refused, by name), fresh output directory.
    Bitwise where the recorded run was deterministic on this kind of device, else tensor by tensor within
    --rtol/--atol. Environment differences that could explain a mismatch are listed. Exits 1 if not reproduced.
    """
    from openckpt.finetune.reproduce import Tolerance, find_recipe, reproduce_finetune, reproduce_script

    directory, repo_id, _revision, commit = _source(source, endpoint, token)
    if push and repo_id is None:
        raise typer.BadParameter("--push is for hub repos", param_hint="--push")
    recorded = find_recipe(directory)
    tolerance = Tolerance(rtol=rtol, atol=atol)
    target = out_dir or Path(tempfile.mkdtemp(prefix="openckpt-reproduce-"))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"(peft|transformers)\b")
        if recorded.kind == "finetune":
            base = _base(recorded, endpoint, token)
            path = data or Path(str(recorded.recipe.config.get("data_file") or ""))
            result = reproduce_finetune(
                recorded, target, base=base, data=path, steps=steps, device=device, tolerance=tolerance, source=source
            )
        else:
            result = reproduce_script(recorded, target, steps=steps, tolerance=tolerance, source=source)
    summary = result.to_dict()
    if push and repo_id is not None:
        summary["card"] = _push(result, directory, repo_id, commit, endpoint=endpoint, token=token)
    if as_json:
        print_json(summary)
    else:
        _print(result)
        if "card" in summary:
            out().print(f"[green]committed[/] the result to the card: {escape(summary['card'])}")
    if not result.reproduced:
        raise typer.Exit(1)
