from __future__ import annotations

import hashlib
from pathlib import Path

import blake3
import pytest
import torch
from safetensors.torch import load_file

from openckpt.errors import FormatError, IntegrityError
from openckpt.format.tensorfile import read_header, read_into, read_tensors, write_tensors


def raw(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().reshape(-1).view(torch.uint8)


def sample() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "f32": torch.randn(5, 3, generator=g),
        "bf16": torch.randn(7, generator=g).to(torch.bfloat16),
        "i64": torch.arange(6).reshape(2, 3),
        "bool": torch.tensor([True, False, True]),
        "u8": torch.arange(5, dtype=torch.uint8),
        "scalar": torch.tensor(3.5, dtype=torch.float64),
        "empty": torch.empty(0, 4),
        "noncontig": torch.arange(12.0).reshape(3, 4).t(),
        "f8": torch.randn(4, generator=g).to(torch.float8_e4m3fn),
    }


def test_written_file_is_standard_safetensors_with_exact_digests(tmp_path: Path) -> None:
    tensors = sample()
    written = write_tensors(tmp_path / "a.safetensors", tensors, metadata={"format": "pt"})
    data = (tmp_path / "a.safetensors").read_bytes()
    assert written.digest.size == len(data)
    assert written.digest.sha256 == hashlib.sha256(data).hexdigest()
    assert written.digest.blake3 == blake3.blake3(data).hexdigest()
    theirs = load_file(tmp_path / "a.safetensors")
    for name, t in tensors.items():
        assert torch.equal(raw(theirs[name]), raw(t)), name
        info = written.tensors[name]
        assert written.tensor_blake3[name] == blake3.blake3(data[info.start : info.end]).hexdigest()
        assert info.start % t.element_size() == 0, "data is aligned to its element size"


def test_read_into_existing_tensors_and_read_tensors(tmp_path: Path) -> None:
    tensors = sample()
    write_tensors(tmp_path / "a.safetensors", tensors)
    infos, meta = read_header(tmp_path / "a.safetensors")
    assert meta == {}
    targets = {n: torch.zeros_like(t) for n, t in tensors.items()}
    read_into(tmp_path / "a.safetensors", targets, infos)
    back = read_tensors(tmp_path / "a.safetensors")
    for n, t in tensors.items():
        assert torch.equal(raw(targets[n]), raw(t))
        assert torch.equal(raw(back[n]), raw(t))


def test_large_tensor_spanning_many_writes(tmp_path: Path) -> None:
    big = torch.randn(40 << 20 >> 2).reshape(-1, 1024)  # 40 MB, split into several writev batches
    written = write_tensors(tmp_path / "b.safetensors", {"big": big, "small": torch.ones(3)})
    assert written.digest.sha256 == hashlib.sha256((tmp_path / "b.safetensors").read_bytes()).hexdigest()
    assert torch.equal(read_tensors(tmp_path / "b.safetensors")["big"], big)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x01", FormatError),
        ((10**9).to_bytes(8, "little") + b"{}", FormatError),
        ((2).to_bytes(8, "little") + b"[]", FormatError),
        ((4).to_bytes(8, "little") + b"{ab}", FormatError),
        ((8).to_bytes(8, "little") + b"{}      " + b"extra", IntegrityError),
    ],
    ids=["short", "huge-header", "not-object", "bad-json", "trailing-bytes"],
)
def test_malformed_files_are_refused(tmp_path: Path, data: bytes, error: type[Exception]) -> None:
    (tmp_path / "x.safetensors").write_bytes(data)
    with pytest.raises(error, match=r"x\.safetensors"):
        read_header(tmp_path / "x.safetensors")
