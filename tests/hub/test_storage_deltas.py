"""Deltas for derivatives: a real fine-tune (and a LoRA-merged variant) of a hosted bf16 base, pushed by the stock
client with ``base_model`` in its card, is stored as XOR against the base and packed; every read path returns the
exact bytes (hf_hub_download by Xet and by ``/resolve``, the CAS transfers, ranges of a delta served many at once),
``fsck --deep`` rebuilds and hashes the deltas, the admin storage page shows each repo's bytes kept as deltas, GC
keeps a base a delta needs, and a SIGKILL during delta encoding loses nothing."""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from openckpt.hub.db.models import XetSha256, XetTerm, Xorb, XorbDeltaBase
from openckpt.hub.routes.ui.common import human_size
from openckpt.hub.services import deltas
from openckpt.hub.services.storage.accounting import account
from openckpt.hub.services.storage.fsck import check
from openckpt.hub.services.storage.gc import collect
from openckpt.store.local import LocalBlobStore
from openckpt.xet import delta
from tests.hub.storagetools import age_everything, api, database, store_of
from tests.hub.test_xet_compat import run_client, xet_env
from tests.hubtools import HubProcess, start_hub

VOCAB = 512


def _train(model: Any, steps: int, lr: float, seed: int) -> None:
    import torch

    generator = torch.Generator().manual_seed(seed)
    start = torch.randint(0, VOCAB - 40, (64, 1), generator=generator)
    data = (start + torch.arange(32)) % VOCAB  # counting sequences: something to learn
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for step in range(steps):
        batch = data[(step * 8) % 64 : (step * 8) % 64 + 8]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def build_models(root: Path, *, width: int = 128, layers: int = 2, steps: int = 100) -> dict[str, Path]:
    """A tiny GPT-2 (random init, bf16), a full fine-tune of it (``steps`` of AdamW at 1e-4, fp32 master weights,
    saved in bf16), and a LoRA fine-tune (r 8 on the attention, 1e-3) merged into it: three folders."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=width, n_layer=layers, n_head=4)
    dirs = {name: root / name for name in ("base", "finetune", "lora")}
    GPT2LMHeadModel(config).to(torch.bfloat16).save_pretrained(dirs["base"])
    tuned = GPT2LMHeadModel.from_pretrained(dirs["base"], dtype=torch.float32)
    _train(tuned, steps, 1e-4, seed=1)
    tuned.to(torch.bfloat16).save_pretrained(dirs["finetune"])
    adapted = get_peft_model(
        GPT2LMHeadModel.from_pretrained(dirs["base"], dtype=torch.float32),
        LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn"], fan_in_fan_out=True),
    )
    _train(adapted, steps, 1e-3, seed=2)
    adapted.merge_and_unload().to(torch.bfloat16).save_pretrained(dirs["lora"])
    return dirs


def _card(folder: Path, base: str | None) -> None:
    front = f"---\nbase_model: {base}\nlicense: mit\n---\n" if base else "---\nlicense: mit\n---\n"
    (folder / "README.md").write_text(front + "# a tiny model\n")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    url = ""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres").create_database(f"hub_{uuid.uuid4().hex[:8]}")
    server = start_hub(tmp_path_factory.mktemp("hub") / "data", url, env={"OPENCKPT_COMPRESS_AT_REST": "1"})
    yield server
    server.stop()


def _xorbs_of(hub: HubProcess, sha256: str) -> list[Xorb]:
    with database(hub) as db, db.read() as session:
        files = select(XetSha256.file_hash).where(XetSha256.sha256 == sha256)
        rows = list(
            session.scalars(
                select(Xorb).where(Xorb.hash.in_(select(XetTerm.xorb_hash).where(XetTerm.file_hash.in_(files))))
            )
        )
        for row in rows:
            session.expunge(row)
    return rows


def _own_xorbs(hub: HubProcess, sha256: str, base_sha256: str) -> list[Xorb]:
    """The xorbs of a file that its base's file does not use."""
    shared = {x.hash for x in _xorbs_of(hub, base_sha256)}
    return [x for x in _xorbs_of(hub, sha256) if x.hash not in shared]


