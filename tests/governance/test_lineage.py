"""Lineage edges from a revision's files: card, openckpt manifest, PEFT adapter config."""

from __future__ import annotations

import json

from openckpt.governance.lineage import Edge, extract_edges
from openckpt.governance.subject import read_directory, subject_from_files


def card(meta: str) -> bytes:
    return f"---\n{meta}---\n# model\n".encode()


def test_card_single_base_is_a_finetune() -> None:
    assert extract_edges({"README.md": card("base_model: org/base\n")}) == [Edge("org/base", "finetune")]


def test_card_list_is_a_merge_unless_stated() -> None:
    edges = extract_edges({"README.md": card("base_model: [a/x, b/y]\n")})
    assert [(e.base, e.relation) for e in edges] == [("a/x", "merge"), ("b/y", "merge")]
    stated = extract_edges({"README.md": card("base_model: [a/x]\nbase_model_relation: quantized\n")})
    assert stated == [Edge("a/x", "quantized")]


def test_adapter_config_gives_base_and_revision() -> None:
    files = {
        "adapter_config.json": json.dumps({"base_model_name_or_path": "meta/Llama-3.1-8B", "revision": "abc"}).encode()
    }
    assert extract_edges(files) == [Edge("meta/Llama-3.1-8B", "adapter", "abc", "adapter_config")]
    both = extract_edges({**files, "README.md": card("base_model: meta/Llama-3.1-8B\n")})
    assert both == [Edge("meta/Llama-3.1-8B", "adapter", "abc", "card")]


def test_manifest_lineage_and_external_ids() -> None:
    manifest = {
        "lineage": {"base_model": "https://other.hub/org/m", "base_model_revision": "v1", "relation": "finetune"}
    }
    assert extract_edges({"openckpt.json": json.dumps(manifest).encode()}) == [
        Edge("https://other.hub/org/m", "finetune", "v1", "manifest")
    ]


def test_gguf_files_mean_quantized_and_bad_inputs_mean_nothing() -> None:
    assert (
        extract_edges({"README.md": card("base_model: a/b\n")}, paths=["README.md", "m.Q4.gguf"])[0].relation
        == "quantized"
    )
    assert extract_edges({"README.md": b"---\n: [\n---\n", "openckpt.json": b"{", "adapter_config.json": b"[]"}) == []
    assert extract_edges({"README.md": card("base_model: 3\n")}) == []


def test_subject_reads_license_notice_and_base_licenses(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "README.md").write_bytes(card("license: other\nlicense_name: x\nlicense_link: LICENSE.txt\n"
                                              "base_model: a/b\nbase_model_license: mit\n"))  # fmt: skip
    (tmp_path / "LICENSE.txt").write_text("Apache License\nVersion 2.0, January 2004")
    (tmp_path / "NOTICE").write_text("hello")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "LICENSE").write_text("not read")
    subject = read_directory(tmp_path)
    assert subject.license == "other" and subject.license_text and subject.license_text.startswith("Apache")
    assert subject.notice == "hello" and subject.base_licenses == {"a/b": "mit"}
    assert subject.name == tmp_path.name and "sub/LICENSE" in subject.paths
    named = subject_from_files("d", {"README.md": card("model-index:\n- name: Llama-x\n")})
    assert named.name == "Llama-x" and named.license is None
