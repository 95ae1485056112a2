"""The verdict of ``openckpt lineage verify`` in a model card, beside the bias and backdoor results.

It is a block of the card's "Bias, Risks, and Limitations" section (a claimed base the weights do not come from is a
risk for whoever reuses the model), between ``<!-- openckpt-provenance -->`` markers: verifying again replaces it and
keeps everything else. The card's metadata is left as it is: ``base_model`` stays the claim, the block the check.
"""

from __future__ import annotations

from typing import Any

from openckpt.errors import FormatError
from openckpt.governance.card_sections import put_block
from openckpt.governance.cards import parse_card

__all__ = ["BLOCK_KEY", "SECTION_TITLE", "provenance_block", "update_card"]

SECTION_TITLE = "Bias, Risks, and Limitations"
BLOCK_KEY = "openckpt-provenance"
_WORDS = {"consistent": "consistent", "not_derived": "not derived", "unverifiable": "unverifiable"}


def _cell(value: Any, *, percent: bool = False) -> str:
    if value is None:
        return "-"
    if percent:
        return f"{value:.0%}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def provenance_block(result: dict[str, Any], *, checked_on: str) -> str:
    """The markdown of a verdict (``LineageVerdict.to_dict()``), checked on the day ``checked_on``."""
    verdict = _WORDS.get(result["verdict"], result["verdict"])
    relation = result.get("relation") or "derivative"
    lines = [
        "### Provenance by the weights",
        "",
        f"`openckpt lineage verify` compared these weights with each declared base ({_cell(relation)}) on "
        f"{checked_on}: **{verdict}**. {_cell(result['reason'])}",
        "",
        "| Base | Verdict | Identical | Changed | Missing | Added | Related parameters | Median cosine |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for parent in result["parents"]:
        s = parent.get("summary") or {}
        cells = [
            f"`{_cell(parent['base'])}`",
            _WORDS.get(parent["verdict"], parent["verdict"]),
            *(_cell(s.get(k)) for k in ("identical", "changed", "missing", "added")),
            _cell(s.get("related_fraction"), percent=True),
            _cell(s.get("median_cosine")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    t = result["thresholds"]
    lines += [
        "",
        f"Consistent when at least {t['min_related']:.0%} of a base's informative parameters sit in tensors whose "
        f"cosine with this model's is at least {t['related_cosine']}. This shows that the weights come from the base "
        "(or not); it says nothing of the data or the training that changed them.",
        "",
    ]
    return "\n".join(lines)


def update_card(text: str | None, result: dict[str, Any], *, model_name: str, checked_on: str) -> str:
    """``text`` (a README.md, or None for none yet) with the verdict's block in its risks section."""
    _, body, errors = parse_card(text or f"# {model_name}\n")
    if errors:
        raise FormatError(f"README.md: {errors[0]}; fix the card before recording the verdict")
    source = text or f"# {model_name}\n"
    front_len = len(source) - len(body)
    new_body = put_block(body, BLOCK_KEY, provenance_block(result, checked_on=checked_on), section=SECTION_TITLE)
    return source[:front_len] + new_body
