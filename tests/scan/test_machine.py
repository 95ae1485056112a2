"""The symbolic unpickler against hand-made evasions: each sample is bytes, never produced by pickling."""

from __future__ import annotations

import base64
import struct

import pytest

from openckpt.scan.limits import Context, Limits
from openckpt.scan.pickle.machine import Machine
from openckpt.scan.verdict import Completeness, Verdict

from .conftest import ScanBytes
from .crafted import P2, P4, STOP, call, frame, glob, sg, u


def _verdict(scan_bytes: ScanBytes, data: bytes) -> tuple[Verdict, Completeness, list[str]]:
    r = scan_bytes(data)
    return r.verdict, r.completeness, [f"{f.rule}: {f.reason}" for f in r.findings]


def test_plain_reduce_is_malicious(scan_bytes: ScanBytes) -> None:
    verdict, completeness, why = _verdict(scan_bytes, P4 + call(sg("os", "system"), u("id")) + STOP)
    assert (verdict, completeness) == (Verdict.MALICIOUS, Completeness.COMPLETE), why


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("pathlib", "os.system"),  # protocol-4 dotted name walking into another module
        ("torch", "_utils.builtins.eval"),
        ("collections", "__builtins__.eval"),
        ("posix", "system"),
        ("nt", "system"),
        ("__builtin__", "eval"),
        ("_operator", "methodcaller"),
        ("_pickle", "loads"),
        ("_io", "FileIO"),
        ("runpy", "_run_code"),
        ("pip", "main"),
        ("pkgutil", "resolve_name"),
        ("torch.utils.collect_env", "run"),
        ("ctypes", "CDLL"),
        ("marshal", "loads"),
    ],
)
def test_gadgets_and_aliases(scan_bytes: ScanBytes, module: str, name: str) -> None:
    verdict, _, why = _verdict(scan_bytes, P4 + call(sg(module, name), u("x")) + STOP)
    assert verdict is Verdict.MALICIOUS, why


def test_unknown_global_needs_code(scan_bytes: ScanBytes) -> None:
    result = scan_bytes(P4 + call(sg("mypackage.models", "Net")) + STOP)
    assert result.verdict is Verdict.NEEDS_CODE, result.findings
    assert result.imports == ["mypackage.models.Net"] and result.packages == ["mypackage"]


def test_names_through_the_memo(scan_bytes: ScanBytes) -> None:
    """Module and name strings memoized with PUT (protocol 0) and fetched with GET before STACK_GLOBAL."""
    data = b"Vos\np1\n0Vsystem\np2\n0Vtorch\np3\n0g1\ng2\n\x93(Vid\ntR."
    verdict, _, why = _verdict(scan_bytes, data)
    assert verdict is Verdict.MALICIOUS, why
    assert any("os.system" in w for w in why), why


def test_call_sites(scan_bytes: ScanBytes) -> None:
    """INST, OBJ, NEWOBJ and NEWOBJ_EX call just like REDUCE."""
    inst = P2 + b"(" + u("id") + b"ios\nsystem\n" + STOP
    obj = P2 + b"(" + glob("subprocess", "Popen") + u("id") + b"o" + STOP
    newobj = P2 + glob("subprocess", "Popen") + u("id") + b"\x85\x81" + STOP
    newobj_ex = P4 + sg("subprocess", "Popen") + b")" + b"}" + b"\x92" + STOP
    for data in (inst, obj, newobj, newobj_ex):
        verdict, _, why = _verdict(scan_bytes, data)
        assert verdict is Verdict.MALICIOUS, why


def test_build_on_an_imported_object(scan_bytes: ScanBytes) -> None:
    """BUILD that sets attributes of an allowed class is an attack even though the class is allowed."""
    data = P2 + glob("collections", "OrderedDict") + b"}" + u("__reduce__") + u("x") + b"sb" + STOP
    verdict, _, why = _verdict(scan_bytes, data)
    assert verdict is Verdict.MALICIOUS, why


def test_calling_a_call_result(scan_bytes: ScanBytes) -> None:
    data = P4 + call(call(sg("collections", "OrderedDict")), u("x")) + STOP
    verdict, _, why = _verdict(scan_bytes, data)
    assert verdict is Verdict.MALICIOUS, why


