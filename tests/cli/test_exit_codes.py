"""Every exit code the CLI documents, from the commands a user meets first: 0 ok, 1 findings or differences, 2
usage, 3 not found, 4 authentication or permission, 5 network or server."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi

import openckpt
from tests.hubtools import HubProcess, free_port

from .helpers import Invoke, flip_byte, tiny_model


def test_help_documents_the_exit_codes(invoke: Invoke) -> None:
    result = invoke("-h")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert (
        "Exit codes: 0 ok, 1 findings or differences, 2 usage, 3 not found, 4 authentication or permission, 5" in text
    )


def test_0_ok(invoke: Invoke, ckpt: Path) -> None:
    version = invoke("--version")
    assert version.exit_code == 0 and version.stdout.strip() == f"openckpt {openckpt.__version__}"
    assert invoke("verify", ckpt).exit_code == 0
    assert invoke("diff", ckpt, ckpt).exit_code == 0


def test_1_findings_and_differences(invoke: Invoke, ckpt: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    openckpt.save(other, {"model": tiny_model(seed=1)})
    assert invoke("diff", ckpt, other).exit_code == 1
    (shard,) = sorted(ckpt.rglob("*.safetensors"))[:1]
    flip_byte(shard)
    assert invoke("verify", ckpt).exit_code == 1


def test_2_usage(invoke: Invoke, tmp_path: Path) -> None:
    unknown = invoke("verify", tmp_path, "--no-such-option")
    assert unknown.exit_code == 2
    assert invoke("repo", "ls", "--repo-type", "notebook").exit_code == 2
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "openckpt.json").write_text("{not json")
    unusable = invoke("verify", broken)
    assert unusable.exit_code == 2, unusable.output
    assert unusable.stderr.startswith("error: ")


def test_3_not_found(invoke: Invoke, tmp_path: Path, hub: HubProcess, auth_home: Path, unique: str) -> None:
    missing = tmp_path / "missing"
    for command in ("inspect", "verify", "scan"):
        result = invoke(command, missing)
        assert result.exit_code == 3, (command, result.output)
    pulled = invoke("pull", f"admin/{unique}", "--endpoint", hub.url, "--token", hub.token)
    assert pulled.exit_code == 3, pulled.output
    HfApi(endpoint=hub.url, token=hub.token).create_repo(f"admin/{unique}")
    revision = invoke("pull", f"admin/{unique}@nope", "--endpoint", hub.url, "--token", hub.token)
    assert revision.exit_code == 3, revision.output
    assert "revision" in revision.stderr


def test_4_authentication(invoke: Invoke, hub: HubProcess, auth_home: Path, unique: str) -> None:
    assert invoke("whoami", "--endpoint", hub.url).exit_code == 4  # no token at all
    refused = invoke("repo", "create", unique, "--endpoint", hub.url, "--token", "oc_not-a-token")
    assert refused.exit_code == 4, refused.output
    reader = hub.create_user(f"u{unique}", role="read")
    forbidden = invoke("repo", "create", f"u{unique}/{unique}", "--endpoint", hub.url, "--token", reader)
    assert forbidden.exit_code == 4, forbidden.output


def test_5_network(invoke: Invoke, auth_home: Path) -> None:
    result = invoke("repo", "ls", "--endpoint", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 5
