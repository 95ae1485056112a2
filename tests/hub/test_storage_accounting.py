"""Storage accounting on real hub processes: two repos holding the same file share its bytes (per repo, per owner,
in total), xorbs used by several repos count them, and who may read the figures (API and admin page)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.hub.storagetools import XetUpload, api, commit_xet
from tests.hubtools import HubProcess
from tests.testdata import opaque_bytes


@pytest.fixture(scope="module")
def alice(hub: HubProcess) -> str:
    return hub.create_user("alice")


def _get(hub: HubProcess, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{hub.url}{path}", headers=headers, timeout=60, **kwargs)


def _repo(report: dict[str, Any], repo_id: str) -> dict[str, Any]:
    return next(r for r in report["repos"] if r["id"] == repo_id)


def test_the_same_file_in_two_repos_is_stored_once_and_shared(hub: HubProcess, alice: str, unique: str) -> None:
    shared, mine, yours = opaque_bytes(300_000), opaque_bytes(100_000), opaque_bytes(50_000)
    a, b = f"alice/{unique}-a", f"admin/{unique}-b"
    api(hub, alice).create_repo(a)
    api(hub).create_repo(b)
    for repo, token, own in ((a, alice, mine), (b, hub.token, yours)):
        api(hub, token).upload_file(path_or_fileobj=shared, path_in_repo="shared.bin", repo_id=repo)
        api(hub, token).upload_file(path_or_fileobj=own, path_in_repo="own.bin", repo_id=repo)

    r = _get(hub, "/api/admin/storage", hub.token)
    assert r.status_code == 200, r.text
    report = r.json()
    first = _repo(report, a)
    gitattributes = first["sharedBytes"] - len(shared)  # every repo starts with the same .gitattributes
    assert 0 < gitattributes < 10_000
    assert first["uniqueBytes"] == len(mine)
    assert first["historyBytes"] == first["logicalBytes"] == len(shared) + len(mine) + gitattributes
    assert len(mine) + len(shared) / 2 <= first["physicalBytes"] <= len(mine) + len(shared) / 2 + gitattributes
    assert first["dedupRatio"] > 1.3
    second = _repo(report, b)
    assert second["uniqueBytes"] == len(yours)
    assert second["physicalBytes"] + first["physicalBytes"] <= len(shared) + len(mine) + len(yours) + gitattributes
    owner = next(o for o in report["owners"] if o["name"] == "alice")
    assert owner["uniqueBytes"] >= len(mine) and owner["sharedBytes"] >= len(shared)
    total = report["total"]
    assert total["historyBytes"] >= 2 * len(shared) + len(mine) + len(yours)
    assert total["physicalBytes"] <= total["storedBytes"] and total["dedupRatio"] > 1
    assert sum(r["physicalBytes"] for r in report["repos"]) == pytest.approx(
        total["physicalBytes"], abs=len(report["repos"])
    )

    mine_only = _get(hub, f"/api/models/{a}/storage", alice)
    assert mine_only.status_code == 200 and mine_only.json() == first
    assert _get(hub, f"/api/models/{a}/storage").status_code == 200  # public: its readers are everyone


def test_a_xorb_used_by_two_repos_counts_both(hub: HubProcess, alice: str, unique: str) -> None:
    up = XetUpload(opaque_bytes(400_000))
    a, b = f"alice/{unique}-xa", f"admin/{unique}-xb"
    api(hub, alice).create_repo(a)
    api(hub).create_repo(b)
    commit_xet(hub, a, up, "x.bin", alice)
    commit_xet(hub, b, up, "same.bin")  # the second upload is deduplicated: same xorb, same Xet file
    report = _get(hub, "/api/admin/storage?xorbs=100000", hub.token).json()
    xorb = next(x for x in report["xorbs"] if x["hash"] == up.xorb_hex)
    assert (xorb["files"], xorb["repos"]) == (1, 2)
    assert 0 < xorb["bytes"] <= len(up.data) + 4096
    assert _repo(report, a)["sharedBytes"] >= xorb["bytes"]
    assert report["total"]["sharedXorbs"] >= 1


def test_who_may_see_storage(hub: HubProcess, alice: str, unique: str) -> None:
    secret = f"alice/{unique}-private"
    api(hub, alice).create_repo(secret, private=True)
    assert _get(hub, f"/api/models/{secret}/storage", alice).status_code == 200
    assert _get(hub, f"/api/models/{secret}/storage", hub.token).status_code == 200
    assert _get(hub, f"/api/models/{secret}/storage").status_code == 404  # hidden, as if absent
    assert _get(hub, "/api/admin/storage").status_code == 401
    assert _get(hub, "/api/admin/storage", alice).status_code == 403

    page = httpx.get(f"{hub.url}/admin/storage", cookies={"openckpt_token": hub.token})
    assert page.status_code == 200 and "Storage" in page.text and secret in page.text
    assert 'href="/admin/storage"' in page.text  # admins see the link in the header
    home = httpx.get(f"{hub.url}/", cookies={"openckpt_token": alice})
    assert 'href="/admin/storage"' not in home.text
    assert httpx.get(f"{hub.url}/admin/storage", cookies={"openckpt_token": alice}).status_code == 403
    anonymous = httpx.get(f"{hub.url}/admin/storage")
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
