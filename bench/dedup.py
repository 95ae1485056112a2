"""Dedup benchmark: bytes the stock client sends and bytes the hub stores, through Xet, against plain Git LFS.

    python bench/dedup.py [--size-mb 1024] [--tensors 100] [--dir DIR]

Starts a hub (SQLite, local store) on 127.0.0.1 behind a byte-counting proxy and drives the stock
``huggingface_hub`` + ``hf_xet`` in client processes of their own. Each case runs twice: as the publisher who
uploaded the first version (their hf_xet cache kept, as on a training machine), and as someone else with an empty
cache, where every saving comes from the hub's global-dedup answers. On a ~1 GB safetensors checkpoint:

(a) the same file re-uploaded to another repo;
(b) a new version with 10% of the tensors changed;
(c) the same weights with every tensor renamed, and resharded into two files;
(d) upload and download throughput through Xet vs the LFS path (``HF_HUB_DISABLE_XET=1``).

"Sent" is every byte of every request the client made (headers included); "stored" is the growth of the hub's
store on disk. Plain LFS sends and stores a whole new file for any change: 100% by definition (the LFS rows of (d)
measure what it sends).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hubtools import HubProcess, start_hub  # noqa: E402
from tests.proxy import RecordingProxy  # noqa: E402

MB = 1 << 20
TARGETS = {"a": 0.001, "b": 0.105, "c": 0.01, "d_download": 0.8}

CLIENT = r"""
import json, sys, time
from pathlib import Path
from huggingface_hub import HfApi, hf_hub_download

step, args = sys.argv[1], json.loads(sys.argv[2])
api = HfApi()
t0 = time.perf_counter()
if step == "upload":
    api.create_repo(args["repo"], exist_ok=True)
    api.upload_folder(repo_id=args["repo"], folder_path=args["folder"], commit_message="bench")
else:
    for name in args["files"]:
        hf_hub_download(args["repo"], name, cache_dir=args["cache"])
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def tensors_of(size: int, count: int, seed: int) -> dict[str, np.ndarray]:
    """``count`` fp32 tensors of random values, ``size`` bytes in all."""
    rng = np.random.default_rng(seed)
    per = size // count // 4
    return {f"layers.{i:03d}.weight": rng.standard_normal(per, dtype=np.float32) for i in range(count)}


def store_bytes(hub: HubProcess) -> int:
    """Bytes on disk in the hub's blob store."""
    return sum(f.stat().st_size for f in (hub.data_dir / "store").rglob("*") if f.is_file())


def settle(hub: HubProcess, timeout: float = 120.0) -> None:
    """Wait until the store stops changing (background ingestion of LFS uploads has finished)."""
    last, stable, deadline = -1, 0, time.monotonic() + timeout
    while time.monotonic() < deadline and stable < 3:
        now = store_bytes(hub)
        stable = stable + 1 if now == last else 0
        last = now
        time.sleep(1.0)


class Bench:
    def __init__(self, root: Path, hub: HubProcess, proxy: RecordingProxy) -> None:
        self.root, self.hub, self.proxy = root, hub, proxy
        self.runs = 0

    def client(
        self, step: str, *, xet: bool = True, home: Path | None = None, direct: bool = False, **args: Any
    ) -> float:
        """Run one client step in a process of its own (with ``home``'s caches, else empty ones); its timing."""
        self.runs += 1
        keep = home is not None
        home = home or self.root / f"client-{self.runs}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
        endpoint = self.hub.url if direct else self.proxy.url  # the proxy counts bytes but caps throughput
        env.update(HF_ENDPOINT=endpoint, HF_TOKEN=self.hub.token, HF_HOME=str(home))
        env.update(HF_XET_CACHE=str(home / "xet"), HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
        if not xet:
            env["HF_HUB_DISABLE_XET"] = "1"
        if step == "download":
            args.setdefault("cache", str(home / "cache"))
        done = subprocess.run([sys.executable, "-c", CLIENT, step, json.dumps(args)], env=env, capture_output=True,
                              text=True, timeout=1800)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"client {step} failed:\n{done.stderr[-4000:]}")
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
        seconds: float = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
        return seconds

    def upload(self, repo: str, folder: Path, *, xet: bool = True, home: Path | None = None) -> tuple[int, int, float]:
        """Bytes sent, bytes newly stored, seconds."""
        settle(self.hub)
        before = store_bytes(self.hub)
        self.proxy.reset()
        seconds = self.client("upload", xet=xet, home=home, repo=f"admin/{repo}", folder=str(folder))
        sent = self.proxy.sent
        settle(self.hub)
        return sent, store_bytes(self.hub) - before, seconds


