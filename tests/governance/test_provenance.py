"""Provenance by the weights, offline: tiny GPT-2 models trained on the CPU against the base they declare."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from openckpt.format.similarity import similarity
from openckpt.governance.layerdiff import layer_changes, layer_of
from openckpt.governance.lineage import Edge
from openckpt.governance.provenance import (
    THRESHOLDS,
    LineageVerdict,
    Unavailable,
    align_names,
    verify_directory,
    verify_lineage,
)
from tests.governance.lineage_models import OWNER, Family, card, family


@pytest.fixture(scope="module")
def fam(tmp_path_factory: pytest.TempPathFactory) -> Family:
    return family(tmp_path_factory)


def _local(fam: Family) -> object:
    def resolve(edge: Edge) -> Path | Unavailable:
        path = fam[edge.base.removeprefix(f"{OWNER}/")]
        return path if path.is_dir() else Unavailable("the base is absent from the hub, or private")

    return resolve


def _verify(fam: Family, name: str) -> LineageVerdict:
    return verify_directory(fam[name], resolve=_local(fam))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["finetune", "quantized", "lora", "merge"])
def test_derivatives_are_consistent(fam: Family, name: str) -> None:
    verdict = _verify(fam, name)
    assert verdict.verdict == "consistent", verdict.reason
    assert all(p.verdict == "consistent" for p in verdict.parents)
    assert json.loads(json.dumps(verdict.to_dict()))["thresholds"]["related_cosine"] == THRESHOLDS.related_cosine


def test_full_finetune_figures(fam: Family) -> None:
    (parent,) = _verify(fam, "finetune").parents
    s = parent.summary
    assert s["related_fraction"] == 1.0 and s["coverage"] == 1.0
    assert 0.3 < s["mean_cosine"] < 0.99  # trained for real, still clearly the base's weights
    assert s["identical"] == 0 and s["missing"] == 0 and s["added"] == 0
    assert s["uninformative_tensors"] == 26  # LayerNorm ones and zero biases: every GPT-2 starts with them
    assert "compared" not in (parent.tensors[0].note or "")


def test_bf16_quantization_compares_by_value(fam: Family) -> None:
    verdict = _verify(fam, "quantized")
    (parent,) = verdict.parents
    assert verdict.relation == "quantized" and not parent.notes
    assert parent.summary["min_cosine"] > 0.9999
    assert parent.summary["max_rel_l2"] < 2**-8
    changed = [t for t in parent.tensors if t.status == "changed"]
    assert changed and all(t.dtype == "BF16" and t.base_dtype == "F32" for t in changed)
    assert all("compared in float64" in (t.note or "") for t in changed)


def test_lora_adapter_shapes_and_targets(fam: Family) -> None:
    (parent,) = _verify(fam, "lora").parents
    assert parent.method == "adapter"
    assert parent.summary["modules"] == 6 and parent.summary["fitting"] == 6 and parent.summary["rank"] == 4
    assert all(m["ok"] and m["base_shape"][0] == 96 for m in parent.modules)
    assert 0 < parent.summary["median_rel_update"] < 1
    assert any("any base of this architecture" in n for n in parent.notes)


def test_merge_is_checked_against_each_parent(fam: Family) -> None:
    verdict = _verify(fam, "merge")
    assert [p.base for p in verdict.parents] == [f"{OWNER}/base", f"{OWNER}/finetune_b"]
    assert all(p.summary["mean_cosine"] > 0.5 for p in verdict.parents)


def test_merge_of_unrelated_parents(fam: Family, tmp_path: Path) -> None:
    base, other = load_file(fam["base"] / "model.safetensors"), load_file(fam["other_base"] / "model.safetensors")
    merged = tmp_path / "merge"
    merged.mkdir()
    save_file({k: 0.5 * v + 0.5 * other[k] for k, v in base.items()}, merged / "model.safetensors")
    bases = {"a": fam["base"], "b": fam["other_base"]}
    verdict = verify_lineage(merged, bases, relation="merge")  # type: ignore[arg-type]
    assert verdict.verdict == "consistent"
    assert all(0.5 < p.summary["mean_cosine"] < 0.9 for p in verdict.parents)  # about 1/√2 with each parent
    wrong = verify_lineage(merged, {"a": fam["base"], "c": fam["random"]}, relation="merge")  # type: ignore[arg-type]
    assert wrong.verdict == "not_derived" and [p.verdict for p in wrong.parents] == ["consistent", "not_derived"]
    assert "c" in wrong.reason


@pytest.mark.parametrize("name", ["random", "impostor"])
def test_unrelated_weights_are_not_derived(fam: Family, name: str) -> None:
    verdict = _verify(fam, name)
    (parent,) = verdict.parents
    assert verdict.verdict == "not_derived" and parent.verdict == "not_derived"
    assert parent.summary["related_fraction"] == 0.0
    assert abs(parent.summary["mean_cosine"]) < 0.05
    assert f"{THRESHOLDS.min_related:.0%} needed" in parent.reason


def test_missing_base_is_unverifiable(fam: Family, tmp_path: Path) -> None:
    model = tmp_path / "orphan"
    shutil.copytree(fam["finetune"], model)
    (model / "README.md").write_text(card(f"{OWNER}/gone", relation="finetune"))
    verdict = verify_directory(model, resolve=_local(fam))  # type: ignore[arg-type]
    assert verdict.verdict == "unverifiable" and "absent" in verdict.parents[0].reason
    (model / "README.md").write_text(card())
    assert verify_directory(model, resolve=_local(fam)).reason == "the model declares no base model"  # type: ignore[arg-type]


def test_merge_with_an_unreadable_parent_is_unverifiable_unless_another_fails(fam: Family) -> None:
    gone = Unavailable("private")
    assert verify_lineage(fam["merge"], {"x": fam["base"], "y": gone}, relation="merge").verdict == "unverifiable"
    assert verify_lineage(fam["merge"], {"x": fam["random"], "y": gone}, relation="merge").verdict == "not_derived"


def _adapter_copy(fam: Family, tmp_path: Path, **config: object) -> Path:
    adapter = tmp_path / "adapter"
    shutil.copytree(fam["lora"], adapter)
    path = adapter / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    return adapter


def test_adapter_of_another_shape_is_not_derived(fam: Family, tmp_path: Path) -> None:
    adapter = _adapter_copy(fam, tmp_path)
    tensors = load_file(adapter / "adapter_model.safetensors")
    save_file(
        {k: torch.zeros(4, 128) if "lora_A" in k else v for k, v in tensors.items()},
        adapter / "adapter_model.safetensors",
    )
    (parent,) = verify_lineage(adapter, {"b": fam["base"]}, relation="adapter").parents
    assert parent.verdict == "not_derived" and "do not fit the base's weight [96, 288]" in parent.reason


def test_adapter_targets_must_exist(fam: Family, tmp_path: Path) -> None:
    adapter = _adapter_copy(fam, tmp_path, target_modules=["c_attn", "q_proj"])
    (parent,) = verify_lineage(adapter, {"b": fam["base"]}, relation="adapter").parents
    assert parent.verdict == "not_derived" and "'q_proj' matches no module" in parent.reason


def test_prefixes_and_resized_vocabulary_align(fam: Family, tmp_path: Path) -> None:
    tuned = load_file(fam["finetune"] / "model.safetensors")
    bare = {k.removeprefix("transformer."): v for k, v in tuned.items()}
    bare["wte.weight"] = torch.cat([bare["wte.weight"], torch.randn(4, 96)])
    model = tmp_path / "bare"
    model.mkdir()
    save_file(bare, model / "model.safetensors")
    (parent,) = verify_lineage(model, {"b": fam["base"]}, relation="finetune").parents
    assert parent.verdict == "consistent" and parent.summary["missing"] == 0
    wte = next(t for t in parent.tensors if t.name == "transformer.wte.weight")
    assert wte.model_name == "wte.weight" and wte.note == "rows 256 → 260: the first 256 compared"
    assert align_names(["a.x", "a.y"], ["m.a.x", "m.a.y", "z"]) == {"a.x": "m.a.x", "a.y": "m.a.y"}


def test_quantization_claim_that_changed_weights_is_noted(fam: Family, tmp_path: Path) -> None:
    model = tmp_path / "q"
    shutil.copytree(fam["finetune"], model)
    (parent,) = verify_lineage(model, {"b": fam["base"]}, relation="quantized").parents
    assert parent.verdict == "consistent" and "more like a fine-tune" in parent.notes[0]


def test_similarity_sums() -> None:
    a = torch.randn(1000)
    s = similarity(a, a.to(torch.bfloat16))
    assert not s.equal and s.cosine is not None and s.cosine > 0.9999 and s.rel_l2 < 2**-8
    ones = similarity(torch.ones(10), torch.ones(10))
    assert ones.constant_ref and ones.equal and ones.rel_l2 == 0
    zero = similarity(torch.zeros(3), torch.ones(3))
    assert zero.cosine is None and math.isinf(zero.rel_l2)


def test_layer_changes(fam: Family) -> None:
    assert layer_of("model.layers.3.mlp.up_proj.weight") == "model.layers.3"
    assert layer_of("transformer.wte.weight") == "transformer.wte" and layer_of("bias") == "bias"
    _, layers = layer_changes(fam["base"], fam["quantized"])
    assert {x.layer for x in layers} == {f"transformer.h.{i}" for i in range(3)} | {
        "transformer.wte",
        "transformer.wpe",
        "transformer.ln_f",
    }
    assert all(x.rel_l2 is not None and x.rel_l2 < 0.01 for x in layers)
    _, adapted = layer_changes(fam["base"], fam["lora"])
    assert [x.layer for x in adapted] == [f"transformer.h.{i}" for i in range(3)]
    assert all(x.changed == 2 and x.rel_l2 is not None and 0 < x.rel_l2 < 1 for x in adapted)
