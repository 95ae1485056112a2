"""Content sniffing: which scanner reads a file or an archive member, decided by its bytes, never its name.

:class:`Router` scans one top-level path; archives hand each member back to it, one level deeper. A file that
is also a zip (a pickle or anything else with a central directory at its end) is scanned both ways.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from openckpt.scan.containers import compressed, tar
from openckpt.scan.containers import zip as zipc
from openckpt.scan.formats import gguf, keras, numpy, onnx, safetensors, savedmodel, sb3, torch
from openckpt.scan.formats.joblib import JoblibArrays
from openckpt.scan.limits import Context, LimitError
from openckpt.scan.pickle.machine import Nested
from openckpt.scan.pickle.opcodes import VALID
from openckpt.scan.pickle.streams import scan_streams
from openckpt.scan.verdict import Severity

__all__ = ["Router", "sniff"]

_SNIFF = 512
_COPY = 64 << 20
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
_SIMPLE = {"gguf": gguf.scan, "onnx": onnx.scan, "savedmodel": savedmodel.scan}
"""Formats whose scanner needs only the bytes and the member name."""


def sniff(buf: Any, start: int, end: int) -> str:
    """The format of ``buf[start:end]`` from its first bytes."""
    head = bytes(buf[start : min(end, start + _SNIFF)])
    if not head:
        return "empty"
    kind = _magic_kind(head, end - start) or onnx.sniff_protobuf(buf, start, end)
    if kind is not None:
        return kind
    if head[0] in VALID:
        return "pickle?"
    return "unknown"


def _magic_kind(head: bytes, size: int) -> str | None:
    """The format a signature in the first bytes of a ``size``-byte file names, or None."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return "zip"
    if head.startswith(_PICKLE_MAGIC):
        return "pickle"
    for magic, name in compressed.MAGICS:
        if head.startswith(magic):
            return name
    for magic, name in ((numpy.MAGIC, "npy"), (gguf.MAGIC, "gguf"), (keras.HDF5_MAGIC, "hdf5")):
        if head.startswith(magic):
            return name
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if len(head) >= 9 and head[8:9] == b"{" and struct.unpack_from("<Q", head)[0] <= size - 8:
        return "safetensors"
    if compressed.is_zlib(head):
        return "zlib"
    return None


