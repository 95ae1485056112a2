"""Reproduction results in a model card: a "Reproduction" section between ``<!-- openckpt-reproduce -->`` markers
(a re-run replaces it, the text around it is kept) and an ``openckpt_reproduction`` entry in the card's YAML."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import yaml

from openckpt.errors import FormatError
from openckpt.governance.cards import parse_card

__all__ = ["reproduction_block", "update_card"]

_MARKED = re.compile(r"<!-- openckpt-reproduce -->\n.*?<!-- /openckpt-reproduce -->\n?", re.DOTALL)


def reproduction_block(result: dict[str, Any]) -> str:
    """The Markdown section of one ``reproduce`` result (:meth:`ReproduceResult.to_dict`)."""
    what = "first {} steps".format(result["steps"]) if result.get("steps") else "whole run"
    verdict = result["verdict"]
    tol = result["tolerances"]
    lines = [
        "<!-- openckpt-reproduce -->",
        "## Reproduction",
        "",
        f"`openckpt reproduce` re-ran the {what} from the recipe on "
        f"{datetime.now(UTC).date().isoformat()}: **{verdict}** ({result['compared']}, {result['tensors']} tensors"
        f"{'' if verdict == 'bitwise' else ', ' + str(len(result['differing'])) + ' differ'}).",
        "",
        f"Tolerances: weights |a - b| <= {tol['atol']:g} + {tol['rtol']:g}·|a|, metrics {tol['metric_rtol']:g} "
        f"relative; bitwise expected: {'yes' if result['expected_bitwise'] else 'no'}.",
        "",
    ]
    metrics = result.get("metrics") or {}
    if metrics:
        lines += ["| metric | recorded | re-run |", "|---|---|---|"]
        lines += [f"| {k} | {v['recorded']} | {v['here']} |" for k, v in sorted(metrics.items())]
        lines.append("")
    diffs = result.get("environment_differences") or []
    if diffs:
        lines += ["Environment differences:", "", *(f"- {d}" for d in diffs[:20]), ""]
    lines.append("<!-- /openckpt-reproduce -->")
    return "\n".join(lines) + "\n"


def update_card(text: str | None, result: dict[str, Any], *, model_name: str) -> str:
    """``text`` (README.md, or None) with the result in its YAML (``openckpt_reproduction``) and its section."""
    meta, body, errors = parse_card(text or f"# {model_name}\n")
    if errors:
        raise FormatError(f"README.md: {errors[0]}; fix the card before adding results")
    meta = dict(meta or {})
    meta["openckpt_reproduction"] = {
        "verdict": result["verdict"],
        "reproduced": result["reproduced"],
        "steps": result.get("steps"),
        "compared": result["compared"],
    }
    block = reproduction_block(result)
    body = body.lstrip("\n")
    marked = _MARKED.search(body) is not None
    body = _MARKED.sub(lambda _: block, body, count=1) if marked else body.rstrip("\n") + "\n\n" + block
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n{body}"
