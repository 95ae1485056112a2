"""``openckpt serve``: migrate the database, create the first admin on an empty one, and run the hub."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.markup import escape
from rich.panel import Panel

from openckpt.cli._output import err, guard, out

if TYPE_CHECKING:
    from openckpt.hub.settings import Settings

__all__ = ["first_start_panel", "serve_command"]


def first_start_panel(settings: Settings, token: str) -> Panel:
    """What to paste after the first start: the endpoint and the admin's token (the hub speaks Xet and Git LFS)."""
    lines = [
        "Created the user [bold]admin[/]; its write token is shown only this once.",
        "Point huggingface_hub, transformers and the hf CLI at this hub:",
        "",
        f"export HF_ENDPOINT={escape(settings.public_url)}",
        f"export HF_TOKEN={escape(token)}",
    ]
    # Top and bottom rules only, so the export lines copy without border characters.
    return Panel("\n".join(lines), title="openckpt hub: first start", box=box.HORIZONTALS, expand=False)


def _check_free(host: str, port: int) -> None:
    """Fail early, with the address in the message, if something already listens there."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return  # let uvicorn report what it makes of the address
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            raise OSError(e.errno, f"cannot listen on {host}:{port} ({e.strerror}): choose another --port") from None


@guard
def serve_command(
    data_dir: Annotated[
        Path | None, typer.Option(help="Blobs, secret key and the SQLite database (OPENCKPT_DATA_DIR; default ./data).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (OPENCKPT_HOST; default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (OPENCKPT_PORT; default 8000).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (OPENCKPT_WORKERS; default 1).")] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db. "
            "(OPENCKPT_DATABASE_URL; default SQLite in the data dir)"
        ),
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option(help="The URL clients use as HF_ENDPOINT (OPENCKPT_PUBLIC_URL; default http://HOST:PORT)."),
    ] = None,
    storage_url: Annotated[
        str | None,
        typer.Option(
            help="Where blobs live: file:///path or s3://bucket/prefix?endpoint_url=URL&region=REGION, credentials "
            "from the AWS_* variables (OPENCKPT_STORAGE_URL; default DATA_DIR/store)."
        ),
    ] = None,
    upstream: Annotated[
        str | None,
        typer.Option(
            help="Hubs to mirror, comma-separated, asked in order (e.g. https://huggingface.co): reads of repos this "
            "hub lacks are fetched, scanned and cached (OPENCKPT_UPSTREAM; default none)."
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Run the hub: a Hugging Face Hub-compatible server for your checkpoints.

    Options override OPENCKPT_* variables. On an empty database an admin user is created and its token is
    printed once, with the HF_ENDPOINT / HF_TOKEN lines to paste. Several servers on one
    database (--database-url) and one --storage-url serve the same hub.
    """
    from openckpt.hub.server import bootstrap, serve
    from openckpt.hub.settings import Settings
    from openckpt.store.url import open_store

    settings = Settings.from_env(
        data_dir=data_dir,
        host=host,
        port=port,
        workers=workers,
        database_url=database_url,
        public_url=public_url,
        storage_url=storage_url,
        upstream=upstream,
    )
    from sqlalchemy.engine import make_url

    _check_free(settings.host, settings.port)  # before the admin's token is printed for a server that cannot start
    open_store(settings.storage_url, settings.data_dir)  # a missing bucket or unreachable endpoint: fail now
    token = bootstrap(settings)
    if token is not None:
        out().print(first_start_panel(settings, token))
        sys.stdout.flush()  # a pipe reader sees the token before the server's first log line
    database = make_url(settings.database_url).render_as_string(hide_password=True)
    where = f"data in {settings.data_dir}, database {database}"
    if settings.storage_url:
        where += f", blobs in {settings.storage_url.split('?')[0]}"
    if settings.upstream:
        where += f", mirroring {settings.upstream}"
    err().print(f"[green]serving[/] {escape(settings.public_url)} ({escape(where)}); Ctrl-C stops", soft_wrap=True)
    serve(settings, log_level=log_level)
