"""Checkpoint I/O benchmark: durable save, cold/warm load into a live model, async-save stall.

A ~1 GB fp32 training state (a transformer-ish model plus AdamW's exp_avg and exp_avg_sq after one step)
is saved and loaded by openckpt and by the usual baselines, side by side in one run. Methods are interleaved
within each repetition (so slow drift of a noisy disk hits all of them alike) and medians are reported,
together with the raw limits of this machine measured in the same run.

    python bench/checkpoint_io.py [--size-gb 1.0] [--repeat 3] [--dir /path/on/a/real/disk]

Rates are decimal: 1 GB = 10**9 bytes of tensor data.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
import safetensors
import safetensors.torch
import torch
from torch import nn

import openckpt
from openckpt.checkpoint.seal import wait_for_seals
from openckpt.checkpoint.snapshot import Staging, capture

GB = 10**9
IO_CHUNK = 64 << 20
IOV_MAX = 1024

# Targets from the issue.
SAVE_VS_SAFETENSORS = 1.10
STALL_S_PER_GB = 0.15


# --------------------------------------------------------------------------------------------- training state


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)


class Model(nn.Module):
    """Embedding + pre-LN transformer blocks (the weights only matter here, so no forward)."""

    def __init__(self, vocab: int, d: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)


def build_state(size_gb: float) -> tuple[Model, torch.optim.AdamW]:
    """A model with ``size_gb / 12`` G fp32 parameters and AdamW after one step: ``size_gb`` of state."""
    target = max(int(size_gb * GB / 12), 4096)
    d = 1024
    while 12 * d * d > target and d > 64:
        d //= 2
    per_block = 12 * d * d + 13 * d
    layers = max(target // per_block, 1)
    vocab = max((target - layers * per_block - 2 * d) // d, 1)
    torch.manual_seed(0)
    model = Model(vocab, d, layers)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.randn_like(p).mul_(1e-3)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return model, opt


def flat_state(model: Model, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """What a baseline saves: one flat dict of the model's and the optimizer's tensors."""
    names = {id(p): n for n, p in model.named_parameters()}
    flat = {f"model.{k}": v for k, v in model.state_dict().items()}
    for p, st in opt.state.items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                flat[f"optim.{names[id(p)]}.{k}"] = v
    return flat


def state_nbytes(flat: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in flat.values())


def byte_views(flat: dict[str, torch.Tensor]) -> list[memoryview]:
    return [memoryview(t.detach().reshape(-1).view(torch.uint8).numpy()) for t in flat.values() if t.numel()]


# --------------------------------------------------------------------------------------------- file system


def fs_type(path: Path) -> str:
    """The file system type of the mount holding ``path`` (longest mount point prefix)."""
    best, kind = "", "?"
    real = str(path.resolve())
    with contextlib.suppress(OSError), open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3:
                continue
            mnt = parts[1].replace("\\040", " ")
            if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, kind = mnt, parts[2]
    return kind


def default_parent() -> Path:
    tmp = Path(tempfile.gettempdir())
    if fs_type(tmp) not in ("tmpfs", "ramfs"):
        return tmp
    return Path(__file__).resolve().parent.parent  # the repository, on a real disk


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


class CacheDropper:
    """Drops the page cache: ``echo 3 > drop_caches`` if allowed, else fadvise(DONTNEED) per file."""

    def __init__(self, method: str) -> None:
        self.method = method
        if method == "auto":
            try:
                self._drop_caches()
                self.method = "drop_caches"
            except OSError:
                self.method = "fadvise"

    @staticmethod
    def _drop_caches() -> None:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")

    def describe(self) -> str:
        if self.method == "drop_caches":
            return "sync; echo 3 > /proc/sys/vm/drop_caches before every cold run"
        return "fsync + posix_fadvise(POSIX_FADV_DONTNEED) on every file read, before every cold run"

    def drop(self, paths: list[Path]) -> None:
        if self.method == "drop_caches":
            self._drop_caches()
            return
        for path in paths:
            for p in files_under(path):
                fd = os.open(p, os.O_RDONLY)
                try:
                    os.fsync(fd)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def cpu_pressure() -> str:
    """``some avg10`` of /proc/pressure/cpu: the share of time runnable tasks waited for a CPU."""
    try:
        with open("/proc/pressure/cpu") as f:
            return f.readline().split()[1].removeprefix("avg10=") + "%"
    except (OSError, IndexError):
        return "n/a"


IDLE = {"max_wait": 30.0, "waited": 0.0, "busy_starts": 0, "runs": 0}


def cpu_busy(interval: float = 0.5) -> float:
    """Fraction of all CPUs busy (any process, incl. steal) over ``interval`` seconds, from /proc/stat."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return v[0] + v[1] + v[2] + v[5] + v[6] + v[7], sum(v)

    b0, t0 = sample()
    time.sleep(interval)
    b1, t1 = sample()
    return (b1 - b0) / max(t1 - t0, 1)


