"""``reproduce``: run a recorded training again from its recipe, in a fresh directory, and compare the result.

Two kinds of recorded runs: an ``openckpt finetune`` output (``openckpt-recipe.json``, re-run in this process with
the recorded options, base revision and data file), and a training script that used :class:`CheckpointManager`
(its newest checkpoint's manifest holds the recipe; the script is run again with ``OPENCKPT_REPRODUCE_DIR``
redirecting its checkpoints). A data file whose sha256 differs from the recorded one is refused, by name.

The comparison is bitwise (tensor blake3 digests) when the recorded run was deterministic on the kind of device used
here — always on the CPU, on a GPU only with deterministic algorithms enabled — and otherwise tensor by tensor and
metric by metric within stated tolerances: ``|a - b| <= atol + rtol·|b|`` for weights, a relative
:data:`METRIC_RTOL` for metrics. Each environment difference that could explain a mismatch is listed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openckpt.checkpoint.recipe import environment_differences, parse_packages
from openckpt.digest import sha256_file
from openckpt.errors import IntegrityError, StateMismatchError
from openckpt.format.manifest import MANIFEST_NAME, Manifest, Recipe, read_manifest

__all__ = [
    "ATOL",
    "METRIC_RTOL",
    "RTOL",
    "Comparison",
    "Recorded",
    "ReproduceResult",
    "Tolerance",
    "check_data",
    "compare_tensors",
    "find_recipe",
    "reproduce_finetune",
    "reproduce_script",
]

RTOL = 1e-3
ATOL = 1e-5
METRIC_RTOL = 1e-2


@dataclass(frozen=True)
class Tolerance:
    """How close each weight must be when bitwise equality is not expected: ``|a - b| <= atol + rtol·|b|``."""

    rtol: float = RTOL
    atol: float = ATOL

    def to_dict(self) -> dict[str, float]:
        """The tolerances a result states, the metrics' (:data:`METRIC_RTOL`) included."""
        return {"rtol": self.rtol, "atol": self.atol, "metric_rtol": METRIC_RTOL}


@dataclass(frozen=True)
class Recorded:
    """A recorded run: its recipe, its package list (None if not at hand), and where it was found."""

    recipe: Recipe
    packages: dict[str, str] | None
    directory: Path
    """The fine-tune's model directory, or the script's checkpoint run directory."""
    kind: str
    """``finetune`` or ``script``."""
    manifest: Manifest | None = None


@dataclass
class Comparison:
    what: str
    verdict: str = "bitwise"
    """``bitwise``, ``within tolerance``, or ``differs``."""
    tensors: int = 0
    differing: list[str] = field(default_factory=list)
    max_abs_diff: float = 0.0
    metrics: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def worsen(self, verdict: str) -> None:
        order = ("bitwise", "within tolerance", "differs")
        if order.index(verdict) > order.index(self.verdict):
            self.verdict = verdict


@dataclass(frozen=True)
class ReproduceResult:
    source: str
    output: Path
    kind: str
    steps: int | None
    expected_bitwise: bool
    comparison: Comparison
    warnings: list[str]
    tolerances: dict[str, float]

    @property
    def verdict(self) -> str:
        return self.comparison.verdict

    @property
    def reproduced(self) -> bool:
        return self.verdict == "bitwise" or (self.verdict == "within tolerance" and not self.expected_bitwise)

    def to_dict(self) -> dict[str, Any]:
        c = self.comparison
        return {
            "source": self.source,
            "output": str(self.output),
            "kind": self.kind,
            "steps": self.steps,
            "verdict": c.verdict,
            "reproduced": self.reproduced,
            "expected_bitwise": self.expected_bitwise,
            "compared": c.what,
            "tensors": c.tensors,
            "differing": c.differing,
            "max_abs_diff": c.max_abs_diff,
            "metrics": {k: {"recorded": a, "here": b} for k, (a, b) in c.metrics.items()},
            "notes": c.notes,
            "environment_differences": self.warnings,
            "tolerances": self.tolerances,
        }


def find_recipe(directory: Path) -> Recorded:
    """The recipe of a fine-tune output (its ``model/`` or the ``--out`` dir) or of a CheckpointManager run dir
    (or one of its checkpoints)."""
    from openckpt.finetune.run import PACKAGES_FILE, RECIPE_FILE

    for model in (directory, directory / "model"):
        if (model / RECIPE_FILE).is_file():
            recipe = Recipe.model_validate(json.loads((model / RECIPE_FILE).read_text("utf-8")))
            packages = model / (recipe.packages_file or PACKAGES_FILE)
            listed = parse_packages(packages.read_bytes()) if packages.is_file() else None
            return Recorded(recipe, listed, model, "finetune")
    run, checkpoints = directory, sorted(directory.glob("step-*/" + MANIFEST_NAME))
    if not checkpoints and (directory / MANIFEST_NAME).is_file():
        run, checkpoints = directory.parent, [directory / MANIFEST_NAME]
    for path in reversed(checkpoints):
        manifest = read_manifest(path.parent)
        if manifest.recipe is not None and manifest.recipe.command:
            file = path.parent / manifest.recipe.packages_file if manifest.recipe.packages_file else None
            listed = parse_packages(file.read_bytes()) if file is not None and file.is_file() else None
            return Recorded(manifest.recipe, listed, run, "script", manifest)
    raise StateMismatchError(
        "no recipe here: not an openckpt finetune output nor a run that recorded one", path=directory
    )


