"""``openckpt push hf://buckets/...``: a checkpoint a run mirrored into a bucket goes to a model repo by Xet hash,
without its weights being sent again (counted by a proxy in front of a live hub, SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from pathlib import Path

import torch
from huggingface_hub import HfApi, snapshot_download
from typer.testing import CliRunner

import openckpt
from openckpt.cli.app import app
from openckpt.client.bucket_push import push_from_bucket
from openckpt.client.push import push
from openckpt.format.manifest import read_manifest
from tests.hubtools import HubProcess
from tests.proxy import RecordingProxy


def train_into_bucket(directory: Path, mirror: str, *, endpoint: str, token: str) -> torch.nn.Module:
    """Two checkpoints of a model with ~4 MB of weights, mirrored into ``mirror``."""
    from openckpt.client.bucket_mirror import BucketMirror

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(1024, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 8))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    bucket = BucketMirror(mirror, endpoint=endpoint, token=token)
    with openckpt.CheckpointManager(directory, mirror=bucket, lineage={"license": "apache-2.0"}) as manager:
        for step in (1, 2):
            model(torch.randn(3, 1024)).sum().backward()
            optimizer.step()
            manager.save({"model": model, "optimizer": optimizer}, step=step)
    return model


def test_push_from_a_bucket_sends_no_weight_bytes_and_matches_a_local_push(hub: HubProcess, tmp_path: Path) -> None:
    token = hub.create_user(f"p{uuid.uuid4().hex[:8]}")
    api = HfApi(endpoint=hub.url, token=token)
    user = api.whoami()["name"]
    run = f"hf://buckets/{user}/run-{uuid.uuid4().hex[:6]}/run"
    model = train_into_bucket(tmp_path / "run", run, endpoint=hub.url, token=token)
    weights = (tmp_path / "run" / "step-00000002" / "model.safetensors").stat().st_size

    proxy = RecordingProxy(hub.url)
    try:
        result = push_from_bucket(run, f"{user}/from-bucket", endpoint=proxy.url, token=token)
        sent, requests = proxy.sent, list(proxy.requests)
    finally:
        proxy.close()
    assert result.source.endswith("/run/step-00000002") and result.by_hash == weights
    assert sent < weights / 20, f"{sent} bytes sent for {weights} bytes of weights: {requests}"
    uploads = [r for r in requests if r.startswith(("POST /cas/", "PUT /cas/")) or "/info/lfs/" in r]
    assert not uploads, requests  # no xorb, no shard, no LFS batch: only the small files, inside the commit

    local = push(tmp_path / "run", f"{user}/from-disk", endpoint=hub.url, token=token)
    assert result.files == local.files
    a = Path(snapshot_download(f"{user}/from-bucket", endpoint=hub.url, token=token, cache_dir=tmp_path / "a"))
    b = Path(snapshot_download(f"{user}/from-disk", endpoint=hub.url, token=token, cache_dir=tmp_path / "b"))
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    ma, mb = read_manifest(a), read_manifest(b)
    assert ma.files["model.safetensors"] == mb.files["model.safetensors"] and ma.tensors == mb.tensors
    assert ma.lineage == mb.lineage and ma.training == mb.training
    assert "license: apache-2.0" in (a / "README.md").read_text()
    loaded = torch.nn.Sequential(torch.nn.Linear(1024, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 8))
    openckpt.load(a, {"model": loaded})
    assert all(
        torch.equal(x, y) for x, y in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    )

    card = b"---\nlicense: apache-2.0\ntags:\n- kept-by-push\n---\nhand-written\n"
    api.upload_file(path_or_fileobj=card, path_in_repo="README.md", repo_id=f"{user}/from-bucket")
    args = ["push", f"{run}/step-00000001", f"{user}/from-bucket", "--endpoint", hub.url, "--token", token]
    result = CliRunner().invoke(app, [*args, "--json"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    assert '"source": "hf://buckets/' in result.stdout and "step-00000001" in result.stdout
    readme = Path(api.hf_hub_download(f"{user}/from-bucket", "README.md", cache_dir=tmp_path / "c")).read_text()
    assert "kept-by-push" in readme and "hand-written" not in readme  # the front matter is kept, the body is new
    refused = CliRunner().invoke(app, [*args, "--dtype", "bfloat16"], env={"COLUMNS": "200"})
    assert refused.exit_code == 2, refused.stderr
