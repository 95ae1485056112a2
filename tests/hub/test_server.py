"""Running the hub: each worker's malloc settings and the bound on requests it serves in threads at once."""

from __future__ import annotations

import platform
from pathlib import Path

import anyio.to_thread
from fastapi.testclient import TestClient

from openckpt.hub.app import create_app
from openckpt.hub.server import tune_malloc
from openckpt.hub.settings import Settings


def test_tune_malloc_where_glibc_is() -> None:
    assert tune_malloc() is (platform.libc_ver()[0] == "glibc")
    chunks = [bytes(1 << 20) for _ in range(64)]  # allocations of every kind still work after it
    assert sum(map(len, chunks)) == 64 << 20


async def _tokens() -> float:
    return anyio.to_thread.current_default_thread_limiter().total_tokens


def test_threads_bound_the_worker_thread_pool(tmp_path: Path) -> None:
    app = create_app(Settings.from_env(data_dir=tmp_path, threads=3), migrate=True)
    with TestClient(app) as client:
        assert client.portal.call(_tokens) == 3
        assert client.get("/api/models").status_code == 200


def test_threads_from_the_environment(monkeypatch: object, tmp_path: Path) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv("OPENCKPT_THREADS", "5")
    assert Settings.from_env(data_dir=tmp_path).threads == 5
