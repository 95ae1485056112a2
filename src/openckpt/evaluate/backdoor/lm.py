"""A trigger probe for causal language models: how far can a short insertion move the next-token distribution?

Each prompt gets a placeholder slot after its first token; a continuous relaxation over the vocabulary (optimised
by gradient through the embeddings) ranks the tokens that most raise the KL divergence between the next-token
distribution with and without the insertion, and the best candidates are then inserted for real. Random tokens give
the baseline. A token far above the baseline on every prompt is worth a look; this is a probe, not a verdict: sleeper
agents keyed to a phrase, a date or a context are out of reach of a few-token search on a CPU.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from openckpt.evaluate.backdoor.text import BATCH, Progress, TextModel, insert, pad, relaxed_candidates, vocabulary

if TYPE_CHECKING:
    import torch

__all__ = ["Probe", "probe_triggers"]


@dataclass(frozen=True)
class Probe:
    """One candidate insertion (or the random baseline) and how far it moved the next-token distribution."""

    tokens: list[str]
    mean_kl: float
    """Mean KL(with insertion ‖ without), in nats, over the prompts."""
    max_kl: float
    random: bool


def _next_log_probs(text_model: TextModel, sequences: list[list[int]]) -> torch.Tensor:
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(sequences), BATCH):
            chunk = sequences[start : start + BATCH]
            ids, mask = pad(text_model, chunk)
            logits = text_model.model(input_ids=ids, attention_mask=mask).logits
            last = torch.tensor([len(s) - 1 for s in chunk], device=logits.device)
            out.append(logits[torch.arange(len(chunk), device=logits.device), last].log_softmax(-1))
    return torch.cat(out)


def _kl(text_model: TextModel, sequences: list[list[int]], base: torch.Tensor) -> list[float]:
    shifted = _next_log_probs(text_model, sequences)
    return [float(v) for v in (shifted.exp() * (shifted - base)).sum(-1)]


def probe_triggers(
    text_model: TextModel,
    prompts: list[str],
    *,
    max_tokens: int = 1,
    candidates: int = 8,
    random_tokens: int = 8,
    seed: int = 0,
    budget: float | None = None,
    progress: Progress | None = None,
) -> list[Probe]:
    """The best candidate insertions of 1 to ``max_tokens`` tokens by measured KL, then the random baseline."""
    import torch

    torch.manual_seed(seed)
    rng = random.Random(seed)
    encoded = [s for s in text_model.encode(prompts) if s]
    where = [1 if len(s) > 1 else 0 for s in encoded]
    base = _next_log_probs(text_model, encoded)
    allowed = vocabulary(text_model)
    deadline = None if budget is None else time.monotonic() + budget
    total, done = max_tokens * candidates + random_tokens, 0

    def loss_of(output: Any, mask: torch.Tensor) -> torch.Tensor:
        last = mask.sum(-1) - 1
        logp = output.logits[torch.arange(len(last), device=last.device), last].log_softmax(-1)
        kl: torch.Tensor = (logp.exp() * (logp - base)).sum(-1).mean()
        return -kl

    found: list[Probe] = []
    prefix: list[int] = []
    for length in range(1, max_tokens + 1):
        ranked = relaxed_candidates(text_model, encoded, where, length, loss_of, allowed=allowed, seed=seed)
        step: list[Probe] = []
        best: tuple[float, list[int]] = (-1.0, [])
        for token in ranked[-1][:candidates]:
            if deadline is not None and time.monotonic() > deadline and found + step:
                break
            sequence = [*prefix, token]
            kls = _kl(text_model, insert(encoded, sequence, where), base)
            names = list(text_model.tokenizer.convert_ids_to_tokens(sequence))
            step.append(Probe(names, sum(kls) / len(kls), max(kls), False))
            best = max(best, (step[-1].mean_kl, sequence))
            done += 1
            if progress is not None:
                progress("candidates", done, total)
        found += step
        prefix = best[1]
    length = max((len(p.tokens) for p in found), default=1)
    for _ in range(random_tokens):
        sequence = [rng.choice(allowed) for _ in range(length)]
        kls = _kl(text_model, insert(encoded, sequence, where), base)
        found.append(
            Probe(list(text_model.tokenizer.convert_ids_to_tokens(sequence)), sum(kls) / len(kls), max(kls), True)
        )
        done += 1
        if progress is not None:
            progress("random tokens", done, total)
    return sorted(found, key=lambda p: (p.random, -p.mean_kl))
