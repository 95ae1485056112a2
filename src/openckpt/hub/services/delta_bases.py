"""Where a xorb's bytes have a base: the tensors of the safetensors files it holds, matched by name, shape and dtype
with those of a base file, mapped to the bytes of the base's xorbs.

Base files are, first, the safetensors files at the head of the default branch of every base model the repos
holding the file declare (``base_model`` in the card: ``lineage_edges`` with a local base); else (the fallback)
other stored files of about the same size whose headers list the same tensors. Tensors are matched by name, so the
headers may differ in length: each tensor's bytes map to the base tensor's, wherever each file keeps them. Base
bytes in a xorb stored as a delta, or in the xorb being encoded, are never used (deltas stay one level deep).
"""

from __future__ import annotations

import json
import struct
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from openckpt.hub.db.models import Commit, LineageEdge, Repo, XetSha256, XetTerm, Xorb
from openckpt.hub.services.commits import resolve_revision
from openckpt.hub.services.delta_reads import DELTA, BaseXorb, load_base
from openckpt.hub.services.stored_files import FilePlan, file_plan, read_file
from openckpt.hub.services.trees import holders, read_tree
from openckpt.store.blobs import BlobStore
from openckpt.xet import delta

__all__ = ["FALLBACK_CANDIDATES", "Tensors", "plan_segments", "tensors_of"]

MAX_HEADER = 64 << 20
FALLBACK_CANDIDATES = 8
"""Stored files of about the same size whose headers the fallback reads."""
FALLBACK_WINDOW = 1 << 20
"""How far (bytes) a fallback candidate's size may be from the file's (headers differ in length)."""
MIN_MATCH = 0.5
"""Share of a file's tensor bytes a base must match (by name, shape and dtype) to be used."""

Tensors = dict[str, tuple[str, tuple[int, ...], int, int]]
"""Tensor name → (dtype, shape, first byte, end byte) in the file."""


def tensors_of(blobs: BlobStore, plan: FilePlan) -> Tensors | None:
    """The tensors of a safetensors file (None if it is not one)."""
    if plan.size < 8:
        return None
    (length,) = struct.unpack("<Q", b"".join(read_file(blobs, plan, start=0, end=8)))
    if not 2 <= length <= min(MAX_HEADER, plan.size - 8):
        return None
    try:
        header = json.loads(b"".join(read_file(blobs, plan, start=8, end=8 + length)))
    except ValueError:
        return None
    if not isinstance(header, dict):
        return None
    found: Tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            lo, hi = (int(x) for x in info["data_offsets"])
            found[name] = (str(info["dtype"]), tuple(int(d) for d in info["shape"]), 8 + length + lo, 8 + length + hi)
        except (KeyError, TypeError, ValueError):
            return None
        if not 8 + length <= found[name][2] <= found[name][3] <= plan.size:
            return None
    return found


@dataclass
class _BaseFile:
    plan: FilePlan
    tensors: Tensors
    starts: list[int]
    """Each term's first byte in the file (and the end)."""


def _base_file(blobs: BlobStore, plan: FilePlan | None) -> _BaseFile | None:
    tensors = None if plan is None else tensors_of(blobs, plan)
    if plan is None or not tensors:
        return None
    starts = [0]
    for term in plan.terms:
        starts.append(starts[-1] + term.size)
    return _BaseFile(plan, tensors, starts)


def _declared(session: Session, file_hash: str) -> list[str]:
    """Xet files of the safetensors files of the bases that the repos holding ``file_hash`` declare."""
    mine = select(XetSha256.sha256).where(XetSha256.file_hash == file_hash)
    held = holders(mine)
    repos = set(session.scalars(select(Commit.repo_id).join(held, held.c.tree_id == Commit.tree_id).distinct()))
    bases = session.scalars(
        select(LineageEdge.base_repo_id).where(LineageEdge.repo_id.in_(repos), LineageEdge.base_repo_id.is_not(None))
    )
    files: list[str] = []
    for base_id in sorted({b for b in bases if b is not None} - repos):
        repo = session.get(Repo, base_id)
        if repo is None:
            continue
        try:
            head = resolve_revision(session, repo, rev=repo.default_branch)
        except Exception:  # an empty base: nothing to match
            continue
        shas = [e.sha256 for p, e in sorted(read_tree(session, head.tree_id).items()) if p.endswith(".safetensors")]
        rows = session.execute(
            select(XetSha256.sha256, XetSha256.file_hash).where(
                XetSha256.sha256.in_(shas), XetSha256.verified.is_(True)
            )
        ).tuples()
        by_sha = dict(rows.all())
        files += [by_sha[s] for s in shas if s in by_sha and by_sha[s] != file_hash]
    return files


def _similar(session: Session, file_hash: str, size: int) -> list[str]:
    """Verified files of about ``size`` bytes stored before the file ``file_hash``, the closest first (the
    fallback's candidates: a new version is a delta against an older one, never the other way)."""
    born = session.scalar(select(func.min(XetSha256.created_at)).where(XetSha256.file_hash == file_hash))
    if born is None:
        return []
    rows = session.execute(
        select(XetSha256.file_hash)
        .where(
            XetSha256.verified.is_(True),
            XetSha256.file_hash != file_hash,
            XetSha256.created_at < born,
            XetSha256.size.between(size - FALLBACK_WINDOW, size + FALLBACK_WINDOW),
        )
        .order_by(func.abs(XetSha256.size - size), XetSha256.created_at.desc())
        .limit(FALLBACK_CANDIDATES * 2)
    ).scalars()
    return list(dict.fromkeys(rows))[:FALLBACK_CANDIDATES]


