"""Fixtures shared by the whole suite: real hub processes on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.hubtools import HubProcess, Postgres, postgres_cluster, start_hub

# The hub speaks Git LFS until Xet is implemented; current clients must be told not to try Xet for uploads.
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with postgres_cluster() as pg:
        yield pg


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
