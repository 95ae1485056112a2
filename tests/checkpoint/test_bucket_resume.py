"""Training into a bucket on a live hub: SIGKILL the run, resume in a new process with an empty directory from the
bucket, and end bitwise where an uninterrupted run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import torch
from huggingface_hub import HfApi

import openckpt
from openckpt.client.bucket_mirror import BucketMirror
from tests import zygote
from tests.hubtools import HubProcess

SCRIPT = Path(__file__).with_name("bucket_train_script.py")
STEPS = 14  # 30 samples / batch 4 → 8 batches an epoch: the run crosses an epoch boundary


def client_env(hub: HubProcess, token: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "OPENCKPT_"))}
    env.update(HF_ENDPOINT=hub.url, HF_TOKEN=token, HF_HOME=str(home), HF_XET_CACHE=str(home / "xet"))
    env.update(HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1", OPENCKPT_CONFIG=str(home / "cfg.json"))
    return env


def train(directory: Path, out: Path, env: dict[str, str], *extra: str) -> str:
    cmd = [sys.executable, str(SCRIPT), "--dir", str(directory), "--out", str(out), "--steps", str(STEPS), *extra]
    done = zygote.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def final_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    openckpt.load(path, {"model": model, "optimizer": optimizer})
    return model.state_dict(), optimizer.state_dict()


def assert_bitwise_equal(a: Path, b: Path) -> None:
    (ma, oa), (mb, ob) = final_state(a), final_state(b)
    assert ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)
    sa, sb = oa["state"], ob["state"]
    assert isinstance(sa, dict) and isinstance(sb, dict) and sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].keys() == sb[k].keys() and all(torch.equal(sa[k][n], sb[k][n]) for n in sa[k])
    assert oa["param_groups"] == ob["param_groups"]


def bucket_latest(hub: HubProcess, token: str, bucket: str) -> str | None:
    """What the run's LATEST in the bucket says, read while the run may be moving it."""
    data = BucketMirror(f"hf://buckets/{bucket}/run", endpoint=hub.url, token=token).read("LATEST")
    return data.decode().strip() if data is not None else None


def test_a_run_killed_mid_training_resumes_from_the_bucket_on_a_fresh_machine(hub: HubProcess, tmp_path: Path) -> None:
    token = hub.create_user(f"t{uuid.uuid4().hex[:8]}")
    user = HfApi(endpoint=hub.url, token=token).whoami()["name"]
    bucket = f"{user}/run-{uuid.uuid4().hex[:6]}"
    mirror = f"hf://buckets/{bucket}/run"
    env = client_env(hub, token, tmp_path / "home")

    train(tmp_path / "reference", tmp_path / "reference.final", env)

    cmd = [sys.executable, str(SCRIPT), "--dir", str(tmp_path / "machine-1"), "--out", str(tmp_path / "unused")]
    cmd += ["--steps", str(STEPS), "--mirror", mirror, "--slow"]
    first = zygote.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    api = HfApi(endpoint=hub.url, token=token)
    latest = None
    try:
        for _ in range(300):  # until the bucket holds a checkpoint, then kill wherever the run is
            latest = bucket_latest(hub, token, bucket)
            if latest is not None or first.poll() is not None:
                break
            time.sleep(0.2)
    finally:
        first.send_signal(signal.SIGKILL)
        stdout, stderr = first.communicate(timeout=60)
    assert latest is not None, f"nothing reached the bucket:\n{stdout}\n{stderr[-3000:]}"
    assert first.returncode == -signal.SIGKILL, stderr[-3000:]

    out = train(tmp_path / "machine-2", tmp_path / "resumed.final", env, "--mirror", mirror)
    resumed = int(out.split("resumed ")[1].split()[0])
    assert 0 < resumed <= STEPS, out
    assert_bitwise_equal(tmp_path / "reference.final", tmp_path / "resumed.final")
    names = {f.path for f in api.list_bucket_tree(bucket, prefix="run", recursive=True)}
    assert bucket_latest(hub, token, bucket) == f"step-{STEPS:08d}"
    assert f"run/step-{STEPS:08d}/openckpt.json" in names


def test_restore_from_a_bucket_skips_a_checkpoint_that_does_not_verify(hub: HubProcess, tmp_path: Path) -> None:
    token = hub.create_user(f"t{uuid.uuid4().hex[:8]}")
    api = HfApi(endpoint=hub.url, token=token)
    name = f"run-{uuid.uuid4().hex[:6]}"
    bucket = f"{api.whoami()['name']}/{name}"
    mirror = BucketMirror(f"hf://buckets/me/{name}", endpoint=hub.url, token=token)  # me: the token's account
    assert mirror.url == f"hf://buckets/{bucket}"
    model = torch.nn.Linear(3, 2)
    with openckpt.CheckpointManager(tmp_path / "a", mirror=mirror, recipe=False) as manager:
        manager.save({"model": model}, step=1)
        manager.wait()
        first = model.weight.detach().clone()
        with torch.no_grad():
            model.weight.add_(1.0)
        manager.save({"model": model}, step=2)
    api.batch_bucket_files(bucket, delete=["step-00000002/model.safetensors"])
    restored = torch.nn.Linear(3, 2)
    manifest = openckpt.CheckpointManager(tmp_path / "b", mirror=mirror).restore_latest({"model": restored})
    assert manifest is not None and manifest.training.step == 1
    assert torch.equal(restored.weight, first)
    assert api.bucket_info(bucket).private  # created private: a run's checkpoints are not for everyone
