"""A transformers model built from a small config: saved checkpoints load with from_pretrained; export has a card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import openckpt

transformers = pytest.importorskip("transformers")


def gpt2() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=128, n_positions=64)
    return transformers.GPT2LMHeadModel(config)


def bert() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=128,
        num_labels=3,
    )
    return transformers.BertForSequenceClassification(config)


@pytest.mark.parametrize(
    ("build", "auto"), [(gpt2, "AutoModelForCausalLM"), (bert, "AutoModelForSequenceClassification")]
)
def test_checkpoint_loads_with_from_pretrained(tmp_path: Path, build: object, auto: str) -> None:
    assert callable(build)
    model = build()
    optimizer = torch.optim.AdamW(model.parameters())
    openckpt.save(tmp_path / "ckpt", {"model": model, "optimizer": optimizer}, max_shard_size=40_000)
    index = json.loads((tmp_path / "ckpt" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1, "small shard size should shard the weights"
    loaded = getattr(transformers, auto).from_pretrained(tmp_path / "ckpt")
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_tied_weights_are_stored_once_and_restored(tmp_path: Path) -> None:
    model = gpt2()
    manifest = openckpt.save(tmp_path / "ckpt", {"model": model})
    assert manifest.entries["model"].aliases == {"lm_head.weight": "transformer.wte.weight"}
    assert "model/lm_head.weight" not in manifest.tensors
    target = gpt2()
    with torch.no_grad():
        for p in target.parameters():
            p.zero_()
    openckpt.load(tmp_path / "ckpt", {"model": target})
    assert target.lm_head.weight.data_ptr() == target.transformer.wte.weight.data_ptr()
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), target.state_dict().values(), strict=True)
    )


def test_export_writes_a_valid_card_and_loadable_weights(tmp_path: Path) -> None:
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    model = gpt2()
    openckpt.save(
        tmp_path / "ckpt",
        {"model": model, "progress": openckpt.TrainingProgress(step=120, epoch=2)},
        training={
            "metrics": {"loss": 1.25, "accuracy": 0.5},
            "datasets": [{"name": "org/data", "revision": "r1"}],
        },
        lineage={
            "base_model": "org/base",
            "base_model_revision": "a" * 40,
            "relation": "finetune",
            "license": "mit",
        },
    )
    manifest = openckpt.export(tmp_path / "ckpt", tmp_path / "out", dtype="bfloat16", name="tiny-gpt2")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["README.md", "config.json", "model.safetensors", "openckpt.json"]
    assert set(manifest.entries) == {"model"} and manifest.lineage.parent is not None

    card = ModelCard.load(tmp_path / "out" / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "mit" and data["base_model"] == "org/base"
    assert data["base_model_relation"] == "finetune" and data["datasets"] == ["org/data"]
    name, results = model_index_to_eval_results(data["model-index"])
    assert name == "tiny-gpt2" and {r.metric_type: r.metric_value for r in results} == {
        "loss": 1.25,
        "accuracy": 0.5,
    }
    front = (tmp_path / "out" / "README.md").read_text().split("---")[1]
    assert yaml.safe_load(front)["tags"] == ["openckpt"]

    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert loaded.dtype == torch.bfloat16
    assert torch.equal(loaded.transformer.wte.weight, model.transformer.wte.weight.to(torch.bfloat16))
