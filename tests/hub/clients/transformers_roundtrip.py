"""``push_to_hub`` and ``from_pretrained`` through a hub, in processes of their own: transformers reads HF_ENDPOINT
when it is imported.

``python transformers_roundtrip.py push REPO WORK``: build a tiny GPT-2 from a config (nothing is downloaded), save
its weights to ``WORK/reference.safetensors`` and push it to ``REPO``.
``python transformers_roundtrip.py load REPO WORK``: load ``REPO`` with ``AutoModel`` and compare every tensor with
the reference; prints ``identical N`` or exits non-zero.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, GPT2Config, GPT2Model


def push(repo: str, work: Path) -> None:
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=100, n_positions=64, bos_token_id=0, eos_token_id=0)
    model = GPT2Model(config)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(work / "reference.safetensors"))
    print(model.push_to_hub(repo, private=True, commit_message="tiny gpt2"))


def load(repo: str, work: Path) -> None:
    reference = load_file(str(work / "reference.safetensors"))
    model = AutoModel.from_pretrained(repo)
    state = model.state_dict()
    assert type(model).__name__ == "GPT2Model", type(model)
    assert sorted(state) == sorted(reference), sorted(set(state) ^ set(reference))
    different = [k for k in reference if not torch.equal(reference[k], state[k])]
    assert not different, different
    print(f"identical {len(reference)}")


if __name__ == "__main__":
    {"push": push, "load": load}[sys.argv[1]](sys.argv[2], Path(sys.argv[3]))