class Router:
    """Scans one top-level file: sniffs, dispatches, and recurses into members and embedded payloads."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def nested(self, member: str | None, depth: int) -> Nested:
        """The callback a pickle machine uses for embedded or loader-fed bytes."""

        def scan(buf: Any, start: int, end: int, label: str, probe: bool) -> None:
            where = f"{member}!{label}" if member else label
            self.scan(buf, start, end, where, depth + 1, probe=probe)

        return scan

    def scan(
        self,
        buf: Any,
        start: int,
        end: int,
        member: str | None,
        depth: int,
        *,
        probe: bool = False,
        loader: str = "pickle",
    ) -> str:
        """Scan ``buf[start:end]``; return its format. ``probe``: bytes that may be data, not a file."""
        ctx = self.ctx
        if depth > ctx.limits.max_depth:
            raise ctx.limit(f"nesting deeper than {ctx.limits.max_depth}", member=member)
        ctx.check_time(member)
        kind = sniff(buf, start, end)
        if probe and kind not in ("pickle", "pickle?", "zip"):
            return kind
        if kind == "pickle?" and not probe and member is None and self._top_level_text(buf, start, end, loader):
            return "text"
        if kind in ("pickle", "pickle?"):
            kind = self._pickle(buf, start, end, member, depth, kind=kind, probe=probe, loader=loader)
        elif kind == "zip":
            kind = self.zip(buf, start, end, member, depth)
        else:
            kind = self._format(buf, start, end, member, depth, kind=kind)
        return kind

    def _top_level_text(self, buf: Any, start: int, end: int, loader: str) -> bool:
        """Whether a whole file that might be a pickle is text no pickle reading makes sense of (then scanned
        as text)."""
        ctx = self.ctx
        if not _is_text(buf, start, end):
            return False
        scratch = Context(ctx.file, ctx.limits, deadline=ctx.deadline)  # only to tell text from a pickle
        streams = scan_streams(scratch, buf, start, end, member=None, loader=loader, nested=None, probe=True)
        if any(s.error is None or s.globals_seen for s in streams):
            return False
        _text(ctx, buf, start, end, None)
        return True

    def _pickle(
        self, buf: Any, start: int, end: int, member: str | None, depth: int, *, kind: str, probe: bool, loader: str
    ) -> str:
        """Scan pickle streams, and the zip a polyglot file also is; return ``pickle``, ``torch-legacy``,
        ``joblib``... or, for a member that only might be a pickle and reads as none, ``text`` or ``data``."""
        ctx = self.ctx
        nested = self.nested(member, depth)
        if probe or (kind == "pickle?" and member is not None):
            streams = scan_streams(ctx, buf, start, end, member=member, loader=loader, nested=nested, probe=True)
            if member is not None and not any(s.error is None or s.globals_seen for s in streams):
                kind = "text" if _is_text(buf, start, end) else "data"
                if kind == "text":
                    _text(ctx, buf, start, end, member)
        else:
            if not isinstance(buf, bytes) and end - start <= _COPY:
                buf, start, end = bytes(buf[start:end]), 0, end - start  # bytes index faster than mmap
            hook = JoblibArrays()
            kind = torch.scan_legacy(ctx, buf, start, end, member=member, nested=nested, on_build=hook, loader=loader)
            kind = "joblib" if hook.seen else kind
        self._polyglot(buf, start, end, member, depth)
        return kind

    def _format(self, buf: Any, start: int, end: int, member: str | None, depth: int, *, kind: str) -> str:
        """Scan a file of a format other than pickle or zip; return its (refined) format."""
        ctx = self.ctx
        if kind in _SIMPLE:
            _SIMPLE[kind](ctx, buf, start, end, member=member)
        elif kind == "npy":
            numpy.scan_npy(
                ctx, buf, start, end, member=member, nested=self.nested(member, depth), on_build=JoblibArrays()
            )
        elif kind in ("gzip", "bz2", "xz", "zlib", "7z"):
            kind = compressed.scan(ctx, self, kind, buf, start, end, member, depth)
        elif kind == "tar":
            tar.scan(ctx, self, buf, start, end, member, depth)
        elif kind == "safetensors":
            safetensors.scan(ctx, buf, start, end, member=member)
            self._polyglot(buf, start, end, member, depth)
        elif kind == "hdf5":
            kind = keras.scan_hdf5(ctx, buf, start, end, member=member)
        elif kind == "unknown" and _is_text(buf, start, end):
            _text(ctx, buf, start, end, member)
            kind = "text"
        elif member is None and kind != "protobuf":  # protobuf: data of no format that runs code (tokenizer.model)
            reason = "empty file" if kind == "empty" else "not a recognised model format"
            ctx.add("format-unknown", Severity.OPAQUE, reason + ": opaque data, no loader runs code from it")
        return kind

    def _polyglot(self, buf: Any, start: int, end: int, member: str | None, depth: int) -> None:
        """A file that zip readers (``zipfile.is_zipfile``) would also open: scan that view too."""
        if zipc.find_eocd(buf, start, end) < 0:
            return
        probe = Context(self.ctx.file, self.ctx.limits)
        try:
            entries = zipc.read_entries(probe, buf, start, end, member)
        except (zipc.ZipError, LimitError, struct.error):
            return
        if entries:
            reason = "file is also a zip archive (polyglot): zip readers see other content"
            self.ctx.add("polyglot", Severity.SUSPICIOUS, reason, member=member)
            self.zip(buf, start, end, member, depth)

    def _serialized(self, member: str, depth: int) -> sb3.ScanPickle:
        """Scan an SB3 ``:serialized:`` value as the pickle ``cloudpickle.loads`` reads (opaque bytes included)."""

        def scan(data: bytes, label: str) -> None:
            where = f"{member}!{label}:serialized:"
            self.scan(data, 0, len(data), where, depth + 1)

        return scan

    def zip(self, buf: Any, start: int, end: int, member: str | None, depth: int) -> str:
        """Scan every member of a zip archive; torch, npz, Keras and SB3 layouts get their own rules; archives laid
        end to end (a DCP ``.distcp`` file: one ``torch.save`` archive per item) are scanned one by one."""
        ctx = self.ctx
        parts = zipc.segments(buf, start, end, limit=ctx.limits.max_entries)
        if parts is not None and _miniz_sees_segments(ctx, buf, start, end, parts):
            kinds = {self.zip(buf, s, e, f"{member or ''}@{s}", depth + 1) for s, e in parts}
            return "distcp" if kinds == {"torch-zip"} else "zip-sequence"
        try:
            entries = zipc.read_entries(ctx, buf, start, end, member)
        except zipc.ZipError as e:
            entries = list(zipc.iter_local(buf, start, end))
            reason = f"zip archive without a readable central directory ({e}); torch cannot load it"
            ctx.add("zip-invalid", Severity.INFO, reason, member=member, inconclusive=True)
        layout = self._zip_layout([e.name for e in entries], member)
        for i, entry in enumerate(entries):
            if layout.is_torch and _tensor_bytes(buf, entry):
                continue  # never parsed
            where = f"{member}!{entry.name}" if member else entry.name
            if not i & 0xFF:
                ctx.check_time(where)
            if entry.encrypted:
                reason = "encrypted member cannot be inspected"
                ctx.add("zip-encrypted", Severity.INFO, reason, member=where, inconclusive=True)
                if entry.method == 0:
                    self.scan(
                        buf, entry.data, entry.data + entry.csize, where, depth + 1, probe=True, loader=layout.loader
                    )
                continue
            try:
                self._zip_member(buf, entry, where, depth, layout)
            except zipc.ZipError as e:
                ctx.add("zip-member", Severity.INFO, f"cannot read member: {e}", member=where, inconclusive=True)
            except LimitError:
                continue
        return layout.kind

    def _zip_layout(self, names: list[str], member: str | None) -> _ZipLayout:
        """What the member ``names`` make of a zip archive; a TorchScript archive is recorded as needing code."""
        is_torch = torch.is_torch_zip(names)
        kind = "torch-zip" if is_torch else "zip"
        if keras.is_keras_zip(names):
            kind = "keras"
        elif names and all(n.endswith(".npy") for n in names):
            kind = "npz"
        elif sb3.is_sb3_zip(names):
            kind = "sb3"
        loader = "torch" if is_torch else ("numpy" if kind == "npz" else "pickle")
        if is_torch and any(torch.member_role(n) == "code" for n in names):
            reason = "TorchScript archive: loading runs its TorchScript code (torch.load hands it to torch.jit.load)"
            self.ctx.add("torchscript", Severity.NEEDS_CODE, reason, member=member)
            self.ctx.runs.add("torch.jit.load")
            kind, loader = "torchscript", "torchscript"
        return _ZipLayout(kind=kind, loader=loader, is_torch=is_torch)

    def _zip_member(self, buf: Any, entry: zipc.Entry, where: str, depth: int, layout: _ZipLayout) -> None:
        """Scan one readable member: Keras config and SB3 data by their rules; anything else sniffed, except
        tensor storages and numeric ``.npy`` files (never parsed)."""
        ctx = self.ctx
        if layout.kind == "keras" and entry.name == "config.json":
            keras.scan_config(ctx, zipc.open_member(ctx, buf, entry, where), member=where)
            return
        if layout.kind == "sb3" and entry.name == "data":
            data_buf, data_start, data_end = zipc.open_member(ctx, buf, entry, where)
            raw = bytes(data_buf[data_start:data_end])
            if sb3.scan_data(ctx, raw, self._serialized(where, depth), member=where):
                return
        role = torch.member_role(entry.name) if layout.is_torch else "other"
        sub = sniff(*zipc.open_member(ctx, buf, entry, where, limit=_SNIFF))
        if role == "storage" and sub not in ("pickle", "zip"):
            return
        if sub == "npy" and entry.method != 0:
            view = zipc.open_member(ctx, buf, entry, where, limit=numpy.MAX_HEADER + 16)
            if not _npy_has_object(view):
                return
        view = zipc.open_member(ctx, buf, entry, where)
        self.scan(*view, where, depth + 1, loader=layout.loader, probe=sub == "pickle?" or role == "storage")


@dataclass(frozen=True)
class _ZipLayout:
    """A zip archive's layout: its format, the loader its pickles are read by, and whether torch reads it."""

    kind: str
    loader: str
    is_torch: bool


