"""The stock huggingface_hub client against a hub process (SQLite and PostgreSQL): the basic round trip."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi, hf_hub_download

from tests.hubtools import HubProcess
from tests.testdata import opaque_bytes


def test_upload_and_download_round_trip(hub: HubProcess, unique: str, tmp_path: Path) -> None:
    api = HfApi(endpoint=hub.url, token=hub.token)
    assert api.whoami()["name"] == "admin"
    api.create_repo(f"admin/{unique}")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "config.json").write_text('{"a": 1}')
    payload = opaque_bytes(12 << 20)
    (tmp_path / "src" / "weights.bin").write_bytes(payload)
    api.upload_folder(folder_path=tmp_path / "src", repo_id=f"admin/{unique}")
    got = hf_hub_download(f"admin/{unique}", "weights.bin", endpoint=hub.url, token=hub.token, cache_dir=tmp_path / "c")
    assert Path(got).read_bytes() == payload
