"""``openckpt reproduce``: a recorded fine-tune re-run in a new process and directory, bitwise on the CPU; a changed
package version and a changed data file are named; ``--steps``; a recipe that went through the hub."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi

from tests import zygote
from tests.finetune.conftest import Run, cli_env
from tests.finetune.tiny import build_gpt2
from tests.hubtools import HubProcess

SHORT = ["--epochs", "1", "--batch-size", "8", "--seq-len", "8", "--save-every", "2", "--lr", "5e-3"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path], data: dict[str, Path]) -> Path:
    """A finished tiny LoRA fine-tune of the GPT-2-style model (its ``--out`` directory), run by the CLI."""
    import sys

    from tests.finetune.conftest import ROOT

    root = tmp_path_factory.mktemp("recorded")
    shutil.copy(data["jsonl"], root / "train.jsonl")
    args = ["finetune", models["gpt2"], "--data", root / "train.jsonl", "--task", "causal-lm", "--out", root / "run",
            *SHORT, "--json"]  # fmt: skip
    done = zygote.run([sys.executable, "-m", "openckpt.cli.app", *map(str, args)], capture_output=True, text=True,
                          env=cli_env(root / "hf"), cwd=ROOT, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "run"


def test_the_output_carries_its_recipe(recorded: Path) -> None:
    recipe = json.loads((recorded / "model" / "openckpt-recipe.json").read_text())
    assert recipe["entry_point"] == "openckpt finetune" and "finetune" in recipe["command"]
    assert recipe["config"]["finetune"]["seq_len"] == 8 and recipe["config"]["finetune"]["device"] == "cpu"
    packages = (recorded / "model" / "openckpt-packages.txt").read_bytes()
    assert b"torch==" in packages and recipe["packages_sha256"] == __import__("hashlib").sha256(packages).hexdigest()
    assert recipe["torch"]["version"].startswith("2.") and "deterministic_algorithms" in recipe["determinism"]
    (data_file, order) = recipe["data"]
    assert data_file["name"] == "train.jsonl" and len(data_file["sha256"]) == 64
    assert order["batches"] > 0 and len(order["samples_blake3"]) == 64
    assert sorted(recipe["checkpoints"], key=int)[-1] == "9"  # 72 training rows / 8: 9 steps


def test_reproduce_in_a_new_process_is_bitwise(recorded: Path, run_cli: Run, tmp_path: Path) -> None:
    done = run_cli("reproduce", recorded, "--out", tmp_path / "again", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert (result["verdict"], result["expected_bitwise"], result["reproduced"]) == ("bitwise", True, True)
    assert result["tensors"] == 4 and result["differing"] == []
    assert result["metrics"]["loss"]["recorded"] == result["metrics"]["loss"]["here"]
    assert (tmp_path / "again" / "model" / "adapter_model.safetensors").is_file()


def test_steps_reruns_the_first_steps_only(recorded: Path, run_cli: Run, tmp_path: Path) -> None:
    shutil.rmtree(recorded / "checkpoints" / "step-00000002", ignore_errors=True)  # retention: digests are enough
    done = run_cli("reproduce", recorded / "model", "--steps", "2", "--out", tmp_path / "two", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert (result["verdict"], result["steps"], result["compared"]) == ("bitwise", 2, "the checkpoint at step 2")
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").glob("step-*")) == ["step-00000002"]
    assert not (tmp_path / "two" / "model").exists()
    missing = run_cli("reproduce", recorded, "--steps", "3", "--out", tmp_path / "three")
    assert missing.returncode != 0 and "no checkpoint at step 3" in missing.stderr


def test_a_changed_package_version_is_named(recorded: Path, run_cli: Run, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(recorded / "model", copy)
    lines = (copy / "openckpt-packages.txt").read_text().splitlines()
    lines = [("numpy==0.0.1" if line.startswith("numpy==") else line) for line in lines]
    (copy / "openckpt-packages.txt").write_text("\n".join(lines) + "\n")
    done = run_cli("reproduce", copy, "--steps", "2", "--out", tmp_path / "again", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    diffs = json.loads(done.stdout)["environment_differences"]
    assert any(d.startswith("package numpy: recorded 0.0.1, here ") for d in diffs), diffs


def test_a_changed_data_file_is_refused_by_name(recorded: Path, run_cli: Run, tmp_path: Path) -> None:
    changed = tmp_path / "train.jsonl"
    changed.write_bytes((recorded.parent / "train.jsonl").read_bytes().replace(b"good", b"bad", 1))
    done = run_cli("reproduce", recorded, "--data", changed, "--out", tmp_path / "again")
    assert done.returncode != 0
    assert "data file train.jsonl differs from the recorded one" in done.stderr
    assert not (tmp_path / "again" / "checkpoints").exists()


def test_default_seq_len_respects_32_positions(run_cli: Run, data: dict[str, Path], tmp_path: Path) -> None:
    base = build_gpt2(tmp_path / "short", positions=32)
    done = run_cli("finetune", base, "--data", data["jsonl"], "--task", "causal-lm", "--out", tmp_path / "o",
                   "--epochs", "1", "--save-every", "50", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    recipe = json.loads((tmp_path / "o" / "model" / "openckpt-recipe.json").read_text())
    assert recipe["config"]["finetune"]["seq_len"] == 32 and recipe["config"]["finetune"]["batch_size"] == 8
    too_long = run_cli("finetune", base, "--data", data["jsonl"], "--task", "causal-lm", "--out", tmp_path / "p",
                       "--seq-len", "64")  # fmt: skip
    assert too_long.returncode == 2 and "exceeds the model's 32 positions" in too_long.stderr


@pytest.mark.parametrize("hub", ["sqlite"], indirect=True)  # the database plays no part here: one is enough
def test_a_recipe_survives_push_and_reproduce_from_the_hub(
    hub: HubProcess, unique: str, run_cli: Run, models: dict[str, Path], data: dict[str, Path], tmp_path: Path
) -> None:
    api = HfApi(endpoint=hub.url, token=hub.token)
    base = f"admin/{unique}-base"
    api.create_repo(base)
    api.upload_folder(folder_path=models["gpt2"], repo_id=base)
    env = cli_env(tmp_path / "hf-home", HF_ENDPOINT=hub.url, HF_TOKEN=hub.token)
    ft = f"admin/{unique}-ft"
    done = run_cli("finetune", base, "--data", data["jsonl"], "--task", "causal-lm", "--out", tmp_path / "o",
                   "--push", ft, *SHORT, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert {"openckpt-recipe.json", "openckpt-packages.txt"} <= set(api.list_repo_files(ft))
    page = httpx.get(f"{hub.url}/{ft}", headers={"authorization": f"Bearer {hub.token}"})
    assert page.status_code == 200 and "How to reproduce" in page.text
    assert f"openckpt reproduce {ft}@main" in page.text
    again = run_cli("reproduce", ft, "--steps", "4", "--out", tmp_path / "again", "--push", "--json", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    result = json.loads(again.stdout)
    assert result["verdict"] == "bitwise" and result["card"]
    card = (Path(api.hf_hub_download(ft, "README.md", cache_dir=tmp_path / "c"))).read_text()
    assert "## Reproduction" in card and "openckpt_reproduction:" in card and "**bitwise**" in card


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_on_the_cpu_fine_tunes_and_resumes_exactly(
    precision: str, models: dict[str, Path], data: dict[str, Path], tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from openckpt.finetune.licensing import BaseModel
    from openckpt.finetune.run import FinetuneOptions, finetune

    base = BaseModel(models["bert"], "bert")
    options = FinetuneOptions(task="text-classification", method="full", epochs=1, batch_size=8, seq_len=8,
                              save_every=2, device="cpu", precision=precision, accumulate=2, lr=5e-3)  # fmt: skip
    straight = finetune(base, data["csv"], tmp_path / "straight", options)
    assert straight.steps == 5  # 72 rows, 9 batches of 8, 2 per step (the last alone)
    stopped = finetune(base, data["csv"], tmp_path / "split", options, stop_at=3)
    assert stopped.steps == 3 and sorted(p.name for p in (tmp_path / "split" / "checkpoints").glob("step-*"))[-1] == (
        "step-00000003")  # fmt: skip
    from openckpt.format.manifest import read_manifest

    entries = read_manifest(tmp_path / "split" / "checkpoints" / "step-00000003").entries
    assert ("scaler" in entries) == (precision == "fp16")  # the grad scaler's state is checkpointed
    resumed = finetune(base, data["csv"], tmp_path / "split", options)
    assert resumed.resumed_from == 3 and resumed.metrics == straight.metrics
    a, b = (load_file(r.directory / "model.safetensors") for r in (straight, resumed))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    recipe = json.loads((straight.directory / "openckpt-recipe.json").read_text())["config"]["finetune"]
    assert (recipe["precision"], recipe["accumulate"]) == (precision, 2)


def test_inspect_shows_the_recipe(recorded: Path) -> None:
    from typer.testing import CliRunner

    from openckpt.cli.app import app

    shown = CliRunner().invoke(app, ["inspect", str(recorded / "model"), "--json"])
    assert shown.exit_code == 0, shown.output
    recipe = json.loads(shown.stdout)["recipe"]
    assert recipe["entry_point"] == "openckpt finetune" and "checkpoints" not in recipe
    step = sorted((recorded / "checkpoints").glob("step-*"))[-1]
    table = CliRunner().invoke(app, ["inspect", str(step)], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "Recipe" in table.stdout and "packages_sha256" in table.stdout


def test_the_bom_carries_the_recipe(recorded: Path) -> None:
    from openckpt.governance.bom import bom_of_directory

    bom = bom_of_directory(recorded / "model")
    properties = {p["name"]: p["value"] for p in bom["metadata"]["component"]["properties"]}
    recipe = json.loads((recorded / "model" / "openckpt-recipe.json").read_text())
    assert properties["openckpt:recipe:entry_point"] == "openckpt finetune"
    assert properties["openckpt:recipe:packages_sha256"] == recipe["packages_sha256"]
    (data,) = [c for c in bom["components"] if c["type"] == "data"]
    assert (data["name"], data["hashes"][0]["content"]) == ("train.jsonl", recipe["config"]["data_sha256"])


def test_estimate_compares_with_the_free_memory_of_the_device(models: dict[str, Path]) -> None:
    import torch
    from typer.testing import CliRunner

    from openckpt.cli.app import app

    args = ["estimate", str(models["gpt2"]), "--batch-size", "2", "--seq-len", "16", "--method", "lora"]
    (row,) = json.loads(CliRunner().invoke(app, [*args, "--device", "auto", "--json"]).stdout)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert row["device"].startswith(expected) and row["available"] > 0 and row["fits_here"] is True
    if not torch.cuda.is_available():
        missing = CliRunner().invoke(app, [*args, "--device", "cuda"])
        assert missing.exit_code == 2 and "no cuda device" in missing.output
