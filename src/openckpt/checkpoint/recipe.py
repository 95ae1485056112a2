"""The recipe: what a person needs to run a training again — command, configuration, environment, determinism
settings, seeds, code version and digests of the data actually read — and the differences that could explain a
re-run that does not match.

The installed distributions (as ``pip freeze`` lists them) are stored once per run, as a file named by its sha256,
and referenced from each checkpoint's manifest by that digest.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from openckpt.format.manifest import Recipe, RecipeData
from openckpt.fsutil import atomic_write

__all__ = [
    "PACKAGES_DIR",
    "collect_recipe",
    "determinism_settings",
    "entry_point",
    "environment_differences",
    "installed_packages",
    "packages_text",
    "parse_packages",
    "torch_build",
    "write_packages",
]

PACKAGES_DIR = "environments"
"""Subdirectory of a run directory holding ``<sha256>.txt`` package lists."""


def _normalize(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


@cache
def installed_packages() -> tuple[str, ...]:
    """``name==version`` of every installed distribution, sorted by normalised name (as ``pip freeze`` gives)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            found.setdefault(_normalize(str(name)), f"{_normalize(str(name))}=={dist.version}")
    return tuple(found[k] for k in sorted(found))


def packages_text(packages: Iterable[str] | None = None) -> bytes:
    return ("\n".join(installed_packages() if packages is None else packages) + "\n").encode()


def parse_packages(text: str | bytes) -> dict[str, str]:
    """Normalised name → version of a package list."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    result = {}
    for line in text.splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and name:
            result[_normalize(name)] = version
    return result


def write_packages(directory: Path, data: bytes | None = None) -> tuple[str, Path]:
    """Write the package list as ``directory/environments/<sha256>.txt`` unless already there: (sha256, path)."""
    data = packages_text() if data is None else data
    digest = hashlib.sha256(data).hexdigest()
    path = directory / PACKAGES_DIR / f"{digest}.txt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)
    return digest, path


def entry_point() -> str | None:
    """The ``__main__`` module's ``-m`` name, or the script's path; None in an interactive session."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None):
        return str(spec.name)
    file = getattr(main, "__file__", None)
    return str(Path(file).resolve()) if file else None


def _driver() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else None


@cache
def torch_build() -> dict[str, Any]:
    """torch version and build; CUDA, cuDNN, driver and device names where present."""
    import torch

    build: dict[str, Any] = {"version": torch.__version__, "git_version": getattr(torch.version, "git_version", None)}
    build["cuda"] = torch.version.cuda
    build["hip"] = getattr(torch.version, "hip", None)
    if torch.cuda.is_available():
        build["cudnn"] = torch.backends.cudnn.version()  # type: ignore[no-untyped-call]
        build["device"] = "cuda"
        build["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        build["driver"] = _driver()
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        build["device"], build["devices"] = "mps", [platform.machine()]
    else:
        build["device"], build["devices"] = "cpu", [platform.processor() or platform.machine()]
    build["threads"] = torch.get_num_threads()
    return {k: v for k, v in build.items() if v is not None}


def determinism_settings() -> dict[str, Any]:
    """The flags that decide whether kernels are bitwise reproducible."""
    import torch

    return {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }


def _git(where: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=where, capture_output=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.decode("utf-8", "replace")


@cache
def _code_version() -> tuple[str | None, str | None]:
    """(commit, sha256 of ``git diff HEAD`` if the tree is dirty) of the work tree holding the entry point."""
    main = entry_point()
    where = Path(main).parent if main and Path(main).is_file() else Path.cwd()
    commit = _git(where, "rev-parse", "HEAD")
    if not commit:
        return None, None
    diff = _git(where, "diff", "HEAD", "--binary")
    return commit.strip(), hashlib.sha256(diff.encode()).hexdigest() if diff else None


def collect_recipe(
    *,
    config: Mapping[str, Any] | None = None,
    seeds: Mapping[str, int] | None = None,
    data: Iterable[RecipeData] = (),
    command: list[str] | None = None,
    entry: str | None = None,
    packages: tuple[str, str] | None = None,
) -> Recipe:
    """This process's recipe. ``packages``: (sha256, file relative to the manifest's directory) of the package
    list written with :func:`write_packages`; ``command``/``entry`` default to ``sys.argv`` and :func:`entry_point`."""
    import json

    commit, diff = _code_version()
    return Recipe(
        command=list(sys.argv) if command is None else command,
        entry_point=entry_point() if entry is None else entry,
        cwd=os.getcwd(),
        config=json.loads(json.dumps(dict(config or {}), default=str)),
        python=platform.python_version(),
        platform=platform.platform(),
        packages_sha256=packages[0] if packages else hashlib.sha256(packages_text()).hexdigest(),
        packages_file=packages[1] if packages else None,
        torch=torch_build(),
        determinism=determinism_settings(),
        seeds=dict(seeds or {}),
        git_commit=commit,
        git_diff_sha256=diff,
        data=list(data),
    )


def environment_differences(
    recorded: Recipe, packages: Mapping[str, str] | None, *, here: Recipe | None = None
) -> list[str]:
    """Each difference between ``recorded`` (with its package list) and this environment that could explain a
    mismatch: package versions, Python, torch build, device, determinism flags."""
    here = here or collect_recipe()
    found: list[str] = []
    if packages is not None:
        mine = parse_packages(packages_text())
        for name in sorted(packages.keys() | mine.keys()):
            a, b = packages.get(name), mine.get(name)
            if a != b:
                found.append(f"package {name}: recorded {a or 'absent'}, here {b or 'absent'}")
    elif recorded.packages_sha256 and recorded.packages_sha256 != here.packages_sha256:
        found.append("installed packages differ (the recorded list is not available to name them)")
    if recorded.python and recorded.python != here.python:
        found.append(f"python: recorded {recorded.python}, here {here.python}")
    for key in ("version", "git_version", "cuda", "cudnn", "hip", "driver", "device", "devices"):
        a, b = recorded.torch.get(key), here.torch.get(key)
        if a != b:
            found.append(f"torch {key}: recorded {a}, here {b}")
    for key in sorted(recorded.determinism.keys() | here.determinism.keys()):
        a, b = recorded.determinism.get(key), here.determinism.get(key)
        if a != b:
            found.append(f"determinism {key}: recorded {a}, here {b}")
    return found
