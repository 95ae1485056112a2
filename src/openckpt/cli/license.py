"""``openckpt license check DIR|REPO``: may a model carry its license, given its ancestors', and what is still owed?

Exit codes: 0 ok, 1 a violation, a case for human review or obligations pending, 2 errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from openckpt.cli._output import EXIT_FINDINGS, guard, out, print_json
from openckpt.cli._remote import Endpoint, Token, remote

__all__ = ["license_app"]

license_app = typer.Typer(
    help="License compatibility and obligations of models and their ancestors.", no_args_is_help=True
)

_STYLE = {"ok": "green", "obligations pending": "yellow", "needs human review": "magenta", "violation": "red"}


def _local(directory: Path, policy_file: Path | None) -> dict[str, Any]:
    from openckpt.governance import Ancestor, check, read_directory
    from openckpt.governance.policy import evaluate, load_policy

    subject = read_directory(directory)
    ancestors = [Ancestor(e.base, subject.base_licenses.get(e.base), e.relation) for e in subject.edges]
    report = check(subject, ancestors)
    if policy_file is not None:
        report = report.with_findings(evaluate(load_policy(policy_file), report))
    return report.to_dict()


def _print(result: dict[str, Any], target: str) -> None:
    console = out()
    verdict = result["verdict"]
    console.print(
        f"[bold]{escape(target)}[/]: license {escape(str(result['license']))} → "
        f"[bold {_STYLE.get(verdict, 'white')}]{verdict}[/]",
        soft_wrap=True,
    )
    for a in result["ancestors"]:
        where = "local" if a.get("local") else "external"
        console.print(
            f"  ancestor {escape(a['id'])} ({a['relation']}, {where}): {escape(str(a['license']))}", soft_wrap=True
        )
    for f in result["findings"]:
        colour = "red" if f["level"] == "violation" else "magenta"
        console.print(
            f"  [{colour}]{f['level']}[/] {escape(f['message'])} [dim]({escape(f['clause'])})[/]", soft_wrap=True
        )
    for o in result["obligations"]:
        if o["status"] != "met":
            mark = "[yellow]pending[/]" if o["status"] == "pending" else "[dim]manual[/]"
            console.print(f"  {mark} {escape(o['text'])} [dim]({escape(o['clause'])})[/]", soft_wrap=True)


@license_app.command("check")
@guard
@remote
def check_command(
    target: Annotated[str, typer.Argument(metavar="DIR|REPO", help="A model directory, or owner/name[@rev] on a hub.")],
    policy: Annotated[
        Path | None, typer.Option("--policy", help="A policy YAML file to apply.", exists=True, dir_okay=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Check the declared license against every ancestor's; list violations and obligations still to fulfil.

    A directory's bases come from its card, openckpt.json and adapter_config.json; their licenses from the card's
    base_model_license (unknown otherwise: needs human review). A repo is checked by the hub, which knows the
    licenses of the models it holds.
    """
    if Path(target).is_dir():
        result = _local(Path(target), policy)
    else:
        from openckpt.client.api import split_revision
        from openckpt.client.licenses import license_report
        from openckpt.governance.policy import load_policy

        repo_id, revision = split_revision(target)
        rules = load_policy(policy).to_dict() if policy is not None else None
        if rules is not None and rules["allowed_licenses"] is None:
            del rules["allowed_licenses"]
        result = license_report(repo_id, revision=revision, policy=rules, endpoint=endpoint, token=token)
    if as_json:
        print_json(result)
    else:
        _print(result, target)
    if result["verdict"] != "ok":
        raise typer.Exit(EXIT_FINDINGS)
