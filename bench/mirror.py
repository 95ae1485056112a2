"""Mirror benchmark: a download through a hub mirroring another (``OPENCKPT_UPSTREAM``) against the direct ones.

Two hub processes on loopback with SQLite, one the upstream of the other. A ``--size-mb`` safetensors file (one
tensor of random bytes) is pushed to the upstream by Git LFS and to the mirror's own repo; both hubs chunk it into
Xet xorbs in the background, and the script waits for that (untimed) before timing reads. Measured, medians of
``--repeat`` runs, plain httpx GETs of ``/resolve`` into memory-discarding loops:

- direct: from the upstream;
- cold: from the mirror, of a revision it lacks (the mirror fetches it and streams it as it arrives, the last MiB
  once the revision passed the gate and is committed: ``services/mirror/live.py``; the repo is evicted through the
  admin API before each run);
- cached: from the mirror again;
- own: from the mirror, of its own repo holding the same bytes (cached and own alternate which reads first).

Reads are ``iter_bytes`` of 8 MiB, as ``huggingface_hub`` reads a download (10 MiB). Also printed: the CPU the
serving hub spends per GB of a direct read (the upstream's) and of a cold read (the mirror's: fetch, verify, gate,
serve), from ``/proc``: what a cold read costs when both ends share the same cores.

Then ``--clients`` readers (plain httpx, each checking every byte) ask at once for an uncached ``--clients-mb``
safetensors file of a static upstream (``tests/hub/mirrortools.py``, which counts its transfers): one upstream
transfer, every reader bit-exact (the issue's 16 clients on 512 MB; the test suite runs 128 MB).

    python bench/mirror.py [--size-mb 256] [--repeat 3] [--clients 16] [--clients-mb 512] [--dir PATH]

Targets (issue #19): cold ≥ 0.5x direct, cached ≥ 0.9x own. Rates are decimal (1 MB = 10**6 bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.hub.mirrortools import static_upstream
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


def _cpu(hub: HubProcess) -> float:
    """CPU-seconds the hub's process has used so far (user + system)."""
    fields = Path(f"/proc/{hub.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_for_xet(url: str, timeout: float = 600) -> None:
    """Until the hub serves ``url`` from Xet xorbs (its ``X-Xet-Hash`` header): ingestion is background work."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.head(url).headers.get("x-xet-hash"):
            return
        time.sleep(0.5)
    raise TimeoutError(f"{url} was not ingested into Xet in {timeout}s")


def safetensors_file(size: int) -> bytes:
    """A valid safetensors file of one U8 tensor of ``size`` random bytes."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + os.urandom(size)


def _clients(folder: Path, clients: int, size: int) -> tuple[float, int, int]:
    """(seconds, upstream transfers, bit-exact readers) of ``clients`` readers of one uncached ``size``-byte file."""
    data = safetensors_file(size)
    with static_upstream() as up:
        up.add("acme/big", {"big.safetensors": data})
        mirror = start_hub(folder / "clients" / "data", env={"OPENCKPT_UPSTREAM": up.url})

        def read(_: int) -> bool:
            pos = 0
            url = f"{mirror.url}/acme/big/resolve/main/big.safetensors"
            with httpx.stream("GET", url, timeout=1200) as response:
                response.raise_for_status()
                for chunk in response.iter_bytes(8 << 20):
                    if chunk != data[pos : pos + len(chunk)]:
                        return False
                    pos += len(chunk)
            return pos == len(data)

        try:
            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                exact = sum(pool.map(read, range(clients)))
            return time.perf_counter() - started, up.downloads["big.safetensors"], exact
        finally:
            mirror.stop()


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
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--clients-mb", type=int, default=512)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    size = args.size_mb * 10**6
    data = safetensors_file(size)
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
            cpu: dict[str, list[float]] = {"direct (upstream's)": [], "cold (mirror's)": []}
            for run in range(args.repeat):
                httpx.delete(f"{mirror.url}/api/admin/mirror/models/acme/weights", headers=admin)
                before = _cpu(upstream)
                times["direct"].append(_get(f"{upstream.url}/acme/weights/{path}"))
                cpu["direct (upstream's)"].append(_cpu(upstream) - before)
                before = _cpu(mirror)
                times["cold"].append(_get(f"{mirror.url}/acme/weights/{path}"))
                cpu["cold (mirror's)"].append(_cpu(mirror) - before)
                _wait_for_xet(f"{mirror.url}/acme/weights/{path}")  # cached reads as the mirror keeps them
                pair = [("cached", "acme"), ("own", "admin")]
                for name, owner in pair if run % 2 == 0 else reversed(pair):  # neither always reads right after cold
                    times[name].append(_get(f"{mirror.url}/{owner}/weights/{path}"))
        finally:
            mirror.stop()
            upstream.stop()
        together = _clients(Path(folder), args.clients, args.clients_mb * 10**6) if args.clients else None
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    rate = {k: size / statistics.median(v) / 1e6 for k, v in times.items()}
    print(f"mirror benchmark: {args.size_mb} MB file, median of {args.repeat}, MB/s (load average {load})")
    for name, mbps in rate.items():
        print(f"  {name:<7} {mbps:8.1f} MB/s")
    cold, cached = rate["cold"] / rate["direct"], rate["cached"] / rate["own"]
    print(f"  cold through the mirror vs direct from the upstream: {cold:.2f}x (target ≥ {COLD_VS_DIRECT})")
    print(f"  cached through the mirror vs the hub's own repo:      {cached:.2f}x (target ≥ {CACHED_VS_OWN})")
    for name, seconds in cpu.items():
        print(f"  hub CPU-s per GB, {name}: {statistics.median(seconds) / size * 1e9:.2f}")
    if together is not None:
        seconds, transfers, exact = together
        print(
            f"  {args.clients} clients on one uncached {args.clients_mb} MB file: {transfers} upstream transfer(s), "
            f"{exact}/{args.clients} bit-exact, {seconds:.1f} s"
        )


if __name__ == "__main__":
    main()