def test_payload_before_invalid_opcode(scan_bytes: ScanBytes) -> None:
    """nullifAI: the call runs, then the real unpickler fails on an invalid opcode."""
    data = P4 + call(sg("builtins", "exec"), u("print(1)")) + b"\xff" + STOP
    verdict, completeness, why = _verdict(scan_bytes, data)
    assert (verdict, completeness) == (Verdict.MALICIOUS, Completeness.INCONCLUSIVE), why


def test_invalid_before_any_import_is_opaque(scan_bytes: ScanBytes) -> None:
    """The loader raises before importing anything: nothing from the file runs."""
    verdict, completeness, why = _verdict(scan_bytes, P4 + u("ok") + b"\xff")
    assert (verdict, completeness) == (Verdict.OPAQUE, Completeness.COMPLETE), why


def test_invalid_after_an_import_is_inconclusive(scan_bytes: ScanBytes) -> None:
    verdict, completeness, why = _verdict(scan_bytes, P4 + call(sg("collections", "OrderedDict")) + b"\xff")
    assert (verdict, completeness) == (Verdict.INCONCLUSIVE, Completeness.INCONCLUSIVE), why


def test_concatenated_pickles(scan_bytes: ScanBytes) -> None:
    benign = P4 + b"}" + STOP
    evil = P4 + call(sg("builtins", "eval"), u("1")) + STOP
    verdict, _, why = _verdict(scan_bytes, benign + benign + evil)
    assert verdict is Verdict.MALICIOUS, why


def test_trailing_garbage_is_inconclusive(scan_bytes: ScanBytes) -> None:
    verdict, completeness, why = _verdict(scan_bytes, P4 + b"}" + STOP + b"\x00\x01garbage")
    assert (verdict, completeness) == (Verdict.INCONCLUSIVE, Completeness.INCONCLUSIVE), why


def test_frame_longer_than_the_data(scan_bytes: ScanBytes) -> None:
    """The C unpickler rejects the frame; pickle.py reads on and runs the payload: seen, and inconclusive."""
    body = call(sg("os", "system"), u("id")) + STOP
    verdict, completeness, why = _verdict(scan_bytes, P4 + frame(body, len(body) + 1000))
    assert (verdict, completeness) == (Verdict.MALICIOUS, Completeness.INCONCLUSIVE), why


def test_opcode_straddling_a_frame(scan_bytes: ScanBytes) -> None:
    body = u("abcdef") + b"0" + b"}" + STOP
    verdict, completeness, why = _verdict(scan_bytes, P4 + frame(body, 3))
    assert (verdict, completeness) == (Verdict.INCONCLUSIVE, Completeness.INCONCLUSIVE), why


def test_honest_frames_are_clean(scan_bytes: ScanBytes) -> None:
    body = b"}" + u("a") + b"K\x01s" + STOP
    verdict, completeness, why = _verdict(scan_bytes, P4 + frame(body))
    assert (verdict, completeness) == (Verdict.CLEAN, Completeness.COMPLETE), why


def test_nested_raw_pickle(scan_bytes: ScanBytes) -> None:
    inner = P4 + call(sg("builtins", "exec"), u("x")) + STOP
    data = P4 + b"}" + u("blob") + b"C" + bytes([len(inner)]) + inner + b"s" + STOP
    verdict, _, why = _verdict(scan_bytes, data)
    assert verdict is Verdict.MALICIOUS, why


@pytest.mark.parametrize("encode", [base64.b64encode, bytes.hex], ids=["base64", "hex"])
def test_encoded_inner_pickle(scan_bytes: ScanBytes, encode: object) -> None:
    inner = P4 + call(sg("os", "system"), u("id")) + STOP
    text = encode(inner)  # type: ignore[operator]
    text = text.decode() if isinstance(text, bytes) else text
    data = P4 + b"}" + u("cfg") + b"X" + struct.pack("<I", len(text)) + text.encode() + b"s" + STOP
    verdict, _, why = _verdict(scan_bytes, data)
    assert verdict is Verdict.MALICIOUS, why