def settle() -> None:
    """Before every timed run: collect garbage, then wait (up to ``--idle-wait`` s) for the other processes
    of a shared machine to leave the CPUs idle (< 10% busy over 0.5 s), so that they do not time-slice
    with the method being measured."""
    gc.collect()
    if not IDLE["max_wait"]:
        return
    IDLE["runs"] += 1
    t0 = time.perf_counter()
    while cpu_busy() > 0.10:
        if time.perf_counter() - t0 > IDLE["max_wait"]:
            IDLE["busy_starts"] += 1
            break
    IDLE["waited"] += time.perf_counter() - t0


def quiesce() -> None:
    """:func:`settle`, then write back whatever the previous runs left dirty."""
    settle()
    os.sync()


# --------------------------------------------------------------------------------------------- methods


def writev_all(fd: int, bufs: list[memoryview]) -> None:
    while bufs:
        n = os.writev(fd, bufs[:IOV_MAX])
        while bufs and n >= bufs[0].nbytes:
            n -= bufs[0].nbytes
            bufs.pop(0)
        if n:
            bufs[0] = bufs[0][n:]


def raw_write(path: Path, views: list[memoryview]) -> None:
    """The durable-write limit: the same bytes, writev in ~64 MiB batches, fsync, no hashing, no header."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        batch: list[memoryview] = []
        size = 0
        for view in views:
            for i in range(0, view.nbytes, IO_CHUNK):
                part = view[i : i + IO_CHUNK]
                batch.append(part)
                size += part.nbytes
                if size >= IO_CHUNK or len(batch) >= IOV_MAX:
                    writev_all(fd, batch)
                    batch, size = [], 0
        if batch:
            writev_all(fd, batch)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_path(path.parent)


def raw_read(path: Path, buf: memoryview) -> None:
    """The read limit: sequential 64 MiB readinto calls into an existing buffer."""
    with open(path, "rb", buffering=0) as f:
        pos = 0
        while pos < buf.nbytes:
            n = f.readinto(buf[pos : pos + IO_CHUNK])
            if not n:
                raise EOFError(path)
            pos += n


def raw_read_parallel(path: Path, buf: memoryview, threads: int) -> None:
    """The same, with the file cut into ``threads`` contiguous parts read concurrently (own fd each)."""
    step = -(-buf.nbytes // threads)

    def part(start: int) -> None:
        view = buf[start : start + step]
        with open(path, "rb", buffering=0) as f:
            f.seek(start)
            pos = 0
            while pos < view.nbytes:
                n = f.readinto(view[pos : pos + IO_CHUNK])
                if not n:
                    raise EOFError(path)
                pos += n

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(part, range(0, buf.nbytes, step)))


def targets_of(model: Model, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    return flat_state(model, opt)


def copy_into(targets: dict[str, torch.Tensor], loaded: dict[str, torch.Tensor]) -> None:
    if loaded.keys() != targets.keys():
        raise KeyError("loaded tensors differ from the live state")
    with torch.no_grad():
        for name, t in loaded.items():
            targets[name].copy_(t)


def cpu_seconds() -> float:
    """CPU time of this process so far, all threads, user + system."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@dataclass
