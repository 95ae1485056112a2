"""``openckpt pull`` scans what it downloaded and refuses anything that is not clean and complete."""

from __future__ import annotations

from pathlib import Path

import httpx
from huggingface_hub import HfApi
from typer.testing import CliRunner

from openckpt.cli.app import app
from tests.hubtools import HubProcess

SUSPICIOUS = b"\x80\x02cfoo.bar\nBaz\n)\x81."


def test_pull_refuses_a_released_but_unclean_file(hub: HubProcess, unique: str, tmp_path: Path) -> None:
    api = HfApi(endpoint=hub.url, token=hub.token)
    repo = api.create_repo(f"admin/{unique}").repo_id
    api.upload_file(path_or_fileobj=b'{"a": 1}', path_in_repo="config.json", repo_id=repo)
    args = ["pull", repo, "--endpoint", hub.url, "--token", hub.token]
    clean = CliRunner().invoke(app, [*args[:2], str(tmp_path / "ok"), *args[2:]])
    assert clean.exit_code == 0, clean.stderr

    api.upload_file(path_or_fileobj=SUSPICIOUS, path_in_repo="custom.pkl", repo_id=repo)
    released = httpx.post(f"{hub.url}/api/models/{repo}/scan/release", json={"path": "custom.pkl"},
                          headers={"authorization": f"Bearer {hub.token}"})  # fmt: skip
    assert released.status_code == 200, released.text  # the hub lets it through; the client still refuses it
    result = CliRunner().invoke(app, [*args[:2], str(tmp_path / "bad"), *args[2:]])
    assert result.exit_code == 2
    assert "UnsafeFileError" in result.stderr and "custom.pkl needs code from foo" in result.stderr
    assert "foo.bar.Baz" in result.stderr
