"""Fixtures for signing tests: a small model directory, keys, a PKI, and the reference ``model_signing`` tool.

``model_signing`` (PyPI ``model-signing``, the OpenSSF reference) lives in its own virtualenv under
``~/.cache/openckpt-tests/`` so that its dependencies (sigstore, pyOpenSSL ...) never mix with the project's.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.testdata import opaque_bytes

from .pki import KeyPair, Pki, make_key, make_pki

MODEL_SIGNING = "model-signing==1.1.1"
SHARD = 64 << 10
"""Shard size for tests: weights.bin spans several shards."""


def write_model(path: Path) -> Path:
    """Files whose names sort differently by string and by path components (``sub.txt`` vs ``sub/...``),
    a multi-shard file, an empty file, and git files that are ignored by default."""
    (path / "sub").mkdir(parents=True)
    (path / ".git").mkdir()
    (path / "config.json").write_text('{"hidden_size": 8}\n')
    (path / "weights.bin").write_bytes(opaque_bytes(5 * SHARD + 123))
    (path / "sub" / "tokenizer.json").write_text('{"vocab": ["a", "b"]}\n')
    (path / "sub.txt").write_text("sorts after sub/ by path components\n")
    (path / "empty.txt").write_bytes(b"")
    (path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (path / ".gitattributes").write_text("*.bin filter=lfs\n")
    return path


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_model(tmp_path / "model")


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    return make_key(tmp_path, "signer")


@pytest.fixture
def other_keys(tmp_path: Path) -> KeyPair:
    return make_key(tmp_path, "stranger")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@dataclass(frozen=True)
class ModelSigning:
    """The reference implementation: its ``model_signing`` CLI and its Python API, in their own virtualenv."""

    venv: Path

    def cli(self, *args: object) -> subprocess.CompletedProcess[str]:
        command = [str(self.venv / "bin" / "model_signing"), *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    def python(self, code: str, **params: Any) -> subprocess.CompletedProcess[str]:
        """Run ``code`` with ``model_signing`` imported and ``params`` bound (JSON values)."""
        prelude = "import json, sys, model_signing\nglobals().update(json.loads(sys.argv[1]))\n"
        command = [str(self.venv / "bin" / "python"), "-c", prelude + textwrap.dedent(code), json.dumps(params)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def model_signing() -> ModelSigning:
    """``model-signing`` installed once into ``~/.cache/openckpt-tests/model-signing-<version>`` (PyPI needed once)."""
    cache = Path.home() / ".cache" / "openckpt-tests"
    cache.mkdir(parents=True, exist_ok=True)
    venv = cache / MODEL_SIGNING.replace("==", "-")
    ready = venv / ".openckpt-ready"
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            # model-signing 1.1.1 imports OpenSSL (certificate verification) without declaring pyOpenSSL.
            install = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", MODEL_SIGNING, "pyopenssl"]
            result = subprocess.run(install, capture_output=True, text=True, timeout=600)
            if result.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                pytest.skip(f"cannot install {MODEL_SIGNING} (PyPI unreachable?): {result.stderr[-500:]}")
            ready.touch()
    return ModelSigning(venv)