def _matched_bytes(tensors: Tensors, base: Tensors) -> int:
    return sum(hi - lo for name, (dt, shape, lo, hi) in tensors.items() if _same(base.get(name), dt, shape))


def _same(found: tuple[str, tuple[int, ...], int, int] | None, dtype: str, shape: tuple[int, ...]) -> bool:
    return found is not None and found[:2] == (dtype, shape)


def _bases_for(session: Session, blobs: BlobStore, file_hash: str, plan: FilePlan, tensors: Tensors) -> list[_BaseFile]:
    """The base files of a file: those its repos declare, else the best-matching stored file of its size."""
    total = sum(hi - lo for _, _, lo, hi in tensors.values()) or 1
    declared = [b for f in _declared(session, file_hash) if (b := _base_file(blobs, file_plan(session, f)))]
    if sum(_matched_bytes(tensors, b.tensors) for b in declared) >= MIN_MATCH * total:
        return declared
    best: tuple[int, _BaseFile] | None = None
    for candidate in _similar(session, file_hash, plan.size):
        found = _base_file(blobs, file_plan(session, candidate))
        score = 0 if found is None else _matched_bytes(tensors, found.tensors)
        if found is not None and score >= MIN_MATCH * total and (best is None or score > best[0]):
            best = (score, found)
    return [best[1]] if best is not None else []


def _file_ranges(session: Session, xorb: str, offsets: list[int]) -> list[tuple[str, FilePlan, int, int, int]]:
    """Runs of the xorb's unpacked bytes and where a file holds them: (file, its plan, xorb start, file start,
    length), each byte of the xorb in one run at most."""
    taken = np.zeros(len(offsets) - 1, bool)
    runs: list[tuple[str, FilePlan, int, int, int]] = []
    files = sorted(set(session.scalars(select(XetTerm.file_hash).where(XetTerm.xorb_hash == xorb))))
    for file_hash in files:
        plan = file_plan(session, file_hash)
        if plan is None:
            continue
        at = 0
        for term in plan.terms:
            lo, hi = term.chunk_start, term.chunk_start + len(term.chunks)
            if term.xorb == xorb and not taken[lo:hi].any():
                taken[lo:hi] = True
                runs.append((file_hash, plan, offsets[lo], at, offsets[hi] - offsets[lo]))
            at += term.size
    return runs


def _to_xorbs(
    base: _BaseFile, start: int, length: int, usable: Callable[[str], BaseXorb | None]
) -> Iterable[tuple[str, int, int, int]]:
    """Bytes ``[start, start + length)`` of a base file as (xorb, its unpacked offset, offset into the run, length),
    leaving out bytes in xorbs not ``usable``."""
    term_index = bisect_right(base.starts, start) - 1
    pos = start
    while pos < start + length and term_index < len(base.plan.terms):
        term = base.plan.terms[term_index]
        term_end = base.starts[term_index + 1]
        n = min(term_end, start + length) - pos
        found = usable(term.xorb)
        if found is not None:
            first = found.offsets[term.chunk_start] + pos - base.starts[term_index]
            yield term.xorb, first, pos - start, n
        pos += n
        term_index += 1


def plan_segments(
    session: Session, blobs: BlobStore, *, xorb: str, offsets: list[int]
) -> tuple[list[str], np.ndarray, dict[str, BaseXorb]] | None:
    """The bases and segments (:data:`openckpt.xet.delta.SEGMENT`) of a delta of ``xorb`` (chunk offsets
    ``offsets``, unpacked), and the bases as stored; None if no tensor of its files has a base."""
    loaded: dict[str, BaseXorb | None] = {}

    def usable(name: str) -> BaseXorb | None:
        if name not in loaded:
            loaded[name] = None if name == xorb else load_base(session, name)
        return loaded[name]

    names: dict[str, int] = {}
    rows: list[tuple[int, int, int, int]] = []
    per_file: dict[str, tuple[Tensors | None, list[_BaseFile]]] = {}
    for file_hash, plan, xorb_at, file_at, length in _file_ranges(session, xorb, offsets):
        if file_hash not in per_file:
            tensors = tensors_of(blobs, plan)
            per_file[file_hash] = (tensors, _bases_for(session, blobs, file_hash, plan, tensors) if tensors else [])
        tensors, bases = per_file[file_hash]
        if any(t.xorb == xorb for f in bases for t in f.plan.terms):
            return None  # the xorb holds base bytes itself: it stays a base
        for name, (dtype, shape, lo, hi) in (tensors or {}).items():
            a, b = max(lo, file_at), min(hi, file_at + length)
            match = next((f for f in bases if _same(f.tensors.get(name), dtype, shape)), None)
            if a >= b or match is None:
                continue
            for base, src, into, n in _to_xorbs(match, match.tensors[name][2] + a - lo, b - a, usable):
                index = names.setdefault(base, len(names))
                rows.append((xorb_at + a - file_at + into, src, n, index))
    if not rows:
        return None
    rows.sort()
    segments = np.array(rows, dtype=[("dst", "<u8"), ("src", "<u8"), ("length", "<u8"), ("base", "<u8")])
    table = delta.checked(list(names), segments.astype(delta.SEGMENT), offsets[-1])  # sorted, disjoint, inside
    used = {name: found for name, found in loaded.items() if found is not None and name in names}
    return list(table.bases), table.segments, used


def non_delta(session: Session, xorbs: Iterable[str]) -> bool:
    """Whether every xorb of ``xorbs`` is stored and not a delta."""
    wanted = set(xorbs)
    rows = session.execute(select(Xorb.hash, Xorb.encoding).where(Xorb.hash.in_(wanted))).tuples().all()
    return len(rows) == len(wanted) and all(encoding != DELTA for _, encoding in rows)
