"""The fine-tuning loop: AdamW with linear decay over a :class:`ResumableLoader`, checkpointed by a
:class:`CheckpointManager`, so a run killed at any moment continues bitwise exactly when started again.

The state saved every ``save_every`` steps: the trainable weights (all of them for a full fine-tune, the adapter
and head for LoRA), the optimizer, the LR schedule, the loader's position, the step counters, the global RNGs (for
dropout), the fp16 grad scaler and the run's settings; a restart with other settings is refused rather than mixing
two runs. Each checkpoint's weight digests are kept (:class:`StepDigests`) so a re-run of the first N steps can be
compared with step N after the checkpoint itself was deleted by retention.

On ``device`` with ``precision`` bf16/fp16 the forward pass runs under autocast (weights and optimizer in fp32);
``accumulate`` micro-batches make one optimizer step (an epoch's last, partial group makes one too).
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
from openckpt.format.manifest import read_manifest

if TYPE_CHECKING:
    import torch

__all__ = ["PRECISIONS", "StepDigests", "StepInfo", "TrainSettings", "TrainableState", "evaluate", "train"]

PRECISIONS = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 3
    lr: float = 2e-4
    batch_size: int = 8
    seed: int = 0
    save_every: int = 50
    keep: int = 2
    max_grad_norm: float = 1.0
    precision: str = "fp32"
    accumulate: int = 1
    gradient_checkpointing: bool = False


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


class StepDigests:
    """Step → the blake3 of each trained tensor at that step's checkpoint (from its manifest), and its loss."""

    def __init__(self) -> None:
        self.steps: dict[str, dict[str, Any]] = {}

    def add(self, manifest: Any) -> None:
        tensors = {k.split("/", 1)[1]: t.blake3 for k, t in manifest.tensors.items() if k.startswith("model/")}
        self.steps[str(manifest.training.step)] = {"loss": manifest.training.metrics.get("loss"), "tensors": tensors}

    def state_dict(self) -> dict[str, Any]:
        return {"steps": json.loads(json.dumps(self.steps))}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.steps = dict(state_dict.get("steps") or {})


def total_steps(examples: int, settings: TrainSettings) -> int:
    return settings.epochs * math.ceil(math.ceil(examples / settings.batch_size) / settings.accumulate)


def _settings_record(settings: TrainSettings) -> dict[str, Any]:
    """The settings as a run records them: fields at their defaults are left out (checkpoints from before they
    existed stay resumable)."""
    record = asdict(settings)
    for key, default in (("precision", "fp32"), ("accumulate", 1), ("gradient_checkpointing", False)):
        if record[key] == default:
            del record[key]
    return record


def train(  # noqa: PLR0913 — one caller; the loop's inputs, its stop step and two observers, each distinct
    model: torch.nn.Module,
    data: Encoded,
    directory: Path,
    *,
    settings: TrainSettings,
    run: Mapping[str, Any],
    full: bool,
    device: str = "cpu",
    stop_at: int | None = None,
    digests: StepDigests | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
) -> TrainingProgress:
    """Train ``model`` (already on ``device``) on ``data``, checkpointing into ``directory``; resume from its newest
    checkpoint if any.

    ``run`` (JSON values) describes the run; resuming checkpoints of a run described otherwise raises
    :class:`StateMismatchError`. ``full`` saves the whole model (else only its trainable parameters).
    ``stop_at`` ends after that many steps (saving a checkpoint there), the schedule unchanged.
    """
    import torch

    if settings.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    total = total_steps(len(data), settings)
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=0.0, total_iters=total)
    loader = ResumableLoader(data, batch_size=settings.batch_size, shuffle=True, seed=settings.seed)
    progress = TrainingProgress()
    digests = digests if digests is not None else StepDigests()
    device_type = torch.device(device).type
    half = PRECISIONS[settings.precision]
    autocast_dtype = getattr(torch, half) if half else None
    scaler = torch.amp.GradScaler(device_type, enabled=settings.precision == "fp16")
    state: dict[str, Any] = {
        "run": RunSettings({**run, "settings": _settings_record(settings)}, directory),  # checked before the rest
        "model": model if full else TrainableState(model),
        "optimizer": optimizer,
        "scheduler": scheduler,
        "loader": loader,
        "progress": progress,
        "rng": RNGState(),
        "digests": digests,
    }
    if scaler.is_enabled():
        state["scaler"] = scaler
    keep = [keep_last(settings.keep)]
    end = total if stop_at is None else min(total, stop_at)
    config = {**run, "settings": asdict(settings), "device": device}
    with CheckpointManager(
        directory, save_every=settings.save_every, keep=keep, config=config, seeds={"seed": settings.seed}
    ) as manager:
        latest = manager.latest()
        if latest is not None and "digests" not in read_manifest(latest).entries:
            del state["digests"]  # a run begun before step digests were kept: resume it without them
        restored = manager.restore_latest(state)
        if restored is not None:
            digests.add(restored)
        resumed_from, started, seen = progress.step, time.perf_counter(), 0
        model.train()
        pending, last = 0, {}
        while progress.step < end:
            for batch in loader:
                batch = {k: v.to(device) for k, v in batch.items()}
                with torch.autocast(device_type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    loss = model(**batch).loss
                scaler.scale(loss / settings.accumulate).backward()
                pending += 1
                n = int(batch["input_ids"].shape[0])
                progress.samples_seen += n
                progress.tokens_seen += int(batch["attention_mask"].sum())
                seen += n
                if pending < settings.accumulate and loader.position < len(loader):
                    continue
                pending = 0
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                progress.step += 1
                value = float(loss.detach())
                last = {"loss": value} if math.isfinite(value) else {}
                if manager.maybe_save(state, metrics=last):
                    digests.add(read_manifest(manager.directory / f"step-{progress.step:08d}"))
                if on_step is not None:
                    speed = seen / max(time.perf_counter() - started, 1e-9)
                    on_step(StepInfo(progress.step, total, value, speed, resumed_from))
                if progress.step >= end:
                    break
            progress.epoch = loader.epoch
        if not any(c.step == progress.step for c in manager.checkpoints()):
            manager.save(state, metrics=last)
            digests.add(read_manifest(manager.directory / f"step-{progress.step:08d}"))
    return progress


def evaluate(
    model: torch.nn.Module, data: Encoded, *, task: str, batch_size: int, device: str = "cpu", precision: str = "fp32"
) -> dict[str, float]:
    """Held-out metrics: accuracy and loss for classification, loss and perplexity for a causal LM."""
    import torch

    model.eval()
    losses, weights, correct = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            batch = {k: v[start : start + batch_size].to(device) for k, v in data.tensors.items()}
            half = PRECISIONS[precision]
            with torch.autocast(
                torch.device(device).type, dtype=getattr(torch, half) if half else None, enabled=half is not None
            ):
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
