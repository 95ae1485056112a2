"""Trigger-token search for text classifiers (gradient-guided, in the spirit of DBS and PICCOLO).

For each target class t, the clean inputs the model puts in other classes get a placeholder token inserted at a seeded
random place. The gradient of the loss toward t at that place ranks every vocabulary token by its first-order effect
(HotFlip: ``-(e_v · ∇)``); the best candidates are then inserted for real and their attack success rate (the share of
inputs that flip to t) measured. Triggers grow greedily to ``max_tokens`` tokens while none reaches the threshold.
The same is done with random tokens (never those of the trigger found), so that a model any insertion flips is not
mistaken for a backdoored one: a trigger is found when its success rate reaches the threshold and beats the best
random sequence by ``margin``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "Search",
    "TargetTrigger",
    "TextModel",
    "embedding_scores",
    "load_text_model",
    "search_triggers",
    "vocabulary",
]

THRESHOLD = 0.8
MARGIN = 0.3
MAX_LENGTH = 128
BATCH = 64
RELAX_STEPS = 40
TEMPERATURE = 0.5

Progress = Callable[[str, int, int], None]


@dataclass
class TextModel:
    """A transformers model and its tokenizer, in eval mode on ``device``, with frozen weights."""

    model: Any
    tokenizer: Any
    labels: list[str]
    device: str

    @property
    def embeddings(self) -> torch.Tensor:
        weight: torch.Tensor = self.model.get_input_embeddings().weight
        return weight

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Each text's token ids, special tokens included, truncated to leave room for a trigger."""
        ids: list[list[int]] = self.tokenizer(texts, truncation=True, max_length=MAX_LENGTH - 4)["input_ids"]
        return ids

    def placeholder(self) -> int:
        for token_id in (self.tokenizer.mask_token_id, self.tokenizer.unk_token_id, self.tokenizer.pad_token_id):
            if token_id is not None:
                return int(token_id)
        return 0


def load_text_model(directory: Path, *, causal: bool = False, device: str = "cpu") -> TextModel:
    """The sequence classifier (or causal LM) in ``directory``, from local files only."""
    import transformers

    from openckpt.errors import UnsuitableModelError

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as e:
        raise UnsuitableModelError(f"no usable tokenizer: {e}", path=directory) from e
    auto = transformers.AutoModelForCausalLM if causal else transformers.AutoModelForSequenceClassification
    model = auto.from_pretrained(directory, local_files_only=True).eval().to(device)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    config = model.config
    labels = [] if causal else [str(config.id2label.get(i, i)) for i in range(config.num_labels)]
    return TextModel(model, tokenizer, labels, device)


def vocabulary(text_model: TextModel) -> list[int]:
    """Token ids a trigger may use: every id of the embedding matrix but the special tokens."""
    special = set(text_model.tokenizer.all_special_ids)
    size = min(len(text_model.tokenizer), text_model.embeddings.shape[0])
    return [i for i in range(size) if i not in special]


def insert(sequences: list[list[int]], trigger: list[int], places: list[int]) -> list[list[int]]:
    return [s[:p] + trigger + s[p:] for s, p in zip(sequences, places, strict=True)]


def places(sequences: list[list[int]], rng: random.Random, *, head: int = 1) -> list[int]:
    """A random insertion place per sequence, after its first ``head`` and before its last token."""
    return [rng.randint(min(head, len(s)), max(min(head, len(s)), len(s) - 1)) for s in sequences]


