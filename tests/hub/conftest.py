"""Fixtures of the hub's tests: accounts with every role, the stock client in two releases (the current one, in this
process, and an older one in a venv of its own), and a migrated database on SQLite and on PostgreSQL."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openckpt.hub.db.engine import Database
from tests import zygote
from tests.hubtools import HubProcess, Postgres

pytest.register_assert_rewrite("tests.hub.clients.hf_steps")

CLIENTS = Path(__file__).with_name("clients")
OLD_CLIENT = "0.36"
"""The older ``huggingface_hub`` release line the hub must keep working with (``==0.36.*`` from PyPI)."""


@dataclass(frozen=True)
class People:
    """Tokens of accounts on one hub. ``alice`` admins the org ``lab``, where ``wendy`` may write and ``olga`` only
    read; ``bob`` belongs to nothing; ``alice_read`` is a read-only token of alice."""

    admin: str
    alice: str
    alice_read: str
    bob: str
    wendy: str
    olga: str
    org: str = "lab"


def add_token(hub: HubProcess, user: str, role: str) -> str:
    from sqlalchemy import select

    from openckpt.hub.db.engine import Database
    from openckpt.hub.db.models import Account
    from openckpt.hub.services.accounts import create_token

    db = Database(hub.database_url)
    try:
        with db.write() as session:
            account = session.scalars(select(Account).where(Account.name == user)).one()
            return create_token(session, account, name=f"{role} token", role=role)[1]
    finally:
        db.dispose()


_PEOPLE: dict[str, People] = {}
"""The accounts made in each hub database, by its URL: a hub the session shares (tests/conftest.py) gets them once."""


@pytest.fixture(scope="module")
def people(hub: HubProcess) -> People:
    if hub.database_url not in _PEOPLE:
        tokens = {name: hub.create_user(name) for name in ("alice", "bob", "wendy", "olga")}
        hub.create_org("lab", {"alice": "admin", "wendy": "write", "olga": "read"})
        _PEOPLE[hub.database_url] = People(admin=hub.token, alice_read=add_token(hub, "alice", "read"), **tokens)
    return _PEOPLE[hub.database_url]


def client_env(endpoint: str, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a client process: this one's without any ``HF_*`` setting, pointed at ``endpoint``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(home), HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1", DISABLE_SAFETENSORS_CONVERSION="1", **extra)  # fmt: skip
    return env


def run_checked(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run ``cmd``; its stdout, or a failure that shows what it printed."""
    done = zygote.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd[:3])}... exited {done.returncode}\n--- stdout\n{done.stdout[-4000:]}\n"
                    f"--- stderr\n{done.stderr[-8000:]}", pytrace=False)  # fmt: skip
    return done.stdout


@dataclass(frozen=True)
class Client:
    """One release of ``huggingface_hub``: ``run(step, ...)`` runs a step of ``clients/hf_steps.py`` with it."""

    name: str
    python: Path | None
    """The interpreter of the venv holding the release; None for the release installed here (run in-process)."""

    def run(self, step: str, *, endpoint: str, work: Path, **kwargs: Any) -> dict[str, Any]:
        kwargs.update(endpoint=endpoint, work=str(work))
        if self.python is None:
            from tests.hub.clients import hf_steps

            step_function: Callable[..., dict[str, Any]] = hf_steps.STEPS[step]
            return step_function(**kwargs)
        out = run_checked([str(self.python), str(CLIENTS / "hf_steps.py"), step, json.dumps(kwargs)],
                          env=client_env(endpoint, work / "hf-home"))  # fmt: skip
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        assert result["version"].startswith(self.name + "."), f"ran huggingface_hub {result['version']}"
        return result


def client_venv(spec: str) -> Path:
    """The python of a venv holding ``huggingface_hub=={spec}.*``, built once under ``~/.cache/openckpt-tests``.

    Built beside its final place and renamed into it, so an interrupted build never leaves a half venv there; a lock
    file makes concurrent sessions (pytest-xdist workers) wait for the one that builds it.
    """
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "openckpt-tests"
    venv = root / f"hf{spec.replace('.', '')}-venv"
    if (venv / ".installed").exists():
        return venv / "bin" / "python"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".installed").exists():
            _build_client_venv(spec, venv)
    return venv / "bin" / "python"


def _build_client_venv(spec: str, venv: Path) -> None:
    tmp = venv.with_name(f"{venv.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    run_checked([sys.executable, "-m", "venv", str(tmp)])
    pip = [str(tmp / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run_checked([*pip, f"huggingface_hub=={spec}.*"], timeout=900)
    version = run_checked([str(tmp / "bin" / "python"), "-c", "import huggingface_hub as h; print(h.__version__)"])
    assert version.startswith(spec + "."), version
    (tmp / ".installed").write_text(version)
    if venv.exists():
        shutil.rmtree(venv)
    tmp.rename(venv)


@pytest.fixture(scope="session")
def old_client() -> Client:
    return Client(OLD_CLIENT, client_venv(OLD_CLIENT))


@pytest.fixture(params=["current", OLD_CLIENT])
def client(request: pytest.FixtureRequest) -> Client:
    """The current ``huggingface_hub`` (in-process) and the older release line (in its venv)."""
    if request.param == "current":
        return Client("current", None)
    old: Client = request.getfixturevalue("old_client")
    return old


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty, migrated hub database on SQLite or PostgreSQL (no server)."""
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    if request.param == "postgresql":
        pg: Postgres = request.getfixturevalue("postgres")
        url = pg.create_database(f"hub_{uuid.uuid4().hex[:8]}")
    db = Database(url)
    db.migrate()
    yield db
    db.dispose()
