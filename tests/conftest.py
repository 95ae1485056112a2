"""Fixtures shared by the whole suite: real hub processes on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.hubtools import S3_ENV, HubProcess, Postgres, S3Server, postgres_cluster, s3_server, start_hub
from tests.scan.realfiles import RealFile, build_corpus

# The hub speaks Git LFS and Xet; the tests' clients use Git LFS unless a test enables Xet for its own client
# processes (tests/hub/test_xet_*.py). Background ingestion of LFS uploads into xorbs (on by default) is off for
# the tests that check whole blobs in the store; tests/hub/test_xet_reads.py has a hub fixture with it on.
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ.setdefault("OPENCKPT_XET_INGEST", "0")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with postgres_cluster() as pg:
        yield pg


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """A ``moto[server]`` process with one bucket; the session (and the hubs it starts) get its test credentials."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in S3_ENV.items():
            mp.setenv(name, value)
        with s3_server() as server:
            yield server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub process, once on SQLite and once on PostgreSQL, shared by the tests of a module."""
    data = tmp_path_factory.mktemp("hub") / "data"
    url = ""
    if request.param == "postgresql":
        pg: Postgres = request.getfixturevalue("postgres")
        url = pg.create_database(f"hub_{uuid.uuid4().hex[:8]}")
    server = start_hub(data, url)
    yield server
    server.stop()


@pytest.fixture
def unique() -> str:
    """A fresh repo name for each test."""
    return f"r{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def real_corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RealFile]:
    """The files the field's libraries write (tests/scan/realfiles.py), built once per session: name → RealFile."""
    return {f.name: f for f in build_corpus(tmp_path_factory.mktemp("realfiles"))}
