"""Checks of an uploaded shard against the xorbs the server already holds (spec §6.5, steps 2 and 3).

The verification hash of each term proves the uploader knows the chunks it references; the file hash is recomputed
from the server's own chunk list. Pure functions: the caller supplies the stored chunk lists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from openckpt.errors import XetFormatError
from openckpt.xet.hashes import file_hash, hash_to_hex, verification_hash
from openckpt.xet.shard import XetFile, XorbInfo
from openckpt.xet.xorb import Xorb

__all__ = ["ChunkList", "check_file", "check_xorb_info"]

ChunkList = Sequence[tuple[bytes, int]]
"""A stored xorb's chunks as ``(chunk hash, uncompressed size)``, in xorb order."""


def check_xorb_info(info: XorbInfo, xorb: Xorb) -> None:
    """Require a shard's xorb-info block to list exactly the chunks of the stored, parsed ``xorb``."""
    where = f"xorb {hash_to_hex(info.hash)}"
    if info.hash != xorb.hash:
        raise XetFormatError(f"{where}: compared with xorb {xorb.hex}")
    offsets = [xorb.unpacked_offset(i) for i in range(len(xorb.chunks))]
    stored = [(c.hash, offset, c.size) for c, offset in zip(xorb.chunks, offsets, strict=True)]
    if list(info.chunks) != stored:
        raise XetFormatError(f"{where}: the shard lists chunks that differ from the stored xorb's")


def check_file(
    file: XetFile, chunks_of: Callable[[bytes], ChunkList | None], *, require_verification: bool = True
) -> None:
    """Check every term of ``file`` against the stored chunk lists, then its Xet hash; ``chunks_of`` returns
    ``None`` for a xorb the server does not hold."""
    where = f"file {hash_to_hex(file.hash)}"
    leaves: list[tuple[bytes, int]] = []
    for i, term in enumerate(file.terms):
        chunks = chunks_of(term.xorb_hash)
        if chunks is None:
            raise XetFormatError(
                f"{where}: term {i} references xorb {hash_to_hex(term.xorb_hash)}, which is not stored"
            )
        if not 0 <= term.chunk_start < term.chunk_end <= len(chunks):
            raise XetFormatError(
                f"{where}: term {i} chunks [{term.chunk_start}, {term.chunk_end}) not in a xorb of {len(chunks)}"
            )
        listed = chunks[term.chunk_start : term.chunk_end]
        if sum(size for _, size in listed) != term.size:
            raise XetFormatError(f"{where}: term {i} declares {term.size} bytes, its chunks hold a different amount")
        if term.verification is None:
            if require_verification:
                raise XetFormatError(f"{where}: term {i} has no verification hash")
        elif verification_hash([h for h, _ in listed]) != term.verification:
            raise XetFormatError(f"{where}: term {i} verification hash does not match the stored chunks")
        leaves += listed
    if file_hash(leaves) != file.hash:
        raise XetFormatError(f"{where}: its chunks hash to {hash_to_hex(file_hash(leaves))}")