def pad(text_model: TextModel, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), right-padded."""
    import torch

    width = max(len(s) for s in sequences)
    pad_id = text_model.tokenizer.pad_token_id or 0
    ids = torch.tensor([s + [pad_id] * (width - len(s)) for s in sequences], device=text_model.device)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences], device=text_model.device)
    return ids, mask


def embedding_scores(
    text_model: TextModel,
    sequences: list[list[int]],
    slots: list[int],
    loss_of: Callable[[Any, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """First-order score of every token at ``slots``: ``-(e_v · mean gradient of loss)``; higher lowers the loss."""
    import torch

    ids, mask = pad(text_model, sequences)
    weight = text_model.embeddings
    embeds = weight[ids].detach().clone().requires_grad_(True)
    output = text_model.model(inputs_embeds=embeds, attention_mask=mask)
    loss = loss_of(output, mask)
    (grad,) = torch.autograd.grad(loss, embeds)
    rows = torch.arange(len(sequences), device=grad.device)
    mean = grad[rows, torch.tensor(slots, device=grad.device)].mean(0)
    scores: torch.Tensor = -(weight.detach() @ mean)
    return scores


def relaxed_candidates(
    text_model: TextModel,
    sequences: list[list[int]],
    where: list[int],
    length: int,
    loss_of: Callable[[Any, torch.Tensor], torch.Tensor],
    *,
    allowed: list[int],
    steps: int = RELAX_STEPS,
    seed: int = 0,
) -> list[list[int]]:
    """Tokens ranked per slot by a continuous relaxation (as DBS): each of ``length`` slots inserted at ``where`` is a
    softmax mixture of the allowed embeddings whose logits Adam optimises to lower ``loss_of``."""
    import torch

    weight = text_model.embeddings.detach()[torch.tensor(allowed, device=text_model.device)]
    base = insert(sequences, [text_model.placeholder()] * length, where)
    ids, mask = pad(text_model, base)
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(length, len(allowed), generator=generator) * 0.01).to(text_model.device).requires_grad_(True)
    optimiser = torch.optim.Adam([logits], lr=0.5)
    rows = torch.arange(len(base), device=text_model.device)[:, None]
    cols = torch.tensor(where, device=text_model.device)[:, None] + torch.arange(length, device=text_model.device)
    clean = text_model.embeddings.detach()[ids]
    for _ in range(steps):
        mixed = (logits / TEMPERATURE).softmax(-1) @ weight
        embeds = clean.clone()
        embeds[rows, cols] = mixed.expand(len(base), length, -1)
        loss = loss_of(text_model.model(inputs_embeds=embeds, attention_mask=mask), mask)
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
    order = logits.detach().argsort(dim=-1, descending=True)
    return [[allowed[int(i)] for i in row] for row in order]


def _success(text_model: TextModel, sequences: list[list[int]], target: int) -> tuple[float, float]:
    """(share of ``sequences`` classified as ``target``, their mean probability of it)."""
    import torch

    hits, probability = 0, 0.0
    with torch.no_grad():
        for start in range(0, len(sequences), BATCH):
            ids, mask = pad(text_model, sequences[start : start + BATCH])
            probs = text_model.model(input_ids=ids, attention_mask=mask).logits.softmax(-1)
            hits += int((probs.argmax(-1) == target).sum())
            probability += float(probs[:, target].sum())
    return hits / len(sequences), probability / len(sequences)


@dataclass(frozen=True)
class TargetTrigger:
    """The best trigger found toward one class."""

    label: int
    tokens: list[str]
    success: float
    """Attack success rate: the share of clean inputs of other classes that the trigger flips to this class."""
    random_success: float
    """The best success rate of as many random token sequences of the same length, none of the trigger's tokens."""
    inputs: int
    flagged: bool
    candidates: list[tuple[str, float]]
    """The single-token candidates tried, with their success rates, best first."""


@dataclass(frozen=True)
class Search:
    """How triggers are searched and judged: 1 to ``max_tokens`` tokens, ``candidates`` tried per added token,
    ``random_tokens`` random sequences as the baseline. A trigger is found when its success reaches ``threshold``
    and beats the baseline by ``margin``."""

    max_tokens: int = 3
    candidates: int = 16
    random_tokens: int = 16
    threshold: float = THRESHOLD
    margin: float = MARGIN


def search_triggers(
    text_model: TextModel,
    texts: list[str],
    *,
    search: Search | None = None,
    seed: int = 0,
    budget: float | None = None,
    progress: Progress | None = None,
) -> list[TargetTrigger]:
    """The best trigger of 1 to ``max_tokens`` tokens toward each class, with its success and the random baseline.

    ``budget`` (seconds) is shared equally by the classes; each measures at least one candidate per length tried.
    """
    import torch

    search = search or Search()
    torch.manual_seed(seed)
    encoded = text_model.encode(texts)
    predicted = [int(p) for p in _predict(text_model, encoded)]
    allowed = vocabulary(text_model)
    start, classes = time.monotonic(), len(text_model.labels)
    results = []
    for target in range(classes):
        rng = random.Random(seed * 1009 + target)
        others = [s for s, p in zip(encoded, predicted, strict=True) if p != target]
        if not others:
            results.append(TargetTrigger(target, [], 0.0, 0.0, 0, False, []))
            continue
        where = places(others, rng)
        deadline = None if budget is None else start + budget * (target + 1) / classes
        toward = _TargetSearch(text_model, others, where, target, allowed, search, deadline, progress)
        results.append(toward.run(rng, seed=seed))
    return results


