"""What the manifest records about the model and the run: architecture summary, software versions, code version."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.format.manifest import Architecture

if TYPE_CHECKING:
    import torch

__all__ = ["describe_module", "git_state", "hf_config", "software_versions"]

_PACKAGES = ("openckpt", "torch", "numpy", "safetensors", "transformers", "peft", "accelerate", "lightning")


def hf_config(module: torch.nn.Module) -> dict[str, Any] | None:
    """The module's Hugging Face ``config.json`` content, as ``save_pretrained`` would write it, if it has one."""
    config = getattr(module, "config", None)
    to_json = getattr(config, "to_json_string", None)
    if not callable(to_json):
        return None
    data: dict[str, Any] = json.loads(to_json())
    data.setdefault("architectures", [type(module).__name__])
    return data


def describe_module(module: torch.nn.Module) -> Architecture:
    """Class path (information only), config, parameter counts by dtype and top-level module."""
    import torch

    by_dtype: dict[str, int] = {}
    by_module: dict[str, int] = {}
    total = trainable = 0
    seen: set[int] = set()
    for name, p in module.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = p.numel()
        total += n
        trainable += n if p.requires_grad else 0
        dtype = str(p.dtype).removeprefix("torch.")
        by_dtype[dtype] = by_dtype.get(dtype, 0) + n
        top = name.split(".", 1)[0]
        by_module[top] = by_module.get(top, 0) + n
    cls = type(module)
    return (
        Architecture(
            class_path=f"{cls.__module__}.{cls.__qualname__}",
            config=hf_config(module),
            parameters=total,
            trainable_parameters=trainable,
            parameters_by_dtype=by_dtype,
            parameters_by_module=by_module,
            modules={name: type(child).__name__ for name, child in module.named_children()},
        )
        if isinstance(module, torch.nn.Module)
        else Architecture()
    )


@cache
def software_versions() -> dict[str, str]:
    """Versions of Python and of the relevant packages that are installed."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        if name == "openckpt" or name in sys.modules:
            try:
                versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
    return versions


@cache
def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git work tree holding the training script, or (None, None)."""
    where = Path(sys.argv[0]).resolve().parent if sys.argv and sys.argv[0] else Path.cwd()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(status.strip())
