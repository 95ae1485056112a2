"""Training into a bucket: bytes a CheckpointManager's mirror sends per checkpoint, through the stock client and Xet.

    python bench/bucket.py [--size-mb 1024] [--tensors 100] [--checkpoints 10] [--dir DIR]

Starts a hub (SQLite, local store) on 127.0.0.1 behind a byte-counting proxy (tests/proxy.py, as bench/dedup.py),
and runs one training "run" in this process: a model of ``--tensors`` fp32 tensors (``--size-mb`` in all) saved by
``CheckpointManager(dir, mirror="hf://buckets/admin/run")`` ``--checkpoints`` times, 10% of the tensors changed
between two checkpoints (a different tenth each time). After each save ``manager.wait()`` flushes the upload, and the
proxy tells the bytes the client sent for it (every byte of every request: tokens, batches, xorbs, shards). The
baseline is the first checkpoint, which has nothing to deduplicate against (a plain LFS upload of each checkpoint
sends that much every time). The machine's hf_xet cache persists across checkpoints, as on a training machine.

Target (issue #17): the tenth checkpoint sends <= 12% of its bytes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hubtools import start_hub  # noqa: E402
from tests.proxy import RecordingProxy  # noqa: E402

MB = 1 << 20
TARGET = 0.12


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024, help="checkpoint size (default 1024)")
    parser.add_argument("--tensors", type=int, default=100, help="tensors in it (default 100)")
    parser.add_argument("--checkpoints", type=int, default=10, help="checkpoints of the run (default 10)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the hub and the run")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="openckpt-bucket-", dir=args.dir))
    os.environ.update(HF_HOME=str(root / "hf-home"), HF_XET_CACHE=str(root / "hf-home" / "xet"))
    os.environ.update(HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1")
    hub = start_hub(root / "data")
    proxy = RecordingProxy(hub.url)
    try:
        rows = run(root, hub.token, proxy, size=args.size_mb * MB, count=args.tensors, checkpoints=args.checkpoints)
    finally:
        proxy.close()
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)

    first = rows[0][1]
    print("\n" + "=" * 100)
    print(f"{'checkpoint':<12}{'file bytes':>16}{'sent':>16}{'sent/size':>11}{'vs first':>10}{'upload s':>10}")
    for k, (size, sent, seconds) in enumerate(rows, 1):
        print(f"{k:<12}{size:>16,}{sent:>16,}{sent / size:>11.2%}{sent / first:>10.2%}{seconds:>10.1f}")
    size, sent, _ = rows[-1]
    ok = sent / size <= TARGET
    verdict = "MET" if ok else "MISS"
    print(f"\nTarget: checkpoint {len(rows)} sends <= {TARGET:.0%} of its bytes: {verdict} ({sent / size:.2%})")
    return 0 if ok else 1


def run(
    root: Path, token: str, proxy: RecordingProxy, *, size: int, count: int, checkpoints: int
) -> list[tuple[int, int, float]]:
    """(checkpoint bytes, bytes sent, seconds to upload) of each checkpoint of the run."""
    import torch

    import openckpt
    from openckpt.client.bucket_mirror import BucketMirror

    per = size // count // 4
    gen = torch.Generator().manual_seed(1)
    model = torch.nn.Module()
    for i in range(count):
        model.register_buffer(f"layer_{i:03d}", torch.randn(per, generator=gen))
    mirror = BucketMirror("hf://buckets/admin/run", endpoint=proxy.url, token=token)
    manager = openckpt.CheckpointManager(root / "run", mirror=mirror, keep=[openckpt.keep_last(2)], recipe=False)
    buffers = dict(model.named_buffers())
    rows = []
    for k in range(1, checkpoints + 1):
        if k > 1:  # a different tenth of the tensors each time
            for i in range(k % 10, count, 10):
                buffers[f"layer_{i:03d}"].copy_(torch.randn(per, generator=gen))
        proxy.reset()
        manager.save({"model": model}, step=k)
        started = time.monotonic()
        manager.wait()
        seconds = time.monotonic() - started
        checkpoint = root / "run" / f"step-{k:08d}"
        nbytes = sum(p.stat().st_size for p in checkpoint.iterdir() if p.is_file())
        rows.append((nbytes, proxy.sent, seconds))
        print(f"checkpoint {k}: {nbytes / MB:.0f} MiB, sent {proxy.sent / nbytes:.2%} in {seconds:.1f} s", flush=True)
    manager.close()
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
