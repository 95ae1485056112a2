"""``python -m tests.finetune.kill_run STEP openckpt-args...``: the ``openckpt`` CLI, SIGKILLed by itself right
after optimizer step STEP (a real kill: no cleanup, no atexit, whatever a save had begun is left as it is)."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import openckpt.finetune.run as run
from openckpt.cli.app import main
from openckpt.finetune.train import StepInfo

KILL_AT = int(sys.argv[1])
_train = run.train


def _killed_train(*args: Any, on_step: Any = None, **kwargs: Any) -> Any:
    def step(info: StepInfo) -> None:
        if on_step is not None:
            on_step(info)
        if info.step == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)

    return _train(*args, on_step=step, **kwargs)


if __name__ == "__main__":
    run.train = _killed_train  # type: ignore[assignment]
    sys.argv = ["openckpt", *sys.argv[2:]]
    main()