@dataclass
class _TargetSearch:
    """The search toward class ``target`` on the inputs ``others`` the model puts in other classes, with every
    sequence inserted at ``where``; ``tried`` collects the single-token candidates and their success rates."""

    model: TextModel
    others: list[list[int]]
    where: list[int]
    target: int
    allowed: list[int]
    search: Search
    deadline: float | None
    progress: Progress | None
    done: int = 0
    tried: list[tuple[str, float]] = field(default_factory=list)

    def run(self, rng: random.Random, *, seed: int) -> TargetTrigger:
        """Grow the best trigger, then measure the random baseline for its length."""
        rate, _, best = self.grow(seed)
        baseline = self.baseline(rng, best)
        flagged = rate >= self.search.threshold and rate - baseline >= self.search.margin
        tokens = list(self.model.tokenizer.convert_ids_to_tokens(best))
        self.tried.sort(key=lambda c: -c[1])
        return TargetTrigger(self.target, tokens, rate, baseline, len(self.others), flagged, self.tried)

    def grow(self, seed: int) -> tuple[float, float, list[int]]:
        """The best (success, probability, tokens), the trigger growing by one token while none reaches the
        threshold and time is left."""
        best: tuple[float, float, list[int]] = (-1.0, -1.0, [])
        trigger: list[int] = []
        for length in range(1, self.search.max_tokens + 1):
            step_best = self.best_of(self.tries(self.ranked(length, seed), trigger), single=length == 1)
            best = max(best, step_best)
            trigger = step_best[2]
            if best[0] >= self.search.threshold or self.expired():
                break
        return best

    def ranked(self, length: int, seed: int) -> list[list[int]]:
        """Candidate tokens per slot of a ``length``-token trigger, best first: the relaxation's and, for a single
        token, also the best first-order (HotFlip) flips."""
        import torch

        ranked = relaxed_candidates(
            self.model, self.others, self.where, length, self.loss, allowed=self.allowed, seed=seed
        )
        if length == 1:
            n = self.search.candidates
            probe = insert(self.others, [self.model.placeholder()], self.where)
            scores = embedding_scores(self.model, probe, self.where, self.loss)
            scores = scores[torch.tensor(self.allowed, device=self.model.device)]
            flips = [self.allowed[int(i)] for i in scores.topk(min(n, len(self.allowed))).indices]
            ranked[0] = list(dict.fromkeys(ranked[0][:n] + flips))[: 2 * n]
        return ranked

    def tries(self, ranked: list[list[int]], trigger: list[int]) -> list[list[int]]:
        """The sequences to measure: each single-token candidate; for longer triggers, the relaxation's top
        sequence, then the trigger so far extended by each candidate for the new slot."""
        if len(ranked) == 1:
            return [[c] for c in ranked[0]]
        return [[r[0] for r in ranked]] + [[*trigger, c] for c in ranked[-1][: self.search.candidates]]

    def best_of(self, tries: list[list[int]], *, single: bool) -> tuple[float, float, list[int]]:
        """The best (success, probability, tokens) of ``tries``, measured while time is left (at least one);
        ``single``: the tries are single tokens, recorded in ``tried``."""
        best: tuple[float, float, list[int]] = (-1.0, -1.0, [])
        for sequence in tries:
            if best[0] >= 0 and self.expired():
                break
            rate, probability = self.success(sequence)
            if single:
                self.tried.append((self.model.tokenizer.convert_ids_to_tokens(sequence[0]), rate))
            best = max(best, (rate, probability, sequence))
        return best

    def baseline(self, rng: random.Random, trigger: list[int]) -> float:
        """The best success of ``random_tokens`` random sequences as long as ``trigger``, none of its tokens."""
        pool = [t for t in self.allowed if t not in trigger]
        baseline = 0.0
        for _ in range(self.search.random_tokens):
            sequence = [rng.choice(pool) for _ in trigger]
            baseline = max(baseline, self.success(sequence)[0])
        return baseline

    def loss(self, output: Any, mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the model's ``output`` toward the target class."""
        import torch

        wanted = torch.full((output.logits.shape[0],), self.target, device=output.logits.device)
        return torch.nn.functional.cross_entropy(output.logits, wanted)

    def success(self, sequence: list[int]) -> tuple[float, float]:
        """(success rate, mean target probability) with ``sequence`` inserted; reported as progress."""
        measured = _success(self.model, insert(self.others, sequence, self.where), self.target)
        self.done += 1
        if self.progress is not None:
            total = self.search.max_tokens * self.search.candidates + self.search.random_tokens
            self.progress(f"class {self.model.labels[self.target]}", self.done, total)
        return measured

    def expired(self) -> bool:
        """Whether this class's share of the time budget is spent."""
        return self.deadline is not None and time.monotonic() > self.deadline


def _predict(text_model: TextModel, sequences: list[list[int]]) -> list[int]:
    import torch

    out: list[int] = []
    with torch.no_grad():
        for start in range(0, len(sequences), BATCH):
            ids, mask = pad(text_model, sequences[start : start + BATCH])
            out += text_model.model(input_ids=ids, attention_mask=mask).logits.argmax(-1).tolist()
    return out