def _settled(hub: HubProcess, sha256: str, base_sha256: str, timeout: float = 300) -> list[Xorb]:
    """The file's own xorbs once none is still as uploaded or only packed (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = _own_xorbs(hub, sha256, base_sha256)
        if (rows and all(x.encoding == deltas.DELTA for x in rows)) or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def _push(hub: HubProcess, repo: str, folder: Path, home: Path) -> None:
    run_client("upload", xet_env(hub.url, home, hub.token), endpoint=hub.url, token=hub.token, repo=repo,
               folder=str(folder), message="add")  # fmt: skip


def test_delta_format_round_trips_against_bases() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.02, 400_000).astype(np.float32)
    tuned = base + rng.normal(0, 0.0005, base.shape).astype(np.float32)
    base_bytes, tuned_bytes = base.tobytes(), tuned.tobytes()
    chunks = [tuned_bytes[i : i + 70_001] for i in range(0, len(tuned_bytes), 70_001)]
    segments = np.array([(100, 100, len(tuned_bytes) - 300, 0)], dtype=delta.SEGMENT)
    table = delta.checked(["a" * 64], segments, len(tuned_bytes))

    def read(index: int, src: int, length: int) -> list[bytes]:
        assert index == 0
        return [base_bytes[src : src + length]]

    body = delta.encode(chunks, table, read)
    from openckpt.xet import packed

    assert len(body) < len(packed.pack(chunks)) * 0.95, "the XOR packs smaller than the weights alone"
    index = packed.parse_index(body)
    at, length = delta.table_span(body[-16:], len(body))
    assert at == delta.stored_size(index)
    parsed = delta.parse_table(body[at : at + length], len(tuned_bytes))
    assert parsed.bases == table.bases and parsed.segments.tobytes() == table.segments.tobytes()
    out = bytearray(b"".join(packed.read_chunks(index, lambda a, n: body[a : a + n], 0, len(chunks))))
    delta.apply(out, 0, parsed, read)
    assert bytes(out) == tuned_bytes
    with pytest.raises(Exception, match="overlap"):
        delta.checked(["a" * 64], np.array([(0, 0, 10, 0), (5, 0, 10, 0)], dtype=delta.SEGMENT), 100)


def _stored(store: LocalBlobStore, body: bytes) -> str:
    writer = store.writer(len(body))
    writer.write(body)
    return writer.commit(expected_size=len(body))


def _bf16(n: int, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    return (rng.normal(0, 0.02, n).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def _cut(data: bytes, rng: np.random.Generator) -> list[bytes]:
    """``data`` in chunks of 8-128 KiB, cut anywhere (as content-defined chunks fall)."""
    chunks, at = [], 0
    while at < len(data):
        size = int(rng.integers(8 << 10, 128 << 10))
        chunks.append(data[at : at + size])
        at += size
    return chunks


def test_delta_xorb_ranges_are_served_exactly_and_concurrently(tmp_path: Path) -> None:
    """A delta spanning several frames, against a packed base whose frames fall elsewhere (its bytes shifted, chunks
    cut apart from the delta's), and a base as uploaded: every range served, whole or cut inside chunks, alone or
    many at once, and from the store afresh (``fsck``), is the xorb's chunks after their headers."""
    from openckpt.hub.services import compression, delta_reads
    from openckpt.xet import packed
    from openckpt.xet.xorb import NONE, build_xorb

    rng = np.random.default_rng(7)
    store = LocalBlobStore(tmp_path / "store")
    base_words = _bf16(7_000_000, rng)  # 14 MB: four frames
    tuned_words = base_words.copy()
    moved = rng.random(len(tuned_words)) < 0.3
    tuned_words[moved] += rng.integers(-2, 3, int(moved.sum())).astype(np.uint16)  # a few bf16 steps
    other = _bf16(200_000, rng).tobytes()  # the second base, stored as uploaded
    tuned = b"\x01" * 1001 + tuned_words[1000:].tobytes()[:10_000_000] + other[5:300_005] + b"\x02" * 999
    base_chunks, tuned_chunks, other_chunks = _cut(base_words.tobytes(), rng), _cut(tuned, rng), _cut(other, rng)
    segments = np.array(
        [(1001, 2000, 10_000_000, 0), (10_001_001, 5, 300_000, 1)], dtype=delta.SEGMENT
    )  # after a header of another length, the base's bytes from its 1000th element; then the second base's
    names = ["ab" * 32, "cd" * 32]
    table = delta.checked(names, segments, len(tuned))
    sources = [base_words.tobytes(), other]
    body = delta.encode(tuned_chunks, table, lambda b, src, n: [sources[b][src : src + n]])
    key = _stored(store, body)
    base_offsets = [0, *np.cumsum([len(c) for c in base_chunks]).tolist()]
    other_xorb, other_spans = build_xorb(other_chunks, scheme=NONE), []
    at = 0
    for chunk in other_chunks:
        other_spans.append((at, at + 8 + len(chunk)))
        at += 8 + len(chunk)
    other_offsets = [0, *np.cumsum([len(c) for c in other_chunks]).tolist()]
    bases = {
        names[0]: delta_reads.BaseXorb(names[0], _stored(store, packed.pack(base_chunks)), True, [], base_offsets),
        names[1]: delta_reads.BaseXorb(names[1], _stored(store, other_xorb), False, other_spans, other_offsets),
    }
    assert len(packed.parse_index(body).firsts) >= 3
    whole = b"".join(packed.served_header(len(c)) + c for c in tuned_chunks)
    served = packed.served_offsets([len(c) for c in tuned_chunks])
    ranges = [(0, len(whole)), (served[3], served[90]), (served[40] + 3, served[-2] - 5), (5, 6)]
    ranges += [
        (int(a), int(a) + int(n))
        for a, n in zip(rng.integers(0, len(whole) - (5 << 20), 8), rng.integers(1, 5 << 20, 8), strict=True)
    ]

    def serve(span: tuple[int, int], fresh: bool = False) -> bytes:
        return b"".join(delta_reads.served(store, key, span[0], span[1], bases=bases, fresh=fresh))

    with ThreadPoolExecutor(6) as pool:  # as hf_xet asks: many ranges at once
        for (first, end), got in zip(ranges, pool.map(serve, ranges), strict=True):
            assert got == whole[first:end], (first, end)
    assert serve((0, len(whole)), fresh=True) == whole
    decoded: list[tuple[str, int]] = []
    decode = compression.decoded_frame

    def counted(blobs: Any, key: str, index: Any, frame: int, **kwargs: Any) -> bytes | bytearray:
        decoded.append((key, frame))
        return decode(blobs, key, index, frame, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compression, "decoded_frame", counted)
        assert serve((0, len(whole))) == whole
    of_base = [pair for pair in decoded if pair[0] == bases[names[0]].key]
    assert sorted(of_base) == sorted(set(of_base)) and len(of_base) >= 3, "each base frame decoded once per range"
    rebuilt = delta_reads.read_chunks(store, key, 7, 120, bases=bases, ahead=True)  # as /resolve reads it
    assert b"".join(rebuilt) == b"".join(tuned_chunks[7:120])


def test_finetune_and_lora_merge_stored_as_deltas_read_back_exactly(
    hub: HubProcess, models: dict[str, Path], tmp_path: Path, unique: str
) -> None:
    base_repo = f"admin/{unique}-base"
    _card(models["base"], None)
    _push(hub, base_repo, models["base"], tmp_path / "c0")
    base_sha = _sha256(models["base"] / "model.safetensors")
    derived: dict[str, tuple[str, str]] = {}
    for i, name in enumerate(("finetune", "lora")):
        _card(models[name], base_repo)
        repo = f"admin/{unique}-{name}"
        _push(hub, repo, models[name], tmp_path / f"c{i + 1}")
        derived[name] = (repo, _sha256(models[name] / "model.safetensors"))
    for name, (repo, sha) in derived.items():
        rows = _settled(hub, sha, base_sha)
        assert rows and all(x.encoding == deltas.DELTA for x in rows), name
        size = (models[name] / "model.safetensors").stat().st_size
        stored = sum(x.stored_size or 0 for x in rows)
        assert stored < size * (0.65 if name == "finetune" else 0.35), (name, stored, size)
        for xet in (True, False):  # hf_xet's reconstruction, then /resolve
            got = run_client("download", xet_env(hub.url, tmp_path / f"d{name}{xet}", hub.token, xet=xet),
                             endpoint=hub.url, token=hub.token, repo=repo, paths=["model.safetensors"],
                             cache=str(tmp_path / f"cache-{name}-{xet}"), snapshot=False)  # fmt: skip
            assert got["one"]["model.safetensors"] == sha, (name, xet)
        data = (models[name] / "model.safetensors").read_bytes()
        url = f"{hub.url}/{repo}/resolve/main/model.safetensors"
        ranged = httpx.get(url, headers={"range": "bytes=100001-900000"}, timeout=60)
        assert ranged.status_code == 206 and ranged.content == data[100001:900001]

    store = store_of(hub)
    with database(hub) as db:
        assert check(db, store, deep=True).ok
        usage = {r.repo_id: r for r in account(db, store).repos.values()}
        tuned = usage[derived["finetune"][0]]
        assert tuned.physical_bytes < tuned.deduplicated_bytes * 0.65 and tuned.delta_bytes > 0
    auth = {"authorization": f"Bearer {hub.token}"}
    page = httpx.get(f"{hub.url}/admin/storage", headers=auth, timeout=60)
    assert page.status_code == 200 and "Of it deltas" in page.text
    for repo, _ in derived.values():  # the admin page shows each repo's bytes kept as deltas, as the API counts them
        kept = httpx.get(f"{hub.url}/api/models/{repo}/storage", headers=auth, timeout=60).json()["deltaBytes"]
        row = re.search(rf'<a href="/{re.escape(repo)}">.*?</tr>', page.text, re.S)
        assert kept > 0 and row is not None and f'storage-deltas">{human_size(kept)}</td>' in row.group(0), repo
        with db.read() as session:
            bases = set(session.scalars(select(XorbDeltaBase.base_xorb)))
        assert bases and bases <= {x.hash for x in _xorbs_of(hub, base_sha)}

    # the base repo goes: its xorbs stay while deltas need them
    api(hub).delete_repo(base_repo)
    age_everything(hub, timedelta(hours=2))
    with database(hub) as db:
        collect(db, store, grace=timedelta(hours=1), url_ttl=timedelta(0))
        with db.read() as session:
            kept = set(session.scalars(select(Xorb.hash).where(Xorb.hash.in_(bases))))
        assert kept == bases
        assert check(db, store, deep=True).ok
    for name, (repo, sha) in derived.items():
        got = httpx.get(f"{hub.url}/{repo}/resolve/main/model.safetensors", timeout=60).content
        assert hashlib.sha256(got).hexdigest() == sha, name
    # and once the derivatives go too, so do the bases (the collection after the one that frees the deltas)
    for repo, _ in derived.values():
        api(hub).delete_repo(repo)
    age_everything(hub, timedelta(hours=2))
    with database(hub) as db:
        collect(db, store, grace=timedelta(hours=1), url_ttl=timedelta(0))
        collect(db, store, grace=timedelta(hours=1), url_ttl=timedelta(0))
        with db.read() as session:
            assert not set(session.scalars(select(Xorb.hash).where(Xorb.hash.in_(bases))))
        assert check(db, store, deep=True).ok


def test_sigkill_during_delta_encoding_loses_nothing(models: dict[str, Path], tmp_path: Path, unique: str) -> None:
    hub = start_hub(tmp_path / "data", env={"OPENCKPT_COMPRESS_AT_REST": "0"})  # deltas made by the CLI only
    try:
        base_repo, repo = f"admin/{unique}-base", f"admin/{unique}-tuned"
        _card(models["base"], None)
        _push(hub, base_repo, models["base"], tmp_path / "c0")
        _card(models["finetune"], base_repo)
        _push(hub, repo, models["finetune"], tmp_path / "c1")
        sha = _sha256(models["finetune"] / "model.safetensors")
        store = store_of(hub)
        before = {p for p in (hub.data_dir / "store").rglob("*") if p.is_file()}
        cmd = [sys.executable, "-m", "openckpt.cli.app", "admin", "deltas", "--data-dir", str(hub.data_dir)]
        job = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while job.poll() is None and {p for p in (hub.data_dir / "store").rglob("*") if p.is_file()} == before:
            time.sleep(0.01)
        job.send_signal(signal.SIGKILL)  # as soon as its first delta object exists (or it ended)
        job.wait()

        def exact() -> None:
            got = httpx.get(f"{hub.url}/{repo}/resolve/main/model.safetensors", timeout=60).content
            assert hashlib.sha256(got).hexdigest() == sha

        with database(hub) as db:
            assert check(db, store, deep=True).ok
            exact()
            report = deltas.encode_deltas(db, store)  # what the killed job left to do
            assert not report.failed
            base_sha = _sha256(models["base"] / "model.safetensors")
            assert all(x.encoding == deltas.DELTA for x in _own_xorbs(hub, sha, base_sha))
            age_everything(hub, timedelta(hours=2))
            collect(db, store, grace=timedelta(hours=1), url_ttl=timedelta(0))
            assert check(db, store, deep=True).ok
        exact()
    finally:
        hub.stop()
