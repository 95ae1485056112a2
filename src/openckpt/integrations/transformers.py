"""``OpenckptCallback``: openckpt checkpoints for the Hugging Face ``Trainer``, saved and resumed by one callback.

    trainer = Trainer(model=model, args=args, train_dataset=data,
                      callbacks=[OpenckptCallback("ckpt", save_every=500, keep=[openckpt.keep_last(3)])])
    trainer.train()  # resumes from ckpt/ by itself if it holds checkpoints

Every ``save_every`` optimizer steps the callback saves ``model`` (``model.safetensors`` + ``config.json``, loadable
with ``from_pretrained``), ``optimizer`` (keyed by parameter name), ``lr_scheduler``, ``rng`` (the global Python,
numpy and torch generators), ``progress`` (step, epoch) and ``trainer_state`` (the ``TrainerState`` counters and
``log_history``). At a save step it asks the Trainer to log, and saves when that log arrives (in ``on_log``, still
before anything of the next step runs), so the manifest's metrics are the loss, learning rate and grad norm *of that
step*; non-finite values are left out. The Trainer's own checkpoints are independent of these: turn them off with
``save_strategy="no"``, and do not pass ``resume_from_checkpoint`` as well (both restores would run).

Resuming happens in ``on_train_begin``, where the Trainer has created its optimizer and scheduler: the newest
checkpoint that passes its integrity checks is loaded (if checkpoints exist but none loads, training stops with
:class:`openckpt.NoValidCheckpointError`). What that restores, and what it cannot:

* Exact: model weights and buffers, optimizer state, LR scheduler state (the schedule continues where it was), the
  global RNG states as they were at the save, ``state.global_step`` (so ``max_steps`` counts the whole run and later
  checkpoints keep their step numbers), ``log_history``, token and FLOP counts. ``state.epoch`` continues from the
  saved value.
* Not exact: **the data position.** Without ``resume_from_checkpoint`` the Trainer starts a fresh pass over the data
  (epoch 0, batch 0); a callback cannot make it skip batches, and its own skipping needs its own checkpoint files.
  Batches seen before the save are therefore seen again, and randomness drawn after the resume (dropout) does not
  follow the uninterrupted run's either, since the new data iterator draws from the restored RNGs first.
* Not exact: the Trainer's private per-``train()`` counters are set before ``on_train_begin`` and still say step 0,
  so the **first loss it logs after a resume is averaged over all steps since step 0** (it reads too low), as are
  ``train_loss`` and the speed metrics ``train()`` returns. The callback leaves that loss out of its manifest metrics.
* Not saved: gradient-accumulation residue (saves happen right after an optimizer step, when there is none), AMP
  scaler, callbacks' own state, DeepSpeed/FSDP sharded state (not supported). With several processes, rank 0 saves
  its model, optimizer and RNG; every rank loads the model, optimizer and scheduler, and only rank 0 its RNG.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from openckpt.checkpoint.stateful import RNGState, TrainingProgress
from openckpt.integrations._schedule import SaveSchedule

__all__ = ["OpenckptCallback"]

_TRAINER_STATE_FIELDS = (
    "global_step",
    "epoch",
    "num_input_tokens_seen",
    "total_flos",
    "log_history",
    "best_metric",
    "best_global_step",
)


class _TrainerStateEntry:
    """The ``TrainerState`` counters a resumed run continues from (all JSON: no pickle)."""

    def __init__(self, state: TrainerState) -> None:
        self.state = state

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self.state, name) for name in _TRAINER_STATE_FIELDS}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for name in _TRAINER_STATE_FIELDS:
            if name in state_dict:
                setattr(self.state, name, state_dict[name])


def _finite_metrics(logs: Mapping[str, Any] | None, *, skip: Sequence[str] = ()) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (logs or {}).items():
        if key in skip or key == "epoch" or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


class OpenckptCallback(SaveSchedule, TrainerCallback):
    """Save the training state every ``save_every`` optimizer steps into ``directory``; resume from it on start.

    ``keep`` takes retention policies (:func:`openckpt.keep_last`, :func:`openckpt.keep_best` on ``"loss"`` ...).
    With ``async_save=True`` training waits only while tensors are copied. ``resume=False`` never loads anything.
    After ``on_train_begin``, :attr:`resumed_from` is the manifest of the checkpoint that was loaded, or None.
    """

    # per run, reset in on_train_begin
    _due: int | None = None  # step whose save waits for that step's log
    _epoch_offset = 0.0
    _unreliable_loss_step: int | None = None

    # -- state -------------------------------------------------------------------------------------------------

    def _state(self, state: TrainerState, kwargs: Mapping[str, Any], *, rng: bool) -> dict[str, Any]:
        entries: dict[str, Any] = {"model": kwargs["model"]}
        for key in ("optimizer", "lr_scheduler"):
            if kwargs.get(key) is not None:
                entries[key] = kwargs[key]
        if rng:
            entries["rng"] = RNGState()
        entries["progress"] = TrainingProgress(step=state.global_step, epoch=int(state.epoch or 0))
        entries["trainer_state"] = _TrainerStateEntry(state)
        return entries

    def _save(self, state: TrainerState, kwargs: Mapping[str, Any], logs: Mapping[str, Any] | None) -> None:
        step, self._due = state.global_step, None
        if self._manager is None or not state.is_world_process_zero:
            return
        skip = ("loss",) if step == self._unreliable_loss_step else ()
        self._manager.save(self._state(state, kwargs, rng=True), step=step, metrics=_finite_metrics(logs, skip=skip))

    def _save_overdue(self, state: TrainerState, kwargs: Mapping[str, Any]) -> None:
        """Save a step whose log never came (another callback cancelled it), with the last logged values."""
        if self._due is not None:
            self._save(state, kwargs, state.log_history[-1] if state.log_history else None)

    # -- events ------------------------------------------------------------------------------------------------

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        manager = self._open()  # also closes one a previous train() that raised left open
        self._due, self._epoch_offset, self._unreliable_loss_step = None, 0.0, None
        if not self.resume:
            return
        restored = manager.restore_latest(self._state(state, kwargs, rng=state.is_world_process_zero))
        if restored is not None:
            self.resumed_from = restored
            self._epoch_offset = float(state.epoch or 0.0)
            self._unreliable_loss_step = -1  # set to the first step logged after the resume

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._save_overdue(state, kwargs)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        if self._epoch_offset:
            state.epoch = self._epoch_offset + (state.epoch or 0.0)  # the Trainer counts epochs from the resume
        if state.global_step % self.save_every == 0:
            self._due = state.global_step
            control.should_log = True
        return control

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self._unreliable_loss_step == -1 and logs is not None and "loss" in logs:
            self._unreliable_loss_step = state.global_step
        if self._due == state.global_step:
            self._save(state, kwargs, logs)

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._save_overdue(state, kwargs)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._save_overdue(state, kwargs)
        self._close()
