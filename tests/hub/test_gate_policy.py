"""The hub's scan policy on files the field's libraries write, with the stock client: malicious files refused, every
other file served under the default policy with its verdict and the packages loading it needs; an organisation's
``scan`` rules withhold or refuse "needs code" files outside a package allowlist, and files without a current scan."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import HfHubHTTPError

from tests.hub.conftest import People
from tests.hubtools import HubProcess

torch = pytest.importorskip("torch")

LIGHTNING = "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"


def sd_ckpt(path: Path) -> Path:
    """A Stable Diffusion 1.x style ``.ckpt``: the state dict beside Lightning's ``ModelCheckpoint`` class, pickled as
    a key of ``callbacks`` (what the Hub lists under "Detected Pickle imports" for the SD 1.x checkpoints)."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    torch.manual_seed(0)
    state = {"model.diffusion_model.input_blocks.0.0.weight": torch.randn(4, 4, 3, 3)}
    callbacks = {ModelCheckpoint: {"monitor": None, "best_model_score": None, "dirpath": "/logs/checkpoints"}}
    torch.save({"epoch": 0, "global_step": 10, "state_dict": state, "callbacks": callbacks}, path)
    return path


def scaler_pt(path: Path) -> Path:
    """A torch file holding a fitted scikit-learn ``StandardScaler`` beside its weights: needs ``sklearn``."""
    from sklearn.preprocessing import StandardScaler

    torch.save({"scaler": StandardScaler().fit([[1.0], [2.0]]), "weight": torch.zeros(2)}, path)
    return path


def _api(hub: HubProcess, token: str) -> HfApi:
    return HfApi(endpoint=hub.url, token=token)


def _status(api: HfApi, repo: str) -> dict[str, Any]:
    status = api.model_info(repo, securityStatus=True).security_repo_status
    assert status is not None
    return status


def _by_path(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in status["files"]}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """The real-library corpus of ``tests/scan/realfiles.py`` (built once per module)."""
    from tests.scan.realfiles import build_corpus

    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture
def org_policy(hub: HubProcess, people: People) -> Iterator[Any]:
    """``set(rules)`` puts the org ``lab``'s policy (alice admins it); removed after the test."""
    url = f"{hub.url}/api/organizations/{people.org}/policy"
    auth = {"authorization": f"Bearer {people.alice}"}

    def put(rules: dict[str, Any]) -> dict[str, Any]:
        response = httpx.put(url, json=rules, headers=auth)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    yield put
    httpx.put(url, json={}, headers=auth)


def _files(entry: Any) -> list[Path]:
    return sorted(p for p in entry.path.rglob("*") if p.is_file()) if entry.path.is_dir() else [entry.path]


def test_every_malicious_file_of_the_corpus_is_refused(hub: HubProcess, people: People, corpus: list[Any],
                                                       unique: str) -> None:  # fmt: skip
    api = _api(hub, people.alice)
    repo = api.create_repo(f"alice/{unique}").repo_id
    malicious = [e for e in corpus if e.malicious]
    assert malicious
    for entry in malicious:
        with pytest.raises(HfHubHTTPError) as caught:
            if entry.path.is_dir():
                api.upload_folder(repo_id=repo, folder_path=entry.path, path_in_repo=entry.name)
            else:
                api.upload_file(path_or_fileobj=entry.path, path_in_repo=f"{entry.name}/{entry.path.name}",
                                repo_id=repo)  # fmt: skip
        assert caught.value.response.status_code == 400, entry.name
        assert caught.value.response.headers["X-Error-Code"] == "UnsafeFile", entry.name
        assert "malicious" in str(caught.value), entry.name
    assert api.list_repo_files(repo) == [".gitattributes"]


def test_every_benign_file_of_the_corpus_is_served_with_its_verdict(hub: HubProcess, people: People,
                                                                    corpus: list[Any], unique: str,
                                                                    tmp_path: Path) -> None:  # fmt: skip
    api = _api(hub, people.alice)
    repo = api.create_repo(f"alice/{unique}").repo_id
    benign = [e for e in corpus if not e.malicious]
    assert benign
    for entry in benign:
        if entry.path.is_dir():
            api.upload_folder(repo_id=repo, folder_path=entry.path, path_in_repo=entry.name)
        else:
            api.upload_file(path_or_fileobj=entry.path, path_in_repo=f"{entry.name}/{entry.path.name}", repo_id=repo)
    status = _status(api, repo)
    files = _by_path(status)
    assert status["scansDone"] is True
    assert not [f for f in files.values() if f["withheld"]]
    assert not [f for f in files.values() if f["verdict"] in ("malicious", "suspicious")]
    for entry in benign:
        mine = {p: f for p, f in files.items() if p.startswith(entry.name + "/")}
        assert mine, entry.name
        if entry.expected == "needs_code":
            needs = [f for f in mine.values() if f["verdict"] == "needs_code"]
            assert needs and all(f["packages"] for f in needs), (entry.name, mine)
    for issue in status["filesWithIssues"]:
        assert issue["verdict"] not in ("clean", "opaque") and issue["withheld"] is False

    local = Path(snapshot_download(repo, endpoint=hub.url, token=people.alice, cache_dir=tmp_path / "c"))
    for entry in benign:
        for src in _files(entry):
            rel = src.relative_to(entry.path) if entry.path.is_dir() else Path(src.name)
            assert (local / entry.name / rel).read_bytes() == src.read_bytes(), (entry.name, rel)


