"""The recipe CheckpointManager records: command, config, seeds, environment (packages once per run, by sha256),
determinism settings, and the digests of the data a ResumableLoader delivered (which resume with it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from openckpt import CheckpointManager, ResumableLoader
from openckpt.checkpoint.recipe import collect_recipe, environment_differences, packages_text, parse_packages
from openckpt.format.manifest import Manifest, read_manifest


class Samples(torch.utils.data.Dataset[torch.Tensor]):
    def __len__(self) -> int:
        return 20

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.full((3,), float(i))


def test_each_checkpoint_records_the_recipe_and_the_packages_once(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 1)
    loader = ResumableLoader(Samples(), batch_size=4, seed=7)
    state = {"model": model, "loader": loader}
    with CheckpointManager(tmp_path, config={"lr": 0.1, "layers": [1, 2]}, seeds={"seed": 3}) as manager:
        for step, _batch in enumerate(loader, 1):
            manager.save(state, step=step)
            if step == 2:
                break
    (packages,) = (tmp_path / "environments").iterdir()
    first, second = (read_manifest(tmp_path / f"step-{s:08d}").recipe for s in (1, 2))
    assert first is not None and second is not None
    assert second.packages_sha256 == hashlib.sha256(packages.read_bytes()).hexdigest() == packages.stem
    assert (tmp_path / "step-00000002" / str(second.packages_file)).resolve() == packages.resolve()
    assert "torch" in parse_packages(packages.read_bytes())
    assert second.config == {"lr": 0.1, "layers": [1, 2]} and second.seeds == {"seed": 3, "loader.seed": 7}
    assert second.torch["version"] == torch.__version__ and second.torch["device"] == "cpu"
    assert second.determinism["deterministic_algorithms"] is False and second.python
    assert second.command and second.cwd
    (one,), (two,) = first.data, second.data
    assert (one.name, one.batches, two.batches) == ("loader", 1, 2)
    assert one.indices_blake3 != two.indices_blake3 and one.samples_blake3 != two.samples_blake3


def test_loader_digests_resume_exactly(tmp_path: Path) -> None:
    straight = ResumableLoader(Samples(), batch_size=3, seed=1)
    for _ in zip(range(9), _forever(straight), strict=False):
        pass
    first = ResumableLoader(Samples(), batch_size=3, seed=1)
    for _ in zip(range(4), _forever(first), strict=False):
        pass
    saved = json.loads(json.dumps(first.state_dict()))
    resumed = ResumableLoader(Samples(), batch_size=3, seed=1)
    resumed.load_state_dict(saved)
    for _ in zip(range(5), _forever(resumed), strict=False):
        pass
    assert resumed.digests() == straight.digests() and straight.digests()["batches"] == 9
    other = ResumableLoader(Samples(), batch_size=3, seed=2)
    for _ in zip(range(9), _forever(other), strict=False):
        pass
    assert other.digests()["indices_blake3"] != straight.digests()["indices_blake3"]
    cheap = ResumableLoader(Samples(), batch_size=3, seed=1, digest_samples=False)
    for _ in zip(range(9), _forever(cheap), strict=False):
        pass
    assert cheap.digests()["samples_blake3"] is None
    assert cheap.digests()["indices_blake3"] == straight.digests()["indices_blake3"]


def _forever(loader: ResumableLoader):  # type: ignore[no-untyped-def]
    while True:
        yield from loader


def test_a_manifest_without_a_recipe_still_reads() -> None:
    old = {"format": "openckpt", "format_version": "1.1", "id": "x", "created_at": "2026-01-01T00:00:00Z"}
    assert Manifest.model_validate(old).recipe is None


def test_environment_differences_name_packages_devices_and_flags() -> None:
    here = collect_recipe()
    packages = parse_packages(packages_text())
    assert environment_differences(here, packages, here=here) == []
    packages["numpy"] = "0.0.1"
    packages["not-installed-here"] = "1.0"
    recorded = here.model_copy(update={"torch": {**here.torch, "device": "cuda", "devices": ["NVIDIA H100"]},
                                       "determinism": {**here.determinism, "cudnn_benchmark": True}})  # fmt: skip
    found = environment_differences(recorded, packages, here=here)
    assert any(d.startswith("package numpy: recorded 0.0.1, here ") for d in found)
    assert "package not-installed-here: recorded 1.0, here absent" in found
    assert "torch device: recorded cuda, here cpu" in found
    assert "determinism cudnn_benchmark: recorded True, here False" in found


def test_an_export_keeps_the_recipe_and_its_package_list(tmp_path: Path) -> None:
    from openckpt import export

    with CheckpointManager(tmp_path / "run", config={"lr": 0.5}) as manager:
        manager.save({"model": torch.nn.Linear(2, 2)}, step=1)
    exported = export(tmp_path / "run" / "step-00000001", tmp_path / "out")
    assert exported.recipe is not None and exported.recipe.config == {"lr": 0.5}
    assert exported.recipe.packages_file == "openckpt-packages.txt"
    listed = (tmp_path / "out" / "openckpt-packages.txt").read_bytes()
    assert hashlib.sha256(listed).hexdigest() == exported.recipe.packages_sha256
    assert read_manifest(tmp_path / "out").recipe == exported.recipe
