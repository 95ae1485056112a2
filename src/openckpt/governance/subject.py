"""What the compatibility check looks at in a repo revision: its declared license and the files that fulfil duties.

Built from file contents (a directory on disk, or blobs of a hub tree): the card's ``license`` (``other`` with
``license_name`` / ``license_link``), the LICENSE and NOTICE files, the README's text, the model's name, and the
optional card field ``base_model_license`` (one id, or ``{base id: license id}``) that states the license of bases
this hub cannot look up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openckpt.governance.lineage import Edge, card_metadata, extract_edges, split_front_matter

__all__ = ["Subject", "is_relevant", "read_directory", "subject_from_files"]

LICENSE_NAMES = ("LICENSE", "LICENCE", "COPYING")
NOTICE_NAMES = ("NOTICE",)
LINEAGE_FILES = ("README.md", "openckpt.json", "adapter_config.json")
MAX_RELEVANT = 1 << 20


def _stem(path: str) -> str:
    return path.rsplit(".", 1)[0].upper() if "/" not in path else ""


def is_relevant(path: str) -> bool:
    """Whether the check reads this file: the card, lineage files, and top-level LICENSE* / NOTICE* / COPYING."""
    return path in LINEAGE_FILES or _stem(path).startswith(LICENSE_NAMES + NOTICE_NAMES)


@dataclass(frozen=True)
class Subject:
    name: str
    license: str | None
    license_name: str | None = None
    license_link: str | None = None
    license_text: str | None = None
    """The text of the license file (``license_link`` if it names a file of the repo, else LICENSE)."""
    notice: str | None = None
    readme: str = ""
    """The card's markdown, after its metadata block."""
    paths: frozenset[str] = frozenset()
    base_licenses: Mapping[str, str] = field(default_factory=dict)
    edges: tuple[Edge, ...] = ()

    @property
    def has_license_file(self) -> bool:
        return self.license_text is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "license": self.license,
            "license_name": self.license_name,
            "license_link": self.license_link,
            "has_license_file": self.has_license_file,
            "has_notice": self.notice is not None,
            "edges": [e.to_dict() for e in self.edges],
        }


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", errors="replace")


def _model_name(card: dict[str, Any], default: str) -> str:
    index = card.get("model-index")
    if isinstance(index, list) and index and isinstance(index[0], dict) and isinstance(index[0].get("name"), str):
        return str(index[0]["name"])
    return str(card["model_name"]) if isinstance(card.get("model_name"), str) else default


def subject_from_files(name: str, files: Mapping[str, bytes], *, paths: list[str] | None = None) -> Subject:
    """The subject of a revision named ``name`` (the repo's name, or the directory's), from the contents of its
    relevant files; ``paths`` lists every file of the revision (default the keys of ``files``)."""
    paths = list(files) if paths is None else paths
    readme = _text(files.get("README.md")) or ""
    card = card_metadata(readme)
    license_id = card.get("license") if isinstance(card.get("license"), str) else None
    link = card.get("license_link") if isinstance(card.get("license_link"), str) else None
    license_files = sorted(p for p in files if _stem(p).startswith(LICENSE_NAMES))
    notices = sorted(p for p in files if _stem(p).startswith(NOTICE_NAMES))
    license_text = _text(files.get(link)) if link and link in files else None
    if license_text is None and license_files:
        license_text = _text(files[license_files[0]])
    bases = card.get("base_model_license")
    edges = tuple(extract_edges(files, paths=paths))
    if isinstance(bases, str):
        base_licenses = {e.base: bases for e in edges}
    elif isinstance(bases, dict):
        base_licenses = {str(k): str(v) for k, v in bases.items() if isinstance(v, str)}
    else:
        base_licenses = {}
    return Subject(
        name=_model_name(card, name),
        license=license_id,
        license_name=card.get("license_name") if isinstance(card.get("license_name"), str) else None,
        license_link=link,
        license_text=license_text,
        notice="\n".join(_text(files[p]) or "" for p in notices) if notices else None,
        readme=split_front_matter(readme)[1],
        paths=frozenset(paths),
        base_licenses=base_licenses,
        edges=edges,
    )


def read_directory(directory: Path) -> Subject:
    """The subject of a model directory on disk (its name is the directory's unless the card names the model)."""
    paths = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
    readme = directory / "README.md"
    card = card_metadata(readme.read_text("utf-8", errors="replace")) if readme.is_file() else {}
    link = card.get("license_link")
    wanted = [p for p in paths if is_relevant(p) or p == link]
    files = {p: (directory / p).read_bytes() for p in wanted if (directory / p).stat().st_size <= MAX_RELEVANT}
    return subject_from_files(directory.resolve().name, files, paths=paths)
