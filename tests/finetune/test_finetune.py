"""``openckpt finetune`` on tiny local models: LoRA and full for both tasks, exact resume after SIGKILL, the card,
and the license inherited from the base (a Llama base's prefix and notice; a forbidden license refused)."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from openckpt.governance.cards import validate_card
from openckpt.governance.licenses import get_license
from tests.finetune.conftest import Run

SHORT = ["--epochs", "2", "--batch-size", "8", "--seq-len", "8", "--save-every", "5"]


def card_of(directory: Path) -> tuple[dict[str, object], str]:
    text = (directory / "README.md").read_text()
    meta, errors, _ = validate_card(text)
    assert not errors, errors
    return meta, text


@pytest.mark.parametrize(
    ("model", "task", "method", "extra"),
    [
        ("bert", "text-classification", "lora", []),
        ("bert", "text-classification", "full", []),
        ("gpt2", "causal-lm", "lora", []),
        ("gpt2", "causal-lm", "full", []),
        ("gpt2", "causal-lm", "lora", ["--merge", "--rank", "4", "--alpha", "8", "--target-modules", "c_attn,c_proj"]),
    ],
)
def test_finetune_writes_the_model_and_its_card(
    run_cli: Run, models: dict[str, Path], data: dict[str, Path], tmp_path: Path, model: str, task: str,
    method: str, extra: list[str],
) -> None:  # fmt: skip
    out = tmp_path / "ft"
    done = run_cli("finetune", models[model], "--data", data["jsonl" if model == "gpt2" else "csv"], "--task", task,
                   "--method", method, "--out", out, "--lr", "5e-3", *SHORT, *extra, "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    produced = out / "model"
    adapter = method == "lora" and "--merge" not in extra
    names = {"adapter_config.json", "adapter_model.safetensors"} if adapter else {"config.json", "model.safetensors"}
    assert names | {"README.md", "tokenizer.json"} <= set(result["files"]) == {p.name for p in produced.iterdir()}
    assert (out / "checkpoints" / "LATEST").is_file()
    assert result["steps"] == 2 * 9  # 72 training rows (8 held out) in batches of 8, twice

    meta, text = card_of(produced)
    base = models[model].name
    assert meta["base_model"] == base and meta["base_model_relation"] == ("adapter" if adapter else "finetune")
    assert meta["license"] == "apache-2.0" and meta["library_name"] == ("peft" if adapter else "transformers")
    dataset = data["jsonl" if model == "gpt2" else "csv"]
    from openckpt.digest import sha256_file

    assert meta["datasets"] == [dataset.name]
    (entry,) = meta["model-index"]  # type: ignore[misc]
    (res,) = entry["results"]
    assert res["dataset"]["revision"] == f"sha256:{sha256_file(dataset)}" and sha256_file(dataset) in text
    metrics = {m["type"]: m["value"] for m in res["metrics"]}
    expected = {"accuracy", "loss"} if task == "text-classification" else {"loss", "perplexity"}
    assert set(metrics) == expected and metrics == pytest.approx(result["metrics"], rel=1e-5)
    assert "Apache-2.0 §4(a)" in text  # the base's obligations, with their clause

    if adapter:
        config = json.loads((produced / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == base and config["r"] == 8
        trained = load_file(produced / "adapter_model.safetensors")
        assert any("lora_A" in k for k in trained) and len(trained) < 20
    else:
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

        auto = AutoModelForCausalLM if task == "causal-lm" else AutoModelForSequenceClassification
        loaded = auto.from_pretrained(produced)
        assert not any("lora" in name for name, _ in loaded.named_parameters())
    if "--merge" in extra:  # c_attn (16 → 48), attn.c_proj (16 → 16), mlp.c_proj (64 → 16) in 2 layers, rank 4
        assert result["trainable_parameters"] == 2 * 4 * ((16 + 48) + (16 + 16) + (64 + 16))


@pytest.mark.parametrize("method", ["lora", "full"])
def test_sigkill_then_the_same_command_resumes_bitwise_exactly(
    run_cli: Run, models: dict[str, Path], data: dict[str, Path], tmp_path: Path, method: str
) -> None:
    args = ["finetune", models["gpt2"], "--data", data["jsonl"], "--task", "causal-lm", "--method", method,
            "--lr", "5e-3", "--epochs", "2", "--batch-size", "8", "--seq-len", "8", "--save-every", "5"]  # fmt: skip
    straight = run_cli(*args, "--out", tmp_path / "straight", "--json")
    assert straight.returncode == 0, straight.stderr

    out = tmp_path / "killed"
    killed = run_cli("7", *args, "--out", out, script="tests.finetune.kill_run")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (out / "checkpoints" / "LATEST").read_text().strip() == "step-00000005" and not (out / "model").exists()
    resumed = run_cli(*args, "--out", out, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed_from"] == 5

    weights = "adapter_model.safetensors" if method == "lora" else "model.safetensors"
    a, b = load_file(tmp_path / "straight" / "model" / weights), load_file(out / "model" / weights)
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)  # bitwise: equal, not close
    assert json.loads(resumed.stdout)["metrics"] == json.loads(straight.stdout)["metrics"]


def test_rerun_with_other_settings_is_refused(
    run_cli: Run, models: dict[str, Path], data: dict[str, Path], tmp_path: Path
) -> None:
    args = ["finetune", models["bert"], "--data", data["csv"], "--task", "text-classification", "--out", tmp_path / "o"]
    assert run_cli(*args, *SHORT).returncode == 0
    done = run_cli(*args, *SHORT[:-2], "--save-every", "5", "--rank", "4")
    assert done.returncode == 2 and "StateMismatchError" in done.stderr and "rank" in done.stderr


def llama_base(models: dict[str, Path], tmp_path: Path, license_id: str) -> Path:
    base = tmp_path / "base"
    shutil.copytree(models["gpt2"], base)
    (base / "README.md").write_text(f"---\nlicense: {license_id}\n---\n# a tiny model\n")
    (base / "LICENSE").write_text("LLAMA 3.1 COMMUNITY LICENSE AGREEMENT\n(text of the agreement)\n")
    return base


def test_llama_base_passes_on_its_name_prefix_and_notice(
    run_cli: Run, models: dict[str, Path], data: dict[str, Path], tmp_path: Path
) -> None:
    base = llama_base(models, tmp_path, "llama3.1")
    out = tmp_path / "ft"
    done = run_cli("finetune", base, "--data", data["jsonl"], "--task", "causal-lm", "--out", out,
                   "--name", "tiny-reviews", *SHORT, "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    lic = get_license("llama3.1")
    assert lic is not None and lic.notice is not None
    meta, text = card_of(out / "model")
    assert meta["license"] == "llama3.1" and result["name"] == meta["model_name"] == "Llama-tiny-reviews"
    assert meta["model-index"][0]["name"] == "Llama-tiny-reviews"  # type: ignore[index]
    assert "Built with Llama" in text
    assert lic.notice in (out / "model" / "NOTICE").read_text()
    assert (out / "model" / "LICENSE").read_text().startswith("LLAMA 3.1")
    statuses = {o["clause"]: o["status"] for o in result["license_check"]["obligations"]}
    assert statuses["Llama 3.1 Community License Agreement §1.b.iii"] == "met"  # the NOTICE
    assert all(s in ("met", "manual") for s in statuses.values()), statuses
    assert result["license_check"]["verdict"] == "ok"


@pytest.mark.parametrize(("base_license", "chosen"), [("llama3.1", "apache-2.0"), ("cc-by-nc-4.0", "mit")])
def test_a_license_the_base_forbids_is_refused_before_training(
    run_cli: Run, models: dict[str, Path], data: dict[str, Path], tmp_path: Path, base_license: str, chosen: str
) -> None:
    base = llama_base(models, tmp_path, base_license)
    out = tmp_path / "ft"
    done = run_cli("finetune", base, "--data", data["jsonl"], "--task", "causal-lm", "--out", out,
                   "--license", chosen, *SHORT)  # fmt: skip
    assert done.returncode == 2
    assert "LicenseError" in done.stderr and f"under license '{chosen}'" in done.stderr.replace("\n", "")
    assert not out.exists()  # refused before any checkpoint


def test_card_yaml_is_what_the_hub_reads(models: dict[str, Path], tmp_path: Path) -> None:
    from openckpt.finetune.card import CardFacts, render_card

    facts = CardFacts(name="n", base_model="o/b", base_revision="abc", relation="adapter", method="lora",
                      task="causal-lm", license="mit", dataset="d.jsonl", dataset_sha256="0" * 64, train_rows=9,
                      eval_rows=1, metrics={"loss": 1.5, "perplexity": 4.48}, hyperparameters={}, steps=3,
                      trainable_parameters=10, total_parameters=100)  # fmt: skip
    text = render_card(facts)
    meta = yaml.safe_load(text.split("---")[1])
    from openckpt.governance.lineage import extract_edges

    (edge,) = extract_edges({"README.md": text.encode()})
    assert (edge.base, edge.relation) == ("o/b", "adapter") and meta["base_model_revision"] == "abc"