def check_data(recipe: Recipe, path: Path) -> None:
    """Refuse ``path`` unless its sha256 is the one the recipe recorded for it."""
    recorded = recipe.config.get("data_sha256")
    if not path.is_file():
        raise IntegrityError(f"data file {path} is missing (recorded sha256 {recorded})", path=path)
    actual = sha256_file(path)
    if recorded and actual != recorded:
        raise IntegrityError(
            f"data file {path.name} differs from the recorded one: sha256 {actual}, recorded {recorded}", path=path
        )


def expected_bitwise(recipe: Recipe, device: str) -> bool:
    recorded = str(recipe.config.get("finetune", {}).get("device") or recipe.torch.get("device") or "cpu")
    if recorded != device:
        return False
    return device == "cpu" or bool(recipe.determinism.get("deterministic_algorithms"))


def compare_tensors(
    recorded: Mapping[str, Any], here: Mapping[str, Any], comparison: Comparison, *, tolerance: Tolerance
) -> None:
    """Bitwise, else within ``tolerance`` (``atol + rtol·|recorded|``), else differs; every tensor by name."""
    import torch

    for name in sorted(recorded.keys() | here.keys()):
        a, b = recorded.get(name), here.get(name)
        comparison.tensors += 1
        if a is None or b is None or a.shape != b.shape:
            comparison.differing.append(name)
            comparison.worsen("differs")
            continue
        if torch.equal(a, b):
            continue
        diff = float((a.double() - b.double()).abs().max())
        comparison.max_abs_diff = max(comparison.max_abs_diff, diff)
        comparison.differing.append(name)
        close = torch.allclose(b.double(), a.double(), rtol=tolerance.rtol, atol=tolerance.atol)
        comparison.worsen("within tolerance" if close else "differs")


def _compare_metrics(recorded: Mapping[str, Any], here: Mapping[str, float], comparison: Comparison) -> None:
    for name in sorted(recorded.keys() & here.keys()):
        a, b = recorded[name], here[name]
        comparison.metrics[name] = (a, b)
        if a is None or b is None or a == b:
            continue
        close = abs(a - b) <= METRIC_RTOL * max(abs(a), 1e-12)
        comparison.worsen("within tolerance" if close else "differs")


