"""The license a fine-tune inherits from its base, checked by the governance engine before training starts.

The base's license is read from its card (``license: other`` with a recognised LICENSE text counts as that
license), its own bases from its card, ``openckpt.json`` and ``adapter_config.json``. A chosen license that the
base's terms forbid (a non-commercial base under a commercial license, a pass-through regime such as Llama's left)
raises :class:`LicenseError`; without a chosen license the base's is kept. What the base's license asks of
derivatives (name prefix, NOTICE text, "Built with" line, license file) is returned for the output to fulfil.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from openckpt.errors import LicenseError
from openckpt.governance.compat import Ancestor, Report, check
from openckpt.governance.licenses import get_license
from openckpt.governance.subject import LICENSE_NAMES, NOTICE_NAMES, Subject, read_directory

__all__ = ["BaseModel", "Inherited", "inherit", "prefixed"]


@dataclass(frozen=True)
class BaseModel:
    """The model fine-tuned: a local directory, its id (a hub repo id, or the directory's name) and commit."""

    directory: Path
    id: str
    revision: str | None = None


@dataclass(frozen=True)
class Inherited:
    license: str | None
    """The fine-tune's license: the chosen one, else the base's (None when neither is known)."""
    base_license: str | None
    ancestors: tuple[Ancestor, ...]
    naming_prefix: str | None
    notices: tuple[str, ...]
    """Notice texts a NOTICE file must carry."""
    built_with: tuple[str, ...]
    license_files: tuple[Path, ...]
    """The base's LICENSE and NOTICE files, passed on to the fine-tune."""
    warnings: tuple[str, ...]
    """Findings that need a person (unknown licenses, terms to review); they do not stop training."""


def _base_files(directory: Path) -> tuple[Path, ...]:
    names = LICENSE_NAMES + NOTICE_NAMES
    return tuple(p for p in sorted(directory.iterdir()) if p.is_file() and p.name.split(".")[0].upper() in names)


def inherit(base: BaseModel, *, name: str, license: str | None, relation: str) -> Inherited:
    """What the fine-tune named ``name`` inherits; raises :class:`LicenseError` if ``license`` is not allowed."""
    subject = read_directory(base.directory)
    base_license = check(subject, []).license or subject.license
    ancestors = [Ancestor(base.id, base_license, relation, has_notice=subject.notice is not None)]
    ancestors += [
        Ancestor(e.base, subject.base_licenses.get(e.base), e.relation, depth=2, via=base.id)
        for e in subject.edges
        if e.base != base.id
    ]
    chosen = license or base_license
    report = check(Subject(name=name, license=chosen), ancestors)
    # without any license the card declares none (a warning below); training is not refused for that
    refused = [f for f in report.findings if f.level == "violation" and (chosen or f.code != "missing-license")]
    if refused:
        reasons = "; ".join(f"{f.message} ({f.clause})" for f in refused)
        raise LicenseError(f"refusing to fine-tune {base.id} under license {chosen!r}: {reasons}")
    lics = [lic for a in ancestors if (lic := get_license(a.license)) is not None]
    prefix = next((lic.naming_prefix for lic in lics if lic.naming_prefix), None)
    warnings = [f.message for f in report.findings if f.level == "review"]
    if not chosen:
        warnings.append("neither the base nor --license gives a license: the card declares none")
    return Inherited(
        license=chosen,
        base_license=base_license,
        ancestors=tuple(ancestors),
        naming_prefix=prefix,
        notices=tuple(dict.fromkeys(lic.notice for lic in lics if lic.notice and _needs_notice(lic.id))),
        built_with=tuple(dict.fromkeys(lic.built_with for lic in lics if lic.built_with)),
        license_files=_base_files(base.directory),
        warnings=tuple(warnings),
    )


def _needs_notice(license_id: str) -> bool:
    lic = get_license(license_id)
    return lic is not None and any(rule.check == "notice_file" for rule in lic.obligations)


def prefixed(name: str, prefix: str | None) -> str:
    """``name`` starting with ``prefix`` (as the Llama licenses require), prepended with a dash when missing."""
    if not prefix or name.replace("-", "").replace("_", "").lower().startswith(prefix.lower()):
        return name
    return f"{prefix}-{name}"


def final_report(files: dict[str, bytes], *, name: str, ancestors: tuple[Ancestor, ...]) -> Report:
    """The governance engine's verdict on the fine-tune's files (card, LICENSE, NOTICE) as written."""
    from openckpt.governance.subject import subject_from_files

    return check(subject_from_files(name, files), list(ancestors))