def test_bytes_fed_to_a_loader_gadget(scan_bytes: ScanBytes) -> None:
    inner = P2 + glob("subprocess", "check_output") + b"(" + u("id") + b"tR" + STOP
    data = P2 + glob("torch.storage", "_load_from_bytes") + b"(" + b"C" + bytes([len(inner)]) + inner + b"tR."
    r = scan_bytes(data)
    assert r.verdict is Verdict.MALICIOUS
    assert any(f.member and "_load_from_bytes" in f.member and "check_output" in f.reason for f in r.findings)


def test_protocol2_bytes_through_codecs(scan_bytes: ScanBytes) -> None:
    """``_codecs.encode(str, 'latin1')`` (how protocol 2 writes bytes) is evaluated before a loader gets it."""
    inner = (P2 + glob("os", "system") + b"(" + u("id") + b"tR.").decode("latin-1")
    encoded = glob("_codecs", "encode") + b"(" + b"X" + struct.pack("<I", len(inner.encode())) + inner.encode()
    encoded += u("latin1") + b"tR"
    data = P2 + glob("pickle", "loads") + b"(" + encoded + b"tR."
    r = scan_bytes(data)
    assert any("os.system" in (f.callable or "") for f in r.findings), [f.reason for f in r.findings]


def test_stack_global_of_computed_names(scan_bytes: ScanBytes) -> None:
    """BUILD rewrites a module attribute, then STACK_GLOBAL uses it as a name (sys.modules override)."""
    data = P4 + sg("torch", "_utils") + b"\x94}" + u("x") + u("eval") + b"sb0" + b"h\x00h\x00\x93)R."
    verdict, _, why = _verdict(scan_bytes, data)
    assert verdict is Verdict.MALICIOUS, why


def test_extension_codes_are_inconclusive(scan_bytes: ScanBytes) -> None:
    """What an EXT code imports depends on copyreg's registry at load time: never clean, yet no evidence of malice
    (random bytes of a raw ``.bin`` can read as a pickle that starts with one)."""
    verdict, _, why = _verdict(scan_bytes, P2 + b"\x82\x01.")
    assert verdict is Verdict.INCONCLUSIVE, why
    verdict, _, why = _verdict(scan_bytes, P2 + b"\x82\x01)R.")  # calling what it imports is another matter
    assert verdict is Verdict.MALICIOUS, why


def test_setitems_on_an_imported_object(scan_bytes: ScanBytes) -> None:
    data = P2 + glob("os", "environ") + u("LD_PRELOAD") + u("/tmp/x.so") + b"s."
    verdict, _, why = _verdict(scan_bytes, data)
    assert verdict is Verdict.MALICIOUS, why


@pytest.mark.parametrize(
    ("limits", "data"),
    [
        (Limits(max_opcodes=1000), P4 + b"(" + b"N" * 70_000 + b"t."),
        (Limits(max_memo=1000), P4 + b"N" + b"\x94" * 70_000 + b"."),
        (Limits(max_stack=1000), P4 + b"(" * 70_000 + b"N."),
    ],
    ids=["opcodes", "memo", "depth"],
)
def test_limits_are_inconclusive(limits: Limits, data: bytes) -> None:
    ctx = Context("x", limits)
    Machine(ctx, data, member=None, loader="pickle").stream(0, len(data))
    assert any(f.inconclusive and "limit" in f.rule for f in ctx.findings), ctx.findings


def test_time_budget_is_inconclusive() -> None:
    data = P4 + b"N" + b"0N" * 200_000 + b"."
    ctx = Context("x", Limits(time_budget=0.0))
    ctx.deadline = 0.0 + 1e-9
    Machine(ctx, data, member=None, loader="pickle").stream(0, len(data))
    assert any(f.inconclusive for f in ctx.findings)


def test_random_bytes_starting_with_an_overlong_frame_are_opaque(scan_bytes: ScanBytes) -> None:
    """Random data whose first byte happens to be FRAME: nothing imported, so the gate may treat it as opaque."""
    result = scan_bytes(b"\x95" + struct.pack("<Q", 2**63 + 12345) + bytes(range(251, 256)) * 400)
    assert {f.rule for f in result.findings} <= {"pickle-frame-overrun", "pickle-invalid"}
    assert "pickle-frame-overrun" in {f.rule for f in result.findings}
