"""Writing the fine-tune: a PEFT adapter or a full (or merged) model, its tokenizer, card, LICENSE and NOTICE.

The directory is built beside its place and renamed into it (:func:`openckpt.fsutil.staged_directory`), every file
fsync'd first: a reader sees the previous output or the complete new one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.fsutil import durable_write, fsync_file, staged_directory

if TYPE_CHECKING:
    import torch

    from openckpt.finetune.licensing import BaseModel

__all__ = ["write_output"]

NOTICE = "NOTICE"


def _save_weights(model: Any, directory: Path, *, adapter: bool, merge: bool, base: BaseModel) -> None:
    if adapter:
        config = model.peft_config["default"]
        config.base_model_name_or_path = base.id  # not the local path the base was loaded from
        config.revision = base.revision
        model.save_pretrained(directory, safe_serialization=True, save_embedding_layers=False)
        (directory / "README.md").unlink(missing_ok=True)  # peft's placeholder card; ours replaces it
        return
    if merge:
        model = model.merge_and_unload()
    model.config.name_or_path = base.id
    model.save_pretrained(directory, safe_serialization=True)


def write_output(
    directory: Path,
    model: torch.nn.Module,
    tokenizer: Any,
    *,
    base: BaseModel,
    adapter: bool,
    merge: bool,
    license_files: Sequence[Path],
    notices: Sequence[str],
    card: Callable[[dict[str, bytes]], str],
    extra: dict[str, bytes] | None = None,
) -> list[str]:
    """Write the fine-tune into ``directory``; ``card(files)`` renders README.md given the LICENSE/NOTICE files
    (name → bytes) already there; ``extra`` files (the recipe) are written as given. Returns the file names written."""
    with staged_directory(directory) as tmp:
        _save_weights(model, tmp, adapter=adapter, merge=merge, base=base)
        tokenizer.save_pretrained(tmp)
        files: dict[str, bytes] = {}
        for path in license_files:
            files[path.name] = path.read_bytes()
        if notices:
            kept = files.get(NOTICE, b"").decode("utf-8", "replace")
            missing = [n for n in notices if n not in kept]
            if missing:
                files[NOTICE] = ("\n".join([kept.rstrip("\n"), *missing]).strip("\n") + "\n").encode()
        for name, data in files.items():
            durable_write(tmp / name, data)
        for name, data in (extra or {}).items():
            durable_write(tmp / name, data)
        durable_write(tmp / "README.md", card(files).encode())
        names = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        for name in names:
            fsync_file(tmp / name)
    return names