def _weights(directory: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    found: dict[str, Any] = {}
    for path in sorted(directory.glob("*.safetensors")):
        found.update(load_file(path))
    return found


def _digest_check(recorded: Mapping[str, str], manifest: Manifest, comparison: Comparison) -> None:
    here = {k.split("/", 1)[1]: t.blake3 for k, t in manifest.tensors.items() if k.startswith("model/")}
    for name in sorted(recorded.keys() | here.keys()):
        comparison.tensors += 1
        if recorded.get(name) != here.get(name):
            comparison.differing.append(name)
            comparison.worsen("differs")


def _entry_tensors(directory: Path) -> dict[str, Any]:
    from openckpt.format.tensorfile import read_tensors

    manifest = read_manifest(directory)
    entry = manifest.entries.get("model")
    found: dict[str, Any] = {}
    for fname in entry.files if entry is not None else []:
        found.update(read_tensors(directory / fname))
    return found


def reproduce_finetune(
    recorded: Recorded,
    out: Path,
    *,
    base: Any,
    data: Path,
    steps: int | None = None,
    device: str | None = None,
    tolerance: Tolerance | None = None,
    source: str = "",
) -> ReproduceResult:
    """Run the recorded fine-tune again into ``out`` (from ``base``, a :class:`BaseModel` at the recorded revision)
    and compare: the output weights and held-out metrics, or (``steps``) the checkpoint at that step."""
    from dataclasses import replace

    from openckpt.finetune.estimate import resolve_device
    from openckpt.finetune.run import CHECKPOINTS, finetune, options_from_config

    recipe = recorded.recipe
    tolerance = tolerance or Tolerance()
    check_data(recipe, data)
    if out.exists() and any(out.iterdir()):
        raise StateMismatchError("the output directory is not empty: reproduce into a fresh one", path=out)
    options = options_from_config(recipe.config.get("finetune") or {})
    chosen = device or options.device
    try:
        chosen = resolve_device(chosen)
    except ValueError:
        chosen = resolve_device("auto")
    options = replace(options, device=chosen)
    warnings = environment_differences(recipe, recorded.packages)
    bitwise = expected_bitwise(recipe, chosen)
    if steps is not None and str(steps) not in recipe.checkpoints:
        have = ", ".join(sorted(recipe.checkpoints, key=int)) or "none"
        raise StateMismatchError(f"the recorded run has no checkpoint at step {steps} (it has: {have})")
    result = finetune(base, data, out, options, stop_at=steps, command=recipe.command)
    if steps is None:
        comparison = Comparison(what="the output weights and held-out metrics")
        compare_tensors(_weights(recorded.directory), _weights(result.directory), comparison, tolerance=tolerance)
        _compare_metrics(recipe.config.get("metrics") or {}, result.metrics, comparison)
    else:
        comparison = Comparison(what=f"the checkpoint at step {steps}")
        mine = out / CHECKPOINTS / f"step-{steps:08d}"
        target = recipe.checkpoints[str(steps)]
        _digest_check(target.get("tensors") or {}, read_manifest(mine), comparison)
        old = recorded.directory.parent / CHECKPOINTS / f"step-{steps:08d}"
        if comparison.verdict != "bitwise" and old.is_dir():
            comparison = Comparison(what=f"the checkpoint at step {steps}")
            compare_tensors(_entry_tensors(old), _entry_tensors(mine), comparison, tolerance=tolerance)
        elif comparison.verdict != "bitwise":
            comparison.notes.append("only the recorded digests are at hand: how far the tensors differ is unknown")
        loss = read_manifest(mine).training.metrics.get("loss")
        _compare_metrics({"loss": target.get("loss")}, {"loss": loss} if loss is not None else {}, comparison)
    return ReproduceResult(source, out, "finetune", steps, bitwise, comparison, warnings, tolerance.to_dict())


def reproduce_script(
    recorded: Recorded,
    out: Path,
    *,
    steps: int | None = None,
    tolerance: Tolerance | None = None,
    source: str = "",
    timeout: float | None = None,
) -> ReproduceResult:
    """Run the recorded script again (same command, working directory) with its checkpoints redirected to ``out``,
    stopping after ``steps`` if given; compare the checkpoint at the same step as the newest recorded one."""
    recipe = recorded.recipe
    tolerance = tolerance or Tolerance()
    assert recorded.manifest is not None
    step = steps if steps is not None else int(recorded.manifest.training.step or 0)
    target = recorded.directory / f"step-{step:08d}"
    if not (target / MANIFEST_NAME).is_file():
        raise StateMismatchError(f"the recorded run has no checkpoint at step {step}", path=recorded.directory)
    entry = recipe.entry_point or (recipe.command[0] if recipe.command else None)
    if entry is None:
        raise StateMismatchError("the recipe records no entry point to run", path=recorded.directory)
    script = Path(entry).is_file() or entry.endswith(".py")
    command = [sys.executable, entry] if script else [sys.executable, "-m", entry]
    env = {**os.environ, "OPENCKPT_REPRODUCE_DIR": str(out.resolve())}
    if steps is not None:
        env["OPENCKPT_STOP_AFTER_STEP"] = str(steps)
    warnings = environment_differences(recipe, recorded.packages)
    done = subprocess.run(
        [*command, *recipe.command[1:]],
        cwd=recipe.cwd or None,
        env=env,
        timeout=timeout,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise StateMismatchError(f"the re-run exited with {done.returncode}: {done.stderr[-2000:]}")
    mine = out / f"step-{step:08d}"
    comparison = Comparison(what=f"the checkpoint at step {step}")
    if not (mine / MANIFEST_NAME).is_file():
        raise StateMismatchError(f"the re-run saved no checkpoint at step {step}", path=out)
    compare_tensors(_entry_tensors(target), _entry_tensors(mine), comparison, tolerance=tolerance)
    old_recipe = read_manifest(target).recipe
    recorded_data = {d.name: d for d in old_recipe.data} if old_recipe is not None else {}
    here = read_manifest(mine).recipe
    for d in here.data if here is not None else []:
        old = recorded_data.get(d.name)
        if old is not None and (old.indices_blake3, old.samples_blake3) != (d.indices_blake3, d.samples_blake3):
            comparison.notes.append(f"data {d.name}: the samples read (or their order) differ from the recorded run")
            comparison.worsen("differs")
    device = str(recipe.torch.get("device") or "cpu")
    bitwise = expected_bitwise(recipe, device) and device == (here.torch.get("device") if here else device)
    return ReproduceResult(source, out, "script", step, bitwise, comparison, warnings, tolerance.to_dict())
