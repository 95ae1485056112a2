"""``OpenckptCheckpoint``: openckpt checkpoints for Lightning, saved and resumed by one callback.

    trainer = Trainer(max_steps=10_000, callbacks=[OpenckptCheckpoint("ckpt", save_every=500)])
    trainer.fit(model, data)  # resumes from ckpt/ by itself if it holds checkpoints

Every ``save_every`` optimizer steps (in ``on_train_batch_end``, the moment Lightning's own ``ModelCheckpoint`` uses)
the callback saves ``model`` (the LightningModule's ``state_dict``), ``optimizer``/``optimizer_1``...,
``lr_scheduler``/``lr_scheduler_1``..., ``precision`` (the AMP gradient scaler, if any), ``loops`` (the fit loop's
progress counters and, for data loaders that have ``state_dict()``, their state), ``progress`` (global step, epoch)
and ``rng`` (the global Python, numpy and torch generators). The manifest's metrics are
``trainer.callback_metrics`` of that step (finite scalars only).

Resuming happens in ``on_fit_start``, where Lightning restores its own checkpoints: the optimizers and schedulers
exist and the loops have not started. The newest checkpoint that passes its integrity checks is loaded (if
checkpoints exist but none loads, ``fit`` stops with :class:`openckpt.NoValidCheckpointError`); the loops' counters
go through ``fit_loop.load_state_dict`` exactly as with ``Trainer.fit(ckpt_path=...)``, and the RNG states are applied
in ``on_train_start``, after the sanity check has drawn from them. What that restores, and what it cannot:

* Exact: weights and buffers, optimizer and scheduler state, AMP scaler, ``trainer.global_step`` and
  ``current_epoch`` (``max_steps``/``max_epochs`` count the whole run; checkpoints keep their step numbers), the
  position within the epoch, and the global RNGs.
* Exact data order only if the train loader is resumable: with :class:`openckpt.ResumableLoader` (or any loader
  with ``state_dict()``/``load_state_dict()``, which Lightning stores in the loop state) a run resumed mid-epoch
  trains bitwise like an uninterrupted one, dropout included (tested). With a plain ``DataLoader`` Lightning starts a
  fresh pass (a new shuffle) for the rest of the interrupted epoch and cuts it at the batches that epoch had left (it
  warns about it): in that epoch some samples repeat and others are missed.
* Not saved: the LightningModule's and other callbacks' ``on_save_checkpoint`` extras and callback state (early
  stopping counters...), a partially accumulated gradient (saves happen right after an optimizer step), sharded
  FSDP/DeepSpeed state (not supported). If you also pass ``ckpt_path`` to ``fit``, Lightning's restore runs after ours
  and wins. With several processes rank 0 saves; every rank loads weights, optimizers and loops, only rank 0 its RNG.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.types import STEP_OUTPUT

from openckpt.checkpoint.stateful import RNGState, TrainingProgress
from openckpt.integrations._schedule import SaveSchedule

__all__ = ["OpenckptCheckpoint"]

log = logging.getLogger("openckpt")


class _FitLoopState:
    """Lightning's fit-loop progress counters (global step, epoch, batch, scheduler and optimizer progress)."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = self.trainer.fit_loop.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.trainer.fit_loop.load_state_dict(state_dict)


class _PrecisionState:
    """The precision plugin's state: the AMP gradient scaler, if there is one."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        return dict(self.trainer.precision_plugin.state_dict())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.trainer.precision_plugin.load_state_dict(state_dict)


class _DeferredRNG:
    """Saves the global RNGs now; on load, keeps their state to apply later (after the sanity check ran)."""

    def __init__(self) -> None:
        self.pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return RNGState().state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pending = state_dict

    def apply(self) -> None:
        if self.pending is not None:
            RNGState().load_state_dict(self.pending)
            self.pending = None


def _metrics(trainer: Trainer) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in trainer.callback_metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            number = float(value.item())
            if math.isfinite(number):
                out[key] = number
    return out


class OpenckptCheckpoint(SaveSchedule, Callback):
    """Save the training state every ``save_every`` optimizer steps into ``directory``; resume from it on fit.

    ``keep`` takes retention policies (:func:`openckpt.keep_last`, :func:`openckpt.keep_best` on a logged metric).
    With ``async_save=True`` training waits only while tensors are copied. ``resume=False`` never loads anything.
    After ``on_fit_start``, :attr:`resumed_from` is the manifest of the checkpoint that was loaded, or None.
    """

    # per fit, set in on_fit_start
    _rng: _DeferredRNG
    _last_step: int | None = None  # step last saved or resumed at: a further micro-batch of it does not save again

    def _state(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        state: dict[str, Any] = {"model": pl_module}
        for i, optimizer in enumerate(trainer.optimizers):
            state["optimizer" if i == 0 else f"optimizer_{i}"] = optimizer
        for i, config in enumerate(trainer.lr_scheduler_configs):
            state["lr_scheduler" if i == 0 else f"lr_scheduler_{i}"] = config.scheduler
        state["precision"] = _PrecisionState(trainer)
        state["loops"] = _FitLoopState(trainer)
        state["progress"] = TrainingProgress(step=trainer.global_step, epoch=trainer.current_epoch)
        if trainer.is_global_zero:
            state["rng"] = self._rng
        return state

    # -- hooks -------------------------------------------------------------------------------------------------

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        manager = self._open()
        self._rng, self._last_step = _DeferredRNG(), None
        if self.resume:
            # Where Lightning restores its own checkpoints: optimizers exist, the loops have not started.
            self.resumed_from = manager.restore_latest(self._state(trainer, pl_module))
            if self.resumed_from is not None:
                self._last_step = trainer.global_step

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._rng.apply()  # after the sanity check, which draws from the RNGs, right before the first batch

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: STEP_OUTPUT, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step == 0 or step % self.save_every or step == self._last_step:
            return  # not due, or a further micro-batch of gradient accumulation after the save
        self._last_step = step
        if self._manager is not None and trainer.is_global_zero:
            self._manager.save(self._state(trainer, pl_module), step=step, metrics=_metrics(trainer))

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        try:
            self._close()  # let a save in flight finish: it may be the one the next run resumes from
        except Exception as e:  # the training error is the one to report
            log.warning("openckpt: closing the checkpoint manager failed: %s", e)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._close()
