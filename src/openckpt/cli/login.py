"""``openckpt login|whoami|logout``: a token per hub in openckpt's config; huggingface_hub's file only if asked."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.markup import escape

from openckpt.cli._output import err, guard, out, print_json
from openckpt.cli._remote import Endpoint, Token

__all__ = ["login_command", "logout_command", "whoami_command"]


@guard
def login_command(
    token: Annotated[
        str | None, typer.Option(help="Access token (oc_…); asked for without echo if omitted.", show_default=False)
    ] = None,
    endpoint: Endpoint = None,
    add_to_hf_token: Annotated[
        bool,
        typer.Option(
            "--add-to-hf-token",
            help="Also write the token to huggingface_hub's token file (HF_HOME/token), replacing what it holds.",
        ),
    ] = False,
) -> None:
    """Log in to a hub: check the token, store it for that hub in openckpt's config and make the hub the default.

    Later openckpt commands use this hub and token without --endpoint or --token.

    huggingface_hub's token file, which usually holds your huggingface.co token, is left alone unless you pass
    --add-to-hf-token (or HF_ENDPOINT names this hub and the file is empty). hf and transformers use the hub with
    HF_ENDPOINT set to it and HF_TOKEN (or that file).
    """
    from openckpt.client.auth import login

    secret = token if token is not None else typer.prompt("Token", hide_input=True)
    result = login(secret.strip(), endpoint=endpoint, add_to_hf_token=add_to_hf_token)
    role = f" ({result.role} token)" if result.role else ""
    out().print(f"[green]logged in[/] to {escape(result.endpoint)} as [bold]{escape(result.user)}[/]{role}")
    console = err()
    console.print(f"token saved to {escape(str(result.token_path))}", soft_wrap=True)
    if result.hf_token_path is not None:
        console.print(f"and to huggingface_hub's {escape(str(result.hf_token_path))}", soft_wrap=True)
    elif result.hf_token_kept:
        console.print("huggingface_hub's token file holds another token: left as it is (--add-to-hf-token replaces it)")


@guard
def whoami_command(
    endpoint: Endpoint = None,
    token: Token = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the account the hub sees behind your token, and where the token came from."""
    from openckpt.client.auth import whoami

    identity = whoami(endpoint=endpoint, token=token)
    if as_json:
        print_json(asdict(identity))
        return
    role = f" ({identity.role} token)" if identity.role else ""
    console = out()
    console.print(f"[bold]{escape(identity.user)}[/] at {escape(identity.endpoint)}{role}", soft_wrap=True)
    if identity.orgs:
        console.print(f"orgs: {escape(', '.join(identity.orgs))}", soft_wrap=True)
    err().print(f"token from {escape(identity.token_source)}", soft_wrap=True)


@guard
def logout_command(endpoint: Endpoint = None) -> None:
    """Forget the token stored for a hub (and empty huggingface_hub's token file if it holds that token)."""
    from openckpt.client.auth import logout

    result = logout(endpoint=endpoint)
    if not result.removed:
        err().print(f"no token stored for {escape(result.endpoint)}", soft_wrap=True)
        return
    files = ", ".join(str(p) for p in result.removed)
    out().print(f"[green]logged out[/] of {escape(result.endpoint)} (removed from {escape(files)})", soft_wrap=True)
