"""``HfApi.duplicate_repo`` and ``hf repos duplicate``: a server-side copy with the whole history (commits, branches,
tags), the source's files shared rather than copied (no byte stored twice, nothing pending), downloadable through the
copy even once the source is gone, under the same rights as create_repo plus read access to the source."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from sqlalchemy import func, select

from openckpt.hub.db.models import Account, Blob, LineageEdge, Ref, Repo
from tests.hub.conftest import People, client_env, run_checked
from tests.hub.storagetools import XetUpload, commit_xet, database
from tests.hubtools import HubProcess

HF = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "hf"
CARD = (
    b"---\nlicense: apache-2.0\nlibrary_name: transformers\ntags:\n- demo\npipeline_tag: text-generation\n"
    b"base_model: elsewhere/base\n---\n# Demo\n"
)


def _api(hub: HubProcess, token: str) -> HfApi:
    return HfApi(endpoint=hub.url, token=token)


def _status(error: pytest.ExceptionInfo[HfHubHTTPError]) -> int:
    assert error.value.response is not None
    return error.value.response.status_code


def _stored(hub: HubProcess) -> tuple[int, int]:
    """(blob rows, files in the store)."""
    with database(hub) as db, db.read() as session:
        blobs = int(session.scalar(select(func.count()).select_from(Blob)) or 0)
    return blobs, sum(1 for p in (hub.data_dir / "store").rglob("*") if p.is_file())


def _tag_messages(hub: HubProcess, repo_id: str) -> dict[str, str | None]:
    owner, name = repo_id.split("/")
    with database(hub) as db, db.read() as session:
        rows = session.execute(
            select(Ref.name, Ref.message).join(Repo, Ref.repo_id == Repo.id).join(Account, Repo.owner_id == Account.id)
            .where(Account.name == owner, Repo.name == name, Repo.type == "model", Ref.kind == "tag")
        )  # fmt: skip
        return {name: message for name, message in rows}


def _lineage(hub: HubProcess, repo_id: str) -> list[tuple[str, str]]:
    owner, name = repo_id.split("/")
    with database(hub) as db, db.read() as session:
        rows = session.execute(
            select(LineageEdge.base, LineageEdge.relation).join(Repo, LineageEdge.repo_id == Repo.id)
            .join(Account, Repo.owner_id == Account.id).where(Account.name == owner, Repo.name == name)
        )  # fmt: skip
        return sorted((base, relation) for base, relation in rows)


def _reconstruct(hub: HubProcess, repo: str, token: str, file_hash: str) -> httpx.Response:
    """The CAS reconstruction of ``file_hash`` with a Xet read token of ``repo``."""
    r = httpx.get(f"{hub.url}/api/models/{repo}/xet-read-token/main", headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    cas, auth = r.json()["casUrl"], {"authorization": f"Bearer {r.json()['accessToken']}"}
    return httpx.get(f"{cas}/v1/reconstructions/{file_hash}", headers=auth)


def test_copy_keeps_history_refs_files_and_card(hub: HubProcess, people: People, unique: str, tmp_path: Path) -> None:
    api = _api(hub, people.alice)
    src, dst = f"alice/{unique}", f"alice/{unique}-copy"
    weights, xet = os.urandom(5000), XetUpload(os.urandom(300_000))
    api.create_repo(src)
    api.upload_file(path_or_fileobj=CARD, path_in_repo="README.md", repo_id=src, commit_message="card")
    api.upload_file(path_or_fileobj=b'{"a": 1}', path_in_repo="config.json", repo_id=src, commit_message="config")
    api.upload_file(path_or_fileobj=weights, path_in_repo="model.bin", repo_id=src, commit_message="weights")  # LFS
    commit_xet(hub, src, xet, "big.safetensors", people.alice)  # Xet-backed
    api.create_tag(src, tag="v1", tag_message="first release")
    api.create_branch(src, branch="dev")
    api.upload_file(path_or_fileobj=b"dev only", path_in_repo="dev.txt", repo_id=src, revision="dev",
                    commit_message="on dev")  # fmt: skip
    before = _stored(hub)

    url = api.duplicate_repo(src, dst)

    assert url.repo_id == dst and url.files_copy_pending is False
    assert _stored(hub) == before  # rows only: no blob stored again
    for rev in ("main", "dev", "v1"):
        old, new = api.list_repo_commits(src, revision=rev), api.list_repo_commits(dst, revision=rev)
        assert [(c.title, c.message, c.authors, c.created_at) for c in new] == [
            (c.title, c.message, c.authors, c.created_at) for c in old
        ]
        assert len(new) >= 5 and not {c.commit_id for c in new} & {c.commit_id for c in old}  # ids name their repo
    src_refs, dst_refs = api.list_repo_refs(src), api.list_repo_refs(dst)
    assert sorted(b.name for b in dst_refs.branches) == sorted(b.name for b in src_refs.branches) == ["dev", "main"]
    assert [t.name for t in dst_refs.tags] == ["v1"] and _tag_messages(hub, dst) == {"v1": "first release"}
    src_info, dst_info = api.model_info(src), api.model_info(dst)
    assert dst_info.card_data is not None and src_info.card_data is not None
    assert dst_info.card_data.to_dict() == src_info.card_data.to_dict()
    assert (dst_info.tags, dst_info.library_name, dst_info.pipeline_tag, dst_info.private, dst_info.gated) == (
        src_info.tags, src_info.library_name, src_info.pipeline_tag, False, False)  # fmt: skip
    assert dst_info.last_modified == src_info.last_modified and dst_info.sha != src_info.sha
    assert (dst_info.downloads, dst_info.likes) == (0, 0)
    assert _lineage(hub, dst) == _lineage(hub, src) == [("elsewhere/base", "finetune")]
    head = httpx.head(
        f"{hub.url}/{dst}/resolve/main/big.safetensors", headers={"authorization": f"Bearer {people.alice}"}
    )
    assert head.headers.get("x-xet-hash") == xet.file_hex

    def check(cache: Path) -> None:
        files = {"README.md": CARD, "config.json": b'{"a": 1}', "model.bin": weights, "big.safetensors": xet.data}
        for name, data in files.items():
            got = hf_hub_download(dst, name, endpoint=hub.url, token=people.alice, cache_dir=cache)
            assert Path(got).read_bytes() == data, name
        got = hf_hub_download(dst, "dev.txt", revision="dev", endpoint=hub.url, token=people.alice, cache_dir=cache)
        assert Path(got).read_bytes() == b"dev only"
        got = hf_hub_download(dst, "model.bin", revision="v1", endpoint=hub.url, token=people.alice, cache_dir=cache)
        assert Path(got).read_bytes() == weights
        assert _reconstruct(hub, dst, people.alice, xet.file_hex).status_code == 200  # hf_xet's path

    check(tmp_path / "copy")
    api.delete_repo(src)
    check(tmp_path / "after-delete")
    assert [c.title for c in api.list_repo_commits(dst)][:3] == ["add", "weights", "config"]


def test_default_name_visibility_and_existing_destination(hub: HubProcess, people: People, unique: str) -> None:
    alice, wendy = _api(hub, people.alice), _api(hub, people.wendy)
    src = f"{people.org}/{unique}"
    alice.create_repo(src, private=True)
    alice.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=src)

    url = wendy.duplicate_repo(src)  # into the caller's namespace, under the source's name

    assert url.repo_id == f"wendy/{unique}" and wendy.model_info(f"wendy/{unique}").private is True
    public = alice.duplicate_repo(src, f"alice/{unique}-pub", visibility="public")
    assert _api(hub, people.bob).model_info(public.repo_id).private is False
    with pytest.raises(HfHubHTTPError) as e:
        wendy.duplicate_repo(src)
    assert _status(e) == 409
    again = wendy.duplicate_repo(src, exist_ok=True)
    assert again.repo_id == f"wendy/{unique}"
    with pytest.raises(RepositoryNotFoundError):  # a dataset of that name does not exist
        alice.duplicate_repo(src, f"alice/{unique}-ds", repo_type="dataset")


def test_rights(hub: HubProcess, people: People, unique: str) -> None:
    alice, bob = _api(hub, people.alice), _api(hub, people.bob)
    private, public = f"alice/{unique}-private", f"alice/{unique}-public"
    alice.create_repo(private, private=True)
    alice.create_repo(public)
    with pytest.raises(RepositoryNotFoundError):  # invisible: as if it did not exist
        bob.duplicate_repo(private, f"bob/{unique}")
    with pytest.raises(HfHubHTTPError) as e:  # a read token
        _api(hub, people.alice_read).duplicate_repo(public, f"alice/{unique}-ro")
    assert _status(e) == 403 and "read-only" in str(e.value)
    for token, to in ((people.bob, f"{people.org}/{unique}"), (people.olga, f"{people.org}/{unique}"),
                      (people.bob, f"alice/{unique}")):  # fmt: skip
        with pytest.raises(HfHubHTTPError) as e:
            _api(hub, token).duplicate_repo(public, to)
        assert _status(e) == 403 and "rights to create" in str(e.value)
    assert not alice.repo_exists(f"{people.org}/{unique}") and not alice.repo_exists(f"alice/{unique}-ro")
    for bad in (f"bob/{unique}/x", f"bob/{unique}--x", f"bob/{unique}.git", 7):
        r = httpx.post(f"{hub.url}/api/models/{public}/duplicate", json={"repository": bad},
                       headers={"authorization": f"Bearer {people.bob}"})  # fmt: skip
        assert r.status_code == 400, (bad, r.text)
    # a gated repo needs granted access, as downloads do; the copy is not gated
    alice.update_repo_settings(public, gated="auto")
    with pytest.raises(HfHubHTTPError) as e:
        bob.duplicate_repo(public, f"bob/{unique}")
    assert _status(e) == 403 and e.value.response.headers["X-Error-Code"] == "GatedRepo"
    r = httpx.post(f"{hub.url}/api/models/{public}/user-access-request/request", json={},
                   headers={"authorization": f"Bearer {people.bob}"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert bob.duplicate_repo(public, f"bob/{unique}").repo_id == f"bob/{unique}"
    assert bob.model_info(f"bob/{unique}").gated is False


def test_the_destination_license_policy_applies(hub: HubProcess, people: People, unique: str) -> None:
    alice = _api(hub, people.alice)
    src = f"alice/{unique}"
    alice.create_repo(src)
    alice.upload_file(path_or_fileobj=b"---\ntags: [x]\n---\n# no license\n", path_in_repo="README.md", repo_id=src)
    url, auth = f"{hub.url}/api/organizations/{people.org}/policy", {"authorization": f"Bearer {people.alice}"}
    assert httpx.put(url, json={"require_license": True}, headers=auth).status_code == 200
    try:
        with pytest.raises(HfHubHTTPError) as e:
            alice.duplicate_repo(src, f"{people.org}/{unique}")
        assert _status(e) == 403 and e.value.response.headers["X-Error-Code"] == "PolicyViolation"
        assert f"license policy of {people.org}" in str(e.value)
        assert not alice.repo_exists(f"{people.org}/{unique}")
        alice.duplicate_repo(src, f"alice/{unique}-mine")  # alice has no policy of her own
    finally:
        httpx.put(url, json={}, headers=auth)


def test_cli_duplicates(hub: HubProcess, people: People, unique: str, tmp_path: Path) -> None:
    alice = _api(hub, people.alice)
    src = f"alice/{unique}"
    alice.create_repo(src, repo_type="dataset")
    alice.upload_file(path_or_fileobj=b"a,b\n", path_in_repo="d.csv", repo_id=src, repo_type="dataset")
    env = client_env(hub.url, tmp_path / "home", HF_TOKEN=people.alice)
    out = run_checked([str(HF), "repos", "duplicate", src, f"{people.org}/{unique}", "--type", "dataset"], env=env)
    assert f"{people.org}/{unique}" in out
    got = hf_hub_download(f"{people.org}/{unique}", "d.csv", repo_type="dataset", endpoint=hub.url,
                          token=people.alice, cache_dir=tmp_path / "cache")  # fmt: skip
    assert Path(got).read_bytes() == b"a,b\n"