Case = tuple[str, str, dict[str, dict[str, np.ndarray]]]
"""(key, label, file name → tensors)"""


def folder(root: Path, name: str, files: dict[str, dict[str, np.ndarray]]) -> Path:
    path = root / name
    path.mkdir()
    for fname, tensors in files.items():
        save_file(tensors, str(path / fname))
    return path


def run_cases(root: Path, v1: dict[str, np.ndarray], cases: list[Case], *, publisher: bool) -> list[tuple[int, int]]:
    """On a hub of its own: upload ``v1``, then each case to a new repo; (sent, stored) bytes of each case.

    ``publisher``: every upload shares one hf_xet cache (the machine that published ``v1``); else each upload
    starts with an empty cache and learns what the hub holds only from global-dedup answers.
    """
    hub = start_hub(root / "data")
    proxy = RecordingProxy(hub.url)
    try:
        bench = Bench(root, hub, proxy)
        home = root / "publisher" if publisher else None
        src = folder(root, "v1", {"model.safetensors": v1})
        size = (src / "model.safetensors").stat().st_size
        sent, stored, seconds = bench.upload("base", src, home=home)
        print(f"  v1: sent {sent / size:.1%}, stored {stored / size:.1%} in {seconds:.1f} s (Xet, via the proxy)")
        results = []
        for i, (key, label, files) in enumerate(cases):
            path = folder(root, f"case-{i}", files)
            sent, stored, _ = bench.upload(f"case-{i}", path, home=home)
            print(f"  ({key}) {label}: sent {sent / size:.3%}, stored {stored / size:.3%}", flush=True)
            results.append((sent, stored))
            shutil.rmtree(path)
        return results
    finally:
        proxy.close()
        hub.stop()


