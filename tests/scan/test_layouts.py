"""The layouts issue #13 taught the scanner: SB3 ``:serialized:`` fields, DCP ``.distcp`` item sequences and
metadata, TorchScript rebuild names, 7z archives; each rule exact, so that nothing else gets through with them."""

from __future__ import annotations

import base64
import io
import json
import struct
import zipfile
from pathlib import Path

import py7zr
import pytest

from openckpt.scan.api import scan_file
from openckpt.scan.limits import Limits
from openckpt.scan.verdict import Verdict

from .conftest import ScanBytes
from .crafted import P2, P4, STOP, call, glob, sg, u, zip_bytes

EVIL = P4 + call(sg("os", "system"), u("id")) + STOP
TENSORLESS = P2 + b"}" + STOP


def _sb3(serialized: str) -> bytes:
    data = {"policy_class": {":type:": "<class 'abc.ABCMeta'>", ":serialized:": serialized}, "gamma": 0.99}
    return zip_bytes({"data": json.dumps(data).encode(), "policy.pth": zip_bytes({"policy/data.pkl": TENSORLESS})})


def test_sb3_serialized_fields_are_decoded_as_the_loader_does(scan_bytes: ScanBytes) -> None:
    encoded = base64.b64encode(EVIL).decode()
    assert scan_bytes(_sb3(encoded), "model.zip").verdict is Verdict.MALICIOUS
    # b64decode(validate=False) drops characters outside the alphabet: so must the scanner
    noisy = "*".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))
    assert scan_bytes(_sb3(noisy), "model.zip").verdict is Verdict.MALICIOUS
    benign = base64.b64encode(P4 + sg("stable_baselines3.common.policies", "ActorCriticPolicy") + STOP).decode()
    result = scan_bytes(_sb3(benign), "model.zip")
    assert result.verdict is Verdict.NEEDS_CODE and result.packages == ["stable_baselines3"]


def test_torchscript_rebuild_names_are_exact(scan_bytes: ScanBytes) -> None:
    rebuild = P2 + call(glob("torch.jit._pickle", "build_intlist"), b"]" + STOP[:0]) + STOP
    script = {"m/constants.pkl": TENSORLESS, "m/code/__torch__.py": b"def forward(self):\n  pass\n"}
    ok = scan_bytes(zip_bytes({**script, "m/code/__torch__.py.debug_pkl": rebuild}), "m.pt")
    assert ok.verdict is Verdict.NEEDS_CODE and ok.runs == ["torch.jit.load"]
    other = P2 + call(glob("torch.jit._pickle", "load"), u("x")) + STOP
    assert scan_bytes(zip_bytes({**script, "m/data.pkl": other}), "m.pt").verdict is Verdict.MALICIOUS
    # outside a TorchScript archive the same names are what they are
    assert scan_bytes(rebuild, "x.pkl").verdict is Verdict.MALICIOUS
    own_type = P2 + glob("__torch__.model", "Net") + STOP
    assert scan_bytes(zip_bytes({"m/data.pkl": own_type}), "m.pt").verdict is Verdict.NEEDS_CODE
    assert scan_bytes(zip_bytes({**script, "m/data.pkl": own_type}), "m.pt").imports == []


def test_dcp_metadata_classes_are_exact(scan_bytes: ScanBytes) -> None:
    meta = P4 + call(sg("torch.distributed.checkpoint.metadata", "Metadata")) + STOP
    assert scan_bytes(meta, ".metadata").clean
    other = P4 + call(sg("torch.distributed.checkpoint.state_dict_loader", "load"), u("x")) + STOP
    assert scan_bytes(other, ".metadata").verdict is Verdict.MALICIOUS


def test_distcp_items_are_read_one_by_one(scan_bytes: ScanBytes) -> None:
    item = zip_bytes({"archive/data.pkl": TENSORLESS})
    evil = zip_bytes({"archive/data.pkl": EVIL})
    result = scan_bytes(item + item + item, "__0_0.distcp")
    assert result.format == "distcp" and result.verdict is Verdict.CLEAN
    assert scan_bytes(item + evil + item, "__0_0.distcp").verdict is Verdict.MALICIOUS
    # a gap between archives is not a DCP file: the zip view sees data before its archive
    gapped = scan_bytes(item + b"\x00" + item, "__0_0.distcp")
    assert gapped.format != "distcp" and gapped.verdict is Verdict.SUSPICIOUS


def _7z(path: Path, members: dict[str, bytes], **kwargs: object) -> Path:
    with py7zr.SevenZipFile(path, "w", **kwargs) as z:  # type: ignore[arg-type]
        for name, data in members.items():
            z.writestr(data, name)
    return path


def test_7z_is_unpacked(tmp_path: Path) -> None:
    assert scan_file(_7z(tmp_path / "ok.7z", {"a/model.pkl": TENSORLESS})).verdict is Verdict.CLEAN
    evil = scan_file(_7z(tmp_path / "evil.7z", {"ok.pkl": TENSORLESS, "deep/model.bin": EVIL}))
    assert evil.verdict is Verdict.MALICIOUS
    assert any(f.member == "(7z)!deep/model.bin" for f in evil.findings if f.callable == "os.system")