def test_sd_ckpt_is_served_and_lists_the_lightning_class(hub: HubProcess, people: People, unique: str,
                                                         tmp_path: Path) -> None:  # fmt: skip
    """An SD 1.x style ``.ckpt`` needs code (pytorch_lightning) and is downloadable under the default policy; the
    API and the repo page say which class loading it constructs."""
    ckpt = sd_ckpt(tmp_path / "sd-v1.ckpt")
    api = _api(hub, people.alice)
    repo = api.create_repo(f"alice/{unique}").repo_id
    api.upload_file(path_or_fileobj=ckpt, path_in_repo="sd-v1.ckpt", repo_id=repo)
    [issue] = _status(api, repo)["filesWithIssues"]
    assert issue["path"] == "sd-v1.ckpt" and issue["verdict"] == issue["level"] == "needs_code"
    assert issue["packages"] == ["pytorch_lightning"] and issue["imports"] == [LIGHTNING]
    assert issue["withheld"] is False and issue["withheldBecause"] is None
    [entry] = [e for e in api.list_repo_tree(repo, expand=True) if e.path == "sd-v1.ckpt"]
    assert entry.security is not None and entry.security["status"] == "caution"
    assert {(i["module"], i["name"]) for i in entry.security["pickle_import_scan"]["imports"]} == {
        ("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint")}  # fmt: skip
    path = hf_hub_download(repo, "sd-v1.ckpt", endpoint=hub.url, token=people.alice, cache_dir=tmp_path / "c")
    assert Path(path).read_bytes() == ckpt.read_bytes()
    page = httpx.get(f"{hub.url}/{repo}", headers={"authorization": f"Bearer {people.alice}"}).text
    assert "1 needing code" in page and "badge scan needs_code" in page and LIGHTNING in page


def test_org_allowlist_withholds_files_needing_other_packages(hub: HubProcess, people: People, unique: str,
                                                              tmp_path: Path, org_policy: Any) -> None:  # fmt: skip
    ckpt, scaler = sd_ckpt(tmp_path / "sd.ckpt"), scaler_pt(tmp_path / "scaler.pt")
    rules = org_policy({"scan": {"needs_code": "withhold", "allowed_packages": ["pytorch-lightning"]}})
    assert rules["scan"]["needs_code"] == "withhold" and rules["scan"]["allowed_packages"] == ["pytorch_lightning"]
    api = _api(hub, people.wendy)  # a writer of lab
    repo = api.create_repo(f"{people.org}/{unique}").repo_id
    for src in (ckpt, scaler):
        api.upload_file(path_or_fileobj=src, path_in_repo=src.name, repo_id=repo)

    path = hf_hub_download(repo, "sd.ckpt", endpoint=hub.url, token=people.wendy, cache_dir=tmp_path / "c1")
    assert Path(path).read_bytes() == ckpt.read_bytes()
    with pytest.raises(HfHubHTTPError) as caught:
        hf_hub_download(repo, "scaler.pt", endpoint=hub.url, token=people.wendy, cache_dir=tmp_path / "c2")
    assert caught.value.response.status_code == 403
    assert caught.value.response.headers["X-Error-Code"] == "FileFlagged"
    message = str(caught.value)
    assert "scaler.pt" in message and "sklearn" in message and f"scan policy of {people.org}" in message

    status = _status(api, repo)
    files = _by_path(status)
    assert files["sd.ckpt"]["withheld"] is False and files["scaler.pt"]["withheld"] is True
    assert files["scaler.pt"]["packages"] == ["sklearn"] and status["policy"]["needs_code"] == "withhold"
    [held] = [i for i in status["filesWithIssues"] if i["withheld"]]
    assert held["path"] == "scaler.pt" and "sklearn" in held["withheldBecause"]
    page = httpx.get(f"{hub.url}/{repo}", headers={"authorization": f"Bearer {people.alice}"}).text
    assert "scaler.pt</strong>: downloads withheld" in page and "Release scaler.pt" in page

    org_policy({"scan": {"needs_code": "block", "allowed_packages": ["pytorch_lightning"]}})
    with pytest.raises(HfHubHTTPError) as caught:
        api.upload_file(path_or_fileobj=scaler, path_in_repo="again/scaler.pt", repo_id=repo)
    assert caught.value.response.status_code == 403
    assert caught.value.response.headers["X-Error-Code"] == "PolicyViolation"
    assert "again/scaler.pt" in str(caught.value) and "sklearn" in str(caught.value)
    api.upload_file(path_or_fileobj=ckpt, path_in_repo="again/sd.ckpt", repo_id=repo)  # inside the allowlist

    org_policy({})
    path = hf_hub_download(repo, "scaler.pt", endpoint=hub.url, token=people.wendy, cache_dir=tmp_path / "c3")
    assert Path(path).read_bytes() == scaler.read_bytes()


