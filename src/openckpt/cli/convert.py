"""``openckpt convert SRC DST``: PyTorch (weights-only), ``.npz``, safetensors or HF weights → an openckpt checkpoint.

The checkpoint's ``model`` entry holds the tensors under their original (flattened) names, in Hugging Face layout
(``model.safetensors``, sharded with an index above 5 GB), so it loads with ``openckpt.load`` into a module and
with ``safetensors.torch.load_file``. JSON-able non-tensor values become ``training.hyperparameters``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from openckpt.cli._gate import refuse_unclean
from openckpt.cli._output import err, guard, human_bytes, out

if TYPE_CHECKING:
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
    from openckpt.errors import FormatError
    from openckpt.format.readers import architecture_of, open_source

    with open_source(src) as source:
        if source.kind == "openckpt":
            raise FormatError("already an openckpt checkpoint", path=src)
        tensors = {name: source.read(name) for name in source.tensors}
        config = config if config is not None else source.config
        architecture = architecture_of(source.tensors.values(), config)
        snapshot = Snapshot({"model": EntrySnapshot("module", tensors, config=config)}, architecture=architecture)
        manifest = commit_snapshot(snapshot, dst, training=_training(source.values), overwrite=overwrite)
        return manifest, list(source.notes)


def _read_config(path: Path) -> dict[str, Any]:
    from openckpt.errors import FormatError

    try:
        config = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"not valid JSON: {e}", path=path) from e
    if not isinstance(config, dict):
        raise FormatError("config must be a JSON object", path=path)
    return config


@guard
def convert_command(
    src: Annotated[Path, typer.Argument(help=".pt/.bin/.ckpt (weights-only), .npz, .safetensors or HF directory.")],
    dst: Annotated[Path, typer.Argument(help="Checkpoint directory to create.")],
    config: Annotated[
        Path | None, typer.Option(help="Hugging Face config.json to store with the weights.", dir_okay=False)
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing checkpoint at DST.")] = False,
) -> None:
    """Convert foreign weights into an openckpt checkpoint, never unpickling arbitrary objects.

    The input is scanned first: anything not clean and complete is refused (exit 1 for findings, 2 when
    inconclusive). Files are recognised by content, not extension. Anything torch's weights-only loader refuses,
    and object arrays in .npz files, are refused (exit 2).
    """
    if src.is_dir():
        inputs = {str(p.relative_to(src)): p for p in sorted(src.rglob("*")) if p.is_file()}
    else:
        inputs = {str(src): src}
    refuse_unclean(inputs, what=f"convert {src}")
    manifest, notes = convert(src, dst, config=_read_config(config) if config else None, overwrite=overwrite)
    for note in notes:
        err().print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    size = sum(rec.size for rec in manifest.files.values())
    out().print(f"[green]wrote[/] {escape(str(dst))}: {len(manifest.tensors)} tensors, {human_bytes(size)}")
