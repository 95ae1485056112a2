"""``openckpt verify PATH``: files' sizes, sha256 and blake3, and tensors' blake3, against the manifest."""

from __future__ import annotations

import mmap
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.markup import escape

from openckpt.cli._output import EXIT_FINDINGS, byte_progress, err, guard, out, print_json

if TYPE_CHECKING:
    from openckpt.format.manifest import FileRecord, Manifest

__all__ = ["Finding", "check", "verify_command"]


@dataclass(frozen=True)
class Finding:
    """One problem: ``error`` fails verification, ``warning`` (a file the manifest does not list) does not."""

    file: str
    message: str
    severity: Literal["error", "warning"] = "error"


def _check_file(directory: Path, name: str, rec: FileRecord) -> str | None:
    from openckpt.digest import hash_file

    path = directory / name
    if Path(name).is_absolute() or ".." in Path(name).parts:
        return "file name leaves the checkpoint directory"
    if not path.is_file():
        return "file is missing"
    size = path.stat().st_size
    if size != rec.size:
        return f"size is {size} bytes, manifest says {rec.size}"
    digest = hash_file(path)
    for algo in ("sha256", "blake3"):
        actual, expected = getattr(digest, algo), getattr(rec, algo)
        if expected is not None and actual != expected:  # sha256 is absent until the checkpoint is sealed
            return f"{algo} is {actual[:16]}…, manifest says {expected[:16]}…"
    return None


def _check_tensors(directory: Path, name: str, manifest: Manifest) -> list[str]:
    """Each tensor's header entry and blake3 against the manifest (the file's own digests already match)."""
    import blake3

    from openckpt.errors import OpenckptError
    from openckpt.format.tensorfile import read_header

    path = directory / name
    try:
        infos, _ = read_header(path)
    except OpenckptError as e:
        return [str(e)]
    listed = {key.split("/", 1)[1]: rec for key, rec in manifest.tensors.items() if rec.file == name}
    problems = [f"tensor {t!r} is in the file but not in the manifest" for t in sorted(set(infos) - set(listed))]
    problems += [f"tensor {t!r} is in the manifest but not in the file" for t in sorted(set(listed) - set(infos))]
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for tname in sorted(set(infos) & set(listed), key=lambda t: infos[t].start):
            info, rec = infos[tname], listed[tname]
            if (info.dtype, list(info.shape)) != (rec.dtype, rec.shape):
                found = f"{info.dtype}{list(info.shape)}, manifest says {rec.dtype}{rec.shape}"
                problems.append(f"tensor {tname!r} is {found}")
            elif blake3.blake3(data[info.start : info.end]).hexdigest() != rec.blake3:
                problems.append(f"tensor {tname!r}: blake3 differs from the manifest")
    return problems


def check(
    directory: Path,
    manifest: Manifest,
    *,
    tensors: bool = True,
    progress: Callable[[str, int], None] | None = None,
) -> list[Finding]:
    """Verify a checkpoint directory against its manifest; ``progress(file, nbytes)`` follows each file."""
    from openckpt.format.manifest import MANIFEST_NAME

    findings: list[Finding] = []
    tensor_files = {rec.file for rec in manifest.tensors.values()}
    for key, entry in manifest.entries.items():
        for f in entry.files:
            if f not in manifest.files:
                findings.append(Finding(f, f"entry {key!r} lists it, but it has no file record"))
    for f in sorted(tensor_files - set(manifest.files)):
        findings.append(Finding(f, "tensors are recorded in it, but it has no file record"))
    for name, rec in sorted(manifest.files.items()):
        problem = _check_file(directory, name, rec)
        if problem is not None:
            findings.append(Finding(name, problem))
        elif tensors and name in tensor_files:
            findings += [Finding(name, p) for p in _check_tensors(directory, name, manifest)]
        if progress is not None:
            progress(name, rec.size)
    for path in sorted(p for p in directory.rglob("*") if not p.is_dir()):
        name = path.relative_to(directory).as_posix()
        if name != MANIFEST_NAME and name not in manifest.files:
            findings.append(Finding(name, "not listed in the manifest", "warning"))
    return findings


@guard
def verify_command(
    path: Annotated[Path, typer.Argument(help="Checkpoint directory (holding openckpt.json).")],
    tensors: Annotated[bool, typer.Option(help="Also check each tensor's blake3 and header entry.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Check every file and tensor digest in the manifest; exit 1 naming each file that differs."""
    from openckpt.errors import CheckpointNotFoundError
    from openckpt.format.manifest import read_manifest

    if not path.is_dir():
        raise CheckpointNotFoundError("not a checkpoint directory", path=path)
    manifest = read_manifest(path)
    total = sum(r.size for r in manifest.files.values())
    console = err()
    with byte_progress(console) as bar:
        task = bar.add_task("verifying", total=total)
        findings = check(path, manifest, tensors=tensors, progress=lambda name, n: bar.advance(task, n))

    errors = [f for f in findings if f.severity == "error"]
    if as_json:
        report = {"path": str(path), "ok": not errors, "files": len(manifest.files), "bytes": total}
        print_json({**report, "findings": [asdict(f) for f in findings]})
    else:
        for f in findings:
            color = "red" if f.severity == "error" else "yellow"
            console.print(f"[{color}]{f.severity}:[/] {escape(f.file)}: {escape(f.message)}", soft_wrap=True)
        if not errors:
            tensors_part = f"{len(manifest.tensors)} tensors, " if manifest.tensors else ""
            counts = f"{len(manifest.files)} files, {tensors_part}{total:,} bytes"
            out().print(f"[green]ok[/]: {counts} match the manifest")
    if errors:
        raise typer.Exit(EXIT_FINDINGS)
