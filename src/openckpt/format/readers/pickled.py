"""Pickled objects read with torch's weights-only loader, never running a class openckpt does not allow.

Each layout allows exactly the globals it needs (:data:`NUMPY`, :data:`DCP_METADATA`, ``argparse.Namespace``).
Any other class the pickle names is stood in for by an inert :class:`Opaque` registered under that exact name: it
records its arguments and state and runs nothing, so a file that needs code (a pickled Lightning callback, an
ultralytics model) still shows what it holds, and the names of the classes its loader would have to run.
Modules torch blocks outright (``os``, ``sys``, ``posix``, ``nt``) stay refused.
"""

from __future__ import annotations

import argparse
import io
import pickle
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from openckpt.errors import FormatError, UnsafeFileError
from openckpt.format.readers.pickleops import pickle_globals, protocol2

__all__ = [
    "DCP_METADATA",
    "NAMESPACE",
    "NUMPY",
    "TORCHSCRIPT_DATA",
    "Loaded",
    "Opaque",
    "has_tensor",
    "is_blocked",
    "load_pickle",
    "load_torch",
    "load_torchscript",
    "reason",
]

NAMESPACE = ("argparse.Namespace",)
"""timm's ``CheckpointSaver`` keeps its command line as an ``argparse.Namespace`` (a plain attribute bag)."""
NUMPY = (
    "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray.scalar",
    "numpy.core.multiarray.scalar",
    "numpy.ndarray",
    "numpy.dtype",
)
"""numpy arrays and scalars as data: ``np.random.get_state()`` in transformers' ``rng_state.pth``, a Lightning
callback's ``best_model_score``. With ``numpy.dtype``, each concrete ``numpy.dtypes`` class is allowed too."""
TORCHSCRIPT_DATA = tuple(
    f"torch.jit._pickle.{name}"
    for name in ("build_intlist", "build_doublelist", "build_boollist", "build_tensorlist", "restore_type_tag")
)
"""How a TorchScript ``data.pkl`` rebuilds typed lists and tags: identity functions on their argument."""
_DCP = "torch.distributed.checkpoint"
DCP_METADATA = (
    *(f"{_DCP}.metadata.{name}" for name in ("Metadata", "TensorStorageMetadata", "BytesStorageMetadata")),
    *(f"{_DCP}.metadata.{name}" for name in ("ChunkStorageMetadata", "TensorProperties", "MetadataIndex")),
    *(f"{_DCP}.metadata.{name}" for name in ("StorageMeta", "_MEM_FORMAT_ENCODING")),
    f"{_DCP}.filesystem._StorageInfo",
    "torch.Size",
    "pathlib.PosixPath",
    "pathlib.WindowsPath",
)
"""The dataclasses of a ``torch.distributed.checkpoint`` directory's ``.metadata``."""


class Opaque:
    """An object of a class openckpt does not run: the pickle's arguments and state, kept inert."""

    qualname: ClassVar[str] = "?"
    args: tuple[Any, ...]
    state: Any

    def __new__(cls, *args: Any, **kwargs: Any) -> Opaque:
        self = object.__new__(cls)
        self.args = args
        self.state = None
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Nothing runs: ``__new__`` kept the arguments."""

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.qualname}>"


def _resolve(name: str) -> Any:
    """The real object behind an allowed global name (imported only because a layout allows it)."""
    import importlib

    module, _, attr = name.rpartition(".")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


_STANDINS: dict[str, type[Opaque]] = {}
_LOCK = threading.RLock()
"""torch keeps its allowlist process-wide: one load at a time sees exactly its own layout's globals."""


def _standin(name: str) -> type[Opaque]:
    if name not in _STANDINS:
        _STANDINS[name] = type(name.rpartition(".")[2] or name, (Opaque,), {"qualname": name})
    return _STANDINS[name]


@contextmanager
def _allowing(allowed: Iterable[str], standins: Iterable[str]) -> Iterator[None]:
    import torch

    pairs: list[Any] = []
    if "numpy.dtype" in allowed:
        import numpy as np

        pairs += [getattr(np.dtypes, n) for n in getattr(np.dtypes, "__all__", ()) if n.endswith("DType")]
    for name in allowed:
        try:
            pairs.append((_resolve(name), name))
        except (ImportError, AttributeError):
            continue
    pairs += [(_standin(name), name) for name in standins]
    with _LOCK, torch.serialization.safe_globals(pairs), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def reason(error: BaseException) -> str:
    """The useful sentence of torch's long weights-only error message."""
    text = str(error)
    _, found, after = text.partition("WeightsUnpickler error:")
    text = " ".join((after if found else text).split())
    return text.split(". Please", 1)[0].split(" Check the documentation", 1)[0].rstrip(".") or type(error).__name__


