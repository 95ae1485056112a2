"""Per-format scanners on crafted minimal samples: numpy, safetensors, GGUF, ONNX, Keras, TF SavedModel."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from openckpt.scan.api import scan_file
from openckpt.scan.verdict import Completeness, Verdict

from .conftest import ScanBytes
from .crafted import P4, STOP, call, pb, sg, u, zip_bytes

EVIL = P4 + call(sg("socket", "create_connection"), u("x")) + STOP


def _npy(descr: str, shape: tuple[int, ...], body: bytes) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + body


def test_object_npy_with_payload(scan_bytes: ScanBytes) -> None:
    assert scan_bytes(_npy("|O", (1,), EVIL)).verdict is Verdict.MALICIOUS
    assert scan_bytes(zip_bytes({"a.npy": _npy("|O", (1,), EVIL)})).verdict is Verdict.MALICIOUS


def test_numeric_npy_is_never_parsed(scan_bytes: ScanBytes) -> None:
    r = scan_bytes(_npy("<f4", (2,), EVIL[:8]))
    assert r.clean, r.findings
    assert not scan_bytes(_npy("<f4", (4,), b"\x00" * 8)).clean  # truncated


# -- safetensors ----------------------------------------------------------------------------------------------
def _st(header: dict[str, object] | bytes, data: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "__metadata__": {"k": "v"}}


@pytest.mark.parametrize(
    ("header", "data"),
    [
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\x00" * 4),  # size mismatch
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\x00" * 8),  # gap at start
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
            },
            b"\x00" * 8,
        ),  # overlap
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 12),  # trailing bytes
        ({"a": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 8]}}, b"\x00" * 8),  # overflow
        ({"a": {"dtype": "X9", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 8),
        ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\x00" * 8),
        ({"__metadata__": {"k": 1}}, b""),
        (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {}}', b"\x00" * 4),  # duplicate
        (b'{"a": NaN}', b""),
        (b'{"\xff": 1}', b""),
        (b" {}", b""),
    ],
)
def test_safetensors_rules(scan_bytes: ScanBytes, header: dict[str, object] | bytes, data: bytes) -> None:
    raw = _st(header, data)
    if header == b" {}":
        raw = struct.pack("<Q", 3) + b" {}"
    r = scan_bytes(raw, "model.safetensors")
    assert r.verdict is not Verdict.CLEAN, (header, r.format)


def test_safetensors_valid(scan_bytes: ScanBytes) -> None:
    assert scan_bytes(_st(GOOD, b"\x00" * 8)).clean
    header = json.dumps(GOOD).encode()
    assert scan_bytes(struct.pack("<Q", 200_000_000) + header).verdict is Verdict.OPAQUE  # no loader reads it


# -- GGUF -------------------------------------------------------------------------------------------------------
def _gstr(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("<Q", len(raw)) + raw


def _gguf(kv: dict[str, str], tensors: int = 1, n_bytes: int = 16, count_override: int | None = None) -> bytes:
    out = b"GGUF" + struct.pack("<I", 3) + struct.pack("<Q", tensors) + struct.pack("<Q", count_override or len(kv))
    for key, value in kv.items():
        out += _gstr(key) + struct.pack("<I", 8) + _gstr(value)
    for i in range(tensors):
        out += _gstr(f"t{i}") + struct.pack("<I", 1) + struct.pack("<Q", 4) + struct.pack("<I", 0)
        out += struct.pack("<Q", 32 * i)
    out += b"\x00" * (-len(out) % 32)
    return out + b"\x00" * n_bytes * max(tensors, 1) * 2


def test_gguf_valid(scan_bytes: ScanBytes) -> None:
    r = scan_bytes(
        _gguf({"general.name": "tiny", "tokenizer.chat_template": "{% for m in messages %}{{ m }}{% endfor %}"})
    )
    assert r.format == "gguf" and r.clean, r.findings


def test_gguf_chat_template_escape(scan_bytes: ScanBytes) -> None:
    template = "{{ self.__init__.__globals__.__builtins__.__import__('os').popen('id').read() }}"
    r = scan_bytes(_gguf({"tokenizer.chat_template": template}))
    assert r.verdict is Verdict.MALICIOUS


def test_gguf_counts_are_bounded(scan_bytes: ScanBytes) -> None:
    assert not scan_bytes(_gguf({"a": "b"}, count_override=2**60)).clean
    data = bytearray(_gguf({"a": "b"}))
    data[-40:] = b""  # tensor data truncated
    assert not scan_bytes(bytes(data)).clean


def test_tokenizer_config_template(scan_bytes: ScanBytes) -> None:
    evil = json.dumps({"chat_template": "{{ cycler.__init__.__globals__.os.popen('id').read() }}"}).encode()
    assert scan_bytes(evil, "tokenizer_config.json").verdict is Verdict.MALICIOUS
    good = json.dumps({"chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"}).encode()
    assert scan_bytes(good, "tokenizer_config.json").clean


# -- ONNX ---------------------------------------------------------------------------------------------------------
def _onnx(location: str) -> bytes:
    entry = pb(1, "location") + pb(2, location)
    tensor = pb(8, "w") + pb(13, entry) + pb(14, 1)
    graph = pb(1, pb(4, "Relu")) + pb(5, tensor)
    return pb(1, 8) + pb(2, "test") + pb(7, graph)


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "C:\\Windows\\win.ini", "a/../../b"])
def test_onnx_external_data_escapes(scan_bytes: ScanBytes, location: str) -> None:
    r = scan_bytes(_onnx(location), "model.onnx")
    assert r.format == "onnx" and r.verdict is Verdict.MALICIOUS


def test_onnx_external_data_links(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(_onnx("weights.bin"))
    (tmp_path / "weights.bin").write_bytes(b"\x00" * 16)
    assert scan_file(tmp_path / "model.onnx").clean
    (tmp_path / "weights.bin").unlink()
    (tmp_path / "weights.bin").symlink_to("/etc/hostname")
    assert scan_file(tmp_path / "model.onnx").verdict is Verdict.MALICIOUS


# -- TF SavedModel ----------------------------------------------------------------------------------------------------
def _saved_model(*ops: str) -> bytes:
    nodes = b"".join(pb(1, pb(1, f"n{i}") + pb(2, op)) for i, op in enumerate(ops))
    return pb(1, 1) + pb(2, pb(2, nodes))


def test_savedmodel_ops(scan_bytes: ScanBytes) -> None:
    assert scan_bytes(_saved_model("Const", "MatMul", "SaveV2"), "saved_model.pb").clean
    r = scan_bytes(_saved_model("Const", "ReadFile"), "saved_model.pb")
    assert r.format == "savedmodel" and r.verdict is Verdict.MALICIOUS
    assert scan_bytes(_saved_model("PyFunc")).verdict is Verdict.MALICIOUS


# -- Keras ------------------------------------------------------------------------------------------------------------
def _keras(config: object) -> bytes:
    return zip_bytes({"config.json": json.dumps(config).encode(), "metadata.json": b"{}"})


DENSE = {"module": "keras.layers", "class_name": "Dense", "config": {"units": 2}, "registered_name": None}


@pytest.mark.parametrize(
    "layer",
    [
        {"module": "keras.layers", "class_name": "Lambda", "config": {"function": {"class_name": "__lambda__"}}},
        {"module": "builtins", "class_name": "function", "config": "exec"},
        {"module": "subprocess", "class_name": "Popen", "config": {}},
        {"module": "keras.layers", "class_name": "TorchModuleWrapper", "config": {}},
        {"module": "keras.layers", "class_name": "Dense", "config": {"note": "enable_unsafe_deserialization"}},
    ],
)
def test_keras_unsafe_configs(scan_bytes: ScanBytes, layer: dict[str, object]) -> None:
    config = {"module": "keras", "class_name": "Sequential", "config": {"layers": [DENSE, layer]}}
    r = scan_bytes(_keras(config), "model.keras")
    assert r.format == "keras" and r.verdict is Verdict.MALICIOUS, r.findings


def test_keras_clean_and_custom(scan_bytes: ScanBytes) -> None:
    config = {"module": "keras", "class_name": "Sequential", "config": {"layers": [DENSE]}}
    assert scan_bytes(_keras(config)).clean
    custom = {"module": "my_lib.layers", "class_name": "Fancy", "config": {}}
    config["config"] = {"layers": [DENSE, custom]}
    custom_result = scan_bytes(_keras(config))
    assert custom_result.verdict is Verdict.NEEDS_CODE and custom_result.packages == ["my_lib"]


def test_keras_h5(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "model.h5"
    lam = {"class_name": "Lambda", "config": {"function": ["4wEAAAAAAAAA", None, None]}}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"layers": [lam]}})
        f.create_dataset("w", data=np.ones(2))
    r = scan_file(path)
    assert r.format == "keras-h5" and r.verdict is Verdict.MALICIOUS


def test_hdf5_external_link(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f["secret"] = h5py.ExternalLink("/etc/passwd", "/")
    assert scan_file(path).verdict is Verdict.SUSPICIOUS


def test_protobuf_data_and_unknown_binaries(scan_bytes: ScanBytes) -> None:
    """Well-formed protobuf data (tokenizer.model) is clean; an unknown binary is opaque: never clean."""
    r = scan_bytes(pb(1, pb(1, "piece") + pb(2, 3)) + pb(2, 7), "tokenizer.model")
    assert r.format == "protobuf" and r.clean
    r = scan_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "model.pt")
    assert r.verdict is Verdict.OPAQUE and r.completeness is Completeness.COMPLETE
