"""The Typer app behind the ``openckpt`` console script: commands grouped by panel, global ``--version``/``--debug``.

Exit codes, the same for every command (:mod:`openckpt.cli._errors` maps errors to them): 0 ok; 1 findings or
differences (``verify``, ``pull`` and ``scan`` mismatches or unsafe files, ``diff`` differences); 2 usage (bad
arguments, input the command cannot use); 3 not found (file, repo, revision); 4 authentication or permission; 5
network or server (no hub answers, not a hub, a server error). Errors are one line on stderr; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import inspect
import re
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from openckpt.cli._output import PASS_THROUGH, handle, set_debug
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
from openckpt.cli.login import login_command, logout_command, whoami_command
from openckpt.cli.mirror import mirror_app
from openckpt.cli.openness import openness_command
from openckpt.cli.pull import pull_command
from openckpt.cli.push import push_command
from openckpt.cli.repo import repo_app
from openckpt.cli.reproduce import reproduce_command
from openckpt.cli.scan import scan_command
from openckpt.cli.serve import serve_command
from openckpt.cli.signature import signature_app
from openckpt.cli.storage import fsck_command, gc_command
from openckpt.cli.storage_report import compress_command, deltas_command, storage_command
from openckpt.cli.trust import admin_app, key_app
from openckpt.cli.verify import verify_command
from openckpt.cli.xet import xet_ingest_command

__all__ = ["app", "main"]

EPILOG = (
    "Exit codes: 0 ok, 1 findings or differences, 2 usage, 3 not found, 4 authentication or permission, "
    "5 network or server. Add --debug before the command for a traceback."
)

LOCAL, TRUST, GOVERNANCE, REUSE = "Local checkpoint tools", "Trust", "Governance", "Reuse"
CLIENT, SERVER = "Hub client", "Server administration"
PANELS = (LOCAL, TRUST, GOVERNANCE, REUSE, CLIENT, SERVER)


_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s")


def terminal_text(text: str) -> str:
    """A docstring as the terminal should show it: each paragraph on one line (the console wraps it to its width),
    list items on their own lines, RST roles and double backquotes reduced to plain backquotes."""
    text = _ROLE.sub(r"`\1`", text).replace("``", "`")
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        if paragraph.startswith("\b"):
            paragraphs.append(paragraph)
            continue
        lines: list[str] = []
        for line in paragraph.splitlines():
            if lines and not _BULLET.match(line):
                lines[-1] = f"{lines[-1]} {line.strip()}"
            else:
                lines.append(line.strip())
        paragraphs.append("\n".join(lines).removesuffix("::") if paragraph.endswith("::") else "\n".join(lines))
    return "\n\n".join(paragraphs)


def _for_the_terminal(command: Any) -> None:
    """Rewrite the help of ``command``, its options and its subcommands with :func:`terminal_text`."""
    if command.help:
        command.help = terminal_text(command.help)
    for param in command.params:
        if getattr(param, "help", None):
            param.help = terminal_text(param.help)
    for sub in getattr(command, "commands", {}).values():
        _for_the_terminal(sub)


class Group(TyperGroup):
    """The root group: help written for the terminal, panels in order, and errors a command let through still end as
    one line and an exit code."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _for_the_terminal(self)

    def list_commands(self, ctx: Any) -> list[str]:
        """In the order of :data:`PANELS`, then as registered."""
        names = super().list_commands(ctx)
        order = {panel: i for i, panel in enumerate(PANELS)}
        return sorted(names, key=lambda n: order.get(str(getattr(self.commands[n], "rich_help_panel", "")), len(order)))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except PASS_THROUGH:
            raise
        except Exception as e:
            handle(e)
        finally:
            if "openckpt.client.http" in sys.modules:  # a command parsed --endpoint: leave huggingface_hub as found
                from openckpt.client.http import restore_session

                restore_session()


app = typer.Typer(
    name="openckpt",
    cls=Group,
    help="Exact, crash-safe, pickle-free AI checkpoints, and a Hugging Face Hub-compatible server to share them.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from openckpt import __version__

        typer.echo(f"openckpt {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error instead of one line.")] = False,
) -> None:
    set_debug(debug)


app.command("inspect", rich_help_panel=LOCAL)(inspect_command)
app.command("verify", rich_help_panel=LOCAL)(verify_command)
app.command("diff", rich_help_panel=LOCAL)(diff_command)
app.command("convert", rich_help_panel=LOCAL)(convert_command)
app.command("scan", rich_help_panel=LOCAL)(scan_command)
app.add_typer(signature_app, name="signature", rich_help_panel=TRUST)
# Governance: model cards, openness, bill of materials, licenses, lineage.
app.add_typer(card_app, name="card", rich_help_panel=GOVERNANCE)
app.command("openness", rich_help_panel=GOVERNANCE)(openness_command)
app.command("bom", rich_help_panel=GOVERNANCE)(bom_command)
app.add_typer(license_app, name="license", rich_help_panel=GOVERNANCE)
app.add_typer(lineage_app, name="lineage", rich_help_panel=GOVERNANCE)
# Reuse: bias evaluations recorded in the card.
app.add_typer(evaluate_app, name="evaluate", rich_help_panel=REUSE)
# The hub: run it, administer it locally, and use it as a client.
app.command("serve", rich_help_panel=SERVER)(serve_command)
app.add_typer(user_app, name="user", rich_help_panel=SERVER)
app.add_typer(org_app, name="org", rich_help_panel=SERVER)
app.add_typer(token_app, name="token", rich_help_panel=SERVER)
app.add_typer(key_app, name="key", rich_help_panel=SERVER)
app.add_typer(mirror_app, name="mirror", rich_help_panel=SERVER)
admin_app.command("gc")(gc_command)
admin_app.command("fsck")(fsck_command)
admin_app.command("storage")(storage_command)
admin_app.command("compress")(compress_command)
admin_app.command("deltas")(deltas_command)
admin_app.command("xet-ingest")(xet_ingest_command)
app.add_typer(admin_app, name="admin", rich_help_panel=SERVER)
app.command("login", rich_help_panel=CLIENT)(login_command)
app.command("whoami", rich_help_panel=CLIENT)(whoami_command)
app.command("logout", rich_help_panel=CLIENT)(logout_command)
app.add_typer(repo_app, name="repo", rich_help_panel=CLIENT)
app.command("push", rich_help_panel=CLIENT)(push_command)
app.command("pull", rich_help_panel=CLIENT)(pull_command)
# Reuse: estimate the memory of a fine-tune, then run it.
app.command("estimate", rich_help_panel=REUSE)(estimate_command)
app.command("finetune", rich_help_panel=REUSE)(finetune_command)
app.command("reproduce", rich_help_panel=REUSE)(reproduce_command)


def main() -> None:
    """Entry point of the console script."""
    app(prog_name="openckpt")


if __name__ == "__main__":
    main()
