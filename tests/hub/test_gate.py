"""The upload gate with the stock client: malicious files refused, files that need code served (withheld until
released where an org policy says so), clean ones served; signed repos verified against the owner's keys; rescans
when the rules version changes."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError

from tests import zygote
from tests.hub.conftest import People
from tests.hubtools import HubProcess, free_port, start_hub, wait_for

# Built by hand, never loaded: GLOBAL os.system, the argument, TUPLE1, REDUCE, STOP.
MALICIOUS = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00echo\x85R."
# A class from a module no loader allows: GLOBAL foo.bar.Baz, EMPTY_TUPLE, NEWOBJ, STOP. Loading it needs the
# package foo: "needs code", served under the hub's default policy.
NEEDS_CODE = b"\x80\x02cfoo.bar\nBaz\n)\x81."


def _torch_bytes() -> bytes:
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.save({"weight": torch.zeros(4)}, buf)
    return buf.getvalue()


def _api(hub: HubProcess, token: str) -> HfApi:
    return HfApi(endpoint=hub.url, token=token)


def test_malicious_upload_is_refused_and_nothing_is_visible(hub: HubProcess, people: People, unique: str,
                                                            tmp_path: Path) -> None:  # fmt: skip
    api = _api(hub, people.alice)
    repo = api.create_repo(f"alice/{unique}").repo_id
    (tmp_path / "README.md").write_text("# model\n")
    (tmp_path / "model.bin").write_bytes(MALICIOUS)
    with pytest.raises(HfHubHTTPError) as caught:
        api.upload_folder(repo_id=repo, folder_path=tmp_path)
    message = str(caught.value)
    assert caught.value.response.status_code == 400
    assert "model.bin" in message and "os.system" in message and "malicious" in message
    assert api.list_repo_files(repo) == [".gitattributes"]


def test_needs_code_file_is_served_and_an_org_policy_withholds_it_until_released(
    hub: HubProcess, people: People, unique: str, tmp_path: Path
) -> None:
    api = _api(hub, people.alice)
    repo = api.create_repo(f"alice/{unique}").repo_id
    api.upload_file(path_or_fileobj=NEEDS_CODE, path_in_repo="custom.pkl", repo_id=repo)
    status = api.model_info(repo, securityStatus=True).security_repo_status
    assert status is not None and status["scansDone"] is True
    [issue] = status["filesWithIssues"]
    assert issue["path"] == "custom.pkl" and issue["level"] == "needs_code" and issue["withheld"] is False
    assert issue["imports"] == ["foo.bar.Baz"] and issue["packages"] == ["foo"]
    [entry] = [e for e in api.list_repo_tree(repo, expand=True) if e.path == "custom.pkl"]
    assert entry.security is not None and entry.security["status"] == "caution" and not entry.security["safe"]
    assert entry.security["pickle_import_scan"]["imports"][0]["module"] == "foo.bar"
    path = hf_hub_download(repo, "custom.pkl", endpoint=hub.url, token=people.alice, cache_dir=tmp_path / "c0")
    assert Path(path).read_bytes() == NEEDS_CODE

    policy = f"{hub.url}/api/organizations/{people.org}/policy"
    auth = {"authorization": f"Bearer {people.alice}"}
    assert httpx.put(policy, json={"scan": {"needs_code": "withhold"}}, headers=auth).status_code == 200
    try:
        repo = api.create_repo(f"{people.org}/{unique}").repo_id
        api.upload_file(path_or_fileobj=NEEDS_CODE, path_in_repo="custom.pkl", repo_id=repo)
        with pytest.raises(HfHubHTTPError) as caught:
            hf_hub_download(repo, "custom.pkl", endpoint=hub.url, token=people.alice, cache_dir=tmp_path / "c1")
        assert caught.value.response.status_code == 403
        assert caught.value.response.headers["X-Error-Code"] == "FileFlagged"
        assert "custom.pkl" in str(caught.value) and "foo.bar.Baz" in str(caught.value)

        url = f"{hub.url}/api/models/{repo}/scan/release"
        refused = httpx.post(url, json={"path": "custom.pkl"}, headers={"authorization": f"Bearer {people.bob}"})
        assert refused.status_code in (403, 404)
        done = httpx.post(url, json={"path": "custom.pkl"}, headers=auth)
        assert done.status_code == 200, done.text
        path = hf_hub_download(repo, "custom.pkl", endpoint=hub.url, token=people.alice, cache_dir=tmp_path / "c2")
        assert Path(path).read_bytes() == NEEDS_CODE
        issue = api.model_info(repo, securityStatus=True).security_repo_status["filesWithIssues"][0]  # type: ignore[index]
        assert issue["released"] is True and issue["withheld"] is False
    finally:
        httpx.put(policy, json={}, headers=auth)


def test_benign_torch_file_is_clean(hub: HubProcess, people: People, unique: str, tmp_path: Path) -> None:
    data = _torch_bytes()
    api = _api(hub, people.alice)
    repo = api.create_repo(f"alice/{unique}").repo_id
    api.upload_file(path_or_fileobj=data, path_in_repo="pytorch_model.bin", repo_id=repo)
    [entry] = [e for e in api.list_repo_tree(repo, expand=True) if e.path == "pytorch_model.bin"]
    assert entry.lfs is not None and entry.security is not None and entry.security["status"] == "safe"
    assert api.model_info(repo, securityStatus=True).security_repo_status["filesWithIssues"] == []  # type: ignore[index]
    path = hf_hub_download(repo, "pytorch_model.bin", endpoint=hub.url, token=people.alice, cache_dir=tmp_path)
    assert Path(path).read_bytes() == data
    page = httpx.get(f"{hub.url}/{repo}", headers={"authorization": f"Bearer {people.alice}"}).text
    assert "all files clean" in page and "badge scan clean" in page


def test_signed_repo_is_verified_then_invalid_after_tampering(hub: HubProcess, people: People, unique: str,
                                                              tmp_path: Path) -> None:  # fmt: skip
    from openckpt.signing import sign

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    auth = {"authorization": f"Bearer {people.alice}"}
    added = httpx.post(f"{hub.url}/api/settings/signing-keys", json={"name": f"k{unique}", "publicKey": pem.decode()},
                       headers=auth)  # fmt: skip
    assert added.status_code == 200, added.text
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 4}')
    (model / "weights.safetensors").write_bytes(b'\x0e\x00\x00\x00\x00\x00\x00\x00{"a":"b"}     ')
    sign(model, key=key)
    api = _api(hub, people.alice)
    repo = api.create_repo(f"alice/{unique}").repo_id
    api.upload_folder(repo_id=repo, folder_path=model)
    page = httpx.get(f"{hub.url}/{repo}", headers=auth).text
    assert f"Signed by <strong>alice/k{unique}</strong> — verified" in page

    api.upload_file(path_or_fileobj=b'{"hidden_size": 8}', path_in_repo="config.json", repo_id=repo)
    page = httpx.get(f"{hub.url}/{repo}", headers=auth).text
    assert "Signature invalid" in page and "config.json" in page


def test_rules_version_change_rescans_stored_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import select

    from openckpt.hub.db.engine import Database
    from openckpt.hub.db.models import Scan

    monkeypatch.setenv("OPENCKPT_SCAN_RULES_VERSION", "test-a")
    server = start_hub(tmp_path / "data")
    try:
        api = HfApi(endpoint=server.url, token=server.token)
        repo = api.create_repo("admin/rescan").repo_id
        api.upload_file(path_or_fileobj=NEEDS_CODE, path_in_repo="custom.pkl", repo_id=repo)
    finally:
        server.stop()
    db = Database(server.database_url)
    try:
        with db.read() as session:
            assert {s.rules_version for s in session.scalars(select(Scan))} == {"test-a"}
        monkeypatch.setenv("OPENCKPT_SCAN_RULES_VERSION", "test-b")
        port = free_port()  # a restart on the same data dir: no admin token line to read, unlike start_hub
        cmd = [sys.executable, "-m", "openckpt.hub", "--data-dir", str(tmp_path / "data"), "--port", str(port)]
        process = zygote.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(f"http://127.0.0.1:{port}/api/models")
            deadline = time.monotonic() + 30
            while True:
                with db.read() as session:
                    rows = list(session.scalars(select(Scan)))
                if {s.rules_version for s in rows} == {"test-b"}:
                    break
                assert time.monotonic() < deadline, [(s.sha256, s.rules_version) for s in rows]
                time.sleep(0.2)
            assert {s.verdict for s in rows} == {"clean", "needs_code"}
        finally:
            process.terminate()
            process.wait(timeout=20)
    finally:
        db.dispose()