@dataclass
class Loaded:
    """A loaded object and the classes it names that openckpt stood in for."""

    obj: Any
    opaque: list[str] = field(default_factory=list)


def _refused(path: Path | None, error: BaseException) -> UnsafeFileError:
    message = f"refusing to load: torch's weights-only loader rejected it ({reason(error)})"
    return UnsafeFileError(message, path=path)


_BLOCKED = (
    "os",
    "sys",
    "posix",
    "nt",
    "subprocess",
    "builtins",
    "__builtin__",
    "socket",
    "shutil",
    "importlib",
    "runpy",
    "pty",
    "ctypes",
    "webbrowser",
    "code",
    "pickle",
    "_pickle",
    "marshal",
    "types",
    "operator",
    "functools",
    "pdb",
)
"""Modules whose globals in a pickle mean code would run: a file naming one is refused, never read inertly."""


def _load(path: Path | None, what: Callable[[], Any], names: Iterable[str], allowed: tuple[str, ...]) -> Loaded:
    from torch._weights_only_unpickler import _get_allowed_globals

    known = _get_allowed_globals()
    names = [n for n in names if n not in known]
    blocked = [n for n in names if is_blocked(n)]
    if blocked:
        raise UnsafeFileError(f"refusing to load: it names {', '.join(blocked)}, which runs code", path=path)
    standins = sorted({n for n in names if n not in allowed})
    try:
        with _allowing(allowed, standins):
            obj = what()
    except pickle.UnpicklingError as e:
        raise _refused(path, e) from e
    except (RuntimeError, ValueError, EOFError, OSError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise FormatError(f"not a readable torch file: {type(e).__name__}: {reason(e)}", path=path) from e
    return Loaded(obj, standins)


def load_torch(path: Path, *, allowed: tuple[str, ...] = (), mmap: bool = False) -> Loaded:
    """``torch.load(path, weights_only=True)`` with ``allowed`` globals real and every other class inert."""
    import torch

    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except (RuntimeError, ValueError) as e:
        if "torchscript" in str(e).lower():
            raise UnsafeFileError("a TorchScript archive: loading it runs its program", path=path) from e
        names = []
    except (pickle.UnpicklingError, EOFError, OSError) as e:
        blocked = [n for n in pickle_globals(_pickle_bytes(path)) if is_blocked(n)]
        if blocked:
            raise UnsafeFileError(f"refusing to load: it names {', '.join(blocked)}, which runs code", path=path) from e
        raise FormatError(f"not a readable torch file: {reason(e)}", path=path) from e
    return _load(path, lambda: torch.load(path, map_location="cpu", weights_only=True, mmap=mmap), names, allowed)


def _pickle_bytes(path: Path) -> bytes:
    """The pickle of a torch file: ``data.pkl`` of a zip, else the file (legacy format)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            member = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
            return z.read(member) if member else b""
    except zipfile.BadZipFile:
        return path.read_bytes()


def is_blocked(name: str) -> bool:
    """Whether global ``name`` is of a module whose callables run code, spawn, or touch files and sockets
    (torch's own allowlist, ``builtins.set`` and the like, excepted)."""
    from torch._weights_only_unpickler import _get_allowed_globals

    if name.startswith("__builtin__."):
        name = "builtins." + name.partition(".")[2]
    return name.partition(".")[0] in _BLOCKED and name not in _get_allowed_globals()


def load_pickle(data: bytes, *, allowed: tuple[str, ...] = (), path: Path | None = None) -> Loaded:
    """A bare pickle stream (no torch zip around it) through torch's weights-only unpickler."""
    from torch import _weights_only_unpickler

    names = pickle_globals(data)
    try:
        data = protocol2(data)
    except (ValueError, EOFError, UnicodeDecodeError, KeyError) as e:
        raise FormatError(f"not a readable pickle: {e}", path=path) from e
    return _load(path, lambda: _weights_only_unpickler.load(io.BytesIO(data), encoding="utf-8"), names, allowed)


def load_torchscript(path: Path) -> Loaded:
    """A TorchScript archive's ``data.pkl`` (the module's attributes and tensors), its classes inert.

    ``torch.jit.load`` would compile and run the archive's ``code/``; this reads only the pickled data.
    """
    import zipfile

    import torch

    with zipfile.ZipFile(path) as z:
        member = next((n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1), None)
        if member is None:
            raise FormatError("a TorchScript archive without data.pkl", path=path)
        names = pickle_globals(z.read(member))

    def read() -> Any:
        with torch.serialization._open_zipfile_reader(str(path)) as reader:
            load: Any = torch.serialization._load
            return load(reader, "cpu", torch._weights_only_unpickler, pickle_file="data.pkl")

    return _load(path, read, names, TORCHSCRIPT_DATA)


def is_nn_state(state: Any) -> bool:
    """Whether ``state`` is a pickled ``torch.nn.Module``'s ``__dict__``."""
    return isinstance(state, Mapping) and isinstance(state.get("_parameters"), Mapping) and "_modules" in state


def plain(obj: Any, classes: dict[str, str], holders: set[str], at: str = "") -> Any:
    """``obj`` with stand-ins, numpy arrays and namespaces made plain data (dicts, lists, tensors).

    ``classes`` collects each stand-in class's first location; ``holders`` those whose contents include tensors.
    A pickled ``nn.Module`` becomes its state dict (parameters, buffers, submodules by dotted name).
    """
    import torch

    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, type) and issubclass(obj, Opaque):
        classes.setdefault(obj.qualname, at or "<root>")
        return f"<class {obj.qualname}>"
    if isinstance(obj, Opaque):
        return _plain_opaque(obj, classes, holders, at)
    if isinstance(obj, argparse.Namespace):
        return plain(vars(obj), classes, holders, at)
    if type(obj).__module__ == "numpy" and type(obj).__name__ == "ndarray":
        return _from_numpy(obj)
    if type(obj).__module__ == "numpy" and hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Mapping):
        return {_key(k, classes): plain(v, classes, holders, f"{at}.{_key(k, classes)}") for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v, classes, holders, f"{at}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, set | frozenset):
        return [plain(v, classes, holders, at) for v in obj]
    return obj


def _child(at: str, key: Any) -> str:
    """The dotted location of ``key`` inside ``at``."""
    return f"{at}.{key}" if at else str(key)


def _plain_opaque(obj: Opaque, classes: dict[str, str], holders: set[str], at: str) -> Any:
    """A stand-in as plain data: a module's state dict, its state mapping, an enum's value, or its call.

    Records its class in ``classes``, and in ``holders`` when its state dict or state mapping holds tensors.
    """
    classes.setdefault(obj.qualname, at or "<root>")
    state = obj.state
    if is_nn_state(state):
        out = _plain_module(state, classes, holders, at)
    elif isinstance(state, Mapping):
        out = {str(k): plain(v, classes, holders, _child(at, k)) for k, v in state.items()}
    elif state is None and len(obj.args) == 1 and isinstance(obj.args[0], str | int | float):
        return obj.args[0]  # an enum member, pickled as its class called with its value
    else:
        call: dict[str, Any] = {"__class__": obj.qualname}
        if obj.args:
            call["args"] = plain(list(obj.args), classes, holders, at)
        if state is not None:
            call["state"] = plain(state, classes, holders, at)
        return call
    if has_tensor(out):
        holders.add(obj.qualname)
    return out


def _plain_module(state: Mapping[str, Any], classes: dict[str, str], holders: set[str], at: str) -> dict[str, Any]:
    """A pickled ``nn.Module``'s ``__dict__`` as its parameters, buffers and (non-empty) submodules by name."""
    out: dict[str, Any] = {}
    for key in ("_parameters", "_buffers", "_modules"):
        for k, v in (state.get(key) or {}).items():
            value = plain(v, classes, holders, _child(at, k)) if v is not None else {}
            if value != {}:  # a submodule without parameters (an activation) holds nothing to show
                out[str(k)] = value
    return out


def _key(key: Any, classes: dict[str, str]) -> Any:
    if isinstance(key, type) and issubclass(key, Opaque):
        classes.setdefault(key.qualname, "<a key>")
        return key.qualname
    return key


def _from_numpy(array: Any) -> Any:
    import numpy as np
    import torch

    if array.dtype.kind in "fiub" and array.dtype.itemsize <= 8:
        return torch.from_numpy(np.ascontiguousarray(array.astype(array.dtype.newbyteorder("="))))
    return array.tolist()


def has_tensor(node: Any) -> bool:
    import torch

    if isinstance(node, torch.Tensor):
        return True
    if isinstance(node, Mapping):
        return any(has_tensor(v) for v in node.values())
    if isinstance(node, list | tuple):
        return any(has_tensor(v) for v in node)
    return False
