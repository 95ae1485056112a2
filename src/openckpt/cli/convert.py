"""``openckpt convert SRC DST``: any layout whose weights read without running code → an openckpt checkpoint.

The checkpoint's ``model`` entry holds the tensors under their original (flattened) names, in Hugging Face layout
(``model.safetensors``, sharded with an index above 5 GB), so it loads with ``openckpt.load`` into a module and
with ``safetensors.torch.load_file``. A diffusers pipeline's components become entries of their own (``unet``,
``vae`` ...); a Trainer checkpoint's optimizer and RNG states, an SB3 model's optimizer, entries ``optimizer``,
``rng``. JSON-able non-tensor values become ``training.hyperparameters``. Layouts whose weights need code
(TorchScript, ultralytics models, plain pickles, quantized GGUF) are refused, naming the class that would run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from openckpt.cli._output import err, guard, human_bytes, out

if TYPE_CHECKING:
    import torch

    from openckpt.format.manifest import Manifest, Training

__all__ = ["convert", "convert_command"]


def _training(values: dict[str, Any]) -> Training:
    from openckpt.format.manifest import Training

    def count(*keys: str) -> int | None:
        for key in keys:
            value = values.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return None

    return Training(step=count("global_step", "step"), epoch=count("epoch"), hyperparameters=values)


def convert(
    src: Path, dst: Path, *, config: dict[str, Any] | None = None, overwrite: bool = False
) -> tuple[Manifest, list[str]]:
    """Write the tensors at ``src`` as a checkpoint at ``dst``; return its manifest and the reader's notes.

    ``config`` (a Hugging Face ``config.json``) defaults to the source's own, if it has one.
    """
    from openckpt.checkpoint.commit import commit_snapshot
    from openckpt.checkpoint.snapshot import EntrySnapshot, Snapshot
    from openckpt.errors import FormatError, UnsafeFileError
    from openckpt.format.readers import architecture_of, open_source

    with open_source(src, opaque_ok=True) as source:
        if source.kind == "openckpt":
            raise FormatError("already an openckpt checkpoint", path=src)
        if source.refusal is not None:
            raise UnsafeFileError(f"refusing to convert: {source.refusal}", path=src)
        if not source.tensors:
            raise FormatError("no tensors to convert", path=src)
        grouped: dict[str, dict[str, torch.Tensor]] = {}
        for name in source.tensors:
            entry, inner = source.entry_of(name)
            grouped.setdefault(entry, {})[inner] = source.read(name)
        config = config if config is not None else source.config
        weights = [t for t in source.tensors.values() if source.is_weight(t.name)]
        architecture = architecture_of(weights or source.tensors.values(), config)
        state = {source.entry_of(t.name)[0] for t in source.tensors.values() if not source.is_weight(t.name)}
        entries = {
            key: EntrySnapshot(
                "state" if key in state else "module", tensors, config=config if key == "model" else None
            )
            for key, tensors in grouped.items()
        }
        values = dict(source.values)
        if source.entry_configs:
            values["configs"] = dict(source.entry_configs)
        snapshot = Snapshot(entries, architecture=architecture)
        manifest = commit_snapshot(snapshot, dst, training=_training(values), overwrite=overwrite)
        notes = list(source.notes)
        for part, classes in source.needs_code.items():
            notes.append(f"{part}: read without running {', '.join(classes)}")
        return manifest, notes


def _read_config(path: Path) -> dict[str, Any]:
    from openckpt.errors import FormatError

    try:
        config = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"not valid JSON: {e}", path=path) from e
    if not isinstance(config, dict):
        raise FormatError("config must be a JSON object", path=path)
    return config


def _refuse_unsafe(files: dict[str, Path], *, what: str) -> None:
    """Scan ``files``; refuse (exit 2) unless each runs nothing or only needs named classes, which the readers never
    construct (weights-only loading decides, and refuses where the weights themselves need code)."""
    from openckpt.errors import UnsafeFileError
    from openckpt.scan.api import scan_file
    from openckpt.scan.report import print_table
    from openckpt.scan.verdict import ScanReport

    report = ScanReport()
    for name, path in files.items():
        result = scan_file(path.resolve())
        result.path = name
        report.results.append(result)
    bad = [r for r in report.results if not r.clean and r.verdict.value != "needs_code"]
    if not bad:
        return
    print_table(report, err())
    named = []
    for result in bad:
        worst = max(result.findings, key=lambda f: (f.severity, f.inconclusive))
        called = f" {worst.callable}:" if worst.callable else ""
        named.append(f"{result.path} is {result.verdict.value}:{called} {worst.reason}")
    raise UnsafeFileError(f"refusing to {what}: " + "; ".join(named) + " (loading could run code; see openckpt scan)")


@guard
def convert_command(
    src: Annotated[Path, typer.Argument(help="Model file or directory (see the command's help for the layouts).")],
    dst: Annotated[Path, typer.Argument(help="Checkpoint directory to create.")],
    config: Annotated[
        Path | None, typer.Option(help="Hugging Face config.json to store with the weights.", dir_okay=False)
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing checkpoint at DST.")] = False,
) -> None:
    """Convert foreign weights into an openckpt checkpoint, never unpickling arbitrary objects.

    The input is scanned first: anything malicious, suspicious or inconclusive is refused (exit 2). Files are
    recognised by content, not extension: .pt/.bin/.ckpt/.pth.tar (Lightning, timm, whisper; weights-only), .pt2,
    safetensors, HF directories (.bin too), diffusers pipelines, Trainer checkpoint-N/, DCP directories, SB3 zips,
    .npz, GGUF (plain dtypes), ONNX, Keras, OpenVINO IR, and tar/zip/7z archives of these. Whatever needs code to
    read its weights is refused (exit 2) with the class named.
    """
    if src.is_dir():
        inputs = {str(p.relative_to(src)): p for p in sorted(src.rglob("*")) if p.is_file()}
    else:
        inputs = {str(src): src}
    _refuse_unsafe(inputs, what=f"convert {src}")
    manifest, notes = convert(src, dst, config=_read_config(config) if config else None, overwrite=overwrite)
    for note in notes:
        err().print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    size = sum(rec.size for rec in manifest.files.values())
    out().print(f"[green]wrote[/] {escape(str(dst))}: {len(manifest.tensors)} tensors, {human_bytes(size)}")