def _forget_scan(hub: HubProcess, data: bytes, *, stale: bool) -> None:
    """Make the hub's scan of ``data`` look older than the current rules (``stale``) or absent."""
    import hashlib

    from openckpt.hub.db.engine import Database
    from openckpt.hub.db.models import Scan

    db = Database(hub.database_url)
    try:
        with db.write() as session:
            row = session.get(Scan, hashlib.sha256(data).hexdigest())
            assert row is not None
            if stale:
                row.rules_version = "0-older"
            else:
                session.delete(row)
    finally:
        db.dispose()


@pytest.mark.parametrize("stale", [True, False], ids=["rules-changed", "never-scanned"])
def test_unscanned_files_follow_the_policy(hub: HubProcess, people: People, unique: str, tmp_path: Path,
                                           org_policy: Any, stale: bool) -> None:  # fmt: skip
    data = f"notes of {unique}\n".encode()  # bytes no other test stores: their scan row is this test's alone
    api = _api(hub, people.alice)
    repo = api.create_repo(f"{people.org}/{unique}").repo_id
    api.upload_file(path_or_fileobj=data, path_in_repo="notes.txt", repo_id=repo)
    _forget_scan(hub, data, stale=stale)
    status = _status(api, repo)
    assert status["scansDone"] is False
    assert _by_path(status)["notes.txt"] == {"path": "notes.txt", "verdict": "clean" if stale else "unscanned",
                                             "packages": [], "withheld": False}  # fmt: skip
    path = hf_hub_download(repo, "notes.txt", endpoint=hub.url, token=people.alice, cache_dir=tmp_path / "c1")
    assert Path(path).read_bytes() == data  # the default policy serves unscanned files

    org_policy({"scan": {"unscanned": "withhold"}})
    with pytest.raises(HfHubHTTPError) as caught:
        hf_hub_download(repo, "notes.txt", endpoint=hub.url, token=people.alice, cache_dir=tmp_path / "c2")
    assert caught.value.response.status_code == 403
    assert "not scanned" in str(caught.value)
    assert _by_path(_status(api, repo))["notes.txt"]["withheld"] is True

    api.upload_file(path_or_fileobj=data, path_in_repo="copy.txt", repo_id=repo)  # a commit scans its files again
    status = _status(api, repo)
    assert status["scansDone"] is True and not [f for f in status["files"] if f["withheld"]]
    path = hf_hub_download(repo, "notes.txt", endpoint=hub.url, token=people.alice, cache_dir=tmp_path / "c3")
    assert Path(path).read_bytes() == data


def test_inconclusive_files_are_served_unless_the_policy_says_otherwise(hub: HubProcess, people: People,
                                                                         unique: str, tmp_path: Path,
                                                                         org_policy: Any) -> None:  # fmt: skip
    broken = b"\x80\x02cfoo.bar\nBaz%s\n)" % unique.encode()  # imports a class, then breaks off: a path not followed
    api = _api(hub, people.alice)
    repo = api.create_repo(f"{people.org}/{unique}").repo_id
    api.upload_file(path_or_fileobj=broken, path_in_repo="broken.pkl", repo_id=repo)
    assert _by_path(_status(api, repo))["broken.pkl"]["verdict"] == "inconclusive"
    path = hf_hub_download(repo, "broken.pkl", endpoint=hub.url, token=people.alice, cache_dir=tmp_path / "c1")
    assert Path(path).read_bytes() == broken

    org_policy({"scan": {"inconclusive": "withhold"}})
    with pytest.raises(HfHubHTTPError) as caught:
        hf_hub_download(repo, "broken.pkl", endpoint=hub.url, token=people.alice, cache_dir=tmp_path / "c2")
    assert caught.value.response.status_code == 403 and "inconclusive" in str(caught.value)

    org_policy({"scan": {"inconclusive": "block"}})
    with pytest.raises(HfHubHTTPError) as caught:
        api.upload_file(path_or_fileobj=broken, path_in_repo="again.pkl", repo_id=repo)
    assert caught.value.response.status_code == 403
    assert caught.value.response.headers["X-Error-Code"] == "PolicyViolation" and "again.pkl" in str(caught.value)
