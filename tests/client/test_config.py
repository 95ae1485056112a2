"""Which hub the client talks to: --endpoint > HF_ENDPOINT > openckpt's config file > http://127.0.0.1:8000."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openckpt.client.api import split_revision
from openckpt.client.config import DEFAULT_ENDPOINT, config_path, read_config, resolve_endpoint, update_config
from openckpt.errors import FormatError


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cfg" / "config.json"
    monkeypatch.setenv("OPENCKPT_CONFIG", str(path))
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    return path


def test_resolution_order(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_endpoint() == DEFAULT_ENDPOINT == "http://127.0.0.1:8000"
    update_config(endpoint="http://from-config:1/")
    assert resolve_endpoint() == "http://from-config:1"
    monkeypatch.setenv("HF_ENDPOINT", "http://from-env:2")
    assert resolve_endpoint() == "http://from-env:2"
    assert resolve_endpoint("http://explicit:3/") == "http://explicit:3"


def test_config_file_location_and_updates(config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_path() == config
    assert read_config() == {}
    update_config(endpoint="http://a")
    update_config(other=1)
    assert json.loads(config.read_text()) == {"endpoint": "http://a", "other": 1}
    monkeypatch.delenv("OPENCKPT_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_path() == tmp_path / "xdg" / "openckpt" / "config.json"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config_path() == tmp_path / "home" / ".config" / "openckpt" / "config.json"


def test_broken_config_is_a_format_error(config: Path) -> None:
    config.parent.mkdir(parents=True)
    config.write_text("{nope")
    with pytest.raises(FormatError, match=r"config\.json"):
        resolve_endpoint()


def test_split_revision() -> None:
    assert split_revision("a/b") == ("a/b", None)
    assert split_revision("a/b@dev") == ("a/b", "dev")
    assert split_revision("a/b@refs/pr/1") == ("a/b", "refs/pr/1")
    with pytest.raises(ValueError):
        split_revision("a/b@")
