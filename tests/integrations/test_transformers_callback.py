"""OpenckptCallback in a real Hugging Face Trainer: a tiny GPT-2 built from a config, nothing downloaded."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import openckpt  # noqa: E402
from openckpt.integrations.transformers import OpenckptCallback  # noqa: E402


class TokenDataset(torch.utils.data.Dataset):  # type: ignore[misc]
    def __init__(self, n: int = 16, length: int = 8) -> None:
        g = torch.Generator().manual_seed(1)
        self.ids = torch.randint(0, 32, (n, length), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def tiny_gpt2(seed: int) -> Any:
    torch.manual_seed(seed)
    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=32, n_positions=16)
    return transformers.GPT2LMHeadModel(config)


def trainer(tmp_path: Path, model: Any, max_steps: int, callbacks: list[Any], *, logging_steps: int = 1) -> Any:
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf-out"),
        max_steps=max_steps,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        lr_scheduler_type="linear",
        logging_steps=logging_steps,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    return transformers.Trainer(model=model, args=args, train_dataset=TokenDataset(), callbacks=callbacks)


class Crash(transformers.TrainerCallback):  # type: ignore[misc]
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.at:
            raise KeyboardInterrupt(f"simulated crash after step {self.at}")


class Probe(transformers.TrainerCallback):  # type: ignore[misc]
    """Records what the model and counters look like when training (re)starts."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.step = state.global_step
        self.epoch = state.epoch
        self.weights = {k: v.clone() for k, v in kwargs["model"].state_dict().items()}
        state = kwargs["optimizer"].state_dict()["state"]
        self.exp_avg = {i: s["exp_avg"].clone() for i, s in state.items()}
        self.lr_epoch = kwargs["lr_scheduler"].last_epoch


@pytest.mark.parametrize("async_save", [False, True])
def test_saves_every_n_steps(tmp_path: Path, async_save: bool) -> None:
    ckpt = tmp_path / "ckpt"
    run = trainer(tmp_path, tiny_gpt2(0), 6, [OpenckptCallback(ckpt, save_every=2, async_save=async_save)])
    run.train()
    assert sorted(p.name for p in ckpt.iterdir() if p.name.startswith("step-")) == [
        "step-00000002",
        "step-00000004",
        "step-00000006",
    ]
    assert (ckpt / "LATEST").read_text().strip() == "step-00000006"

    # the checkpoint is a Hugging Face model directory holding the trainer's final weights
    final = run.model.state_dict()
    loaded = transformers.AutoModelForCausalLM.from_pretrained(ckpt / "step-00000006").state_dict()
    assert loaded.keys() == final.keys()
    assert all(torch.equal(loaded[k], final[k]) for k in final)

    manifest = openckpt.read_manifest(ckpt / "step-00000006")
    assert {"model", "optimizer", "lr_scheduler", "rng", "progress", "trainer_state"} <= set(manifest.entries)
    assert any(name.startswith("optimizer/state/model.") and "exp_avg" in name for name in manifest.tensors)
    assert manifest.training.step == 6
    assert manifest.training.epoch == 1  # 6 steps of 4 batches per epoch
    assert manifest.training.metrics["loss"] == run.state.log_history[5]["loss"]  # the loss of step 6 itself
    assert set(manifest.training.metrics) >= {"loss", "learning_rate", "grad_norm"}


def test_resumes_after_a_crash(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    reference = trainer(tmp_path, tiny_gpt2(0), 10, [])
    reference.train()
    lr = {e["step"]: e["learning_rate"] for e in reference.state.log_history if "learning_rate" in e}

    crashed = trainer(tmp_path, tiny_gpt2(0), 10, [OpenckptCallback(ckpt, save_every=2), Crash(at=6)])
    with pytest.raises(KeyboardInterrupt):
        crashed.train()
    at_crash = {k: v.clone() for k, v in crashed.model.state_dict().items()}
    exp_avg = {i: s["exp_avg"].clone() for i, s in crashed.optimizer.state_dict()["state"].items()}
    first = openckpt.read_manifest(ckpt / "step-00000006")

    # a new process would build the model afresh: different initial weights, same directory
    probe = Probe()
    callback = OpenckptCallback(ckpt, save_every=2)
    resumed = trainer(tmp_path, tiny_gpt2(1), 10, [callback, probe], logging_steps=50)
    resumed.train()
    assert callback.resumed_from is not None and callback.resumed_from.id == first.id
    assert probe.step == 6 and probe.epoch == 1.5 and probe.lr_epoch == 6
    assert all(torch.equal(probe.weights[k], at_crash[k]) for k in at_crash)
    assert probe.exp_avg.keys() == exp_avg.keys()
    assert all(torch.equal(probe.exp_avg[i], exp_avg[i]) for i in exp_avg)

    assert resumed.state.global_step == 10
    assert sorted(p.name for p in ckpt.iterdir() if p.name.startswith("step-"))[-2:] == [
        "step-00000008",
        "step-00000010",
    ]
    logged = [e for e in resumed.state.log_history if "loss" in e]
    assert [e["step"] for e in logged] == [1, 2, 3, 4, 5, 6, 8, 10]  # history continues; 8 and 10 forced by saves
    assert all(e["learning_rate"] == lr[e["step"]] for e in logged)  # the schedule continued where it was
    assert logged[-1]["epoch"] == 2.5  # epochs count across the resume
    after = openckpt.read_manifest(ckpt / "step-00000008")
    assert after.lineage.parent == first.id
    assert "loss" not in after.training.metrics  # the Trainer's first loss after a resume is mis-averaged
    assert after.training.metrics["learning_rate"] == lr[8]
    assert "loss" in openckpt.read_manifest(ckpt / "step-00000010").training.metrics


class NoLogs(transformers.TrainerCallback):  # type: ignore[misc]
    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        control.should_log = False
        return control


def test_saves_even_if_another_callback_cancels_the_log(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    run = trainer(tmp_path, tiny_gpt2(0), 6, [OpenckptCallback(ckpt, save_every=2), NoLogs()])
    run.train()
    assert sorted(p.name for p in ckpt.iterdir() if p.name.startswith("step-")) == [
        "step-00000002",
        "step-00000004",
        "step-00000006",
    ]
    final = run.model.state_dict()
    loaded = transformers.AutoModelForCausalLM.from_pretrained(ckpt / "step-00000006").state_dict()
    assert all(torch.equal(loaded[k], final[k]) for k in final)


def test_resume_false_starts_fresh(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    trainer(tmp_path, tiny_gpt2(0), 2, [OpenckptCallback(ckpt, save_every=2)]).train()
    probe = Probe()
    callback = OpenckptCallback(ckpt, save_every=2, resume=False)
    trainer(tmp_path, tiny_gpt2(0), 2, [callback, probe]).train()
    assert probe.step == 0 and callback.resumed_from is None
