"""``openckpt convert`` scans its input first and refuses anything malicious, suspicious or inconclusive."""

from __future__ import annotations

from pathlib import Path

import torch

from .helpers import Invoke

# Built by hand, never loaded: GLOBAL os.system, the argument, TUPLE1, REDUCE, STOP.
MALICIOUS = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00echo\x85R."


def test_malicious_pickle_is_refused_before_reading(invoke: Invoke, tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(MALICIOUS)
    result = invoke("convert", tmp_path / "model.bin", tmp_path / "out")
    assert result.exit_code == 2
    assert "UnsafeFileError" in result.stderr and "os.system" in result.stderr and "malicious" in result.stderr
    assert not (tmp_path / "out").exists()


def test_directory_input_is_scanned_file_by_file(invoke: Invoke, tmp_path: Path) -> None:
    src = tmp_path / "hf"
    src.mkdir()
    torch.save({"w": torch.ones(2)}, src / "pytorch_model.bin")
    (src / "extra.pkl").write_bytes(MALICIOUS)
    result = invoke("convert", src, tmp_path / "out")
    assert result.exit_code == 2 and "extra.pkl is malicious" in result.stderr and "os.system" in result.stderr
    (src / "extra.pkl").write_bytes(b"\x80\x02cfoo.bar\nBaz\n)\x81.")  # needs code, never read: no refusal
    assert invoke("convert", src, tmp_path / "out").exit_code == 0
    (src / "extra.pkl").unlink()
    again = invoke("convert", src, tmp_path / "out", "--overwrite")
    assert "UnsafeFileError" not in again.stderr and "refusing" not in again.stderr
