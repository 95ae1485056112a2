"""The Typer app behind the ``openckpt`` console script.

Exit codes: 0 success, 1 findings (``verify`` mismatches, ``diff`` differences), 2 errors.
"""

from __future__ import annotations

import typer

from openckpt.cli.accounts import org_app, token_app, user_app
from openckpt.cli.bom import bom_command
from openckpt.cli.card import card_app
from openckpt.cli.convert import convert_command
from openckpt.cli.diff import diff_command
from openckpt.cli.estimate import estimate_command
from openckpt.cli.evaluate import evaluate_app
from openckpt.cli.finetune import finetune_command
from openckpt.cli.inspect import inspect_command
from openckpt.cli.license import license_app
from openckpt.cli.lineage import lineage_app
from openckpt.cli.login import login_command
from openckpt.cli.openness import openness_command
from openckpt.cli.pull import pull_command
from openckpt.cli.push import push_command
from openckpt.cli.repo import repo_app
from openckpt.cli.scan import scan_command
from openckpt.cli.serve import serve_command
from openckpt.cli.signature import signature_app
from openckpt.cli.storage import fsck_command, gc_command
from openckpt.cli.trust import admin_app, key_app
from openckpt.cli.verify import verify_command
from openckpt.cli.xet import xet_ingest_command

__all__ = ["app", "main"]

app = typer.Typer(
    name="openckpt",
    help="Exact, crash-safe, pickle-free AI checkpoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("inspect")(inspect_command)
app.command("verify")(verify_command)
app.command("diff")(diff_command)
app.command("convert")(convert_command)
app.command("scan")(scan_command)
app.add_typer(signature_app, name="signature")
# Governance: model cards, openness, bill of materials.
app.add_typer(card_app, name="card")
app.command("openness")(openness_command)
app.command("bom")(bom_command)
app.add_typer(license_app, name="license")
app.add_typer(lineage_app, name="lineage")
# Reuse: bias evaluations recorded in the card.
app.add_typer(evaluate_app, name="evaluate")
# The hub: run it, administer it locally, and use it as a client.
app.command("serve")(serve_command)
app.add_typer(user_app, name="user")
app.add_typer(org_app, name="org")
app.add_typer(token_app, name="token")
app.add_typer(key_app, name="key")
admin_app.command("gc")(gc_command)
admin_app.command("fsck")(fsck_command)
admin_app.command("xet-ingest")(xet_ingest_command)
app.add_typer(admin_app, name="admin")
app.command("login")(login_command)
app.add_typer(repo_app, name="repo")
app.command("push")(push_command)
app.command("pull")(pull_command)
# Reuse: estimate the memory of a fine-tune, then run it.
app.command("estimate")(estimate_command)
app.command("finetune")(finetune_command)


def main() -> None:
    """Entry point of the console script."""
    app()


if __name__ == "__main__":
    main()
