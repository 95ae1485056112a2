"""License checks, the model tree and license policies on a real hub (SQLite, PostgreSQL), through huggingface_hub."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError
from typer.testing import CliRunner

from openckpt.cli.app import app
from tests.hub.conftest import People
from tests.hubtools import HubProcess, start_hub

LLAMA31_NOTICE = (
    "Llama 3.1 is licensed under the Llama 3.1 Community License, Copyright © Meta Platforms, Inc. All Rights Reserved."
)


def card(meta: str, body: str = "# model\n") -> bytes:
    return f"---\n{meta}---\n{body}".encode()


def publish(api: HfApi, repo_id: str, files: dict[str, bytes]) -> None:
    api.create_repo(repo_id, exist_ok=True)
    api.create_commit(repo_id, [CommitOperationAdd(p, data) for p, data in files.items()], commit_message="add")


def test_nc_base_fine_tuned_as_apache_is_a_violation(hub: HubProcess, people: People, unique: str) -> None:
    api = HfApi(endpoint=hub.url, token=people.alice)
    base, child = f"alice/{unique}-base", f"alice/{unique}-ft"
    publish(api, base, {"README.md": card("license: cc-by-nc-4.0\n")})
    publish(api, child, {"README.md": card(f"license: apache-2.0\nbase_model: {base}\n"), "LICENSE": b"x"})
    report = httpx.get(f"{hub.url}/api/models/{child}/license").json()
    assert report["verdict"] == "violation"
    assert report["ancestors"][0] | {"has_notice": None} == {
        "id": base, "license": "cc-by-nc-4.0", "relation": "finetune", "local": True, "depth": 1, "via": None,
        "has_notice": None}  # fmt: skip
    assert "non-commercial-ancestor" in {f["code"] for f in report["findings"]}

    result = CliRunner().invoke(app, ["license", "check", child, "--endpoint", hub.url, "--json"])
    assert result.exit_code == 1, result.output
    assert '"verdict": "violation"' in result.output


def test_lineage_lists_ancestors_and_descendants(hub: HubProcess, people: People, unique: str) -> None:
    api = HfApi(endpoint=hub.url, token=people.alice)
    base, ft, q = f"alice/{unique}-base", f"alice/{unique}-ft", f"alice/{unique}-q"
    publish(api, base, {"README.md": card("license: apache-2.0\nbase_model: https://other.hub/x/y\n")})
    publish(api, ft, {"README.md": card(f"license: apache-2.0\nbase_model: {base}\n")})
    publish(api, q, {"README.md": card(f"license: mit\nbase_model: {ft}\nbase_model_relation: quantized\n")})
    tree = httpx.get(f"{hub.url}/api/models/{q}/lineage").json()
    assert [(a["id"], a["relation"], a["license"], a["local"], a["depth"]) for a in tree["ancestors"]] == [
        (ft, "quantized", "apache-2.0", True, 1),
        (base, "finetune", "apache-2.0", True, 2),
        ("https://other.hub/x/y", "finetune", None, False, 3),
    ]
    down = httpx.get(f"{hub.url}/api/models/{base}/lineage").json()["descendants"]
    assert [(d["id"], d["relation"], d["license"], d["depth"]) for d in down] == [
        (ft, "finetune", "apache-2.0", 1),
        (q, "quantized", "mit", 2),
    ]
    page = httpx.get(f"{hub.url}/{base}")
    assert page.status_code == 200 and "Model tree" in page.text and ft in page.text


def test_llama_derivative_without_prefix_has_naming_pending(hub: HubProcess, people: People, unique: str) -> None:
    api = HfApi(endpoint=hub.url, token=people.alice)
    base, child = f"alice/Llama-{unique}", f"alice/{unique}-chat"
    publish(api, base, {"README.md": card("license: llama3.1\n")})
    publish(api, child, {"README.md": card(f"license: llama3.1\nbase_model: {base}\n", "Built with Llama\n"),
                         "LICENSE": b"llama", "NOTICE": LLAMA31_NOTICE.encode()})  # fmt: skip
    report = httpx.get(f"{hub.url}/api/models/{child}/license").json()
    assert report["verdict"] == "obligations pending"
    pending = [o for o in report["obligations"] if o["status"] == "pending"]
    assert len(pending) == 1 and '"Llama"' in pending[0]["text"] and pending[0]["clause"].endswith("§1.b.i")


def test_org_policy_blocks_incompatible_derivatives(hub: HubProcess, people: People, unique: str) -> None:
    api = HfApi(endpoint=hub.url, token=people.alice)
    base, child = f"{people.org}/{unique}-base", f"{people.org}/{unique}-ft"
    publish(api, base, {"README.md": card("license: cc-by-nc-4.0\n")})
    url = f"{hub.url}/api/organizations/{people.org}/policy"
    denied = httpx.put(url, json={"block_incompatible": True}, headers={"authorization": f"Bearer {people.wendy}"})
    assert denied.status_code == 403
    put = httpx.put(url, json={"block_incompatible": True, "require_license": True},
                    headers={"authorization": f"Bearer {people.alice}"})  # fmt: skip
    assert put.status_code == 200, put.text
    assert httpx.put(url, json={"nonsense": 1}, headers={"authorization": f"Bearer {people.alice}"}).status_code == 400
    api.create_repo(child)
    with pytest.raises(HfHubHTTPError) as caught:
        api.upload_file(path_or_fileobj=card(f"license: apache-2.0\nbase_model: {base}\n"), path_in_repo="README.md",
                        repo_id=child)  # fmt: skip
    assert caught.value.response.status_code == 403
    message = str(caught.value)
    assert "license policy" in message and "cc-by-nc-4.0" in message
    assert httpx.get(f"{hub.url}/api/models/{child}/tree/main").json()[0]["path"] == ".gitattributes"
    # the same model under a non-commercial license is accepted
    api.upload_file(path_or_fileobj=card(f"license: cc-by-nc-4.0\nbase_model: {base}\n", f"From {base}.\n"),
                    path_in_repo="README.md", repo_id=child)  # fmt: skip
    assert httpx.get(f"{hub.url}/api/models/{child}/license").json()["verdict"] == "ok"
    httpx.put(url, json={}, headers={"authorization": f"Bearer {people.alice}"})


def test_lineage_and_license_follow_the_revision(hub: HubProcess, people: People, unique: str) -> None:
    api = HfApi(endpoint=hub.url, token=people.alice)
    a, b, child = f"alice/{unique}-a", f"alice/{unique}-b", f"alice/{unique}-ft"
    publish(api, a, {"README.md": card("license: apache-2.0\n")})
    publish(api, b, {"README.md": card("license: cc-by-nc-4.0\n")})
    publish(api, child, {"README.md": card(f"license: apache-2.0\nbase_model: {b}\n"), "LICENSE": b"x"})
    old = api.list_repo_commits(child)[0].commit_id
    api.create_branch(child, branch="v2", revision=old)
    api.upload_file(path_or_fileobj=card(f"license: apache-2.0\nbase_model: {a}\n"), path_in_repo="README.md",
                    repo_id=child)  # fmt: skip

    def bases(**params: str) -> list[tuple[str, str | None]]:
        tree = httpx.get(f"{hub.url}/api/models/{child}/lineage", params=params)
        assert tree.status_code == 200, tree.text
        return [(x["id"], x["license"]) for x in tree.json()["ancestors"]]

    assert bases() == bases(revision="main") == [(a, "apache-2.0")]
    assert bases(revision="v2") == bases(revision=old) == [(b, "cc-by-nc-4.0")]
    assert httpx.get(f"{hub.url}/api/models/{child}/lineage", params={"revision": "nope"}).status_code == 404
    # descendants follow the heads of main
    assert [d["id"] for d in httpx.get(f"{hub.url}/api/models/{a}/lineage").json()["descendants"]] == [child]
    assert httpx.get(f"{hub.url}/api/models/{b}/lineage").json()["descendants"] == []

    v2 = httpx.get(f"{hub.url}/api/models/{child}/license", params={"revision": "v2"}).json()
    assert v2["revision"] == old and v2["verdict"] == "violation"
    assert [x["id"] for x in v2["ancestors"]] == [b]
    runner = CliRunner()
    result = runner.invoke(app, ["license", "check", f"{child}@v2", "--endpoint", hub.url, "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["revision"] == old and [(x["id"], x["license"]) for x in report["ancestors"]] == [
        (b, "cc-by-nc-4.0")]  # fmt: skip
    result = runner.invoke(app, ["license", "check", child, "--endpoint", hub.url, "--json"])
    report = json.loads(result.output)
    assert report["verdict"] != "violation" and [(x["id"], x["license"]) for x in report["ancestors"]] == [
        (a, "apache-2.0")]  # fmt: skip


POLICY = "allowed_licenses: [apache-2.0, mit]\nrequire_license: true\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def policy_hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HubProcess]:
    """A hub started with a server policy (``OPENCKPT_POLICY_FILE``), which the process inherits."""
    url = ""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres").create_database(f"hub_{uuid.uuid4().hex[:8]}")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENCKPT_POLICY_FILE", str(policy))
        server = start_hub(tmp_path / "data", url)
    yield server
    server.stop()


def test_server_policy_file_is_enforced(policy_hub: HubProcess) -> None:
    api = HfApi(endpoint=policy_hub.url, token=policy_hub.create_user("carol"))
    repo = "carol/m"
    api.create_repo(repo)
    for meta in ("license: cc-by-nc-4.0\n", "tags: [x]\n"):
        with pytest.raises(HfHubHTTPError) as caught:
            api.upload_file(path_or_fileobj=card(meta), path_in_repo="README.md", repo_id=repo)
        assert caught.value.response.status_code == 403
        assert caught.value.response.headers.get("x-error-code") == "PolicyViolation"
        message = str(caught.value)
        assert "the license policy of this hub refuses" in message, message
        assert ("cc-by-nc-4.0" in message) if "cc-by" in meta else ("license" in message)
    api.upload_file(path_or_fileobj=card("license: apache-2.0\n"), path_in_repo="README.md", repo_id=repo)
    report = httpx.get(f"{policy_hub.url}/api/models/{repo}/license").json()
    assert report["policy"]["allowed_licenses"] == ["apache-2.0", "mit"] and report["policy"]["require_license"]


def test_org_policy_requires_a_clean_scan_and_a_signature(hub: HubProcess, people: People, unique: str) -> None:
    """``require_clean_scan`` refuses a commit adding a flagged file; ``require_signature`` one without a valid
    model-signing bundle; both name the rule in the error the stock client shows."""
    suspicious = b"\x80\x02cfoo.bar\nBaz\n)\x81."  # GLOBAL foo.bar.Baz, EMPTY_TUPLE, NEWOBJ: outside every allowlist
    api = HfApi(endpoint=hub.url, token=people.alice)
    url = f"{hub.url}/api/organizations/{people.org}/policy"
    auth = {"authorization": f"Bearer {people.alice}"}
    repo = f"{people.org}/{unique}"
    readme = card("license: apache-2.0\n")
    try:
        assert httpx.put(url, json={"require_clean_scan": True}, headers=auth).status_code == 200
        publish(api, repo, {"README.md": readme})  # clean files pass
        with pytest.raises(HfHubHTTPError) as caught:
            api.upload_file(path_or_fileobj=suspicious, path_in_repo="custom.pkl", repo_id=repo)
        assert caught.value.response.status_code == 403
        assert caught.value.response.headers["X-Error-Code"] == "PolicyViolation"
        assert "custom.pkl" in str(caught.value)
        assert "custom.pkl" not in api.list_repo_files(repo)

        assert httpx.put(url, json={"require_signature": True}, headers=auth).status_code == 200
        with pytest.raises(HfHubHTTPError) as caught:
            api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id=repo)
        assert caught.value.response.status_code == 403
        assert "signature" in str(caught.value).lower()
        assert "config.json" not in api.list_repo_files(repo)
    finally:
        httpx.put(url, json={}, headers=auth)
