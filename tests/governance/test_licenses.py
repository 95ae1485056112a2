"""The license catalog: every id the Hub accepts, with SPDX ids, terms and notice texts; license text fingerprints."""

from __future__ import annotations

from pathlib import Path

import pytest

from openckpt.governance.licenses import all_licenses, detect_license_text, get_license, hub_license_ids

SHARED_TSV = Path("/work/shared/docs/licenses.tsv")


def test_every_hub_id_is_in_the_catalog() -> None:
    ids = hub_license_ids()
    assert len(ids) >= 80 and len(set(ids)) == len(ids)
    assert {lic.id for lic in all_licenses()} == set(ids)
    if SHARED_TSV.exists():  # the packaged copy is the shared list
        assert ids == tuple(line.split("\t")[0] for line in SHARED_TSV.read_text().splitlines() if line.strip())


@pytest.mark.parametrize(
    ("license_id", "spdx", "commercial", "derivatives", "regime"),
    [
        ("apache-2.0", "Apache-2.0", True, "any", None),
        ("mit", "MIT", True, "any", None),
        ("cc-by-nc-4.0", "CC-BY-NC-4.0", False, "any", None),
        ("cc-by-sa-4.0", "CC-BY-SA-4.0", True, "same-regime", "cc-by-sa"),
        ("cc-by-nc-nd-4.0", "CC-BY-NC-ND-4.0", False, "no-distribution", None),
        ("bigscience-openrail-m", "BigScience-OpenRAIL-M", True, "same-regime", "openrail"),
        ("llama3.1", None, True, "same-regime", "llama"),
        ("gemma", None, True, "same-regime", "gemma"),
        ("deepfloyd-if-license", None, False, "review", None),
        ("other", None, None, "review", None),
    ],
)
def test_terms(
    license_id: str, spdx: str | None, commercial: bool | None, derivatives: str, regime: str | None
) -> None:
    lic = get_license(license_id)
    assert lic is not None
    assert (lic.spdx, lic.commercial, lic.derivatives, lic.regime) == (spdx, commercial, derivatives, regime)


def test_llama_and_gemma_duties() -> None:
    llama2, llama3, llama31, gemma = (get_license(i) for i in ("llama2", "llama3", "llama3.1", "gemma"))
    assert llama2 and llama3 and llama31 and gemma
    assert llama2.notice == ("Llama 2 is licensed under the LLAMA 2 Community License, Copyright (c) Meta Platforms, "
                             "Inc. All Rights Reserved.")  # fmt: skip
    assert (
        gemma.notice
        == "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms"
    )
    assert (llama3.naming_prefix, llama3.built_with) == ("Llama 3", "Built with Meta Llama 3")
    assert (llama31.naming_prefix, llama31.built_with) == ("Llama", "Built with Llama")
    assert get_license("deepfloyd-if-license").research_only  # type: ignore[union-attr]
    assert all(lic.url for lic in all_licenses() if lic.spdx or lic.family in ("llama", "gemma", "openrail"))
    assert all(o.clause for lic in all_licenses() for o in lic.obligations)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "                                 Apache License\n                           Version 2.0, January 2004\n",
            "apache-2.0",
        ),
        (
            "MIT License\n\nCopyright (c) 2024 x\n\nPermission is hereby granted, free of charge, to any person "
            "obtaining "
            "a copy",
            "mit",
        ),
        ("LLAMA 3.1 COMMUNITY LICENSE AGREEMENT\nLlama 3.1 Version Release Date: July 23, 2024", "llama3.1"),
        ("Attribution-NonCommercial 4.0 International\n\n=======", "cc-by-nc-4.0"),
        ("Attribution 4.0 International", "cc-by-4.0"),
        ("GNU GENERAL PUBLIC LICENSE\n Version 3, 29 June 2007", "gpl-3.0"),
        ("ACME license: do what we say", None),
    ],
)
def test_fingerprints(text: str, expected: str | None) -> None:
    assert detect_license_text(text) == expected
