"""Archives and routing: the relaxed zip reader, tar, compression, polyglots, names that lie."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import struct
import tarfile
import zipfile

import pytest

from openckpt.scan.verdict import Completeness, Verdict

from .conftest import ScanBytes
from .crafted import P2, P4, STOP, call, glob, sg, u, zip_bytes

EVIL = P4 + call(sg("builtins", "eval"), u("1")) + STOP
BENIGN = P4 + b"}" + u("w") + b"K\x01s" + STOP


def test_torch_zip_member_with_bad_crc(scan_bytes: ScanBytes) -> None:
    data = bytearray(zip_bytes({"archive/data.pkl": EVIL, "archive/version": b"3\n"}))
    cd = data.index(b"PK\x01\x02")
    data[cd + 16 : cd + 20] = b"\xde\xad\xbe\xef"  # central CRC
    data[14:18] = b"\xde\xad\xbe\xef"  # local CRC
    r = scan_bytes(bytes(data))
    assert r.format == "torch-zip" and r.verdict is Verdict.MALICIOUS


def test_local_and_central_names_differ(scan_bytes: ScanBytes) -> None:
    data = bytearray(zip_bytes({"archive/data.pkl": BENIGN}))
    data[30 : 30 + len("archive/data.pkl")] = b"archive/xxxx.pkl"
    r = scan_bytes(bytes(data))
    assert r.verdict is Verdict.SUSPICIOUS
    assert any(f.rule == "zip-name-mismatch" for f in r.findings)


def test_corrupt_member_before_data_pkl(scan_bytes: ScanBytes) -> None:
    data = zip_bytes({"archive/junk.bin": b"\x80\x04\xff\xff", "archive/data.pkl": EVIL})
    assert scan_bytes(data).verdict is Verdict.MALICIOUS


def test_pickle_under_an_unusual_member_name(scan_bytes: ScanBytes) -> None:
    data = zip_bytes({"weights/readme.txt": EVIL}, compress=zipfile.ZIP_DEFLATED)
    assert scan_bytes(data).verdict is Verdict.MALICIOUS


def test_tensor_storages_are_not_parsed(scan_bytes: ScanBytes) -> None:
    data = zip_bytes({"archive/data.pkl": BENIGN, "archive/data/0": b"\xffNOTPICKLE" * 100})
    r = scan_bytes(data)
    assert r.clean, r.findings


def test_encrypted_member_is_inconclusive(scan_bytes: ScanBytes) -> None:
    data = bytearray(zip_bytes({"a.txt": b"\x13\x37" * 20}))
    data[6] |= 1
    cd = data.index(b"PK\x01\x02")
    data[cd + 8] |= 1
    r = scan_bytes(bytes(data))
    assert r.completeness is Completeness.INCONCLUSIVE and not r.clean


def test_traversal_and_symlink_members(scan_bytes: ScanBytes) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../../etc/cron.d/x", b"hello")
        link = zipfile.ZipInfo("link")
        link.external_attr = 0o120777 << 16
        z.writestr(link, "/etc/passwd")
    r = scan_bytes(buf.getvalue())
    assert {"archive-traversal", "archive-link"} <= {f.rule for f in r.findings}
    assert r.verdict is Verdict.SUSPICIOUS


def test_too_many_entries_is_inconclusive(scan_bytes: ScanBytes) -> None:
    data = bytearray(zip_bytes({"a": b"x"}))
    eocd = data.rindex(b"PK\x05\x06")
    data[eocd + 8 : eocd + 12] = struct.pack("<HH", 0xFFFE, 0xFFFE)
    data += b""  # the central directory does not hold that many: the reader must stop at the limit or fail
    r = scan_bytes(bytes(data))
    assert not r.clean


def test_zip64(scan_bytes: ScanBytes) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z, z.open("archive/data.pkl", "w", force_zip64=True) as f:
        f.write(EVIL)
    assert scan_bytes(buf.getvalue()).verdict is Verdict.MALICIOUS


def test_pickle_zip_polyglot(scan_bytes: ScanBytes) -> None:
    """A benign zip appended to a malicious pickle, and a malicious zip appended to a benign pickle."""
    benign_zip = zip_bytes({"x.txt": b"hi"})
    assert scan_bytes(EVIL + benign_zip).verdict is Verdict.MALICIOUS
    r = scan_bytes(BENIGN + zip_bytes({"archive/data.pkl": EVIL}))
    assert r.verdict is Verdict.MALICIOUS
    assert any(f.rule == "polyglot" for f in r.findings)


def test_route_by_content_not_extension(scan_bytes: ScanBytes) -> None:
    assert scan_bytes(EVIL, "model.safetensors").verdict is Verdict.MALICIOUS
    assert scan_bytes(zip_bytes({"archive/data.pkl": EVIL}), "weights.txt").verdict is Verdict.MALICIOUS


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress], ids=["gzip", "bz2", "xz"])
def test_compressed_pickles(scan_bytes: ScanBytes, compress: object) -> None:
    data = compress(EVIL)  # type: ignore[operator]
    assert scan_bytes(data).verdict is Verdict.MALICIOUS
    assert scan_bytes(compress(BENIGN)).clean  # type: ignore[operator]


def test_compression_bomb_is_inconclusive(scan_bytes: ScanBytes) -> None:
    r = scan_bytes(gzip.compress(b"\x00" * (64 << 20)))
    assert r.completeness is Completeness.INCONCLUSIVE and not r.clean


def _tar(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            t.addfile(info)
    return buf.getvalue()


def test_tar(scan_bytes: ScanBytes) -> None:
    assert scan_bytes(_tar({"pickle": EVIL, "sys_info": BENIGN})).verdict is Verdict.MALICIOUS
    assert scan_bytes(_tar({"sys_info": BENIGN})).clean
    r = scan_bytes(_tar({"a": BENIGN}, {"b": "/etc/shadow"}))
    assert r.verdict is Verdict.SUSPICIOUS


def test_tar_in_gzip_in_zip(scan_bytes: ScanBytes) -> None:
    data = zip_bytes({"bundle.tgz": gzip.compress(_tar({"deep/model.bin": EVIL}))})
    assert scan_bytes(data).verdict is Verdict.MALICIOUS


def test_unreadable_7z_is_inconclusive_but_stored_pickles_are_found(scan_bytes: ScanBytes) -> None:
    header = b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\x00" * 24
    assert not scan_bytes(header + b"\x11" * 64).clean
    assert scan_bytes(header + EVIL).verdict is Verdict.MALICIOUS


def test_legacy_torch_payload_in_a_later_pickle(scan_bytes: ScanBytes) -> None:
    magic = P2 + b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + STOP
    protocol = P2 + b"M\xe9\x03" + STOP
    sys_info = P2 + b"}" + STOP
    main = P2 + glob("os", "system") + b"(" + u("id") + b"tR" + STOP
    keys = P2 + b"]" + STOP
    r = scan_bytes(magic + protocol + sys_info + main + keys)
    assert r.format == "torch-legacy" and r.verdict is Verdict.MALICIOUS
