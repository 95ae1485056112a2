"""Reading and writing safetensors files at disk speed.

Writes go straight from tensor memory to the file (``writev``, no serialisation copy) while sha256, the file's
blake3 and every tensor's blake3 are computed on helper threads. Reads go straight into existing tensors with large
sequential reads, one contiguous part of the file per thread, so loading into a model allocates nothing and a warm
read is not bound by one core's memcpy.
"""

from __future__ import annotations

import json
import math
import os
import queue
import struct
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from openckpt.digest import FileDigest, StreamHasher
from openckpt.errors import FormatError, IntegrityError
from openckpt.format.dtypes import ITEMSIZE, dtype_name, torch_dtype

if TYPE_CHECKING:
    import torch

__all__ = [
    "MAX_HEADER",
    "TensorInfo",
    "WrittenFile",
    "byte_view",
    "read_header",
    "read_into",
    "read_tensors",
    "verify_blake3",
    "write_tensors",
]

MAX_HEADER = 100 << 20
IO_CHUNK = 64 << 20
IOV_MAX = 1024
READ_THREADS = min(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a safetensors file; ``start``/``end`` are absolute file offsets."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class WrittenFile:
    digest: FileDigest
    tensors: dict[str, TensorInfo]
    tensor_blake3: dict[str, str]


def byte_view(t: torch.Tensor) -> memoryview:
    """The bytes of a contiguous CPU tensor, without copying."""
    import torch

    flat = t.detach().reshape(-1)
    if flat.numel() == 0:
        return memoryview(b"")
    return memoryview(flat.view(torch.uint8).numpy()).cast("B")  # type: ignore[arg-type]


class _TensorHasher(threading.Thread):
    """blake3 of each tensor, on its own thread."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.queue: queue.SimpleQueue[tuple[str, memoryview] | None] = queue.SimpleQueue()
        self.digests: dict[str, str] = {}

    def run(self) -> None:
        while (item := self.queue.get()) is not None:
            name, buf = item
            self.digests[name] = blake3.blake3(buf).hexdigest()


def _writev_all(fd: int, bufs: list[memoryview]) -> None:
    while bufs:
        n = os.writev(fd, bufs[:IOV_MAX])
        while bufs and n >= bufs[0].nbytes:
            n -= bufs[0].nbytes
            bufs.pop(0)
        if n:
            bufs[0] = bufs[0][n:]


def _batches(views: Iterable[memoryview]) -> Iterable[list[memoryview]]:
    """Group buffers into writes of about IO_CHUNK bytes; split larger buffers."""
    batch: list[memoryview] = []
    size = 0
    for view in views:
        for i in range(0, max(view.nbytes, 1), IO_CHUNK):
            part = view[i : i + IO_CHUNK]
            if not part.nbytes:
                continue
            batch.append(part)
            size += part.nbytes
            if size >= IO_CHUNK or len(batch) >= IOV_MAX:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


def write_tensors(
    path: Path,
    tensors: Mapping[str, torch.Tensor],
    *,
    metadata: Mapping[str, str] | None = None,
    sha256: bool = True,
    fsync: bool = True,
) -> WrittenFile:
    """Write a safetensors file and return its digests and layout.

    Tensors are ordered by element size, then name, so every tensor's data is aligned to its element size.
    ``sha256=False`` leaves the file's sha256 out of the digest; ``fsync=False`` leaves the fsync to the caller.
    """
    items = sorted(tensors.items(), key=lambda kv: (-kv[1].element_size(), kv[0]))
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    views: list[tuple[str, memoryview]] = []
    offset = 0
    layout: list[tuple[str, str, tuple[int, ...], int, int]] = []
    for name, tensor in items:
        t = tensor.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if not t.is_contiguous():
            t = t.contiguous()
        view = byte_view(t)
        dtype = dtype_name(t.dtype)
        header[name] = {
            "dtype": dtype,
            "shape": list(t.shape),
            "data_offsets": [offset, offset + view.nbytes],
        }
        layout.append((name, dtype, tuple(t.shape), offset, offset + view.nbytes))
        views.append((name, view))
        offset += view.nbytes
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    head += b" " * (-len(head) % 8)
    prefix = memoryview(struct.pack("<Q", len(head)) + head)
    data_start = prefix.nbytes

    file_hasher = StreamHasher(sha256=sha256)
    tensor_hasher = _TensorHasher()
    tensor_hasher.start()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for name, view in views:
            tensor_hasher.queue.put((name, view))
        for batch in _batches([prefix, *(v for _, v in views)]):
            for part in batch:
                file_hasher.update(part)
            _writev_all(fd, list(batch))
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
        tensor_hasher.queue.put(None)
        digest = file_hasher.finish()
        tensor_hasher.join()
    infos = {n: TensorInfo(n, d, s, data_start + a, data_start + b) for n, d, s, a, b in layout}
    return WrittenFile(digest, infos, tensor_hasher.digests)


def _read_raw_header(path: Path) -> tuple[bytes, int]:
    """The header bytes of a safetensors file (its length prefix checked) and the file's size."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise FormatError("too short for a safetensors file", path=path)
            (n,) = struct.unpack("<Q", raw)
            if n > MAX_HEADER or 8 + n > size:
                raise FormatError(f"header length {n} is invalid for a {size}-byte file", path=path)
            return f.read(n), size
    except OSError as e:
        raise FormatError(f"cannot read: {e}", path=path) from e


def _tensor_info(path: Path, name: str, entry: Any, data_start: int) -> TensorInfo:
    """One header entry as a :class:`TensorInfo`; its byte range must match its dtype and shape."""
    try:
        dtype, shape, (a, b) = entry["dtype"], tuple(int(s) for s in entry["shape"]), entry["data_offsets"]
        if any(s < 0 for s in shape):
            raise ValueError("negative dimension")
        if b - a != math.prod(shape) * ITEMSIZE[dtype]:
            raise ValueError(f"{b - a} bytes for shape {list(shape)} of {dtype}")
    except (KeyError, TypeError, ValueError) as e:
        raise FormatError(f"invalid entry for tensor {name!r}: {e}", path=path) from e
    return TensorInfo(name, dtype, shape, data_start + a, data_start + b)


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse and validate a safetensors header: tensors in file order, and the string metadata.

    The tensors must tile the data section exactly: no gap, no overlap, nothing after the last.
    """
    head, size = _read_raw_header(path)
    try:
        obj = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"header is not valid JSON: {e}", path=path) from e
    if not isinstance(obj, dict):
        raise FormatError("header is not a JSON object", path=path)
    metadata = obj.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise FormatError("__metadata__ must map strings to strings", path=path)
    data_start = 8 + len(head)
    infos = sorted((_tensor_info(path, name, entry, data_start) for name, entry in obj.items()), key=lambda i: i.start)
    pos = data_start
    for info in infos:
        if info.start != pos:
            raise FormatError(f"tensor {info.name!r} does not start where the previous one ends", path=path)
        pos = info.end
    if pos != size:
        raise IntegrityError(f"file is {size} bytes, its header describes {pos}", path=path)
    return {i.name: i for i in infos}, metadata


def _read_part(path: Path, part: list[tuple[int, memoryview]]) -> None:
    """Read ``(offset, buffer)`` pieces, in file order, with a file object (and readahead state) of its own."""
    with open(path, "rb", buffering=0) as f:
        pos = -1
        for offset, view in part:
            if offset != pos:
                f.seek(offset)
            done = 0
            while done < view.nbytes:
                n = f.readinto(view[done:])
                if not n:
                    raise IntegrityError("file ended early", path=path)
                done += n
            pos = offset + view.nbytes


def _split(pieces: list[tuple[int, memoryview]], parts: int) -> list[list[tuple[int, memoryview]]]:
    """Cut file-ordered pieces into ``parts`` contiguous runs of about equal size."""
    total = sum(v.nbytes for _, v in pieces)
    out: list[list[tuple[int, memoryview]]] = [[] for _ in range(max(parts, 1))]
    done = 0
    for offset, view in pieces:
        out[min(done * len(out) // max(total, 1), len(out) - 1)].append((offset, view))
        done += view.nbytes
    return [p for p in out if p]


def read_into(path: Path, targets: Mapping[str, torch.Tensor], infos: Mapping[str, TensorInfo]) -> None:
    """Read tensors from ``path`` into ``targets`` (same dtype and shape, already checked).

    Contiguous CPU targets are read straight into their memory: the file is cut into up to ``READ_THREADS``
    contiguous parts read in parallel, each sequentially in ``IO_CHUNK`` pieces, so a cold read keeps several
    requests in flight and a warm one copies on every core. Other targets (GPU, non-contiguous) go through one
    temporary CPU tensor at a time.
    """
    pieces: list[tuple[int, memoryview]] = []
    others: list[str] = []
    for name in sorted(targets, key=lambda name: infos[name].start):
        target = targets[name]
        if target.is_contiguous() and target.device.type == "cpu":
            view, start = byte_view(target), infos[name].start
            pieces.extend((start + i, view[i : i + IO_CHUNK]) for i in range(0, view.nbytes, IO_CHUNK))
        else:
            others.append(name)
    parts = _split(pieces, READ_THREADS)
    if len(parts) == 1:
        _read_part(path, parts[0])
    elif parts:
        with ThreadPoolExecutor(len(parts), thread_name_prefix="openckpt-read") as pool:
            for future in [pool.submit(_read_part, path, part) for part in parts]:
                future.result()
    if others:
        import torch

        for name in others:
            info, target = infos[name], targets[name]
            tmp = torch.empty(info.shape, dtype=target.dtype)
            _read_part(path, [(info.start, byte_view(tmp))])
            with torch.no_grad():
                target.copy_(tmp)


def read_tensors(path: Path, names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """Load tensors from a safetensors file into new CPU tensors."""
    import torch

    infos, _ = read_header(path)
    wanted = list(infos) if names is None else list(names)
    out = {n: torch.empty(infos[n].shape, dtype=torch_dtype(infos[n].dtype)) for n in wanted}
    read_into(path, out, infos)
    return out


def verify_blake3(path: Path, expected: FileDigest) -> None:
    """Check a file's size and blake3 against ``expected``; raise :class:`IntegrityError` naming the file."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise IntegrityError("file is missing", path=path) from None
    if size != expected.size:
        raise IntegrityError(f"size is {size} bytes, manifest says {expected.size}", path=path)
    actual = (
        blake3.blake3(max_threads=blake3.blake3.AUTO).update_mmap(str(path)).hexdigest()
        if size
        else (blake3.blake3().hexdigest())
    )
    if actual != expected.blake3:
        raise IntegrityError(f"blake3 is {actual}, manifest says {expected.blake3}", path=path)