class Result:
    name: str
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


# --------------------------------------------------------------------------------------------- benchmark


class Bench:
    def __init__(self, root: Path, size_gb: float, repeat: int, dropper: CacheDropper) -> None:
        self.root = root
        self.repeat = repeat
        self.dropper = dropper
        t0 = time.perf_counter()
        self.model, self.opt = build_state(size_gb)
        self.state = {"model": self.model, "optimizer": self.opt}
        self.flat = flat_state(self.model, self.opt)
        self.nbytes = state_nbytes(self.flat)
        self.reference = {k: v.clone() for k, v in self.flat.items()}
        self.build_s = time.perf_counter() - t0
        self.results: dict[str, Result] = {}
        self.notes: list[str] = []
        self.last_cpu = 0.0

    def record(self, name: str, seconds: float, cpu: float | None = None) -> None:
        """Record a wall time; ``cpu`` defaults to the CPU time of the last :meth:`timed` call."""
        result = self.results.setdefault(name, Result(name))
        result.times.append(seconds)
        result.cpu.append(self.last_cpu if cpu is None else cpu)

    def timed(self, fn: Callable[[], Any]) -> float:
        c0, t0 = cpu_seconds(), time.perf_counter()
        fn()
        t1 = time.perf_counter()
        self.last_cpu = cpu_seconds() - c0
        return t1 - t0

    # ----------------------------------------------------------------------------------------- save

    def save_methods(self) -> dict[str, Callable[[Path], None]]:
        def ockpt(path: Path) -> None:
            openckpt.save(path, self.state)  # durable; the sha256 seal follows on its own thread (untimed)

        def ockpt_inline(path: Path) -> None:
            openckpt.save(path, self.state, sha256="inline")

        def st(path: Path) -> None:
            safetensors.torch.save_file(flat_state(self.model, self.opt), str(path))
            fsync_path(path)
            fsync_path(path.parent)

        def ts(path: Path) -> None:
            torch.save(flat_state(self.model, self.opt), str(path))
            fsync_path(path)
            fsync_path(path.parent)

        views = byte_views(self.flat)
        return {
            "raw write+fsync": lambda path: raw_write(path, views),
            "openckpt.save": ockpt,
            "openckpt.save sha256=inline": ockpt_inline,
            "safetensors save_file+fsync": st,
            "torch.save+fsync": ts,
        }

    def run_saves(self) -> dict[str, Path]:
        """Time every durable save; leave the last file of each method for the load runs."""
        methods = self.save_methods()
        suffix = {
            "raw write+fsync": ".bin",
            "safetensors save_file+fsync": ".safetensors",
            "torch.save+fsync": ".pt",
        }
        last: dict[str, Path] = {}
        for rep in range(-1, self.repeat):  # rep -1 warms code paths (git_state, imports, allocator)
            for name, fn in methods.items():
                stem = name.split()[0].replace(".", "_") + ("_inline" if "inline" in name else "")
                path = self.root / f"{stem}-{rep + 1}{suffix.get(name, '')}"
                settle()
                if name in last:
                    # Right before the run, as a training job's retention would: the page cache of a file
                    # being written then reuses pages freed a moment ago (see the note on fresh memory).
                    remove(last[name])
                os.sync()
                seconds = self.timed(lambda fn=fn, path=path: fn(path))  # type: ignore[misc]
                wait_for_seals()  # the seal's hashing must not overlap the next method's timed run
                if rep >= 0:
                    self.record(f"save/{name}", seconds)
                last[name] = path
                print(f"  save   rep {rep + 1} {name:<30} {seconds:7.3f} s", flush=True)
        return last

    # ----------------------------------------------------------------------------------------- load

    def check_loaded(self, name: str) -> None:
        live = flat_state(self.model, self.opt)
        bad = [k for k, v in self.reference.items() if not torch.equal(live[k], v)]
        if bad:
            raise AssertionError(f"{name}: {len(bad)} tensors differ after loading, e.g. {bad[0]}")

    def scramble(self) -> None:
        with torch.no_grad():
            for t in flat_state(self.model, self.opt).values():
                t.zero_()

    def load_methods(self, files: dict[str, Path]) -> dict[str, tuple[Path, Callable[[], Any]]]:
        raw_buf = memoryview(torch.empty(self.nbytes, dtype=torch.uint8).numpy())
        raw, threads = files["raw write+fsync"], max(2, os.cpu_count() or 1)
        ck, stf, ptf = files["openckpt.save"], files["safetensors save_file+fsync"], files["torch.save+fsync"]

        def st() -> None:
            copy_into(targets_of(self.model, self.opt), safetensors.torch.load_file(str(stf)))

        def pt() -> None:
            loaded = torch.load(str(ptf), mmap=True, weights_only=True)
            copy_into(targets_of(self.model, self.opt), loaded)
            del loaded

        return {
            "raw read": (raw, lambda: raw_read(raw, raw_buf)),
            f"raw read, {threads} threads": (raw, lambda: raw_read_parallel(raw, raw_buf, threads)),
            "openckpt.load verify=False": (ck, lambda: openckpt.load(ck, self.state, verify=False)),
            "openckpt.load verify=True": (ck, lambda: openckpt.load(ck, self.state, verify=True)),
            "safetensors load_file+copy_": (stf, st),
            "torch.load(mmap)+copy_": (ptf, pt),
        }

    def run_loads(self, files: dict[str, Path]) -> None:
        methods = self.load_methods(files)
        for name, (_, fn) in methods.items():  # warm-up and correctness: each method restores a zeroed state
            if not name.startswith("raw"):
                self.scramble()
            fn()
            if not name.startswith("raw"):
                self.check_loaded(name)
        for mode in ("cold", "warm"):
            for rep in range(self.repeat):
                for name, (path, fn) in methods.items():
                    if mode == "cold":
                        settle()
                        self.dropper.drop([path])
                    else:
                        fn()  # read once before: the files are in the page cache
                        settle()
                    seconds = self.timed(fn)
                    self.record(f"{mode}/{name}", seconds)
                    print(f"  {mode:<6} rep {rep + 1} {name:<30} {seconds:7.3f} s", flush=True)
        self.check_loaded("all loads")

    # ----------------------------------------------------------------------------------------- async save

    def run_async(self) -> None:
        steps = self.repeat + 1
        try:
            manager_cls = openckpt.CheckpointManager
            keep_last = openckpt.keep_last
        except (ImportError, AttributeError) as e:
            self.notes.append(f"CheckpointManager unavailable ({e}); stall = snapshot.capture(state, staging=...)")
            manager_cls = None
        if manager_cls is not None:
            directory = self.root / "async"
            mgr = manager_cls(directory, save_every=1, keep=[keep_last(2)], async_save=True)
            try:
                for step in range(steps):
                    quiesce()
                    c0, t0 = cpu_seconds(), time.perf_counter()
                    mgr.save(self.state, step=step)
                    c1, t1 = cpu_seconds(), time.perf_counter()
                    mgr.wait()
                    c2, t2 = cpu_seconds(), time.perf_counter()
                    stall, total = t1 - t0, t2 - t0
                    name = "first save (allocates staging)" if step == 0 else "steady state"
                    self.record(f"async/stall {name}", stall, c1 - c0)
                    self.record(f"async/durable after, {name}", total, c2 - c0)
                    print(f"  async  step {step} stall {stall:.3f} s, durable after {total:.3f} s", flush=True)
            finally:
                mgr.close()
            self.notes.append("async stall measured through CheckpointManager(async_save=True).save()")
        else:
            staging = Staging()
            for step in range(steps):
                quiesce()
                stall = self.timed(lambda: capture(self.state, staging=staging))
                name = "first save (allocates staging)" if step == 0 else "steady state"
                self.record(f"async/stall {name}", stall)
                print(f"  async  step {step} stall {stall:.3f} s", flush=True)
        # Baseline and limit of the stall: a copy into fresh memory (what DCP's async_save does), and a copy
        # into reused memory (the memcpy limit).
        dst = {k: torch.empty_like(v) for k, v in self.flat.items()}

        def reuse() -> None:
            copy_into(dst, self.flat)

        def fresh() -> None:
            nonlocal previous
            previous = {k: v.clone() for k, v in self.flat.items()}

        reuse()
        previous: dict[str, torch.Tensor] = {}
        for _ in range(self.repeat):
            quiesce()
            previous = {}  # freed right before the run, like a training loop's last snapshot
            self.record("async/DCP-style copy into fresh memory", self.timed(fresh))
            quiesce()
            self.record("async/copy_ into reused memory (limit)", self.timed(reuse))
        previous = {}

    # ----------------------------------------------------------------------------------------- hashing

    def run_hashing(self) -> None:
        views = byte_views(self.flat)

        def sha() -> None:
            h = hashlib.sha256()
            for v in views:
                h.update(v)

        def b3(threads: int) -> Callable[[], None]:
            def run() -> None:
                h = blake3.blake3(max_threads=threads)
                for v in views:
                    h.update(v)

            return run

        for _ in range(self.repeat):
            for name, fn in (
                ("sha256 1 thread", sha),
                ("blake3 1 thread", b3(1)),
                ("blake3 all cores", b3(blake3.blake3.AUTO)),
            ):
                settle()
                self.record(f"hash/{name}", self.timed(fn))