def throughput(root: Path, size: int, count: int) -> tuple[float, float, float, float]:
    """Seconds to upload new content through Xet and through LFS, and to download the Xet upload both ways."""
    hub = start_hub(root / "data")
    proxy = RecordingProxy(hub.url)
    try:
        bench = Bench(root, hub, proxy)
        xet_src = folder(root, "fresh-xet", {"model.safetensors": tensors_of(size, count, seed=3)})
        lfs_src = folder(root, "fresh-lfs", {"model.safetensors": tensors_of(size, count, seed=4)})
        xet_up = bench.client("upload", direct=True, repo="admin/fresh-xet", folder=str(xet_src))
        settle(hub)
        lfs_up = bench.client("upload", xet=False, direct=True, repo="admin/fresh-lfs", folder=str(lfs_src))
        settle(hub)
        files = ["model.safetensors"]
        xet_down = min(bench.client("download", direct=True, repo="admin/fresh-xet", files=files) for _ in range(2))
        lfs_down = min(
            bench.client("download", xet=False, direct=True, repo="admin/fresh-xet", files=files) for _ in range(2)
        )
        return xet_up, lfs_up, xet_down, lfs_down
    finally:
        proxy.close()
        hub.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024, help="checkpoint size (default 1024)")
    parser.add_argument("--tensors", type=int, default=100, help="tensors in it (default 100)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the hubs and the files")
    args = parser.parse_args(argv)
    size, count = args.size_mb * MB, args.tensors
    root = Path(tempfile.mkdtemp(prefix="openckpt-dedup-", dir=args.dir))
    rows: list[tuple[str, str, float, str]] = []
    try:
        v1 = tensors_of(size, count, seed=1)
        nbytes = sum(t.nbytes for t in v1.values())
        file_size = nbytes + 8 + 8 * count  # about: the header is a few KB
        print(f"checkpoint: {nbytes / MB:.0f} MiB in {count} fp32 tensors", flush=True)
        changed = dict(v1)
        fresh = tensors_of(size, count, seed=2)
        for name in list(v1)[::10]:  # every tenth tensor: 10% of them
            changed[name] = fresh[name]
        share = sum(changed[n].nbytes for n in list(v1)[::10]) / nbytes
        names = list(v1)
        half = len(names) // 2
        cases: list[Case] = [
            ("a", "re-upload of the same file", {"model.safetensors": v1}),
            ("b", f"new version, {share:.0%} of the tensors changed", {"model.safetensors": changed}),
            ("c", "same weights, every tensor renamed",
             {"model.safetensors": {n.replace("layers.", "blocks."): t for n, t in v1.items()}}),
            ("c", "same weights, resharded into 2 files",
             {"model-00001-of-00002.safetensors": {n: v1[n] for n in names[:half]},
              "model-00002-of-00002.safetensors": {n: v1[n] for n in names[half:]}}),
        ]  # fmt: skip
        print("publisher (one hf_xet cache for every upload):")
        own = run_cases(root / "publisher-hub", v1, cases, publisher=True)
        print("others (an empty cache for every upload):")
        others = run_cases(root / "others-hub", v1, cases, publisher=False)
        for (key, label, _), (sent, stored), (o_sent, o_stored) in zip(cases, own, others, strict=True):
            detail = (f"publisher: sent {sent / file_size:.3%}, stored {stored / file_size:.3%}; empty cache: "
                      f"sent {o_sent / file_size:.3%}, stored {o_stored / file_size:.3%}")  # fmt: skip
            rows.append((key, label, max(sent, stored) / file_size, detail))

        print("throughput (no proxy):")
        xet_up, lfs_up, xet_down, lfs_down = throughput(root / "throughput-hub", size, count)
        rate = lambda s: f"{file_size / s / 1e9:.2f} GB/s"  # noqa: E731
        rows.append(("d", "upload, Xet vs LFS (time ratio LFS/Xet)", lfs_up / xet_up,
                     f"Xet {xet_up:.1f} s ({rate(xet_up)}), LFS {lfs_up:.1f} s ({rate(lfs_up)})"))  # fmt: skip
        detail = f"Xet {xet_down:.1f} s ({rate(xet_down)}), LFS path {lfs_down:.1f} s ({rate(lfs_down)})"
        rows.append(("d", "download, Xet vs LFS path (rate ratio)", lfs_down / xet_down, detail))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print("\n" + "=" * 100)
    print(f"{'':3}{'case':<44}{'figure':>10}   detail")
    for key, label, value, detail in rows:
        print(f"({key}) {label:<44}{value:>10.4f}   {detail}")
    print("\nTargets (plain LFS = 1.0 for a-c)")
    checks = [
        ("(a) re-upload <= 0.1% new", rows[0][2] <= TARGETS["a"]),
        ("(b) 10% changed <= 10.5% sent and stored", rows[1][2] <= TARGETS["b"]),
        ("(c) renamed <= 1%", rows[2][2] <= TARGETS["c"]),
        ("(c) resharded <= 1%", rows[3][2] <= TARGETS["c"]),
        ("(d) Xet download >= 0.8x LFS download", rows[5][2] >= TARGETS["d_download"]),
    ]
    for text, ok in checks:
        print(f"  {'MET ' if ok else 'MISS'}  {text}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
