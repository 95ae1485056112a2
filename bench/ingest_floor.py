"""The floor under a Xet upload's hub CPU on this machine: what any Python server must do per GB of new bf16 weights.

Required per byte of the file, whatever the server's design: the client's chunks decoded (LZ4 frames, then BG4's
four byte groups put back), every chunk hashed (keyed blake3, the Xet chunk hash) and the file hashed once (sha256,
what commits name it by). Each is timed alone on one core (``time.process_time``), twice: on one piece over and
over, so that the data stays in the CPU cache (what a fused pass per piece pays), and once over buffers of the
whole size (what a separate pass over the whole file pays: memory bandwidth). One plain copy of the whole size is
timed beside them as the cost of any further pass over the bytes, and a first write to fresh memory as the cost of
the kernel's page faults (what a buffer not reused pays).

    python bench/ingest_floor.py [--size-gb 1.0]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

GB = 10**9
CHUNK = 64 << 10
"""Xet's average chunk size."""
PIECE = 1 << 20
"""Bytes kept in the cache for the in-cache figures (16 chunks; the L2 cache here is 2 MiB or more per core)."""
SAMPLE = 64 << 20
"""Distinct bf16 bytes generated; the whole-size buffers repeat them (each chunk is coded on its own)."""


def _bf16(nbytes: int) -> bytes:
    """New bf16 weights (random normal, std 0.02, as the hub benchmark's Xet upload)."""
    import numpy as np

    rng = np.random.default_rng(7)
    words = (rng.standard_normal(nbytes // 2, dtype=np.float32) * 0.02).view(np.uint32)
    return (words >> 16).astype(np.uint16).tobytes()


def _per_gb(fn: Callable[[], int]) -> float:
    """CPU-seconds per GB of ``fn``, which returns how many file bytes it handled."""
    t0 = time.process_time()
    done = fn()
    return (time.process_time() - t0) / (done / GB)


def measure(size: int) -> list[tuple[str, float, float]]:
    """(work, CPU-s per GB in the cache, CPU-s per GB over whole-size buffers) for each part of the floor."""
    import blake3
    import numpy as np
    from lz4.frame import _frame

    from openckpt.xet.hashes import DATA_KEY
    from openckpt.xet.xorb import BG4_LZ4, build_xorb, unpack_xorb

    size -= size % PIECE
    sample = _bf16(SAMPLE)
    chunks = [sample[i : i + CHUNK] for i in range(0, SAMPLE, CHUNK)]
    frames: list[bytes] = []
    for chunk in chunks:  # hf_xet's BG4 + LZ4 of each chunk, as the chunk payloads a xorb carries
        body = build_xorb([chunk], scheme=BG4_LZ4)
        frames.append(body[8:])
    repeats = size // SAMPLE + 1
    n = size // CHUNK
    whole = np.frombuffer(sample * repeats, np.uint8)[:size]  # whole-size buffers: out of the cache
    packed = [bytes(frames[i % len(frames)]) for i in range(n)]  # distinct objects, ~0.87 of the size in all
    out = np.zeros(size, np.uint8)
    grouped = np.zeros(size, np.uint8)
    out.fill(1)  # faulted in before anything is timed (fresh memory is timed on its own below)
    grouped.fill(1)
    per_piece = PIECE // CHUNK
    piece_out = np.empty(PIECE, np.uint8)
    rounds = size // PIECE

    def lz4_in_cache() -> int:
        ctx = _frame.create_decompression_context()
        for _ in range(rounds):
            for j in range(per_piece):
                _frame.decompress_chunk(ctx, frames[j], CHUNK)
        return size

    def lz4_whole() -> int:
        ctx = _frame.create_decompression_context()
        for i in range(n):
            data, _, _ = _frame.decompress_chunk(ctx, packed[i], CHUNK)
            grouped[i * CHUNK : (i + 1) * CHUNK] = np.frombuffer(data, np.uint8)
        return size

    def bg4(source: np.ndarray, target: np.ndarray) -> None:
        q = len(source) // 4
        for k in range(4):
            target[k::4] = source[k * q : (k + 1) * q]

    def bg4_in_cache() -> int:
        src = np.frombuffer(sample[:CHUNK], np.uint8)
        target = piece_out[:CHUNK]
        for _ in range(size // CHUNK):
            bg4(src, target)
        return size

    def bg4_whole() -> int:
        for i in range(n):
            bg4(grouped[i * CHUNK : (i + 1) * CHUNK], out[i * CHUNK : (i + 1) * CHUNK])
        return size

    def blake3_in_cache() -> int:
        view = memoryview(sample)[:PIECE]
        for _ in range(rounds):
            for j in range(per_piece):
                blake3.blake3(view[j * CHUNK : (j + 1) * CHUNK], key=DATA_KEY).digest()
        return size

    def blake3_whole() -> int:
        view = memoryview(whole)
        for i in range(n):
            blake3.blake3(view[i * CHUNK : (i + 1) * CHUNK], key=DATA_KEY).digest()
        return size

    def sha256_in_cache() -> int:
        h, view = hashlib.sha256(), memoryview(sample)[:PIECE]
        for _ in range(rounds):
            h.update(view)
        return size

    def sha256_whole() -> int:
        h, view = hashlib.sha256(), memoryview(whole)
        for at in range(0, size, 16 << 20):
            h.update(view[at : at + (16 << 20)])
        return size

    def copy_in_cache() -> int:
        src = np.frombuffer(sample[:PIECE], np.uint8)
        for _ in range(rounds):
            piece_out[:] = src
        return size

    def copy_whole() -> int:
        out[:] = whole
        return size

    def fresh_whole() -> int:
        np.empty(size, np.uint8).fill(1)
        return size

    def unpack_in_cache() -> int:  # the hub's own check of a xorb's chunks (LZ4, BG4, blake3), on a 1 MiB xorb
        xorb = b"".join(build_xorb([c], scheme=BG4_LZ4) for c in chunks[:per_piece])
        for _ in range(rounds):
            unpack_xorb(xorb, buffer=lambda k: piece_out.data[:k] if k <= PIECE else memoryview(bytearray(k)))
        return size

    rows = [
        ("LZ4 decode of every chunk", _per_gb(lz4_in_cache), _per_gb(lz4_whole)),
        ("BG4 regrouping of every chunk", _per_gb(bg4_in_cache), _per_gb(bg4_whole)),
        ("blake3 of every chunk", _per_gb(blake3_in_cache), _per_gb(blake3_whole)),
        ("sha256 of the file", _per_gb(sha256_in_cache), _per_gb(sha256_whole)),
    ]
    rows.append(("floor: all four", sum(r[1] for r in rows), sum(r[2] for r in rows)))
    rows.append(("one copy of the bytes (any further pass)", _per_gb(copy_in_cache), _per_gb(copy_whole)))
    rows.append(("first write to fresh memory (page faults)", float("nan"), _per_gb(fresh_whole)))
    rows.append(("openckpt unpack_xorb (LZ4, BG4, blake3)", _per_gb(unpack_in_cache), float("nan")))
    return rows


def report(rows: list[tuple[str, float, float]]) -> None:
    print("\nfloor: CPU-seconds per GB of new bf16 weights, one core (time.process_time):")
    print("| work | in the CPU cache | over whole-size buffers |")
    print("|---|---:|---:|")
    for label, hot, cold in rows:
        print(f"| {label} | {'' if hot != hot else f'{hot:.2f}'} | {'' if cold != cold else f'{cold:.2f}'} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=1.0, help="bytes per measurement (default 1.0)")
    args = parser.parse_args(argv)
    report(measure(int(args.size_gb * GB)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
