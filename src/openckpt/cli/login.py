"""``openckpt login``: check a token against the hub and save it for this and the Hugging Face tools."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from openckpt.cli._output import err, guard, out
from openckpt.cli._remote import Endpoint, remote

__all__ = ["login_command"]


@guard
@remote
def login_command(
    token: Annotated[
        str | None, typer.Option(help="Access token (oc_…); asked for without echo if omitted.", show_default=False)
    ] = None,
    endpoint: Endpoint = None,
) -> None:
    """Log in to a hub: save the token where huggingface_hub reads it, and remember the hub's URL.

    Later openckpt commands use that hub without --endpoint; huggingface_hub, transformers and the hf CLI use the
    token too when HF_ENDPOINT points at the hub.
    """
    from openckpt.client.auth import login

    secret = token if token is not None else typer.prompt("Token", hide_input=True)
    result = login(secret.strip(), endpoint=endpoint)
    role = f" ({result.role} token)" if result.role else ""
    out().print(f"[green]logged in[/] to {escape(result.endpoint)} as [bold]{escape(result.user)}[/]{role}")
    err().print(f"token saved to {escape(str(result.token_path))}, hub URL to {escape(str(result.config_path))}")
