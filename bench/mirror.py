"""Mirror benchmark: a download through a hub mirroring another (``OPENCKPT_UPSTREAM``) against the direct ones.

Two hub processes on loopback with SQLite, one the upstream of the other. A ``--size-mb`` file of random bytes is
pushed to the upstream by Git LFS and to the mirror's own repo; both hubs chunk it into Xet xorbs in the background,
and the script waits for that (untimed) before timing reads. Measured, medians of ``--repeat`` runs, plain httpx GETs
of ``/resolve`` into memory-discarding loops:

- direct: from the upstream;
- cold: from the mirror, of a revision it lacks (the mirror fetches it, scans it, commits it, then serves it; the
  repo is evicted through the admin API before each run);
- cached: from the mirror again;
- own: from the mirror, of its own repo holding the same bytes.

    python bench/mirror.py [--size-mb 256] [--repeat 3] [--dir PATH]

Targets (issue #19): cold ≥ 0.5x direct, cached ≥ 0.9x own. Rates are decimal (1 MB = 10**6 bytes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.hubtools import HubProcess, start_hub

COLD_VS_DIRECT = 0.5
CACHED_VS_OWN = 0.9


def _get(url: str, headers: dict[str, str] | None = None) -> float:
    """Seconds to GET ``url`` whole (bytes discarded)."""
    started = time.perf_counter()
    with httpx.stream("GET", url, headers=headers, timeout=600, follow_redirects=True) as response:
        response.raise_for_status()
        for _ in response.iter_bytes(8 << 20):
            pass
    return time.perf_counter() - started


def _wait_for_xet(url: str, timeout: float = 600) -> None:
    """Until the hub serves ``url`` from Xet xorbs (its ``X-Xet-Hash`` header): ingestion is background work."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.head(url).headers.get("x-xet-hash"):
            return
        time.sleep(0.5)
    raise TimeoutError(f"{url} was not ingested into Xet in {timeout}s")


def _push(hub: HubProcess, repo: str, data: bytes) -> None:
    os.environ["HF_HUB_DISABLE_XET"] = "1"  # by Git LFS, as most uploads of a hub's users
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token=hub.token)
    api.create_repo(repo, exist_ok=True)
    api.upload_file(path_or_fileobj=data, path_in_repo="model.safetensors", repo_id=repo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    size = args.size_mb * 10**6
    data = os.urandom(size)
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        upstream = start_hub(Path(folder) / "upstream" / "data")
        mirror = start_hub(Path(folder) / "mirror" / "data", env={"OPENCKPT_UPSTREAM": upstream.url})
        try:
            upstream.create_org("acme", {})
            _push(upstream, "acme/weights", data)
            _push(mirror, "admin/weights", data)
            path = "resolve/main/model.safetensors"
            _wait_for_xet(f"{upstream.url}/acme/weights/{path}")
            _wait_for_xet(f"{mirror.url}/admin/weights/{path}")
            admin = {"authorization": f"Bearer {mirror.token}"}
            times: dict[str, list[float]] = {"direct": [], "cold": [], "cached": [], "own": []}
            for _ in range(args.repeat):
                httpx.delete(f"{mirror.url}/api/admin/mirror/models/acme/weights", headers=admin)
                times["direct"].append(_get(f"{upstream.url}/acme/weights/{path}"))
                times["cold"].append(_get(f"{mirror.url}/acme/weights/{path}"))
                _wait_for_xet(f"{mirror.url}/acme/weights/{path}")  # cached reads as the mirror keeps them
                times["cached"].append(_get(f"{mirror.url}/acme/weights/{path}"))
                times["own"].append(_get(f"{mirror.url}/admin/weights/{path}"))
        finally:
            mirror.stop()
            upstream.stop()
    rate = {k: size / statistics.median(v) / 1e6 for k, v in times.items()}
    print(f"mirror benchmark: {args.size_mb} MB file, median of {args.repeat}, MB/s")
    for name, mbps in rate.items():
        print(f"  {name:<7} {mbps:8.1f} MB/s")
    cold, cached = rate["cold"] / rate["direct"], rate["cached"] / rate["own"]
    print(f"  cold through the mirror vs direct from the upstream: {cold:.2f}x (target ≥ {COLD_VS_DIRECT})")
    print(f"  cached through the mirror vs the hub's own repo:      {cached:.2f}x (target ≥ {CACHED_VS_OWN})")


if __name__ == "__main__":
    main()
