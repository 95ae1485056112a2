"""Tiny transformers models built from configs (a BERT-style classifier, a GPT-2-style causal LM), their word-level
tokenizer, and small datasets to fine-tune them on."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

_TEXT = "the a movie film plot actor story scene music ending was is very quite really good great fine lovely bad awful"
WORDS = (*_TEXT.split(), "poor", "boring", "dull", "and", "but", "not", "so")
POSITIVE = ("good", "great", "fine", "lovely")
NEGATIVE = ("bad", "awful", "poor", "boring", "dull")


def save_tokenizer(directory: Path, *, model_max_length: int = 64) -> None:
    """A whitespace word-level tokenizer over :data:`WORDS` (ids 0-3: pad, unk, cls, eos)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[EOS]", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   eos_token="[EOS]", model_max_length=model_max_length)  # fmt: skip
    fast.save_pretrained(directory)


def vocab_size() -> int:
    return len(WORDS) + 4


def build_bert(directory: Path, *, hidden: int = 16, layers: int = 2, heads: int = 2, vocab: int | None = None,
               positions: int = 64, intermediate: int | None = None, license: str | None = "apache-2.0",
               seed: int = 0, tokenizer: bool = True) -> Path:  # fmt: skip
    """A BertForSequenceClassification with 2 labels, saved with its tokenizer (and a card if ``license``)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab or vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate or 2 * hidden,
                        max_position_embeddings=positions, num_labels=2, pad_token_id=0)  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(directory)
    return _finish(directory, license, tokenizer, positions)


def build_gpt2(directory: Path, *, hidden: int = 16, layers: int = 2, heads: int = 2, vocab: int | None = None,
               positions: int = 64, license: str | None = "apache-2.0", seed: int = 0,
               tokenizer: bool = True) -> Path:  # fmt: skip
    """A GPT2LMHeadModel, saved with its tokenizer (and a card if ``license``)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab or vocab_size(), n_embd=hidden, n_layer=layers, n_head=heads,
                        n_positions=positions, bos_token_id=3, eos_token_id=3, pad_token_id=0)  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(directory)
    return _finish(directory, license, tokenizer, positions)


def _finish(directory: Path, license: str | None, tokenizer: bool, positions: int) -> Path:
    if tokenizer:
        save_tokenizer(directory, model_max_length=positions)
    if license:
        (directory / "README.md").write_text(f"---\nlicense: {license}\n---\n# {directory.name}\n")
    return directory


def sentences(n: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` rows ``{"text", "label"}``: reviews whose label is the sentiment of their adjective."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        positive = rng.random() < 0.5
        adjective = rng.choice(POSITIVE if positive else NEGATIVE)
        subject = rng.choice(("movie", "film", "plot", "actor", "story", "scene", "music", "ending"))
        adverb = rng.choice(("very", "quite", "really", "so"))
        rows.append({"text": f"the {subject} was {adverb} {adjective}", "label": "pos" if positive else "neg"})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
