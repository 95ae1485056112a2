"""What the framework callbacks share: where and how often they save, and the manager of the current run."""

from __future__ import annotations

import os
from collections.abc import Sequence

from openckpt.checkpoint.manager import CheckpointManager
from openckpt.checkpoint.mirror import Mirror
from openckpt.checkpoint.retention import KeepPolicy
from openckpt.format.manifest import Manifest

__all__ = ["SaveSchedule"]


class SaveSchedule:
    """Save every ``save_every`` optimizer steps into ``directory`` with retention ``keep``; resume unless told not.

    ``mirror`` (e.g. ``"hf://buckets/me/run-x"``) copies each checkpoint there, as :class:`CheckpointManager` does.

    After a run starts, :attr:`resumed_from` is the manifest of the checkpoint that was loaded, or None.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        save_every: int,
        keep: Sequence[KeepPolicy] = (),
        async_save: bool = False,
        resume: bool = True,
        mirror: str | os.PathLike[str] | Mirror | None = None,
    ) -> None:
        if save_every < 1:
            raise ValueError("save_every must be >= 1")
        self.directory = directory
        self.save_every = save_every
        self.keep = list(keep)
        self.async_save = async_save
        self.resume = resume
        self.mirror = mirror
        self.resumed_from: Manifest | None = None
        self._manager: CheckpointManager | None = None

    def _open(self) -> CheckpointManager:
        """A fresh manager for a new run (closing one a failed earlier run left open)."""
        self._close()
        self._manager = CheckpointManager(
            self.directory, keep=self.keep, async_save=self.async_save, mirror=self.mirror
        )
        self.resumed_from = None
        return self._manager

    def _close(self) -> None:
        manager, self._manager = self._manager, None
        if manager is not None:
            manager.close()
