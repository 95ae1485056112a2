"""Tools built on the stock client: the ``hf`` command line (upload and download a folder) and transformers
(``push_to_hub`` of a tiny model, ``AutoModel.from_pretrained`` of it through the hub: identical weights)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.hub.conftest import CLIENTS, client_env, run_checked
from tests.hubtools import HubProcess
from tests.testdata import opaque_bytes


def _hf() -> str:
    beside = Path(sys.executable).with_name("hf")
    found = str(beside) if beside.exists() else shutil.which("hf")
    assert found, "the hf command of huggingface_hub is not installed"
    return found


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("repo_type", ["model", "dataset"])
def test_hf_cli_upload_and_download(hub: HubProcess, repo_type: str, unique: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = {"config.json": b'{"a": 1}', "sub/notes.md": b"# notes", "weights.safetensors": opaque_bytes(300_000)}
    for path, data in files.items():
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_bytes(data)
    env = client_env(hub.url, tmp_path / "hf-home", HF_TOKEN=hub.token)
    repo = f"admin/{unique}"
    run_checked([_hf(), "upload", repo, str(src), ".", "--repo-type", repo_type, "--commit-message", "by hf"], env=env)
    run_checked([_hf(), "download", repo, "--repo-type", repo_type, "--local-dir", str(tmp_path / "dst")], env=env)
    got = {p: d for p, d in _tree(tmp_path / "dst").items() if not p.startswith(".cache/")}
    assert got == {**files, ".gitattributes": got[".gitattributes"]}
    one = run_checked([_hf(), "download", repo, "sub/notes.md", "--repo-type", repo_type, "--quiet"], env=env)
    assert Path(one.strip().splitlines()[-1]).read_bytes() == b"# notes"


def test_transformers_push_to_hub_and_from_pretrained(hub: HubProcess, unique: str, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    script = str(CLIENTS / "transformers_roundtrip.py")
    repo = f"admin/{unique}"
    pushed = run_checked([sys.executable, script, "push", repo, str(tmp_path)],
                         env=client_env(hub.url, tmp_path / "push-home", HF_TOKEN=hub.token))  # fmt: skip
    assert f"/{repo}/commit/" in pushed
    loaded = run_checked([sys.executable, script, "load", repo, str(tmp_path)],
                         env=client_env(hub.url, tmp_path / "load-home", HF_TOKEN=hub.token))  # fmt: skip
    assert loaded.strip().splitlines()[-1].startswith("identical ")
