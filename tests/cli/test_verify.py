"""``openckpt verify``: every digest in the manifest, naming what differs."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import openckpt
from openckpt.cli.verify import check
from openckpt.format.manifest import read_manifest
from tests import zygote

from .helpers import Invoke, flip_byte, tiny_model


def test_intact_checkpoint(invoke: Invoke, ckpt: Path) -> None:
    result = invoke("verify", ckpt)
    assert result.exit_code == 0, result.output
    assert "ok" in result.stdout and result.stderr == ""


def test_flipped_byte_names_the_file(invoke: Invoke, ckpt: Path) -> None:
    flip_byte(ckpt / "model.safetensors")
    result = invoke("verify", ckpt)
    assert result.exit_code == 1
    assert "model.safetensors" in result.stderr and "sha256" in result.stderr


def test_truncated_and_missing_files(invoke: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "c"
    openckpt.save(path, {"model": tiny_model(), "extra": {"w": torch.ones(3), "n": 1}})
    data = (path / "extra.safetensors").read_bytes()
    (path / "extra.safetensors").write_bytes(data[:-4])
    (path / "model.safetensors").unlink()
    result = invoke("verify", path)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert any("extra.safetensors" in line and "size" in line for line in lines)
    assert any("model.safetensors" in line and "missing" in line for line in lines)


def test_unlisted_file_is_only_a_warning(invoke: Invoke, ckpt: Path) -> None:
    (ckpt / "notes.txt").write_text("hello")
    result = invoke("verify", ckpt)
    assert result.exit_code == 0, result.output
    assert "warning" in result.stderr and "notes.txt" in result.stderr


def test_tensor_digest_differs_from_manifest(invoke: Invoke, ckpt: Path) -> None:
    raw = json.loads((ckpt / "openckpt.json").read_text())
    raw["tensors"]["model/0.bias"]["blake3"] = "0" * 64
    (ckpt / "openckpt.json").write_text(json.dumps(raw))
    result = invoke("verify", ckpt)
    assert result.exit_code == 1
    assert "model.safetensors" in result.stderr and "'0.bias'" in result.stderr
    assert invoke("verify", ckpt, "--no-tensors").exit_code == 0


def test_json_report(invoke: Invoke, ckpt: Path) -> None:
    flip_byte(ckpt / "model.safetensors")
    result = invoke("verify", ckpt, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["findings"][0]["file"] == "model.safetensors"
    assert report["findings"][0]["severity"] == "error"


def test_check_reports_progress(ckpt: Path) -> None:
    seen: list[tuple[str, int]] = []
    findings = check(ckpt, read_manifest(ckpt), progress=lambda name, n: seen.append((name, n)))
    assert findings == []
    assert seen == [("model.safetensors", (ckpt / "model.safetensors").stat().st_size)]


def test_not_a_checkpoint(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("verify", tmp_path)
    assert result.exit_code == 2
    assert "ManifestError" in result.stderr and "openckpt.json" in result.stderr
    assert invoke("verify", tmp_path / "missing").exit_code == 3  # not found


def test_exit_codes_through_the_real_entry_point(ckpt: Path) -> None:
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "openckpt.cli.app", *args]
        return zygote.run(command, capture_output=True, text=True, timeout=120)

    assert run("verify", str(ckpt)).returncode == 0
    flip_byte(ckpt / "model.safetensors", offset=100)
    result = run("verify", str(ckpt))
    assert result.returncode == 1 and "model.safetensors" in result.stderr
    assert run("verify", str(ckpt / "nowhere")).returncode == 3  # not found
