"""Fixtures for CLI tests: a CliRunner wrapper and a checkpoint of a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import Result
from typer.testing import CliRunner

import openckpt
from openckpt.cli.app import app

from .helpers import Invoke, tiny_model


@pytest.fixture
def invoke() -> Invoke:
    """Run the app in-process: ``invoke("inspect", path)`` → click Result (``stdout`` and ``stderr`` apart)."""
    runner = CliRunner()

    def run(*args: object) -> Result:
        return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})

    return run


@pytest.fixture
def model() -> torch.nn.Module:
    return tiny_model()


@pytest.fixture
def ckpt(tmp_path: Path, model: torch.nn.Module) -> Path:
    """An openckpt checkpoint of :func:`tiny_model`."""
    path = tmp_path / "ckpt"
    openckpt.save(path, {"model": model})
    openckpt.seal(path)  # before tests tamper with it
    return path


@pytest.fixture
def auth_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Isolated huggingface_hub token file and openckpt config and token store; no HF_TOKEN / HF_ENDPOINT.

    Returns the directory holding ``hf/token`` (huggingface_hub's file) and ``openckpt/`` (config, tokens.json).
    """
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf" / "stored_tokens"))
    monkeypatch.setenv("OPENCKPT_CONFIG", str(tmp_path / "openckpt" / "config.json"))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path
