"""Downloads of files packed at rest against the same files unpacked, nginx and the LFS path (``bench/storage.py``
runs this after its storage ratios; see its docstring)."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hubtools import HubProcess, start_hub  # noqa: E402

from hub_transfer import NGINX_RESOLVE, SETTLE, curl_get, nginx, settle  # noqa: E402

NAME = "model.safetensors"
CLIENT = r"""
import os, sys, time
from huggingface_hub import hf_hub_download
t0 = time.perf_counter()
path = hf_hub_download(sys.argv[1], sys.argv[2], cache_dir=sys.argv[3])
print(time.perf_counter() - t0)
print(os.path.getsize(path))
"""
"""One ``hf_hub_download`` in a process of its own (``HF_HUB_DISABLE_XET`` is read at import); prints seconds."""


def client_download(endpoint: str, token: str, repo: str, cache: Path, *, xet: bool) -> float:
    """Seconds the stock client takes to download ``repo``'s file into the empty ``cache`` (Xet or the LFS path)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=endpoint, HF_TOKEN=token, HF_HOME=str(cache), HF_XET_CACHE=str(cache / "xet"))
    env.update(HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    if not xet:
        env["HF_HUB_DISABLE_XET"] = "1"
    shutil.rmtree(cache, ignore_errors=True)
    settle()
    done = subprocess.run(
        [sys.executable, "-c", CLIENT, repo, NAME, str(cache / "hub")], env=env, capture_output=True, text=True
    )
    shutil.rmtree(cache, ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(f"download failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.split()[-2])


def wait_packed(hub: HubProcess, data_dir: Path, url: str, packed: bool, timeout: float = 900) -> None:
    """Until the hub serves ``url`` from xorbs and, on the packing hub, no xorb is left as uploaded."""
    auth = {"authorization": f"Bearer {hub.token}"}
    deadline = time.monotonic() + timeout
    while "x-xet-hash" not in httpx.head(url, headers=auth).headers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} was not ingested")
        time.sleep(0.5)
    while packed:
        with sqlite3.connect(data_dir / "openckpt.db") as db:
            left = db.execute("select count(*) from xorbs where encoding = 0").fetchone()[0]
        if not left:
            return
        if time.monotonic() > deadline:
            raise TimeoutError("xorbs were not packed")
        time.sleep(0.5)


def timed(fn: Callable[[], object]) -> float:
    settle()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def stored_bytes(data_dir: Path) -> tuple[int, int]:
    """(bytes the xorbs' objects hold, unpacked bytes of their chunks) from the hub's database."""
    with sqlite3.connect(data_dir / "openckpt.db") as db:
        stored = db.execute("select coalesce(sum(coalesce(stored_size, serialized_size)), 0) from xorbs").fetchone()[0]
        chunks = db.execute("select coalesce(sum(unpacked_size), 0) from xorb_chunks").fetchone()[0]
    return int(stored), int(chunks)


def downloads(files: dict[str, bytes], repeat: int) -> None:
    """Upload each of ``files`` (dtype → safetensors bytes) to an unpacking and a packing hub, then time downloads."""
    os.environ["HF_HUB_DISABLE_XET"] = "1"  # this process uploads by LFS
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    from huggingface_hub import HfApi

    root = Path(tempfile.mkdtemp(prefix="openckpt-storage-bench-"))
    hubs: dict[str, tuple[HubProcess, Path]] = {}
    try:
        for kind, on in (("unpacked", "0"), ("packed", "1")):
            data_dir = root / kind / "data"
            hubs[kind] = (start_hub(data_dir, env={"OPENCKPT_COMPRESS_AT_REST": on}), data_dir)
        served = root / "served"
        served.mkdir()
        repos: dict[tuple[str, str], str] = {}
        extra = ""
        for dtype, data in files.items():
            path = served / f"{dtype}.safetensors"
            path.write_bytes(data)
            sha = hashlib.sha256(data).hexdigest()
            for kind, (hub, data_dir) in hubs.items():
                api = HfApi(endpoint=hub.url, token=hub.token)
                repo = api.create_repo(f"bench-{dtype}").repo_id
                api.upload_file(path_or_fileobj=str(path), path_in_repo=NAME, repo_id=repo)
                repos[(kind, dtype)] = repo
                t0 = time.perf_counter()
                wait_packed(hub, data_dir, f"{hub.url}/{repo}/resolve/main/{NAME}", kind == "packed")
                print(
                    f"  {dtype} on the {kind} hub: ingested{' and packed' if kind == 'packed' else ''} "
                    f"{time.perf_counter() - t0:.1f} s after its upload",
                    flush=True,
                )
            commit = "0" * 40
            extra += NGINX_RESOLVE.format(name=NAME, path=path, sha256=sha, size=len(data), commit=commit).replace(
                "/bench/model/", f"/bench/{dtype}/"
            )
        for kind, (_, data_dir) in hubs.items():
            stored, chunks = stored_bytes(data_dir)
            print(
                f"  {kind} hub stores {stored / 1e6:.1f} MB for {chunks / 1e6:.1f} MB of chunks "
                f"({stored / max(chunks, 1):.1%})"
            )
        with nginx(served, root / "nginx", extra) as ngx:
            table(files, repeat, hubs, repos, ngx, root / "cache")
    except BaseException:
        for kind, (hub, _) in hubs.items():
            code = hub.process.poll() if hub.process else None
            tail = hub.log.read_text(errors="replace")[-3000:]
            print(f"--- the {kind} hub (exit status {code}) log ends:\n{tail}", file=sys.stderr)
        raise
    finally:
        for hub, _ in hubs.values():
            hub.stop()
        shutil.rmtree(root, ignore_errors=True)


def table(
    files: dict[str, bytes],
    repeat: int,
    hubs: dict[str, tuple[HubProcess, Path]],
    repos: dict[tuple[str, str], str],
    ngx: str,
    cache: Path,
) -> None:
    """Time every download ``repeat`` times, interleaved (reversed every other time), and print the ratios."""
    results: dict[tuple[str, str], list[float]] = {}
    for dtype in files:
        methods: dict[str, Callable[[], float]] = {
            "curl nginx": lambda d=dtype: timed(lambda: curl_get(f"{ngx}/{d}.safetensors"))
        }
        methods["hf_hub_download nginx"] = lambda d=dtype: client_download(ngx, "x", f"bench/{d}", cache, xet=False)
        for kind, (hub, _) in hubs.items():
            repo = repos[(kind, dtype)]
            auth = {"authorization": f"Bearer {hub.token}"}
            url = f"{hub.url}/{repo}/resolve/main/{NAME}"
            methods[f"curl {kind}"] = lambda u=url, a=auth: timed(lambda: curl_get(u, a))
            methods[f"hf_hub_download {kind}"] = lambda h=hub, r=repo: client_download(
                h.url, h.token, r, cache, xet=False
            )
            methods[f"Xet {kind}"] = lambda h=hub, r=repo: client_download(h.url, h.token, r, cache, xet=True)
        for rep in range(repeat):
            order = list(methods.items())
            if rep % 2:
                order.reverse()
            for name, fn in order:
                t = fn()
                results.setdefault((dtype, name), []).append(t)
                mb = len(files[dtype]) / 1e6
                print(f"  {dtype} rep {rep + 1} {name:<26} {t:6.2f} s ({mb / t:7.1f} MB/s)", flush=True)
    print(f"{SETTLE['busy_starts']} of {SETTLE['runs']} timed runs started while other processes kept the CPUs busy")
    print("\n| file | download | packed MB/s | against | its MB/s | ratio | target |")
    print("|---|---|---:|---|---:|---:|---:|")
    for dtype, data in files.items():

        def rate(name: str, d: str = dtype, n: int = len(data)) -> float:
            return n / 1e6 / statistics.median(results[(d, name)])

        rows = [
            ("curl /resolve", "curl packed", "nginx", "curl nginx", 0.6),
            ("curl /resolve", "curl packed", "unpacked", "curl unpacked", None),
            ("hf_hub_download (LFS path)", "hf_hub_download packed", "nginx", "hf_hub_download nginx", 0.6),
            ("hf_hub_download (LFS path)", "hf_hub_download packed", "unpacked", "hf_hub_download unpacked", None),
            ("Xet (hf_xet)", "Xet packed", "LFS path, packed", "hf_hub_download packed", 0.8),
            ("Xet (hf_xet)", "Xet packed", "Xet, unpacked", "Xet unpacked", None),
        ]
        for label, mine, against, base, target in rows:
            ratio = rate(mine) / rate(base)
            mark = "" if target is None else f">= {target}x" + (" ✓" if ratio >= target else " ✗")
            print(
                f"| {dtype} {len(data) / 1e6:.0f} MB | {label} | {rate(mine):.0f} | {against} | {rate(base):.0f} "
                f"| {ratio:.2f}x | {mark} |"
            )
