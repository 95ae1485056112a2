"""Global dedup: which xorbs a client asking about a chunk is told of, and what each upload made together.

A client (hf_xet) asks about the first chunk of every file it uploads and about chunks whose hash is eligible
(:func:`~openckpt.xet.hashes.eligible_for_global_dedup`: about one in 1024, so one every ~64 MB); it dedups against
the xorbs of every shard it is answered with, for the rest of its upload session, but chunks it has already passed
(8 MB blocks before the answer) stay sent. So the answer must list everything the client will meet next:

- a known chunk: its xorb, then the xorbs of the latest upload that used it, nearest first in that upload's file
  order (the shard the Hub would answer with: an upload session's files and their xorbs), then those of other files
  made with it;
- an unknown first chunk of a file (its hash is not eligible, so only a file's first chunk is asked about): the
  latest upload to the repo the client writes to, then the caller's own latest upload: a new version of a checkpoint
  starts with a new header, and most of what follows is in those. Given only to the first :data:`FIRST_CHUNK_ANSWERS`
  such questions of one upload session (one CAS token), since every file of a session asks.

An answer lists at most :data:`MAX_CHUNKS` chunks (~3 MB of shard). The xorbs an answer lists get their garbage
collection grace period restarted before they are read (in one transaction): a listed xorb is never swept before
the client's shard can name it.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Token, XetTerm, XetUpload, XetUploadXorb, Xorb, XorbChunk
from openckpt.hub.services.storage import gc as storage_gc
from openckpt.xet import shard as xshard
from openckpt.xet.hashes import eligible_for_global_dedup, hex_to_hash

__all__ = ["FIRST_CHUNK_ANSWERS", "MAX_CHUNKS", "MAX_XORBS", "dedup_shard", "record_upload"]

KEY_DAYS = 7
MAX_XORBS = 64
"""Most xorbs one answer lists: the whole of a ~4 GB upload."""
MAX_CHUNKS = 64 * 1024
"""Most chunk entries one answer lists (~3 MB of shard)."""
RELATED_FILES = 64
"""Files, among those made with a known chunk's xorb, whose other xorbs an answer may list after its upload's."""
FIRST_CHUNK_ANSWERS = 8
"""Unknown first chunks answered per upload session and hub process: one per file hf_xet ingests at once (its
default is 8)."""
_SESSIONS = 4096
_answered: OrderedDict[str, int] = OrderedDict()
_lock = threading.Lock()


def record_upload(session: Session, xorbs: Iterable[str], *, repo: int | None, minted_by: int | None) -> int | None:
    """Record one registered shard: the xorbs its files' terms name (in file order), for ``repo``'s token and the
    account of the access token ``minted_by``; its id, or None if it names none."""
    ordered = list(dict.fromkeys(xorbs))
    if not ordered:
        return None
    account = None if minted_by is None else session.scalar(select(Token.account_id).where(Token.id == minted_by))
    upload = XetUpload(repo_id=repo, account_id=account)
    session.add(upload)
    session.flush()
    rows = [{"upload_id": upload.id, "position": i, "xorb_hash": x} for i, x in enumerate(ordered)]
    session.execute(insert(XetUploadXorb), rows)
    return upload.id


def _first_answer(token_key: str) -> bool:
    """Whether an upload session (its token) may still be answered about an unknown first chunk; counts it."""
    with _lock:
        count = _answered.pop(token_key, 0)
        _answered[token_key] = count + 1
        while len(_answered) > _SESSIONS:
            _answered.popitem(last=False)
    return count < FIRST_CHUNK_ANSWERS


def _around(session: Session, upload: int, position: int) -> list[str]:
    """The xorbs of ``upload``, nearest to ``position`` first."""
    return list(
        session.scalars(
            select(XetUploadXorb.xorb_hash)
            .where(XetUploadXorb.upload_id == upload)
            .order_by(func.abs(XetUploadXorb.position - position), XetUploadXorb.position)
            .limit(MAX_XORBS)
        )
    )


def _for_known(session: Session, xorb: str) -> list[str]:
    """A known chunk's xorb, its latest upload's xorbs around it, then the xorbs of other files made with it."""
    found = session.execute(
        select(XetUploadXorb.upload_id, XetUploadXorb.position)
        .where(XetUploadXorb.xorb_hash == xorb)
        .order_by(XetUploadXorb.upload_id.desc())
        .limit(1)
    ).first()
    names = [xorb] + (_around(session, found[0], found[1]) if found is not None else [])
    files = select(XetTerm.file_hash).where(XetTerm.xorb_hash == xorb).distinct().limit(RELATED_FILES)
    related = session.scalars(
        select(XetTerm.xorb_hash)
        .where(XetTerm.file_hash.in_(files), XetTerm.xorb_hash != xorb)
        .distinct()
        .order_by(XetTerm.xorb_hash)
        .limit(MAX_XORBS)
    )
    return list(dict.fromkeys([*names, *related]))[:MAX_XORBS]


def _for_first_chunk(session: Session, repo: int | None, minted_by: int | None) -> list[str]:
    """The xorbs of the latest upload to ``repo``, then of the latest upload of the account of ``minted_by``."""
    names: list[str] = []
    latest = []
    if repo is not None:
        latest.append(session.scalar(select(func.max(XetUpload.id)).where(XetUpload.repo_id == repo)))
    if minted_by is not None:
        account = session.scalar(select(Token.account_id).where(Token.id == minted_by))
        if account is not None:
            latest.append(session.scalar(select(func.max(XetUpload.id)).where(XetUpload.account_id == account)))
    for upload in dict.fromkeys(u for u in latest if u is not None):
        names += _around(session, upload, 0)
    return list(dict.fromkeys(names))[:MAX_XORBS]


def _infos(session: Session, names: Sequence[str]) -> list[xshard.XorbInfo]:
    """The stored xorbs among ``names`` with their chunks, in order, up to :data:`MAX_CHUNKS` chunks in all."""
    stored = dict(session.execute(select(Xorb.hash, Xorb.serialized_size).where(Xorb.hash.in_(names))).tuples().all())
    infos: list[xshard.XorbInfo] = []
    total = 0
    for name in names:
        size = stored.get(name)
        if size is None:
            continue
        chunks = session.execute(
            select(XorbChunk.chunk_hash, XorbChunk.unpacked_offset, XorbChunk.unpacked_size)
            .where(XorbChunk.xorb_hash == name)
            .order_by(XorbChunk.chunk_index)
        ).tuples()
        listed = tuple((hex_to_hash(h), offset, n) for h, offset, n in chunks)
        total += len(listed)
        if total > MAX_CHUNKS and infos:
            break
        infos.append(xshard.XorbInfo(hex_to_hash(name), listed, size))
    return infos


def dedup_shard(
    db: Database, chunk_hex: str, *, repo: int | None, minted_by: int | None, session_key: str | None
) -> bytes | None:
    """The answer to a global-dedup query about the chunk ``chunk_hex``, writing to ``repo`` with the access token
    ``minted_by``, from the upload session whose write token is ``session_key`` (:func:`token_key`; None for a read
    token: no first-chunk answers): a complete shard (footer, lookup tables, random HMAC key) of xorb chunk lists
    (see the module); None if there is nothing to tell."""
    chunk = hex_to_hash(chunk_hex)
    with db.write() as session:
        xorb = session.scalar(
            select(XorbChunk.xorb_hash)
            .where(XorbChunk.chunk_hash == chunk_hex, XorbChunk.global_dedup.is_(True))
            .limit(1)
        )
        if xorb is not None:
            names = _for_known(session, xorb)
        elif session_key is not None and not eligible_for_global_dedup(chunk) and _first_answer(session_key):
            names = _for_first_chunk(session, repo, minted_by)
        else:
            return None
        if not names:
            return None
        storage_gc.keep_alive(session, xorbs=names)  # before reading: a sweep now re-checks and keeps them
        session.flush()
        infos = _infos(session, names)
    if not infos:
        return None
    now = int(time.time())
    return xshard.serialize_shard(
        xshard.Shard((), tuple(infos)),
        footer=True,
        hmac_key=os.urandom(32),
        created=now,
        key_expiry=now + KEY_DAYS * 86400,
    )


def token_key(authorization: str | None) -> str:
    """A stable digest of a request's Authorization header, naming its upload session."""
    return hashlib.sha256((authorization or "").encode()).hexdigest()
