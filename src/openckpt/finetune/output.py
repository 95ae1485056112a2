"""Writing the fine-tune: a PEFT adapter or a full (or merged) model, its tokenizer, card, LICENSE and NOTICE.

The directory is built beside its place and renamed into it (:func:`openckpt.fsutil.staged_directory`), every file
fsync'd first: a reader sees the previous output or the complete new one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from openckpt.fsutil import durable_write, fsync_file, staged_directory

if TYPE_CHECKING:
    import torch

    from openckpt.finetune.licensing import BaseModel, Inherited

__all__ = ["Weights", "write_output"]

NOTICE = "NOTICE"


Weights = Literal["adapter", "merged", "full"]
"""The form of the fine-tune's weights: a PEFT adapter, LoRA merged into the base's weights, or every weight."""


def _save_weights(model: Any, directory: Path, *, weights: Weights, base: BaseModel) -> None:
    """Save ``model`` in the form ``weights``, naming ``base`` by its id (and revision), not its local path."""
    if weights == "adapter":
        config = model.peft_config["default"]
        config.base_model_name_or_path = base.id  # not the local path the base was loaded from
        config.revision = base.revision
        model.save_pretrained(directory, safe_serialization=True, save_embedding_layers=False)
        (directory / "README.md").unlink(missing_ok=True)  # peft's placeholder card; ours replaces it
        return
    if weights == "merged":
        model = model.merge_and_unload()
    model.config.name_or_path = base.id
    model.save_pretrained(directory, safe_serialization=True)


def _legal_files(inherited: Inherited) -> dict[str, bytes]:
    """The base's LICENSE and NOTICE files (name → bytes), the NOTICE extended by the notices it lacks."""
    files = {path.name: path.read_bytes() for path in inherited.license_files}
    kept = files.get(NOTICE, b"").decode("utf-8", "replace")
    missing = [n for n in inherited.notices if n not in kept]
    if missing:
        files[NOTICE] = ("\n".join([kept.rstrip("\n"), *missing]).strip("\n") + "\n").encode()
    return files


def write_output(
    directory: Path,
    model: torch.nn.Module,
    tokenizer: Any,
    *,
    base: BaseModel,
    weights: Weights,
    inherited: Inherited,
    card: Callable[[dict[str, bytes]], str],
    extra: dict[str, bytes] | None = None,
) -> list[str]:
    """Write the fine-tune into ``directory``: its ``weights``, tokenizer, the LICENSE and NOTICE files it inherits,
    ``extra`` files (the recipe) as given, and README.md rendered by ``card(files)`` from those LICENSE/NOTICE files
    (name → bytes). Returns the file names written."""
    with staged_directory(directory) as tmp:
        _save_weights(model, tmp, weights=weights, base=base)
        tokenizer.save_pretrained(tmp)
        files = _legal_files(inherited)
        for name, data in {**files, **(extra or {})}.items():
            durable_write(tmp / name, data)
        durable_write(tmp / "README.md", card(files).encode())
        names = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        for name in names:
            fsync_file(tmp / name)
    return names
