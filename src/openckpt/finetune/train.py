"""The fine-tuning loop: AdamW with linear decay over a :class:`ResumableLoader`, checkpointed by a
:class:`CheckpointManager`, so a run killed at any moment continues bitwise exactly when started again.

The state saved every ``save_every`` steps: the trainable weights (all of them for a full fine-tune, the adapter
and head for LoRA), the optimizer, the LR schedule, the loader's position, the step counters, the global RNGs (for
dropout) and the run's settings; a restart with other settings is refused rather than mixing two runs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.checkpoint.dataloader import ResumableLoader
from openckpt.checkpoint.manager import CheckpointManager
from openckpt.checkpoint.retention import keep_last
from openckpt.checkpoint.stateful import RNGState, TrainingProgress
from openckpt.errors import StateMismatchError
from openckpt.finetune.data import Encoded

if TYPE_CHECKING:
    import torch

__all__ = ["StepInfo", "TrainSettings", "TrainableState", "evaluate", "train"]


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 3
    lr: float = 2e-4
    batch_size: int = 8
    seed: int = 0
    save_every: int = 50
    keep: int = 2
    max_grad_norm: float = 1.0


@dataclass(frozen=True)
class StepInfo:
    """What the progress display shows after each optimizer step."""

    step: int
    total: int
    loss: float
    samples_per_second: float
    resumed_from: int


class TrainableState:
    """The parameters that train (``requires_grad``), by name: what a LoRA checkpoint needs of the model."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.params = {name: p for name, p in model.named_parameters() if p.requires_grad}

    def state_dict(self) -> dict[str, Any]:
        return {name: p.detach() for name, p in self.params.items()}

    def check_state_dict(self, state_dict: dict[str, Any]) -> None:
        shapes = {name: tuple(p.shape) for name, p in self.params.items()}
        if {name: tuple(t.shape) for name, t in state_dict.items()} != shapes:
            raise StateMismatchError("the checkpoint's trainable parameters differ from this model's")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        import torch

        self.check_state_dict(state_dict)
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(state_dict[name])


class RunSettings:
    """What a run is (base, data digest, method, hyperparameters); loading a checkpoint of another run is refused
    before anything is restored."""

    def __init__(self, settings: Mapping[str, Any], directory: Path) -> None:
        self.settings = json.loads(json.dumps(dict(settings)))  # as it reads back from state.json
        self.directory = directory

    def state_dict(self) -> dict[str, Any]:
        return dict(self.settings)

    def check_state_dict(self, state_dict: dict[str, Any]) -> None:
        keys = state_dict.keys() | self.settings.keys()
        if changed := sorted(k for k in keys if state_dict.get(k) != self.settings.get(k)):
            message = f"its checkpoints belong to a run with other settings ({', '.join(changed)})"
            raise StateMismatchError(
                f"{message}: use another output directory or the same settings", path=self.directory
            )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.check_state_dict(state_dict)


def total_steps(examples: int, settings: TrainSettings) -> int:
    return settings.epochs * math.ceil(examples / settings.batch_size)


def train(
    model: torch.nn.Module,
    data: Encoded,
    directory: Path,
    *,
    settings: TrainSettings,
    run: Mapping[str, Any],
    full: bool,
    on_step: Callable[[StepInfo], None] | None = None,
) -> TrainingProgress:
    """Train ``model`` on ``data``, checkpointing into ``directory``; resume from its newest checkpoint if any.

    ``run`` (JSON values) describes the run; resuming checkpoints of a run described otherwise raises
    :class:`StateMismatchError`. ``full`` saves the whole model (else only its trainable parameters).
    """
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    total = total_steps(len(data), settings)
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=0.0, total_iters=total)
    loader = ResumableLoader(data, batch_size=settings.batch_size, shuffle=True, seed=settings.seed)
    progress = TrainingProgress()
    state: dict[str, Any] = {
        "run": RunSettings({**run, "settings": asdict(settings)}, directory),  # first: checked before the rest loads
        "model": model if full else TrainableState(model),
        "optimizer": optimizer, "scheduler": scheduler, "loader": loader, "progress": progress,
        "rng": RNGState(),
    }  # fmt: skip
    keep = [keep_last(settings.keep)]
    with CheckpointManager(directory, save_every=settings.save_every, keep=keep) as manager:
        manager.restore_latest(state)
        resumed_from, started, seen = progress.step, time.perf_counter(), 0
        model.train()
        while progress.step < total:
            for batch in loader:
                loss = model(**batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                n = int(batch["input_ids"].shape[0])
                progress.step += 1
                progress.samples_seen += n
                progress.tokens_seen += int(batch["attention_mask"].sum())
                seen += n
                value = float(loss.detach())
                manager.maybe_save(state, metrics={"loss": value} if math.isfinite(value) else {})
                if on_step is not None:
                    speed = seen / max(time.perf_counter() - started, 1e-9)
                    on_step(StepInfo(progress.step, total, value, speed, resumed_from))
                if progress.step >= total:
                    break
            progress.epoch = loader.epoch
        if not any(c.step == progress.step for c in manager.checkpoints()):
            manager.save(state)
    return progress


def evaluate(model: torch.nn.Module, data: Encoded, *, task: str, batch_size: int) -> dict[str, float]:
    """Held-out metrics: accuracy and loss for classification, loss and perplexity for a causal LM."""
    import torch

    model.eval()
    losses, weights, correct = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            batch = {k: v[start : start + batch_size] for k, v in data.tensors.items()}
            output = model(**batch)
            if task == "causal-lm":
                n = int((batch["labels"][:, 1:] != -100).sum())  # tokens predicted (the first one is not)
            else:
                n = int(batch["labels"].shape[0])
                correct += int((output.logits.argmax(-1) == batch["labels"]).sum())
            losses += float(output.loss) * n
            weights += n
    model.train()
    loss = losses / max(weights, 1)
    if task == "causal-lm":
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}
    return {"accuracy": correct / max(weights, 1), "loss": loss}
