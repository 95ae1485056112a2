"""Fixtures of the fine-tuning tests: tiny models built from configs, data files, and the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import zygote
from tests.finetune.tiny import build_bert, build_gpt2, sentences, write_csv, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``bert``: a 2-label classifier, ``gpt2``: a causal LM (a few thousand parameters each), Apache-2.0 cards."""
    root = tmp_path_factory.mktemp("models")
    return {"bert": build_bert(root / "bert"), "gpt2": build_gpt2(root / "gpt2")}


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 80 labelled sentences as ``jsonl`` and ``csv``."""
    root = tmp_path_factory.mktemp("data")
    rows = sentences(80)
    return {"jsonl": write_jsonl(root / "reviews.jsonl", rows), "csv": write_csv(root / "reviews.csv", rows)}


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without ``HF_*`` settings, with its own huggingface_hub home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(home), HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=str(ROOT),
               **extra)  # fmt: skip
    return env


@pytest.fixture
def run_cli(tmp_path: Path) -> Run:
    """``run_cli("finetune", ..., env={...})``: the ``openckpt`` CLI in a process of its own (bounded to 300 s)."""

    def run(
        *args: object, env: dict[str, str] | None = None, script: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", script or "openckpt.cli.app", *(str(a) for a in args)]
        return zygote.run(cmd, env=env or cli_env(tmp_path / "hf-home"), capture_output=True, text=True,
                              timeout=300, cwd=ROOT)  # fmt: skip

    return run