# --------------------------------------------------------------------------------------------- report


def machine() -> list[str]:
    mem = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        kb = int(f.readline().split()[1])
        mem = f"{kb / 2**20:.1f} GiB"
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return [
        f"cpu: {cpu}, nproc {os.cpu_count()}, torch threads {torch.get_num_threads()}, RAM {mem}",
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"safetensors {safetensors.__version__}, openckpt {openckpt.__version__}, "
        f"{platform.system()} {platform.release()}",
    ]


def report(b: Bench, root: Path) -> bool:
    r = b.results
    gb = b.nbytes / GB

    def med(name: str) -> float:
        return r[name].median

    def short(name: str) -> str:
        return name.split("/", 1)[1].split("+")[0].split(" ")[0]

    def row(name: str, baselines: list[str]) -> str:
        res = r[name]
        label = name.split("/", 1)[1]
        rate = gb / res.median
        if "durable" in label:  # a background write: no baseline for it here
            baselines = []
        ratios = "  ".join(f"{med(x) / res.median:5.2f}x {short(x)}" for x in baselines if x != name)
        spread = f"{min(res.times):6.3f}-{max(res.times):6.3f}"
        cpu = statistics.median(res.cpu)
        return f"  {label:<40} {res.median:7.3f} {spread} {rate:6.2f} {cpu:6.2f}   {ratios}"

    print()
    print("=" * 110)
    print(f"Checkpoint I/O: {gb:.3f} GB fp32 state ({len(b.flat)} tensors), median of {b.repeat}")
    for line in machine():
        print(f"  {line}")
    print(f"  data dir: {root} ({fs_type(root)}); cold = {b.dropper.describe()}")
    for note in b.notes:
        print(f"  note: {note}")
    header = f"  {'':<40} {'median s':>7} {'min-max s':>13} {'GB/s':>6} {'cpu s':>6}   speed-up vs baseline"
    sections = [
        ("Durable save (fsync'd)", "save/", ["save/safetensors save_file+fsync", "save/torch.save+fsync"]),
        ("Cold load into the live model + optimizer", "cold/", ["cold/safetensors load_file+copy_",
                                                                 "cold/torch.load(mmap)+copy_"]),
        ("Warm load into the live model + optimizer", "warm/", ["warm/safetensors load_file+copy_",
                                                                 "warm/torch.load(mmap)+copy_"]),
        ("Async save: time the training loop is blocked", "async/",
         ["async/DCP-style copy into fresh memory"]),
        ("Hashing in memory (limits)", "hash/", []),
    ]  # fmt: skip
    for title, prefix, baselines in sections:
        print(f"\n{title}")
        print(header)
        for name in r:
            if name.startswith(prefix):
                print(row(name, baselines))

    targets: list[tuple[str, bool, str]] = []
    save = med("save/openckpt.save") / med("save/safetensors save_file+fsync")
    targets.append(("durable save <= 1.10x safetensors' time", save <= SAVE_VS_SAFETENSORS, f"{save:.2f}x"))
    for mode in ("cold", "warm"):
        best = min(med(f"{mode}/safetensors load_file+copy_"), med(f"{mode}/torch.load(mmap)+copy_"))
        for verify in (False, True):
            ratio = med(f"{mode}/openckpt.load verify={verify}") / best
            targets.append(
                (
                    f"{mode} load verify={verify} <= best baseline's time",
                    ratio <= 1.0,
                    f"{ratio:.2f}x best baseline",
                )
            )
    stall = med("async/stall steady state") / gb
    targets.append((f"async stall <= {STALL_S_PER_GB} s per GB", stall <= STALL_S_PER_GB, f"{stall:.3f} s/GB"))
    print("\nTargets")
    for text, ok, value in targets:
        print(f"  {'MET ' if ok else 'MISS'}  {text:<48} {value}")
    print("=" * 110)
    return all(ok for _, ok, _ in targets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=1.0, help="size of the training state (default 1.0)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per measurement (default 3)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (a temporary directory inside it)")
    parser.add_argument(
        "--idle-wait",
        type=float,
        default=30.0,
        help="before each timed run, wait up to this many seconds for other processes to idle (0: never)",
    )
    parser.add_argument(
        "--drop-method",
        choices=("auto", "drop_caches", "fadvise"),
        default="auto",
        help="how to make cold runs cold (default: drop_caches if permitted, else fadvise)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    IDLE["max_wait"] = args.idle_wait
    parent = args.dir or default_parent()
    parent.mkdir(parents=True, exist_ok=True)
    if fs_type(parent) in ("tmpfs", "ramfs"):
        print(f"warning: {parent} is on {fs_type(parent)}; disk figures will be memory figures", file=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="openckpt-bench-", dir=parent))
    try:
        pressure0 = cpu_pressure()
        bench = Bench(root, args.size_gb, args.repeat, CacheDropper(args.drop_method))
        print(f"state: {bench.nbytes / GB:.3f} GB in {len(bench.flat)} tensors, built in {bench.build_s:.1f} s")
        print(f"data dir: {root}")
        with phase("durable save"):
            files = bench.run_saves()
        with phase("load"):
            bench.run_loads(files)
        for path in files.values():
            remove(path)
        with phase("async save"):
            bench.run_async()
        with phase("hashing"):
            bench.run_hashing()
        bench.notes.append(f"CPU pressure (other processes) avg10 at start {pressure0}, at end {cpu_pressure()}")
        if IDLE["max_wait"]:
            bench.notes.append(
                f"waited {IDLE['waited']:.0f} s in all for idle CPUs before {IDLE['runs']} timed runs; "
                f"{IDLE['busy_starts']} started while other processes were still busy"
            )
        report(bench, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    print(f"[{name}]", flush=True)
    t0 = time.perf_counter()
    yield
    print(f"[{name}: {time.perf_counter() - t0:.1f} s]", flush=True)


if __name__ == "__main__":
    sys.exit(main())
