"""OpenckptCheckpoint in a real Lightning Trainer on CPU: saves every n steps, resumes counters, weights and data."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning.pytorch")

import openckpt  # noqa: E402
from openckpt.integrations.lightning import OpenckptCheckpoint  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


class Tiny(L.LightningModule):  # type: ignore[misc]
    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(dropout), torch.nn.Linear(8, 1))
        self.losses: list[tuple[int, float]] = []
        self.first_x: list[float] = []

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        self.losses.append((self.trainer.global_step, loss.item()))
        self.first_x.append(float(x[0, 0]))
        return loss

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(self.parameters(), lr=1e-2)
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 3, gamma=0.5)}


def data() -> Any:
    g = torch.Generator().manual_seed(0)
    return torch.utils.data.TensorDataset(torch.randn(20, 4, generator=g), torch.randn(20, 1, generator=g))


def fit(model: Any, loader: Any, max_steps: int, callbacks: list[Any]) -> Any:
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, loader)
    return trainer


def steps(directory: Path) -> list[int]:
    return sorted(int(p.name.removeprefix("step-")) for p in directory.iterdir() if p.name.startswith("step-"))


class Probe(L.Callback):  # type: ignore[misc]
    """What the run looks like when its first training batch is about to run."""

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.step = trainer.global_step
        self.epoch = trainer.current_epoch
        self.weights = {k: v.clone() for k, v in pl_module.state_dict().items()}
        state = trainer.optimizers[0].state_dict()["state"]
        self.exp_avg = {i: s["exp_avg"].clone() for i, s in state.items()}
        self.scheduler = trainer.lr_scheduler_configs[0].scheduler.state_dict()


def test_saves_every_n_steps_and_resumes_counters_and_weights(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    torch.manual_seed(0)
    first = Tiny()
    loader = torch.utils.data.DataLoader(data(), batch_size=4, shuffle=True)
    trainer = fit(first, loader, 6, [OpenckptCheckpoint(ckpt, save_every=2)])
    assert trainer.global_step == 6
    assert steps(ckpt) == [2, 4, 6]
    at_six = {k: v.clone() for k, v in first.state_dict().items()}
    exp_avg = {i: s["exp_avg"].clone() for i, s in trainer.optimizers[0].state_dict()["state"].items()}
    scheduler = trainer.lr_scheduler_configs[0].scheduler.state_dict()

    manifest = openckpt.read_manifest(ckpt / "step-00000006")
    assert {"model", "optimizer", "lr_scheduler", "loops", "progress", "rng", "precision"} <= set(manifest.entries)
    assert manifest.training.step == 6 and manifest.training.epoch == 1  # 5 batches an epoch
    assert manifest.training.metrics["train_loss"] == pytest.approx(first.losses[-1][1])
    assert "model/net.0.weight" in manifest.tensors
    assert any(n.startswith("optimizer/state/model.net.0.weight/exp_avg") for n in manifest.tensors)

    # a new run: different initial weights, same directory, a longer max_steps
    torch.manual_seed(1)
    second = Tiny()
    probe = Probe()
    callback = OpenckptCheckpoint(ckpt, save_every=2)
    trainer = fit(second, loader, 10, [callback, probe])
    assert callback.resumed_from is not None and callback.resumed_from.id == manifest.id
    assert probe.step == 6 and probe.epoch == 1
    assert probe.weights.keys() == at_six.keys()
    assert all(torch.equal(probe.weights[k], at_six[k]) for k in at_six)
    assert probe.exp_avg.keys() == exp_avg.keys()
    assert all(torch.equal(probe.exp_avg[i], exp_avg[i]) for i in exp_avg)
    assert probe.scheduler == scheduler
    assert [s for s, _ in second.losses] == [6, 7, 8, 9]  # global_step continued from 6
    assert trainer.global_step == 10
    assert steps(ckpt) == [2, 4, 6, 8, 10]
    assert openckpt.read_manifest(ckpt / "step-00000008").lineage.parent == manifest.id


def test_resume_with_a_resumable_loader_is_bitwise_exact(tmp_path: Path) -> None:
    def run(max_steps: int, callbacks: list[Any], seed: int = 0) -> Any:
        L.seed_everything(seed, verbose=False)
        model = Tiny(dropout=0.3)
        fit(model, openckpt.ResumableLoader(data(), batch_size=4, seed=3), max_steps, callbacks)
        return model

    reference = run(10, [])
    ckpt = tmp_path / "ckpt"
    before = run(6, [OpenckptCheckpoint(ckpt, save_every=3)])  # stops mid-epoch (5 batches an epoch)
    after = run(10, [OpenckptCheckpoint(ckpt, save_every=3)], seed=123)  # another seed: the RNG comes from disk
    assert before.losses + after.losses == reference.losses
    assert before.first_x + after.first_x == reference.first_x
    ref, got = reference.state_dict(), after.state_dict()
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_resume_false_starts_fresh(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    loader = torch.utils.data.DataLoader(data(), batch_size=4)
    fit(Tiny(), loader, 2, [OpenckptCheckpoint(ckpt, save_every=2)])
    probe = Probe()
    callback = OpenckptCheckpoint(ckpt, save_every=2, resume=False, async_save=True)
    trainer = fit(Tiny(), loader, 4, [callback, probe])
    assert probe.step == 0 and callback.resumed_from is None
    assert trainer.global_step == 4 and steps(ckpt) == [2, 4]


def test_a_mirrored_run_resumes_on_an_empty_directory_from_its_mirror(tmp_path: Path) -> None:
    mirror = f"file://{tmp_path / 'mirror'}"
    torch.manual_seed(0)
    first = Tiny()
    loader = torch.utils.data.DataLoader(data(), batch_size=4, shuffle=True)
    fit(first, loader, 4, [OpenckptCheckpoint(tmp_path / "machine-1", save_every=2, mirror=mirror)])
    at_four = {k: v.clone() for k, v in first.state_dict().items()}

    torch.manual_seed(1)
    second, probe = Tiny(), Probe()
    callback = OpenckptCheckpoint(tmp_path / "machine-2", save_every=2, mirror=mirror)
    fit(second, loader, 6, [callback, probe])
    assert callback.resumed_from is not None and callback.resumed_from.training.step == 4
    assert probe.step == 4 and all(torch.equal(probe.weights[k], at_four[k]) for k in at_four)
    assert (tmp_path / "mirror" / "LATEST").read_text() == "step-00000006\n"
