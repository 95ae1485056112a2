"""A family of tiny GPT-2 models trained on the CPU with fixed seeds, for the provenance tests.

``build_family(root)`` writes, each as a Hugging Face directory (safetensors, ``config.json``, a card naming its base
by the repo id it gets on a hub, ``{owner}/{name}``):

- ``base``: random init, seed 0 (about 340 K parameters);
- ``finetune``: 300 AdamW steps of the base at lr 1e-3 on a synthetic corpus;
- ``lora``: a PEFT LoRA adapter (r 4 on ``c_attn`` and ``c_fc``) trained 30 steps on the base;
- ``quantized``: the base cast to bfloat16;
- ``merge``: 0.5·base + 0.5·``finetune_b`` (a second fine-tune of the base, on other data), claiming both;
- ``random``: random init of the same architecture, seed 1, claiming the base;
- ``impostor``: 100 steps of training of ``other_base`` (seed 2), claiming the base.

The family is built once per process (``family(tmp_path_factory)``) and reused by every test module.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["OWNER", "Family", "build_family", "card", "family"]

OWNER = "alice"
VOCAB, WIDTH, LAYERS, HEADS, CONTEXT = 256, 96, 3, 4, 64
_BUILT: dict[str, Family] = {}


@dataclass(frozen=True)
class Family:
    root: Path

    def __getitem__(self, name: str) -> Path:
        return self.root / name

    def repo(self, name: str) -> str:
        return f"{OWNER}/{name}"


def card(*bases: str, relation: str | None = None) -> str:
    """A model card declaring ``bases``."""
    lines = ["---", "license: apache-2.0"]
    if len(bases) == 1:
        lines.append(f"base_model: {bases[0]}")
    elif bases:
        lines += ["base_model:", *(f"- {b}" for b in bases)]
    if relation:
        lines.append(f"base_model_relation: {relation}")
    return "\n".join([*lines, "---", "", "# A tiny model", ""])


def _config():  # type: ignore[no-untyped-def]
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=VOCAB,
        n_embd=WIDTH,
        n_layer=LAYERS,
        n_head=HEADS,
        n_positions=CONTEXT,
        bos_token_id=0,
        eos_token_id=0,
    )


def _init(seed: int):  # type: ignore[no-untyped-def]
    import torch
    from transformers import GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(_config())


def _corpus(seed: int, *, n: int = 64, length: int = 32):  # type: ignore[no-untyped-def]
    """Token sequences with structure to learn: arithmetic progressions modulo the vocabulary."""
    import torch

    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, VOCAB, (n, 1), generator=g)
    step = torch.randint(1, 8, (n, 1), generator=g)
    return (start + step * torch.arange(length)) % VOCAB


def _train(model, data, *, steps: int, lr: float, seed: int) -> None:  # type: ignore[no-untyped-def]
    import torch

    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    for step in range(steps):
        batch = data[(step * 8) % len(data) :][:8]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()


def _save(model, directory: Path, readme: str) -> Path:  # type: ignore[no-untyped-def]
    model.save_pretrained(directory, safe_serialization=True)
    (directory / "README.md").write_text(readme)
    return directory


def build_family(root: Path) -> Family:
    """Write the models described in the module docstring under ``root`` (on one thread, as the machine is shared)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _build(Family(root))
    finally:
        torch.set_num_threads(threads)


def _build(fam: Family) -> Family:
    import torch
    from peft import LoraConfig, get_peft_model

    base_id = fam.repo("base")
    base = _init(0)
    _save(base, fam["base"], card())

    tuned = _init(0)
    _train(tuned, _corpus(10), steps=300, lr=1e-3, seed=10)
    _save(tuned, fam["finetune"], card(base_id, relation="finetune"))

    tuned_b = _init(0)
    _train(tuned_b, _corpus(11), steps=100, lr=1e-3, seed=11)
    _save(tuned_b, fam["finetune_b"], card(base_id, relation="finetune"))

    merged = _init(0)
    with torch.no_grad():
        for (_, p), q in zip(merged.named_parameters(), tuned_b.parameters(), strict=True):
            p.mul_(0.5).add_(q, alpha=0.5)
    _save(merged, fam["merge"], card(base_id, fam.repo("finetune_b"), relation="merge"))

    _save(_init(0).to(torch.bfloat16), fam["quantized"], card(base_id, relation="quantized"))
    _save(_init(1), fam["random"], card(base_id, relation="finetune"))

    other = _init(2)
    _save(other, fam["other_base"], card())
    _train(other, _corpus(12), steps=100, lr=1e-3, seed=12)
    _save(other, fam["impostor"], card(base_id, relation="finetune"))

    peft_model = get_peft_model(
        _init(0), LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True)
    )
    _train(peft_model, _corpus(13), steps=30, lr=1e-3, seed=13)
    peft_model.save_pretrained(fam["lora"], safe_serialization=True)
    config_path = fam["lora"] / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = base_id
    config_path.write_text(json.dumps(config, indent=2))
    (fam["lora"] / "README.md").write_text(card(base_id, relation="adapter"))
    return fam


def family(tmp_path_factory: pytest.TempPathFactory) -> Family:
    """The family, built on first use in this process."""
    if "family" not in _BUILT:
        root = tmp_path_factory.getbasetemp() / "lineage-family"
        shutil.rmtree(root, ignore_errors=True)
        _BUILT["family"] = build_family(root)
    return _BUILT["family"]
