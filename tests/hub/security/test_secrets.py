"""Issue #12, secrets at rest, against a live hub (SQLite and PostgreSQL): nothing under the data dir is readable by
other users; the database holds neither the signing secret nor a webhook secret in plaintext; a secret file others
may read is refused; the web cookie names a session of its own (not the token) that ends at sign-out and with its
token; and a Xet token from the routes the stock client calls is refused as soon as its access token is revoked."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from sqlalchemy import select

from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Base, HubSecret, Token, Webhook, WebSession
from openckpt.hub.services.accounts import hash_token
from openckpt.hub.settings import Settings
from tests import zygote
from tests.hub.test_ui import csrf_of, login
from tests.hubtools import HubProcess, Postgres, free_port, shared_secret, start_hub
from tests.testdata import opaque_bytes

WEBHOOK_SECRET = "whsec-" + uuid.uuid4().hex
PUBLIC_HOOK = "https://93.184.216.34/hook"
"""A public address written as one: creating the webhook asks no DNS."""


def _db(hub: HubProcess) -> Iterator[Database]:
    db = Database(hub.database_url)
    try:
        yield db
    finally:
        db.dispose()


@pytest.fixture(scope="module")
def db(hub: HubProcess) -> Iterator[Database]:
    yield from _db(hub)


@pytest.fixture(scope="module")
def user(hub: HubProcess) -> str:
    """A write token of a user who has a repo with files (regular and LFS) and a webhook with a secret."""
    token = hub.create_user(f"s{uuid.uuid4().hex[:8]}")
    api = HfApi(endpoint=hub.url, token=token)
    repo = api.create_repo(f"private-{uuid.uuid4().hex[:6]}", private=True).repo_id
    api.create_commit(
        repo,
        [CommitOperationAdd("config.json", b'{"a": 1}'), CommitOperationAdd("weights.bin", opaque_bytes(300_000))],
        commit_message="files",
    )
    api.create_webhook(url=PUBLIC_HOOK, watched=[{"type": "model", "name": repo}], secret=WEBHOOK_SECRET)
    return token


def _token_id(db: Database, token: str) -> int:
    with db.read() as session:
        found = session.scalar(select(Token.id).where(Token.digest == hash_token(token)))
    assert found is not None
    return found


def _add_token(db: Database, token: str, name: str) -> str:
    from openckpt.hub.db.models import Account
    from openckpt.hub.services.accounts import create_token

    with db.write() as session:
        account = session.get(
            Account, session.scalar(select(Token.account_id).where(Token.digest == hash_token(token)))
        )
        assert account is not None
        return create_token(session, account, name=name, role="write")[1]


def _revoke_in_browser(hub: HubProcess, signed_in_with: str, token_id: int) -> None:
    """Revoke ``token_id`` as its owner does: on ``/settings/tokens``, signed in with ``signed_in_with``."""
    with httpx.Client(base_url=hub.url, timeout=30) as browser:
        login(browser, signed_in_with)
        page = browser.get("/settings/tokens").text
        data = {"action": "revoke", "id": str(token_id), "csrf": csrf_of(page, "/settings/tokens")}
        assert browser.post("/settings/tokens", data=data).status_code == 303


def _signed_in(hub: HubProcess, cookie: str) -> bool:
    """Whether a browser holding the session cookie ``cookie`` is signed in (its own page shows the account)."""
    with httpx.Client(base_url=hub.url, timeout=30, cookies={"openckpt_session": cookie}) as browser:
        page = browser.get("/settings/tokens")
    return page.status_code == 200 and "this session" in page.text


# ---- files and database --------------------------------------------------------------------------------------


def test_nothing_under_the_data_dir_is_readable_by_others(hub: HubProcess, user: str) -> None:
    root = hub.data_dir
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    seen = []
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            mode = stat.S_IMODE(path.lstat().st_mode)
            assert not mode & 0o077, f"{path} is mode {mode:o}"
            seen.append(path.relative_to(root).as_posix())
    assert any(p.startswith("store/blobs/") for p in seen), seen  # the walk saw the uploads
    if hub.database_url.startswith("sqlite"):
        assert "openckpt.db" in seen


def test_the_generated_secret_is_a_private_file(hub: HubProcess) -> None:
    key_file = hub.data_dir / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert bytes.fromhex(key_file.read_text().strip()) == hub.secret() and len(hub.secret()) == 32


def test_the_database_holds_no_secret(hub: HubProcess, user: str, db: Database) -> None:
    secret = hub.secret()
    needles = [secret, secret.hex().encode(), WEBHOOK_SECRET.encode(), user.encode()]
    with db.read() as session:
        assert session.get(HubSecret, "signing") is None  # at most the fingerprint (shared databases)
        stored = session.scalars(select(Webhook.secret).where(Webhook.url == PUBLIC_HOOK)).all()
        dumps = []
        for table in Base.metadata.sorted_tables:  # every row of every table, as text
            rows = session.execute(select(table)).all()
            dumps.append(repr(rows).encode())
    assert stored and all(s is not None and s.startswith("sealed1:") for s in stored)
    if hub.database_url.startswith("sqlite"):  # the file itself, and its write-ahead log
        db_file = hub.data_dir / "openckpt.db"
        dumps += [p.read_bytes() for p in (db_file, db_file.with_name("openckpt.db-wal")) if p.exists()]
    for dump in dumps:
        for needle in needles:
            assert needle not in dump
    api = HfApi(endpoint=hub.url, token=user)
    assert {w.secret for w in api.list_webhooks()} == {WEBHOOK_SECRET}  # its owner still gets it back


# ---- web sessions ----------------------------------------------------------------------------------------------


def test_the_cookie_is_a_session_not_the_token(hub: HubProcess, user: str, db: Database) -> None:
    with httpx.Client(base_url=hub.url, timeout=30) as browser:
        response = login(browser, user)
        header = response.headers["set-cookie"]
        cookie = browser.cookies["openckpt_session"]
        assert user not in header and cookie != user
        assert "httponly" in header.lower() and "samesite=lax" in header.lower() and "secure" not in header.lower()
        assert _signed_in(hub, cookie)
        with db.read() as session:
            row = session.scalar(select(WebSession).where(WebSession.digest == hash_token(cookie)))
        assert row is not None and row.token_id == _token_id(db, user)
        assert (row.expires_at - row.created_at).total_seconds() == Settings().session_lifetime <= 7 * 86400
        page = browser.get("/").text
        assert browser.post("/logout", data={"csrf": csrf_of(page, "/logout")}).status_code == 303
    assert not _signed_in(hub, cookie)
    with db.read() as session:
        assert session.scalar(select(WebSession).where(WebSession.digest == hash_token(cookie))) is None
    assert httpx.get(f"{hub.url}/api/whoami-v2", cookies={"openckpt_session": cookie}).status_code == 401


def test_the_cookie_is_secure_over_https(hub: HubProcess, user: str) -> None:
    """Signed in behind a TLS proxy (``X-Forwarded-Proto: https`` from a trusted address), the cookie is ``Secure``."""
    with httpx.Client(base_url=hub.url, timeout=30) as browser:
        form = browser.get("/login").text
        data = {"token": user, "csrf": csrf_of(form, "/login"), "next": "/"}
        response = browser.post("/login", data=data, headers={"X-Forwarded-Proto": "https"})
        assert response.status_code == 303 and "secure" in response.headers["set-cookie"].lower()


def test_revoking_the_token_ends_its_sessions(hub: HubProcess, user: str, db: Database) -> None:
    doomed = _add_token(db, user, "doomed")
    with httpx.Client(base_url=hub.url, timeout=30) as browser:
        login(browser, doomed)
        cookie = browser.cookies["openckpt_session"]
    assert _signed_in(hub, cookie)
    _revoke_in_browser(hub, user, _token_id(db, doomed))  # from another session, of another token
    assert not _signed_in(hub, cookie)
    with db.read() as session:
        assert session.scalar(select(WebSession).where(WebSession.digest == hash_token(cookie))) is None
    assert _signed_in(hub, _cookie_of(hub, user))  # the owner's other sessions go on


def _cookie_of(hub: HubProcess, token: str) -> str:
    with httpx.Client(base_url=hub.url, timeout=30) as browser:
        login(browser, token)
        return browser.cookies["openckpt_session"]


def test_an_access_token_is_no_cookie(hub: HubProcess, user: str) -> None:
    """A cookie holding the token itself (as older hubs set it) signs no one in, and is cleared."""
    with httpx.Client(base_url=hub.url, timeout=30, cookies={"openckpt_token": user}) as browser:
        page = browser.get("/settings/tokens")
        assert page.status_code == 303
        home = browser.get("/")
        assert 'openckpt_token=""' in home.headers["set-cookie"]
    assert not _signed_in(hub, user)


# ---- Xet tokens ------------------------------------------------------------------------------------------------


def _xet_token(hub: HubProcess, token: str, repo: str, scope: str) -> str:
    """What ``huggingface_hub`` gets before a Xet transfer: ``GET /api/models/{repo}/xet-{scope}-token/main``."""
    r = httpx.get(f"{hub.url}/api/models/{repo}/xet-{scope}-token/main", headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.headers["x-xet-access-token"] == r.json()["accessToken"]
    return str(r.json()["accessToken"])


def _cas_status(hub: HubProcess, xet_token: str) -> tuple[int, int]:
    """(dedup query, shard upload) answers to the Xet token: 404/400 mean it was accepted (no such chunk, not a
    shard), 401 that it was refused."""
    auth = {"authorization": f"Bearer {xet_token}"}
    query = httpx.get(f"{hub.url}/cas/v1/chunks/default/{'ab' * 32}", headers=auth)
    shard = httpx.post(f"{hub.url}/cas/v1/shards", content=b"not a shard", headers=auth)
    return query.status_code, shard.status_code


def test_a_xet_token_ends_with_its_access_token(hub: HubProcess, user: str, db: Database) -> None:
    minting = _add_token(db, user, "xet")
    repo = HfApi(endpoint=hub.url, token=minting).create_repo(f"x{uuid.uuid4().hex[:8]}").repo_id
    write, read = _xet_token(hub, minting, repo, "write"), _xet_token(hub, minting, repo, "read")
    assert _cas_status(hub, write) == (404, 400)
    assert _cas_status(hub, read)[0] == 404
    _revoke_in_browser(hub, user, _token_id(db, minting))
    assert _cas_status(hub, write) == (401, 401)
    assert _cas_status(hub, read)[0] == 401
    forged = re.sub(r"^(xet2\.\w+\.\d+\.)\d+", r"\g<1>0", write)  # claim no access token: the signature fails
    assert _cas_status(hub, forged)[0] == 401


# ---- the secret's sources --------------------------------------------------------------------------------------


def _serve(data_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "openckpt.hub", "--data-dir", str(data_dir), "--port", str(free_port())]
    return zygote.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def test_a_secret_file_others_may_read_is_refused(tmp_path: Path) -> None:
    env = shared_secret(tmp_path)
    Path(env["OPENCKPT_SECRET_FILE"]).chmod(0o644)
    refused = _serve(tmp_path / "data", env)
    assert refused.returncode != 0 and "chmod 600" in refused.stderr, refused.stderr[-2000:]


def test_a_secret_file_signs_and_stays_out_of_the_data_dir(tmp_path: Path) -> None:
    from openckpt.hub.services.lfs.transfers import sign

    env = shared_secret(tmp_path)
    hub = start_hub(tmp_path / "data", env=env)
    try:
        key = Path(env["OPENCKPT_SECRET_FILE"]).read_bytes().strip()
        assert hub.secret() == key
        data = opaque_bytes(1000)
        path = f"/api/lfs/upload/{hashlib.sha256(data).hexdigest()}/{len(data)}"
        assert httpx.put(hub.url + sign(key, "PUT", path, 600), content=data).status_code == 200
        assert not (hub.data_dir / "secret.key").exists()
        for db in _db(hub):
            with db.read() as session:
                assert session.get(HubSecret, "signing") is None
    finally:
        hub.stop()


def test_servers_with_different_secrets_are_told(postgres: Postgres, tmp_path: Path) -> None:
    """Two servers of one hub (one PostgreSQL database) that do not share the secret: the second says so."""
    database = postgres.create_database(f"sec_{uuid.uuid4().hex[:8]}")
    first = start_hub(tmp_path / "a" / "data", database, env=shared_secret(tmp_path))
    try:
        second = start_hub(tmp_path / "b" / "data", database, env=shared_secret(tmp_path))
        second.stop()
        assert "different signing secret" in second.log.read_text()
    finally:
        first.stop()
    assert "different signing secret" not in first.log.read_text()


def test_an_older_hubs_secrets_move_out_of_its_database(tmp_path: Path) -> None:
    """A SQLite hub that kept its signing key in the database and a webhook secret in plaintext: on start the key
    moves to ``secret.key`` (0600; what it signed stays valid) and the webhook secret is sealed with it."""
    from openckpt.hub.app import create_app
    from openckpt.hub.db.models import Account
    from openckpt.hub.services.sealed import sealing_key, unseal

    settings = Settings.from_env(data_dir=tmp_path / "data", database_url="")
    db = Database(settings.database_url)
    legacy = os.urandom(32).hex()
    try:
        db.migrate()
        with db.write() as session:
            session.add(HubSecret(name="signing", value=legacy))
            account = Account(name="old", kind="user", fullname="old")
            session.add(account)
            session.flush()
            hook = Webhook(id="a" * 24, account_id=account.id, url=PUBLIC_HOOK, watched=[], domains=["repo"])
            hook.secret = "plain-old-secret"
            session.add(hook)
        app = create_app(settings)
        assert app.state.hub.settings.secret == bytes.fromhex(legacy)
        app.state.webhooks.stop()
        key_file = settings.data_dir / "secret.key"
        assert key_file.read_text().strip() == legacy and stat.S_IMODE(key_file.stat().st_mode) == 0o600
        with db.read() as session:
            assert session.scalars(select(HubSecret)).all() == []
            sealed = session.scalar(select(Webhook.secret))
        assert sealed is not None and sealed.startswith("sealed1:")
        assert unseal(sealing_key(bytes.fromhex(legacy)), sealed, owner="webhook:" + "a" * 24) == "plain-old-secret"
        assert unseal(sealing_key(b"k" * 40), sealed, owner="webhook:" + "a" * 24) is None  # another key: unreadable
    finally:
        db.dispose()
