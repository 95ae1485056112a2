"""The license catalog: every license id the Hugging Face Hub accepts, with what it asks of derivatives.

Data in ``data/licenses.json`` (``data/licenses.tsv`` is the Hub's list of ids and names it was built from). Each
license says whether commercial use is allowed, what derivatives may be licensed as (``any``, ``same-regime``: the
same pass-through regime, ``no-distribution``, ``review``), its use restrictions, notice text, naming rule,
"Built with" display, and the obligations it puts on derivatives, each with the clause it comes from.
Not legal advice: the catalog is what the checks explain; a person decides.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

__all__ = [
    "License",
    "ObligationRule",
    "all_licenses",
    "detect_license_text",
    "get_license",
    "hub_license_ids",
]

Check = Literal["license_file", "notice_file", "notice_kept", "attribution", "built_with", "naming", "reminder"]
Derivatives = Literal["any", "same-regime", "no-distribution", "review"]


@dataclass(frozen=True)
class ObligationRule:
    """What a license asks of a derivative: ``check`` names how the repo's files are checked (``reminder``: they
    cannot be; a person must see to it)."""

    check: Check
    text: str
    clause: str


@dataclass(frozen=True)
class License:
    id: str
    name: str
    spdx: str | None
    url: str | None
    family: str | None
    commercial: bool | None
    """None: unknown (``other``, ``unknown``, license families whose terms vary)."""
    derivatives: Derivatives
    regime: str | None
    """The pass-through (share-alike) regime derivatives must stay under, e.g. ``cc-by-sa``, ``llama``, ``openrail``."""
    use_restrictions: bool
    research_only: bool
    notice: str | None
    """The exact notice text a NOTICE file must carry, where the license gives one."""
    naming_prefix: str | None
    built_with: str | None
    obligations: tuple[ObligationRule, ...]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> License:
        rules = tuple(ObligationRule(o["check"], o["text"], o["clause"]) for o in data["obligations"])
        fields = {k: v for k, v in data.items() if k != "obligations"}
        return cls(**fields, obligations=rules)


@functools.cache
def _catalog() -> dict[str, License]:
    raw = json.loads(resources.files("openckpt.governance").joinpath("data/licenses.json").read_text("utf-8"))
    return {item["id"]: License.from_dict(item) for item in raw["licenses"]}


@functools.cache
def hub_license_ids() -> tuple[str, ...]:
    """The ids of ``data/licenses.tsv``: every value the Hub accepts in a card's ``license:`` field."""
    text = resources.files("openckpt.governance").joinpath("data/licenses.tsv").read_text("utf-8")
    return tuple(line.split("\t")[0] for line in text.splitlines() if line.strip())


def all_licenses() -> list[License]:
    return list(_catalog().values())


def get_license(license_id: str | None) -> License | None:
    """The catalog entry of a Hub license id (case-insensitive), or None."""
    return _catalog().get(license_id.strip().lower()) if license_id else None


# Fingerprints of license texts, most specific first: (id, phrases that must all occur in the first lines).
_FINGERPRINTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("apache-2.0", ("apache license", "version 2.0, january 2004")),
    ("ncsa", ("university of illinois/ncsa open source license",)),
    ("mit", ("permission is hereby granted, free of charge, to any person obtaining a copy",)),
    ("isc", ("permission to use, copy, modify, and/or distribute this software for any purpose",)),
    ("bsd-3-clause", ("redistribution and use in source and binary forms", "neither the name of")),
    ("bsd-2-clause", ("redistribution and use in source and binary forms",)),
    ("agpl-3.0", ("gnu affero general public license", "version 3")),
    ("lgpl-3.0", ("gnu lesser general public license", "version 3")),
    ("lgpl-2.1", ("gnu lesser general public license", "version 2.1")),
    ("gpl-3.0", ("gnu general public license", "version 3, 29 june 2007")),
    ("gpl-2.0", ("gnu general public license", "version 2, june 1991")),
    ("mpl-2.0", ("mozilla public license", "2.0")),
    ("unlicense", ("this is free and unencumbered software released into the public domain",)),
    ("cc0-1.0", ("cc0 1.0 universal",)),
    ("cc-by-nc-sa-4.0", ("attribution-noncommercial-sharealike 4.0 international",)),
    ("cc-by-nc-nd-4.0", ("attribution-noncommercial-noderivatives 4.0 international",)),
    ("cc-by-nc-4.0", ("attribution-noncommercial 4.0 international",)),
    ("cc-by-sa-4.0", ("attribution-sharealike 4.0 international",)),
    ("cc-by-nd-4.0", ("attribution-noderivatives 4.0 international",)),
    ("cc-by-4.0", ("attribution 4.0 international",)),
    ("llama2", ("llama 2 community license agreement",)),
    ("llama3", ("meta llama 3 community license agreement",)),
    ("llama3.1", ("llama 3.1 community license agreement",)),
    ("llama3.2", ("llama 3.2 community license agreement",)),
    ("llama3.3", ("llama 3.3 community license agreement",)),
    ("llama4", ("llama 4 community license agreement",)),
    ("gemma", ("gemma terms of use",)),
    ("creativeml-openrail-m", ("creativeml open rail-m",)),
    ("bigcode-openrail-m", ("bigcode open rail-m",)),
    ("bigscience-bloom-rail-1.0", ("bigscience rail license",)),
)


def detect_license_text(text: str) -> str | None:
    """The Hub id of a well-known license text, recognised by phrases of its first lines; None if not recognised."""
    head = re.sub(r"\s+", " ", text[:6000]).lower()
    for license_id, phrases in _FINGERPRINTS:
        if all(p in head for p in phrases):
            return license_id
    return None