def _tensor_bytes(buf: Any, entry: zipc.Entry) -> bool:
    """Whether a torch archive member is a stored tensor storage (bytes that are neither a pickle nor a zip)."""
    if entry.method != 0 or entry.encrypted or torch.member_role(entry.name) != "storage":
        return False
    magic = buf[entry.data : entry.data + 4]
    return magic[:2] not in _PICKLE_MAGIC and magic != b"PK\x03\x04"


def _miniz_sees_segments(ctx: Context, buf: Any, start: int, end: int, parts: list[tuple[int, int]]) -> bool:
    """Whether ``torch.load`` of the whole file (miniz: offsets from the file's start) sees nothing but members of the
    archives laid end to end: it fails to find a central directory, or finds one of theirs."""
    probe = Context(ctx.file, ctx.limits)
    try:
        whole = zipc.read_entries(probe, buf, start, end, None, absolute=True)
    except (zipc.ZipError, LimitError, struct.error):
        return True
    try:
        seen = {(e.name, e.header) for s, e_ in parts for e in zipc.read_entries(probe, buf, s, e_, None)}
    except (zipc.ZipError, LimitError, struct.error):
        return False
    return all((e.name, e.header) in seen for e in whole)


def _npy_has_object(view: tuple[Any, int, int]) -> bool:
    buf, start, end = view
    try:
        header, _ = numpy._header(buf, start, end)
    except (ValueError, SyntaxError, TypeError, struct.error):
        return True
    return "O" in str(header.get("descr"))


_CONTROL = bytes(range(32)).replace(b"\t", b"").replace(b"\n", b"").replace(b"\r", b"").replace(b"\x0c", b"")
_MAX_TEXT = 64 << 20


def _is_text(buf: Any, start: int, end: int) -> bool:
    """UTF-8 without control characters (JSON, YAML, Markdown, source code)."""
    if end - start > _MAX_TEXT:
        return False
    data = bytes(buf[start:end])
    if data.translate(None, _CONTROL) != data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _text(ctx: Context, buf: Any, start: int, end: int, member: str | None) -> None:
    """Text is data, except chat templates (rendered by Jinja) in tokenizer configs."""
    head = bytes(buf[start : min(end, start + 1)])
    if head != b"{" and not bytes(buf[start:end]).lstrip().startswith(b"{"):
        return
    try:
        config = json.loads(bytes(buf[start:end]))
    except (ValueError, RecursionError):
        return
    if not isinstance(config, dict):
        return
    template = config.get("chat_template")
    templates = template if isinstance(template, list) else [template]
    for item in templates:
        value = item.get("template") if isinstance(item, dict) else item
        if isinstance(value, str):
            gguf.check_template(ctx, "chat_template", value, member)
