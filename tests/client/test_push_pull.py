"""push and pull against a real hub (SQLite and PostgreSQL), through the library and through the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import huggingface_hub
import pytest
import torch
import yaml
from huggingface_hub import HfApi, hf_hub_download
from safetensors.torch import load_file
from typer.testing import CliRunner

import openckpt
from openckpt.cli.app import app
from openckpt.client.pull import pull
from openckpt.client.push import is_training_checkpoint, push
from openckpt.client.verify import verify_snapshot
from openckpt.errors import IntegrityError
from openckpt.format.manifest import read_manifest
from tests.hubtools import HubProcess

LINEAGE = {"base_model": "org/base", "relation": "finetune", "license": "apache-2.0"}
TRAINING = {"metrics": {"loss": 0.5}, "datasets": [{"name": "org/data"}]}


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


@pytest.fixture
def model() -> torch.nn.Module:
    return tiny_model()


@pytest.fixture
def training_ckpt(tmp_path: Path, model: torch.nn.Module) -> Path:
    """A training checkpoint: model + AdamW state after one step, with lineage and training metadata."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    path = tmp_path / "run" / "step-1"
    openckpt.save(path, {"model": model, "optimizer": optimizer}, training=TRAINING, lineage=LINEAGE)
    return path


def front_matter(readme: Path) -> dict[str, object]:
    text = readme.read_text()
    assert text.startswith("---\n")
    meta: dict[str, object] = yaml.safe_load(text.split("---\n")[1])
    return meta


def cli(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def test_push_exports_a_training_checkpoint(hub: HubProcess, unique: str, training_ckpt: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in training_ckpt.iterdir())
    assert is_training_checkpoint(training_ckpt)
    result = push(training_ckpt, f"admin/{unique}", endpoint=hub.url, token=hub.token)
    assert result.exported
    assert result.files == ["README.md", "model.safetensors", "openckpt.json"]  # no HF config for an nn.Sequential
    assert sorted(p.name for p in training_ckpt.iterdir()) == before  # the source is untouched

    api = HfApi(endpoint=hub.url, token=hub.token)
    assert sorted(api.list_repo_files(f"admin/{unique}")) == [".gitattributes", *result.files]  # the hub's own
    assert api.repo_info(f"admin/{unique}").sha == result.commit

    def fetch(name: str) -> Path:
        got = hf_hub_download(f"admin/{unique}", name, endpoint=hub.url, token=hub.token, cache_dir=tmp_path / "c")
        return Path(got)

    meta = front_matter(fetch("README.md"))
    assert meta["license"] == "apache-2.0"
    assert meta["base_model"] == "org/base"
    assert meta["base_model_relation"] == "finetune"
    assert meta["datasets"] == ["org/data"]
    published = read_manifest(fetch("openckpt.json").parent)
    assert published.lineage.parent == read_manifest(training_ckpt).id
    assert set(published.entries) == {"model"}
    assert not any(name.startswith("optimizer/") for name in published.tensors)
    assert api.model_info(f"admin/{unique}").card_data["license"] == "apache-2.0"  # type: ignore[index]


def test_push_uploads_a_publishable_dir_as_is_with_a_generated_card(
    hub: HubProcess, unique: str, model: torch.nn.Module, tmp_path: Path
) -> None:
    path = tmp_path / "weights"
    openckpt.save(path, {"model": model}, lineage=LINEAGE)
    (path / "notes.txt").write_text("kept")
    (path / ".cache" / "huggingface").mkdir(parents=True)
    (path / ".cache" / "huggingface" / "junk").write_text("never uploaded")
    assert not is_training_checkpoint(path)
    result = push(path, f"admin/{unique}", endpoint=hub.url, token=hub.token, message="first weights")
    assert not result.exported
    assert result.files == ["README.md", "model.safetensors", "notes.txt", "openckpt.json"]
    assert not (path / "README.md").exists()
    api = HfApi(endpoint=hub.url, token=hub.token)
    assert next(iter(api.list_repo_commits(f"admin/{unique}"))).title == "first weights"
    pulled = pull(f"admin/{unique}", tmp_path / "out", endpoint=hub.url, token=hub.token)
    assert front_matter(pulled.directory / "README.md")["license"] == "apache-2.0"


def test_push_to_a_branch_and_pull_that_revision_with_the_cli(
    hub: HubProcess, unique: str, training_ckpt: Path, model: torch.nn.Module, tmp_path: Path
) -> None:
    repo = f"admin/{unique}"
    code, out, err = cli("push", training_ckpt, repo, "--revision", "dev", "--private", "-m", "step 1",
                         "--endpoint", hub.url, "--token", hub.token)  # fmt: skip
    assert code == 0, err
    assert f"to {repo}@dev" in out
    api = HfApi(endpoint=hub.url, token=hub.token)
    assert api.repo_info(repo).private
    assert "model.safetensors" not in api.list_repo_files(repo)  # main keeps only the initial commit
    assert "model.safetensors" in api.list_repo_files(repo, revision="dev")

    code, out, err = cli("pull", f"{repo}@dev", tmp_path / "dl", "--endpoint", hub.url, "--token", hub.token)
    assert code == 0, err
    assert "ok: 4 files" in out  # with the hub's .gitattributes
    weights = load_file(tmp_path / "dl" / "model.safetensors")
    assert weights.keys() == model.state_dict().keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(weights[name], tensor)

    code, _, err = cli("pull", f"{repo}@nope", tmp_path / "x", "--endpoint", hub.url, "--token", hub.token)
    assert code == 3 and "nope" in err  # not found
    code, _, err = cli("pull", repo, tmp_path / "y", "--endpoint", hub.url, "--token", "oc_bad")
    assert code == 4  # authentication


def test_pull_verifies_and_reports_tampering(hub: HubProcess, unique: str, training_ckpt: Path, tmp_path: Path) -> None:
    pushed = push(training_ckpt, f"admin/{unique}", endpoint=hub.url, token=hub.token)
    result = pull(f"admin/{unique}", tmp_path / "dl", revision=pushed.commit, endpoint=hub.url, token=hub.token)
    assert result.commit == pushed.commit
    assert result.verified
    assert sorted(f.path for f in result.files) == [".gitattributes", *pushed.files]
    assert {f.path for f in result.files if f.sha256 is not None} == {"model.safetensors"}  # LFS

    weights = result.directory / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    (result.directory / "README.md").write_text((result.directory / "README.md").read_text() + "\nedited\n")
    with pytest.raises(IntegrityError) as e:
        verify_snapshot(result.directory, result.files)
    message = str(e.value)
    assert "model.safetensors: sha256" in message
    assert "README.md: size" in message
    assert "openckpt.json" not in message


def test_pull_into_the_cache_and_tamper_there(
    hub: HubProcess, unique: str, training_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    push(training_ckpt, f"admin/{unique}", endpoint=hub.url, token=hub.token)
    result = pull(f"admin/{unique}", endpoint=hub.url, token=hub.token)
    assert result.directory.is_relative_to(tmp_path / "cache")
    blob = (result.directory / "openckpt.json").resolve()  # the snapshot links to a blob
    os.chmod(blob, 0o644)
    blob.write_text(blob.read_text().replace('"finetune"', '"merge"   '))  # same size, other bytes
    with pytest.raises(IntegrityError, match=r"openckpt\.json: git blob sha1"):
        verify_snapshot(result.directory, result.files)
