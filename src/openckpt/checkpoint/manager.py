"""CheckpointManager: periodic, retained, optionally asynchronous checkpoints of one training run.

Layout of ``directory``: ``step-00000100/`` … (committed checkpoints), ``LATEST`` (name of the newest one, replaced
atomically after its checkpoint is durable) and, transiently, hidden temp dirs of saves in progress. A mirror
(:mod:`openckpt.checkpoint.mirror`) holds the same names.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from openckpt.checkpoint.commit import commit_snapshot
from openckpt.checkpoint.dataloader import ResumableLoader
from openckpt.checkpoint.determinism import settle_math_kernels
from openckpt.checkpoint.distributed import is_distributed, save_distributed
from openckpt.checkpoint.mirror import Mirror, fetch_checkpoints, open_mirror
from openckpt.checkpoint.mirror_writer import MirrorWriter
from openckpt.checkpoint.restore import load
from openckpt.checkpoint.retention import CheckpointInfo, KeepPolicy, to_delete
from openckpt.checkpoint.snapshot import DEFAULT_MAX_SHARD_SIZE, Snapshot, Staging, capture
from openckpt.checkpoint.stateful import TrainingProgress
from openckpt.errors import AsyncSaveError, FormatError, IntegrityError, NoValidCheckpointError
from openckpt.format.manifest import Lineage, Manifest, Recipe, RecipeData, Training, read_manifest
from openckpt.fsutil import atomic_write, remove_tree

__all__ = ["CheckpointManager"]

log = logging.getLogger("openckpt")
_STEP_DIR = re.compile(r"^step-(\d+)$")
_LEFTOVER = re.compile(r"^\.(step-\d+|LATEST)\.(tmp|trash)-[0-9a-f]+$")
LATEST = "LATEST"


class CheckpointManager:
    """Saves ``state`` every ``save_every`` steps into ``directory``, keeps what ``keep`` says, resumes the newest.

    With ``async_save=True`` the training loop is blocked only while tensors are copied into reusable staging
    buffers; writing happens on a background thread, at most one save in flight. A background failure is raised
    (as :class:`AsyncSaveError`) by the next call. After :meth:`close`, saves are synchronous.

    One process writes to a directory at a time: a new manager removes the leftovers of saves that died.

    Each checkpoint records the run's recipe (:mod:`openckpt.checkpoint.recipe`): the command, ``config`` (the
    resolved configuration), ``seeds``, the environment, and the digests of what each :class:`ResumableLoader` in
    the state has delivered; ``recipe=False`` leaves it out. The installed packages are written once per run, as
    ``environments/<sha256>.txt`` beside the checkpoints. ``OPENCKPT_REPRODUCE_DIR`` (set by ``openckpt
    reproduce``) redirects the checkpoints there; ``OPENCKPT_STOP_AFTER_STEP=N`` saves at step N and exits.

    ``mirror`` (a URL such as ``"hf://buckets/me/run-x"`` or ``"file:///mnt/share/run-x"``, or a
    :class:`~openckpt.checkpoint.mirror.Mirror`) gets a copy of each committed checkpoint, uploaded by a worker
    thread (:mod:`openckpt.checkpoint.mirror_writer`): all its files, then the mirror's ``LATEST``. Its failures are
    raised as :class:`MirrorError` by the next save, :meth:`wait` or :meth:`close`, which flush the uploads.
    Retention deletes in the mirror what it deletes locally. :meth:`restore_latest` in an empty directory fetches the
    mirror's ``LATEST`` checkpoint (older ones if it does not verify). A reproduction leaves the mirror alone.
    """

    def __init__(  # noqa: PLR0913 — public API: each keyword is a documented option of the manager
        self,
        directory: str | os.PathLike[str],
        *,
        save_every: int | None = None,
        keep: Sequence[KeepPolicy] = (),
        async_save: bool = False,
        lineage: Lineage | Mapping[str, Any] | None = None,
        max_shard_size: int = DEFAULT_MAX_SHARD_SIZE,
        config: Mapping[str, Any] | None = None,
        seeds: Mapping[str, int] | None = None,
        recipe: bool = True,
        mirror: str | os.PathLike[str] | Mirror | None = None,
    ) -> None:
        if save_every is not None and save_every < 1:
            raise ValueError("save_every must be >= 1")
        settle_math_kernels()  # before the run's first forward pass, so that a resumed run computes as the original
        self.directory = Path(os.environ.get("OPENCKPT_REPRODUCE_DIR") or directory)
        stop = os.environ.get("OPENCKPT_STOP_AFTER_STEP")
        self._stop_after = int(stop) if stop else None
        self._config, self._seeds, self._record = dict(config or {}), dict(seeds or {}), recipe
        self._packages: tuple[str, str] | None = None
        if recipe:  # the environment is read now, once, not on the first save's critical path
            from openckpt.checkpoint.recipe import collect_recipe

            collect_recipe()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.save_every = save_every
        self.keep = list(keep)
        self.async_save = async_save
        self.max_shard_size = max_shard_size
        self._lineage = lineage if isinstance(lineage, Lineage) else Lineage.model_validate(dict(lineage or {}))
        self._staging = Staging() if async_save else None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="openckpt-save") if async_save else None
        self._pending: Future[Manifest] | None = None
        self._last_step: int | None = None
        if mirror is not None and os.environ.get("OPENCKPT_REPRODUCE_DIR"):
            log.warning("openckpt: reproducing a run: its mirror %s is neither read nor written", mirror)
            mirror = None
        self.mirror = open_mirror(mirror) if mirror is not None else None
        if self.mirror is not None and is_distributed():
            raise ValueError("a mirror is not supported under torch.distributed yet: mirror from one process")
        self._mirror_writer = MirrorWriter(self.mirror, self.directory) if self.mirror is not None else None
        self._remove_torn()

    # -- discovery ---------------------------------------------------------------------------------------------

    def _remove_torn(self) -> None:
        """Delete what saves and deletions that died midway left behind: it was never visible under a real name."""
        if is_distributed() and not _is_rank_zero():
            return  # rank 0 cleans up: another rank might delete a save rank 0 has begun
        for p in self.directory.iterdir():
            if _LEFTOVER.match(p.name):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)

    def checkpoints(self) -> list[CheckpointInfo]:
        """Committed checkpoints, oldest first."""
        found = []
        for p in self.directory.iterdir():
            m = _STEP_DIR.match(p.name)
            if m and p.is_dir():
                try:
                    metrics = read_manifest(p).training.metrics
                except FormatError:
                    metrics = {}
                found.append(CheckpointInfo(p, int(m.group(1)), metrics))
        return sorted(found, key=lambda c: c.step)

    def latest(self) -> Path | None:
        """The newest committed checkpoint, or None."""
        found = self.checkpoints()
        return found[-1].path if found else None

    # -- restore -----------------------------------------------------------------------------------------------

    def restore_latest(self, state: Mapping[str, Any], *, verify: bool = True) -> Manifest | None:
        """Load the newest complete checkpoint into ``state``; None on a fresh run.

        A checkpoint that fails its integrity checks is skipped for the next older one. If checkpoints exist but
        none loads, raises :class:`NoValidCheckpointError` rather than letting training restart from scratch.
        """
        self._finish_pending()
        candidates: Iterable[Path] = [info.path for info in reversed(self.checkpoints())]
        failures: list[str] = []
        if not candidates and self.mirror is not None:
            candidates = fetch_checkpoints(self.mirror, self.directory, skipped=failures)
        for path in candidates:
            try:
                manifest = load(path, state, verify=verify)
            except (IntegrityError, FormatError) as e:
                log.warning("openckpt: skipping checkpoint %s: %s", path, e)
                failures.append(f"{path.name}: {e}")
                continue
            self._lineage = self._lineage.model_copy(update={"parent": manifest.id})
            self._last_step = int(path.name.split("-")[1])
            return manifest
        if not failures:
            return None
        raise NoValidCheckpointError(
            f"{len(failures)} checkpoints, none loads: " + "; ".join(failures), path=self.directory
        )

    # -- save --------------------------------------------------------------------------------------------------

    def maybe_save(
        self, state: Mapping[str, Any], *, step: int | None = None, metrics: Mapping[str, float] | None = None
    ) -> bool:
        """Save if ``step`` (or the state's :class:`TrainingProgress` step) is a multiple of ``save_every``."""
        self._raise_failure()
        step = _step_of(state, step)
        if step == self._stop_after and step != self._last_step:
            self.save(state, step=step, metrics=metrics)
            self.close()
            log.warning("openckpt: OPENCKPT_STOP_AFTER_STEP=%d reached; exiting", step)
            raise SystemExit(0)
        if self.save_every is None or step <= 0 or step % self.save_every or step == self._last_step:
            return False
        self.save(state, step=step, metrics=metrics)
        return True

    def save(
        self,
        state: Mapping[str, Any],
        *,
        step: int | None = None,
        metrics: Mapping[str, float] | None = None,
        training: Training | Mapping[str, Any] | None = None,
    ) -> None:
        """Save now as ``step-<step>``; asynchronous if the manager is."""
        self._finish_pending()
        if self._mirror_writer is not None:
            self._mirror_writer.raise_failure()
        step = _step_of(state, step)
        info = training if isinstance(training, Training) else Training.model_validate(dict(training or {}))
        info = info.model_copy(update={"step": step, "metrics": {**info.metrics, **(metrics or {})}})
        if info.samples_seen is None:
            info = info.model_copy(update={"samples_seen": _samples_seen(state)})
        if is_distributed():
            self._last_step = step
            self._save_distributed(state, step, info)
            return
        recipe = self._recipe(state)
        snapshot = capture(state, staging=self._staging)
        self._last_step = step
        if self._executor is None:
            self._commit(snapshot, step, info, recipe)
        else:
            self._pending = self._executor.submit(self._commit, snapshot, step, info, recipe)

    def _recipe(self, state: Mapping[str, Any]) -> Recipe | None:
        if not self._record:
            return None
        from openckpt.checkpoint.recipe import collect_recipe, write_packages

        if self._packages is None:
            digest, path = write_packages(self.directory)
            self._packages = (digest, f"../{path.parent.name}/{path.name}")
        data, seeds = [], dict(self._seeds)
        for name, obj in state.items():
            if isinstance(obj, ResumableLoader):
                data.append(RecipeData(name=name, **obj.digests()))
                seeds.setdefault(f"{name}.seed", obj.seed)
        return collect_recipe(config=self._config, seeds=seeds, data=data, packages=self._packages)

    def _commit(self, snapshot: Snapshot, step: int, training: Training, recipe: Recipe | None = None) -> Manifest:
        name = f"step-{step:08d}"
        manifest = commit_snapshot(
            snapshot,
            self.directory / name,
            training=training,
            lineage=self._lineage,
            max_shard_size=self.max_shard_size,
            overwrite=True,
            recipe=recipe,
        )
        atomic_write(self.directory / LATEST, f"{name}\n".encode())
        self._lineage = self._lineage.model_copy(update={"parent": manifest.id})
        writer = self._mirror_writer
        if writer is not None:
            writer.submit(name)
        busy = writer.busy() if writer is not None else set()
        removed = [old for old in to_delete(self.checkpoints(), self.keep) if old.path.name not in busy]
        for old in removed:
            remove_tree(old.path)
        if writer is not None:
            writer.forget(old.path.name for old in removed)
        return manifest

    def _save_distributed(self, state: Mapping[str, Any], step: int, training: Training) -> None:
        """Collective save: every rank writes its part; rank 0 commits, then moves LATEST and applies retention."""
        if self.async_save:
            log.warning("openckpt: async_save is not supported under torch.distributed; saving synchronously")
        manifest = save_distributed(
            self.directory / f"step-{step:08d}",
            state,
            training=training,
            lineage=self._lineage,
            max_shard_size=self.max_shard_size,
            overwrite=True,
            on_commit=self._publish_distributed,
        )
        self._lineage = self._lineage.model_copy(update={"parent": manifest.id})

    def _publish_distributed(self, path: Path) -> None:
        atomic_write(self.directory / LATEST, f"{path.name}\n".encode())
        for old in to_delete(self.checkpoints(), self.keep):
            remove_tree(old.path)

    # -- async bookkeeping -------------------------------------------------------------------------------------

    def _raise_failure(self) -> None:
        if self._pending is not None and self._pending.done():
            self._finish_pending()
        if self._mirror_writer is not None:
            self._mirror_writer.raise_failure()

    def _finish_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            pending.result()
        except Exception as e:
            raise AsyncSaveError(f"background save failed: {e}", path=self.directory) from e

    def wait(self) -> None:
        """Block until the save in flight (if any) is durable, and mirrored if the manager mirrors; raise failures."""
        self._finish_pending()
        if self._mirror_writer is not None:
            self._mirror_writer.flush()

    def close(self) -> None:
        """Finish the save in flight synchronously, flush the mirror's uploads and stop the background workers."""
        try:
            self._finish_pending()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
            if self._mirror_writer is not None:
                self._mirror_writer.close()

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _is_rank_zero() -> bool:
    import torch.distributed as dist

    return bool(dist.get_rank() == 0)


def _step_of(state: Mapping[str, Any], step: int | None) -> int:
    if step is not None:
        return int(step)
    for obj in state.values():
        if isinstance(obj, TrainingProgress):
            return obj.step
    raise ValueError("pass step=..., or put an openckpt.TrainingProgress in the state")


def _samples_seen(state: Mapping[str, Any]) -> int | None:
    """The samples counted by the state's :class:`TrainingProgress`, else those its :class:`ResumableLoader`\\ s
    delivered (for a loop that counts only steps); None when neither knows."""
    counted = [obj.samples_seen for obj in state.values() if isinstance(obj, TrainingProgress)]
    if any(counted):
        return None  # the progress entry's own count goes into the manifest
    loaded = [obj.samples_seen for obj in state.values() if isinstance(obj, ResumableLoader)]
    if not loaded or any(n is None for n in loaded):
        return None
    return sum(n for n in loaded if n is not None)
