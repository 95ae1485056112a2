"""Real hub processes and throwaway PostgreSQL clusters for tests (loopback only, bounded lifetimes)."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests import zygote

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@dataclass
class Postgres:
    """A PostgreSQL 15 cluster in a temp dir, owned by the ``postgres`` system user when run as root."""

    port: int
    directory: Path
    url: str = ""

    def create_database(self, name: str) -> str:
        self._run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name])
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, cmd: list[str]) -> None:
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        zygote.run(cmd, check=True, capture_output=True, timeout=120)


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Postgres]:
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError("PostgreSQL 15 is not installed (scripts/test installs postgresql-15)")
    directory = Path(tempfile.mkdtemp(prefix="openckpt-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    pg = Postgres(free_port(), directory)
    data = directory / "data"
    pg._run([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
    opts = f"-p {pg.port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    pg._run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(directory / "log"), "-w", "start"])
    try:
        yield pg
    finally:
        with contextlib.suppress(Exception):
            pg._run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(directory, ignore_errors=True)


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
"""Credentials moto accepts; the S3 fixture puts them in the environment of the test session and its hubs."""


@dataclass
class S3Server:
    """A ``moto[server]`` process speaking S3 on 127.0.0.1, with one bucket."""

    endpoint: str
    bucket: str
    process: subprocess.Popen[bytes]

    def storage_url(self, prefix: str) -> str:
        """An ``OPENCKPT_STORAGE_URL`` for blobs under ``prefix`` of the bucket."""
        return f"s3://{self.bucket}/{prefix}?endpoint_url={self.endpoint}&region=us-east-1"

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", **_credentials())

    def keys(self, prefix: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", ())]

    def pending_uploads(self, prefix: str) -> list[str]:
        uploads = self.client().list_multipart_uploads(Bucket=self.bucket, Prefix=prefix).get("Uploads", [])
        return [u["Key"] for u in uploads]


def _credentials() -> dict[str, str]:
    return {"aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"]}


@contextlib.contextmanager
def s3_server(bucket: str = "openckpt-test") -> Iterator[S3Server]:
    """Start ``python -m moto.server`` on a free port, create ``bucket``; stop the process afterwards."""
    port = free_port()
    log = open(Path(tempfile.gettempdir()) / f"moto-{port}.log", "wb")  # noqa: SIM115 - closed below
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = zygote.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    server = S3Server(f"http://127.0.0.1:{port}", bucket, process)
    try:
        wait_for(f"{server.endpoint}/moto-api/", timeout=60)
        server.client().create_bucket(Bucket=bucket)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@dataclass
class HubProcess:
    """An ``openckpt`` hub served by a real process on 127.0.0.1."""

    url: str
    data_dir: Path
    database_url: str
    token: str
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=Path)
    env: dict[str, str] = field(default_factory=dict)
    """The variables ``start_hub`` added to the process's environment."""

    def secret(self) -> bytes:
        """The key the hub signs transfer URLs with: its ``OPENCKPT_SECRET(_FILE)``, else its data dir's key file."""
        from openckpt.hub.settings import Settings

        env = {**os.environ, **self.env}
        secret, secret_file = env.get("OPENCKPT_SECRET", "").encode(), env.get("OPENCKPT_SECRET_FILE", "")
        settings = Settings(data_dir=self.data_dir, secret=secret, secret_file=secret_file)
        return settings.configured_secret() or settings.generated_secret()

    def create_user(self, name: str, *, role: str = "write", admin: bool = False) -> str:
        """Create a user with a token of ``role``; return the token."""
        from openckpt.hub.db.engine import Database
        from openckpt.hub.services.accounts import create_account, create_token

        db = Database(self.database_url)
        try:
            with db.write() as session:
                account = create_account(session, name, is_admin=admin)
                return create_token(session, account, name="test", role=role)[1]
        finally:
            db.dispose()

    def create_org(self, name: str, members: dict[str, str]) -> None:
        from sqlalchemy import select

        from openckpt.hub.db.engine import Database
        from openckpt.hub.db.models import Account
        from openckpt.hub.services.accounts import add_member, create_account

        db = Database(self.database_url)
        try:
            with db.write() as session:
                org = create_account(session, name, kind="org")
                for user, role in members.items():
                    account = session.scalars(select(Account).where(Account.name == user)).one()
                    add_member(session, org, account, role)
        finally:
            db.dispose()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def shared_secret(folder: Path) -> dict[str, str]:
    """The environment that gives every server of one hub the same signing secret: a new 0600 file in ``folder``."""
    import secrets

    path = folder / f"secret-{secrets.token_hex(4)}"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return {"OPENCKPT_SECRET_FILE": str(path)}


def start_hub(
    data_dir: Path,
    database_url: str = "",
    *,
    workers: int = 1,
    port: int | None = None,
    storage_url: str = "",
    env: dict[str, str] | None = None,
) -> HubProcess:
    """Start ``python -m openckpt.hub`` and wait until it answers; the admin's token is in ``.token``.

    ``storage_url`` (``OPENCKPT_STORAGE_URL``) puts its blobs elsewhere than in the data dir, e.g. in an S3 bucket;
    ``env`` adds variables (settings) to the process's environment.
    """
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"hub-{port}.log"
    cmd = [sys.executable, "-m", "openckpt.hub", "--data-dir", str(data_dir), "--port", str(port),
           "--host", "127.0.0.1", "--workers", str(workers)]  # fmt: skip
    if database_url:
        cmd += ["--database-url", database_url]
    out = open(log, "wb")  # noqa: SIM115 - the process writes to it until it stops
    extra = {**({"OPENCKPT_STORAGE_URL": storage_url} if storage_url else {}), **(env or {})}
    process = zygote.Popen(cmd, stdout=subprocess.PIPE, stderr=out, env={**os.environ, **extra} if extra else None)
    assert process.stdout is not None
    token = ""
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/api/models", timeout=90)
    except TimeoutError:
        process.kill()
        raise RuntimeError(f"hub did not start:\n{log.read_text()[-3000:]}") from None
    # the token line comes before the server answers, and only on a new database: never wait for it
    ready, _, _ = select.select([process.stdout], [], [], 0)
    line = process.stdout.readline().decode() if ready else ""
    if line.startswith("admin-token "):
        token = line.split()[1]
    from openckpt.hub.settings import Settings

    resolved = database_url or Settings.from_env(data_dir=data_dir).database_url
    return HubProcess(url, data_dir, resolved, token, process, log, extra)
