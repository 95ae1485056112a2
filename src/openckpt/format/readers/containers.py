"""Archives that carry models (tar, optionally compressed; zip; 7z) and data no format claims.

A container is unpacked into a private temporary directory under limits (no links, no paths leaving it, at most
:data:`MAX_MEMBERS` members and :data:`MAX_BYTES` bytes); its one top-level item, or each of several, is opened
as a source of its own. Nothing inside is run: each member goes through the reader its content calls for.
"""

from __future__ import annotations

import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from openckpt.errors import FormatError, UnsafeFileError
from openckpt.format.readers.base import TensorSource
from openckpt.format.readers.composite import CompositeSource

if TYPE_CHECKING:
    import torch

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_MEMBERS", "ContainerSource", "OpaqueSource", "container_kind"]

MAX_MEMBERS = 10_000
MAX_BYTES = 16 * 2**30
MAX_DEPTH = 3
"""Archives inside archives are opened this deep at most."""
_depth = [0]
_SEVEN_ZIP = b"7z\xbc\xaf\x27\x1c"


def container_kind(path: Path, head: bytes) -> str | None:
    """``tar``, ``zip`` or ``7z`` when the file is one of those, else None."""
    if head.startswith(_SEVEN_ZIP):
        return "7z"
    if head.startswith(b"PK"):
        return "zip"
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00" or head[257:262] == b"ustar":
        try:
            return "tar" if tarfile.is_tarfile(path) else None
        except (OSError, EOFError, tarfile.TarError):
            return None
    return None


def _safe_name(name: str, path: Path) -> PurePosixPath:
    member = PurePosixPath(name.replace("\\", "/"))
    if member.is_absolute() or ".." in member.parts or not member.parts:
        raise UnsafeFileError(f"archive member {name!r} would leave the archive's directory", path=path)
    return member


class ContainerSource(CompositeSource):
    """The models inside an archive: its single item as is, or each item under its own name, each opened by
    ``open_member`` (:func:`openckpt.format.readers.open_source` with ``opaque_ok=True``)."""

    kind = "container"

    def __init__(self, path: Path, *, kind: str, open_member: Callable[[Path], TensorSource]) -> None:
        super().__init__(path)
        self._open_member = open_member
        if _depth[0] >= MAX_DEPTH:
            raise UnsafeFileError(f"archives nested more than {MAX_DEPTH} deep", path=path)
        self._tmp = tempfile.TemporaryDirectory(prefix="openckpt-archive-")
        root = Path(self._tmp.name)
        try:
            members = {"tar": self._untar, "zip": self._unzip, "7z": self._un7z}[kind](root)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, UnsafeFileError) as e:
            self._tmp.cleanup()
            if isinstance(e, UnsafeFileError):
                raise
            raise FormatError(f"unreadable {kind} archive: {e}", path=path) from e
        _depth[0] += 1
        try:
            self._read(root, members, kind)
        except BaseException:
            self.close()
            raise
        finally:
            _depth[0] -= 1

    def _read(self, root: Path, members: dict[str, int], kind: str) -> None:
        self.layout = f"{kind} archive"
        self.sections["Members"] = {name: f"{size:,} bytes" for name, size in list(members.items())[:100]}
        tops = sorted({PurePosixPath(name).parts[0] for name in members})
        if len(tops) == 1:
            self._open(root / tops[0], "", where=tops[0])
        else:
            for top in tops:
                self._open(root / top, top, where=top)

    def _open(self, item: Path, prefix: str, *, where: str) -> None:
        try:
            child = self._open_member(item)
        except FormatError as e:
            if not item.is_dir():
                self.notes.append(f"{where}: not read ({' '.join(str(e).split())})")
                return
            for member in sorted(p for p in item.rglob("*") if p.is_file()):  # a folder of files: each one alone
                inner = f"{where}/{member.relative_to(item).as_posix()}"
                self._open(member, f"{prefix}/{inner}".strip("/") if prefix else inner, where=inner)
            return
        self.config = self.config or child.config
        self.adopt(prefix, child, where=where)
        if child.layout:
            self.sections.setdefault("Contents", {})[where] = child.layout
        for title, facts in child.sections.items():
            self.sections.setdefault(f"{where}: {title}", facts)
        self.values.update(child.values)

    def _budget(self, sizes: list[int]) -> None:
        if len(sizes) > MAX_MEMBERS or sum(sizes) > MAX_BYTES:
            raise UnsafeFileError(
                f"archive too large to unpack: {len(sizes)} members, {sum(sizes)} bytes", path=self.path
            )

    def _untar(self, root: Path) -> dict[str, int]:
        out: dict[str, int] = {}
        with tarfile.open(self.path) as tar:
            members = tar.getmembers()
            self._budget([m.size for m in members])
            for m in members:
                name = _safe_name(m.name, self.path)
                if m.isdir():
                    continue
                if not m.isfile():
                    self.notes.append(f"{m.name}: not a regular file, skipped")
                    continue
                target = root.joinpath(*name.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(m)
                if source is None:
                    continue
                with source, open(target, "wb") as f:
                    while chunk := source.read(1 << 20):
                        f.write(chunk)
                out[str(name)] = m.size
        return out

    def _unzip(self, root: Path) -> dict[str, int]:
        out: dict[str, int] = {}
        with zipfile.ZipFile(self.path) as z:
            infos = z.infolist()
            self._budget([i.file_size for i in infos])
            for info in infos:
                name = _safe_name(info.filename, self.path)
                if info.is_dir():
                    continue
                target = root.joinpath(*name.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as source, open(target, "wb") as f:
                    while chunk := source.read(1 << 20):
                        f.write(chunk)
                out[str(name)] = info.file_size
        return out

    def _un7z(self, root: Path) -> dict[str, int]:
        try:
            import py7zr
        except ImportError as e:
            raise FormatError("reading 7z archives needs py7zr (pip install py7zr)", path=self.path) from e
        with py7zr.SevenZipFile(self.path) as z:
            infos: list[Any] = z.list()
            self._budget([int(i.uncompressed or 0) for i in infos])
            files = [i for i in infos if not i.is_directory]
            for info in files:
                _safe_name(info.filename, self.path)
            z.extractall(path=root)
        for target in root.rglob("*"):
            if target.is_symlink():
                raise UnsafeFileError(f"archive member {target.name!r} is a link", path=self.path)
        return {str(_safe_name(i.filename, self.path)): int(i.uncompressed or 0) for i in files}

    def close(self) -> None:
        super().close()
        self._tmp.cleanup()


class OpaqueSource(TensorSource):
    """Bytes no format openckpt knows claims (raw floats, word2vec, random data): listed, never loaded."""

    kind = "opaque"

    def __init__(self, path: Path, *, why: str) -> None:
        super().__init__(path)
        size = path.stat().st_size
        self.layout = "opaque data"
        self.sections["Data"] = {"bytes": size, "recognised as": "nothing openckpt reads; no loader runs code from it"}
        self.refusal = f"opaque data ({why}): no tensor layout to convert"

    def read(self, name: str) -> torch.Tensor:
        raise KeyError(name)
