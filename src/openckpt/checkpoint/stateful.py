"""The Stateful protocol and the built-in adapters that make common training objects Stateful.

``save``/``load`` take a mapping of names to objects. Objects with ``state_dict()``/``load_state_dict()`` are used
as they are (modules, LR schedulers, GradScaler, :class:`ResumableLoader`, your own classes). Adapters cover the rest:
optimizers are keyed by parameter *name* (so resuming survives a change of parameter order), numpy and torch
generators store their bit-generator state, and plain dicts are updated in place.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from openckpt.errors import StateMismatchError, UnsupportedStateError

if TYPE_CHECKING:
    import torch

__all__ = ["RNGState", "Stateful", "TrainingProgress", "adapt"]


@runtime_checkable
class Stateful(Protocol):
    """What torch.distributed.checkpoint calls Stateful.

    An object may also define ``check_state_dict(state_dict)``, raising :class:`StateMismatchError` if it cannot
    take that state: :func:`openckpt.load` calls it before mutating anything.
    """

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any], /) -> None: ...


@dataclass
class TrainingProgress:
    """Counters of a training run; the manifest's ``training`` section is filled from them."""

    step: int = 0
    epoch: int = 0
    samples_seen: int = 0
    tokens_seen: int = 0

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key in ("step", "epoch", "samples_seen", "tokens_seen"):
            setattr(self, key, int(state_dict[key]))


class RNGState:
    """The process-global random generators: Python ``random``, numpy's legacy global, torch CPU and CUDA."""

    def state_dict(self) -> dict[str, Any]:
        import numpy as np
        import torch

        state: dict[str, Any] = {
            "python": random.getstate(),
            "numpy": np.random.get_state(legacy=False),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        import numpy as np
        import torch

        random.setstate(state_dict["python"])
        np.random.set_state(state_dict["numpy"])
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class _DictState:
    def __init__(self, target: dict[str, Any]) -> None:
        self.target = target

    def state_dict(self) -> dict[str, Any]:
        return dict(self.target)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.target.clear()
        self.target.update(state_dict)


class _NumpyGeneratorState:
    def __init__(self, generator: Any) -> None:
        self.generator = generator

    def state_dict(self) -> dict[str, Any]:
        return {"bit_generator": self.generator.bit_generator.state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.generator.bit_generator.state = state_dict["bit_generator"]


class _TorchGeneratorState:
    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def state_dict(self) -> dict[str, Any]:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.generator.set_state(state_dict["state"])


class OptimizerState:
    """A torch optimizer whose state and param groups are keyed by parameter name instead of position."""

    def __init__(self, optimizer: torch.optim.Optimizer, names: Mapping[int, str]) -> None:
        self.optimizer = optimizer
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.names = [names.get(id(p), f"param.{i}") for i, p in enumerate(self.params)]

    def state_dict(self) -> dict[str, Any]:
        sd = self.optimizer.state_dict()
        return {
            "state": {self.names[i]: value for i, value in sd["state"].items()},
            "param_groups": [
                {**group, "params": [self.names[i] for i in group["params"]]} for group in sd["param_groups"]
            ],
        }

    def to_positional(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        """Map a by-name state dict onto this optimizer's current parameters; raise if they differ."""
        index = {name: i for i, name in enumerate(self.names)}
        groups = state_dict["param_groups"]
        current = self.optimizer.param_groups
        if len(groups) != len(current):
            raise StateMismatchError(f"optimizer has {len(current)} param groups, checkpoint has {len(groups)}")
        positional_groups = []
        offset = 0
        for g, (saved, live) in enumerate(zip(groups, current, strict=True)):
            live_names = [self.names[offset + k] for k in range(len(live["params"]))]
            if set(saved["params"]) != set(live_names):
                missing = sorted(set(live_names) - set(saved["params"]))[:5]
                extra = sorted(set(saved["params"]) - set(live_names))[:5]
                raise StateMismatchError(
                    f"optimizer param group {g} differs: not in checkpoint {missing}, not in optimizer {extra}"
                )
            positional_groups.append({**saved, "params": [index[n] for n in live_names]})
            offset += len(live["params"])
        state = {index[name]: value for name, value in state_dict["state"].items()}
        return {"state": state, "param_groups": positional_groups}

    def check_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.to_positional(state_dict)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(self.to_positional(state_dict))


def module_param_names(state: Mapping[str, Any]) -> dict[int, str]:
    """``id(parameter)`` → ``"<entry>.<parameter name>"`` for every module in ``state``."""
    import torch

    names: dict[int, str] = {}
    for key, obj in state.items():
        if isinstance(obj, torch.nn.Module):
            for name, p in obj.named_parameters():
                names.setdefault(id(p), f"{key}.{name}")
    return names


def adapt(state: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    """Name → (kind, Stateful) for every entry of ``state``."""
    import numpy as np
    import torch

    names: dict[int, str] | None = None
    out: dict[str, tuple[str, Any]] = {}
    for key, obj in state.items():
        if not key or "/" in key or key.startswith("."):
            raise UnsupportedStateError(f"state key {key!r} must be a non-empty name without '/'")
        if isinstance(obj, torch.nn.Module):
            out[key] = ("module", obj)
        elif isinstance(obj, torch.optim.Optimizer):
            names = module_param_names(state) if names is None else names
            out[key] = ("optimizer", OptimizerState(obj, names))
        elif isinstance(obj, np.random.Generator):
            out[key] = ("numpy-generator", _NumpyGeneratorState(obj))
        elif isinstance(obj, torch.Generator):
            out[key] = ("torch-generator", _TorchGeneratorState(obj))
        elif isinstance(obj, dict):
            out[key] = ("dict", _DictState(obj))
        elif isinstance(obj, Stateful):
            out[key] = ("stateful", obj)
        else:
            raise UnsupportedStateError(
                f"state[{key!r}] of type {type(obj).__qualname__} has no state_dict()/load_state_dict()"
            )
    return out