def test_7z_limits(tmp_path: Path) -> None:
    bomb = _7z(tmp_path / "bomb.7z", {"zeros.bin": bytes(4 << 20)})
    result = scan_file(bomb, limits=Limits(ratio_floor=1 << 16))
    assert result.verdict is Verdict.INCONCLUSIVE and any("ratio" in f.reason for f in result.findings)
    locked = _7z(tmp_path / "locked.7z", {"model.pkl": EVIL}, password="secret")
    assert scan_file(locked).verdict is Verdict.INCONCLUSIVE


@pytest.mark.parametrize("data", [b"", bytes(range(256)) * 4, b"\x93NUMPY garbage"])
def test_opaque_is_never_a_code_path(scan_bytes: ScanBytes, data: bytes) -> None:
    assert scan_bytes(data, "weights.bin").verdict in (Verdict.OPAQUE, Verdict.INCONCLUSIVE)


def _metadata(items: list[tuple[str, int, int]]) -> bytes:
    """A ``.metadata`` pickle as ``FileSystemWriter`` writes it: ``Metadata(storage_data={index: _StorageInfo})``."""
    meta, dcp_fs = "torch.distributed.checkpoint.metadata", "torch.distributed.checkpoint.filesystem"
    entries = b""
    for i, (path, offset, length) in enumerate(items):
        index = sg(meta, "MetadataIndex") + b")\x81" + b"}" + u("fqn") + u(f"w{i}") + b"sb"
        info = sg(dcp_fs, "_StorageInfo") + b")\x81" + b"}(" + u("relative_path") + u(path)
        info += u("offset") + b"J" + offset.to_bytes(4, "little") + u("length") + b"J" + length.to_bytes(4, "little")
        entries += index + info + b"ub"
    state = b"}(" + u("storage_data") + b"}(" + entries + b"uu"
    return P4 + sg(meta, "Metadata") + b")\x81" + state + b"b" + STOP


def test_dcp_items_are_read_through_the_storage_index(tmp_path: Path) -> None:
    from openckpt.scan.api import scan

    item = zip_bytes({"archive/data.pkl": TENSORLESS})
    evil = zip_bytes({"archive/data.pkl": EVIL})
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "__0_0.distcp").write_bytes(item + item)
    (ckpt / ".metadata").write_bytes(
        _metadata([("__0_0.distcp", 0, len(item)), ("__0_0.distcp", len(item), len(item))])
    )
    report = scan(ckpt)
    assert [r.verdict for r in report.results] == [Verdict.CLEAN, Verdict.CLEAN], report.to_dict()
    # an item the index points at inside the file, past the archives the file seems to hold, is read too
    hidden = item + item + evil
    (ckpt / "__0_0.distcp").write_bytes(hidden)
    (ckpt / ".metadata").write_bytes(_metadata([("__0_0.distcp", 2 * len(item), len(evil))]))
    assert max(r.verdict.rank for r in scan(ckpt).results) == Verdict.MALICIOUS.rank
    (ckpt / ".metadata").write_bytes(_metadata([("../elsewhere.distcp", 0, 10)]))
    assert {r.path.rsplit("/", 1)[-1]: r.verdict for r in scan(ckpt).results}[".metadata"] is Verdict.SUSPICIOUS


def test_sb3_data_that_is_not_json_is_scanned_as_any_member(scan_bytes: ScanBytes) -> None:
    archive = zip_bytes({"data": EVIL, "policy.pth": zip_bytes({"policy/data.pkl": TENSORLESS})})
    assert scan_bytes(archive, "model.zip").verdict is Verdict.MALICIOUS


def _fake_member(name: str, data: bytes, at: int) -> tuple[bytes, bytes]:
    """A stored local header + data, and the central directory entry pointing at it from absolute offset ``at``."""
    raw = name.encode()
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, len(data), len(data), len(raw), 0) + raw
    central = struct.pack(
        "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, len(data), len(data), len(raw), 0, 0, 0, 0, 0, at
    )
    return local + raw[:0] + data, central + raw


def test_distcp_hiding_a_directory_for_miniz_is_not_a_checkpoint(scan_bytes: ScanBytes) -> None:
    """torch.load of the whole file reads the last directory's offsets from the file's start (miniz): if they land on
    a directory hidden in tensor bytes, the file is not read as archives laid end to end."""
    pad = 600
    first = zip_bytes({"a/data.pkl": TENSORLESS, "a/data/0": b"\x00" * (pad + 400)})
    data_at = first.index(b"\x00" * pad)  # where the storage bytes start
    local, central = _fake_member("x/data.pkl", EVIL, data_at + 16)
    hidden = b"\x00" * 16 + local
    cd_at = data_at + len(hidden)
    hidden += central + central.replace(b"x/data.pkl", b"x/data.pk2")
    first = zip_bytes({"a/data.pkl": TENSORLESS, "a/data/0": hidden.ljust(pad + 400, b"\x00")})
    base = len(zip_bytes({"b/data.pkl": TENSORLESS, "b/data/0": b""})) - 22 - len(b"b/data.pkl") - len(b"b/data/0") - 92
    second = zip_bytes({"b/data.pkl": TENSORLESS, "b/data/0": b"\x00" * (cd_at - base)})
    assert zipfile.ZipFile(io.BytesIO(second)).start_dir == cd_at  # its directory offset lands on the hidden one
    result = scan_bytes(first + second, "__0_0.distcp")
    assert result.format != "distcp" and result.verdict is not Verdict.CLEAN
    honest = scan_bytes(first[:0] + zip_bytes({"a/data.pkl": TENSORLESS}) + second, "__0_0.distcp")
    assert honest.format == "distcp" and honest.verdict is Verdict.CLEAN
