"""The stock ``huggingface_hub`` client, current and 0.36 releases, against the hub on SQLite and PostgreSQL: the
whole round trip of a model and of a dataset repo, and every error class the client derives from the hub's answers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.hub.conftest import Client, People
from tests.hubtools import HubProcess

LFS_SIZE = 10 * 2**20 + 1234
"""One file over the hub's 10 MB inline limit, so that it must go through LFS whatever its name."""


@pytest.mark.parametrize("repo_type", ["model", "dataset"])
def test_round_trip(hub: HubProcess, client: Client, repo_type: str, unique: str, tmp_path: Path) -> None:
    big = LFS_SIZE if repo_type == "model" else 4096  # datasets: a small file, LFS by its .bin suffix
    result = client.run("round_trip", endpoint=hub.url, work=tmp_path, token=hub.token, repo_id=f"admin/{unique}",
                        repo_type=repo_type, big=big)  # fmt: skip
    assert len(result["commits"]) == 4


@pytest.mark.parametrize("repo_type", ["model", "dataset"])
def test_error_classes(
    hub: HubProcess, people: People, client: Client, repo_type: str, unique: str, tmp_path: Path
) -> None:
    plural = {"model": "models", "dataset": "datasets"}[repo_type]
    alice = httpx.Client(base_url=hub.url, headers={"authorization": f"Bearer {people.alice}"})
    created = alice.post("/api/repos/create", json={"name": unique, "type": repo_type, "private": True})
    assert created.status_code == 200, created.text
    ndjson = b"""{"key": "header", "value": {"summary": "c"}}
{"key": "file", "value": {"path": "config.json", "content": "e30=", "encoding": "base64"}}"""
    commit = alice.post(f"/api/{plural}/alice/{unique}/commit/main", content=ndjson)
    assert commit.status_code == 200, commit.text
    client.run("error_classes", endpoint=hub.url, work=tmp_path, owner=people.alice, stranger=people.bob,
               repo_id=f"alice/{unique}", repo_type=repo_type)  # fmt: skip
