"""``finetune`` and ``estimate`` against a real hub: pull through the trust gate, push, the base's model tree."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from huggingface_hub import HfApi

from tests.finetune.conftest import Run, cli_env
from tests.hubtools import HubProcess

SUSPICIOUS = b"\x80\x02cfoo.bar\nBaz\n)\x81."
SHORT = ["--epochs", "1", "--batch-size", "8", "--seq-len", "8", "--save-every", "5"]


def push_base(hub: HubProcess, directory: Path, repo: str) -> str:
    api = HfApi(endpoint=hub.url, token=hub.token)
    api.create_repo(repo)
    return api.upload_folder(folder_path=directory, repo_id=repo).oid


def test_finetune_pulls_the_base_and_pushes_an_adapter_under_it(
    hub: HubProcess, unique: str, run_cli: Run, models: dict[str, Path], data: dict[str, Path], tmp_path: Path
) -> None:
    base = f"admin/{unique}-base"
    commit = push_base(hub, models["bert"], base)
    env = cli_env(tmp_path / "hf-home", HF_ENDPOINT=hub.url, HF_TOKEN=hub.token)
    done = run_cli("finetune", base, "--data", data["csv"], "--task", "text-classification", "--out", tmp_path / "o",
                   "--push", f"admin/{unique}-ft", *SHORT, "--json", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["pushed"]["repo"] == f"admin/{unique}-ft" and result["name"] == f"{unique}-ft"
    assert [(c["id"], c["relation"]) for c in result["model_tree"]] == [(f"admin/{unique}-ft", "adapter")]
    config = json.loads((tmp_path / "o" / "model" / "adapter_config.json").read_text())
    assert (config["base_model_name_or_path"], config["revision"]) == (base, commit)

    tree = httpx.get(f"{hub.url}/api/models/{base}/lineage", headers={"authorization": f"Bearer {hub.token}"}).json()
    (child,) = tree["descendants"]
    assert (child["id"], child["relation"], child["license"]) == (f"admin/{unique}-ft", "adapter", "apache-2.0")
    up = httpx.get(f"{hub.url}/api/models/admin/{unique}-ft/lineage",
                   headers={"authorization": f"Bearer {hub.token}"}).json()  # fmt: skip
    assert [a["id"] for a in up["ancestors"]] == [base]
    api = HfApi(endpoint=hub.url, token=hub.token)
    files = set(api.list_repo_files(f"admin/{unique}-ft"))
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= files
    assert not any(f.startswith("checkpoints/") for f in files)


def test_a_base_with_a_file_that_is_not_clean_is_refused(
    hub: HubProcess, unique: str, run_cli: Run, models: dict[str, Path], data: dict[str, Path], tmp_path: Path
) -> None:
    base = f"admin/{unique}-base"
    push_base(hub, models["bert"], base)
    HfApi(endpoint=hub.url, token=hub.token).upload_file(path_or_fileobj=SUSPICIOUS, path_in_repo="extra.pkl",
                                                          repo_id=base)  # fmt: skip
    released = httpx.post(f"{hub.url}/api/models/{base}/scan/release", json={"path": "extra.pkl"},
                          headers={"authorization": f"Bearer {hub.token}"})  # fmt: skip
    assert released.status_code == 200, released.text  # the hub lets it through; the client still refuses it
    env = cli_env(tmp_path / "hf-home", HF_ENDPOINT=hub.url, HF_TOKEN=hub.token)
    done = run_cli("finetune", base, "--data", data["csv"], "--task", "text-classification", "--out", tmp_path / "o",
                   *SHORT, env=env)  # fmt: skip
    assert done.returncode == 2
    assert "UnsafeFileError" in done.stderr and "extra.pkl needs code from foo" in done.stderr
    assert not (tmp_path / "o").exists()


def test_estimate_of_a_hub_repo_reads_no_weights(
    hub: HubProcess, unique: str, run_cli: Run, models: dict[str, Path], tmp_path: Path
) -> None:
    base = f"admin/{unique}-base"
    push_base(hub, models["gpt2"], base)
    home = tmp_path / "hf-home"
    env = cli_env(home, HF_ENDPOINT=hub.url, HF_TOKEN=hub.token)
    remote = run_cli("estimate", base, "--batch-size", "4", "--seq-len", "16", "--json", env=env)
    assert remote.returncode == 0, remote.stderr
    local = run_cli("estimate", models["gpt2"], "--batch-size", "4", "--seq-len", "16", "--json", env=env)
    keys = ("method", "parameters", "trainable_parameters", "weights", "gradients", "optimizer", "activations")
    assert [{k: e[k] for k in keys} for e in json.loads(remote.stdout)] == [
        {k: e[k] for k in keys} for e in json.loads(local.stdout)]  # fmt: skip
    downloaded = [p.name for p in home.rglob("*") if p.is_file()]
    assert "config.json" in downloaded and not any(n.endswith(".safetensors") for n in downloaded)
