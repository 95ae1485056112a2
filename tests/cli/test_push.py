"""``openckpt push`` of a CheckpointManager run (its LATEST), a dataset, and over a repo whose card has a license."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from huggingface_hub import HfApi, hf_hub_download

import openckpt
from tests.hubtools import HubProcess

from .helpers import Invoke, tiny_model


def run_of(directory: Path, steps: int) -> Path:
    """A CheckpointManager run saved every step: model, optimizer, progress, RNG."""
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    progress = openckpt.TrainingProgress()
    state = {"model": model, "optimizer": optimizer, "progress": progress, "rng": openckpt.RNGState()}
    with openckpt.CheckpointManager(directory, save_every=1) as manager:
        while progress.step < steps:
            model(torch.randn(3, 4)).sum().backward()
            optimizer.step()
            progress.step += 1
            manager.maybe_save(state)
    return directory


def card_meta(hub: HubProcess, repo_id: str, **kwargs: str) -> dict[str, object]:
    path = hf_hub_download(repo_id, "README.md", endpoint=hub.url, token=hub.token, **kwargs)  # type: ignore[arg-type]
    meta: dict[str, object] = yaml.safe_load(Path(path).read_text().split("---\n")[1])
    return meta


def test_push_of_a_run_publishes_its_latest_model(
    hub: HubProcess, invoke: Invoke, auth_home: Path, tmp_path: Path, unique: str
) -> None:
    run = run_of(tmp_path / "run", steps=3)
    args = ["--endpoint", hub.url, "--token", hub.token]
    pushed = invoke("push", run, f"admin/{unique}", *args)
    assert pushed.exit_code == 0, pushed.output
    assert "step-00000003" in pushed.stderr and "LATEST" in pushed.stderr
    files = set(HfApi(endpoint=hub.url, token=hub.token).list_repo_files(f"admin/{unique}"))
    assert "model.safetensors" in files
    assert not {"optimizer.safetensors", "rng.safetensors"} & files

    (run / "LATEST").unlink()
    refused = invoke("push", run, f"admin/{unique}", *args)
    assert refused.exit_code == 3, refused.output
    assert "without LATEST" in refused.stderr and "step-00000003" in refused.stderr


def test_push_keeps_the_license_of_the_repo_card(
    hub: HubProcess, invoke: Invoke, auth_home: Path, tmp_path: Path, unique: str
) -> None:
    api = HfApi(endpoint=hub.url, token=hub.token)
    repo = f"admin/{unique}"
    api.create_repo(repo)
    card = "---\nlicense: mit\ntags:\n- demo\n---\n# Mine\n"
    api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=repo)
    run = run_of(tmp_path / "run", steps=2)
    args = ["--endpoint", hub.url, "--token", hub.token]

    pushed = invoke("push", run, repo, *args)
    assert pushed.exit_code == 0, pushed.output
    meta = card_meta(hub, repo)
    assert meta["license"] == "mit" and meta["tags"] == ["demo"]
    pulled = invoke("pull", repo, tmp_path / "pulled", *args)  # the manifest names the card as uploaded
    assert pulled.exit_code == 0, pulled.output

    replaced = invoke("push", run, repo, "--replace-card", *args)
    assert replaced.exit_code == 0, replaced.output
    assert "license" not in card_meta(hub, repo)


def test_push_a_dataset(hub: HubProcess, invoke: Invoke, auth_home: Path, tmp_path: Path, unique: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("text,label\nhello,1\n")
    pushed = invoke(
        "push", data, f"admin/{unique}", "--repo-type", "dataset", "--endpoint", hub.url, "--token", hub.token
    )
    assert pushed.exit_code == 0, pushed.output
    files = HfApi(endpoint=hub.url, token=hub.token).list_repo_files(f"admin/{unique}", repo_type="dataset")
    assert "train.csv" in files
    legacy = invoke("repo", "ls", "--type", "dataset", "--author", "admin", "--json", "--endpoint", hub.url)
    assert legacy.exit_code == 0 and f"admin/{unique}" in legacy.stdout  # the old spelling still works
