"""Keras models: ``.keras`` zips (``config.json``) and legacy HDF5 ``.h5`` (``model_config`` attribute).

Flags Lambda layers (marshalled bytecode), module references outside Keras (CVE-2025-1550), the
``enable_unsafe_deserialization`` and ``get_file`` gadgets, TorchModuleWrapper (``torch.load`` without
weights_only), lookup layers reading an external vocabulary file, and HDF5 external links, external storage and
virtual datasets. HDF5 needs h5py (``pip install 'openckpt[scan]'``); without it an HDF5 file is inconclusive.
"""

from __future__ import annotations

import io
import json
from typing import Any

from openckpt.scan.limits import Context
from openckpt.scan.pickle.globals import classify
from openckpt.scan.verdict import Severity

__all__ = ["HDF5_MAGIC", "check_config", "is_keras_zip", "scan_config", "scan_hdf5"]

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_KERAS_MODULES = ("keras", "tf_keras", "tensorflow.keras")
_MAX_JSON = 64 << 20
_LOOKUPS = frozenset({"StringLookup", "IntegerLookup", "TextVectorization"})


def is_keras_zip(names: list[str]) -> bool:
    return "config.json" in names and any(n.endswith(".weights.h5") or n == "metadata.json" for n in names)


def _module_ok(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in _KERAS_MODULES)


def check_config(ctx: Context, config: Any, member: str | None) -> None:
    """Walk a Keras config (any JSON) and flag what runs code or reaches outside the model."""
    stack = [config]
    seen = 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > 1_000_000:
            raise ctx.limit("Keras config with more than 1,000,000 nodes", member=member)
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str):
            if "enable_unsafe_deserialization" in node:
                ctx.add("keras-unsafe", Severity.MALICIOUS, "config calls enable_unsafe_deserialization", member=member)
        elif isinstance(node, dict):
            stack.extend(node.values())
            _check_object(ctx, node, member)


def _check_object(ctx: Context, node: dict[str, Any], member: str | None) -> None:
    """Flag one config object: Lambda layers, TorchModuleWrapper, external vocabularies, foreign modules, gadgets."""
    cls = node.get("class_name")
    module = node.get("module")
    if cls in ("Lambda", "__lambda__") or (cls == "function" and module == "builtins"):
        what = "Lambda layer (runs marshalled Python bytecode)" if cls != "function" else "builtins function"
        ctx.add("keras-lambda", Severity.MALICIOUS, what, member=member, callable=str(node.get("config"))[:80])
    if cls == "TorchModuleWrapper":
        reason = "TorchModuleWrapper unpickles a torch module (torch.load without weights_only)"
        ctx.add("keras-torch", Severity.MALICIOUS, reason, member=member)
    if cls in _LOOKUPS:
        vocab = (node.get("config") or {}).get("vocabulary") if isinstance(node.get("config"), dict) else None
        if isinstance(vocab, str):
            reason = f"{cls} reads its vocabulary from the file {vocab!r}"
            ctx.add("keras-external-file", Severity.SUSPICIOUS, reason, member=member)
    if isinstance(module, str) and not _module_ok(module):
        _check_module(ctx, module, str(cls if cls not in (None, "function") else node.get("config")), member)
    for key in ("function", "fn"):
        value = node.get(key)
        if isinstance(value, str) and value in ("get_file", "eval", "exec", "system", "__import__"):
            ctx.add("keras-gadget", Severity.MALICIOUS, f"config names the callable {value!r}", member=member)


def _check_module(ctx: Context, module: str, name: str, member: str | None) -> None:
    """Record a reference to ``module.name`` outside Keras, judged as the pickle scanner judges that global."""
    decision = classify(module, name, "pickle") or (Severity.NEEDS_CODE, f"{module}.{name}: outside Keras")
    ctx.imports.add(f"{module}.{name}")
    ctx.add("keras-module", decision[0], f"config references {decision[1]}", member=member, callable=f"{module}.{name}")


def _load_json(ctx: Context, raw: bytes, member: str | None) -> Any:
    if len(raw) > _MAX_JSON:
        raise ctx.limit("Keras config larger than 64 MiB", member=member)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        ctx.add("keras-invalid", Severity.INFO, f"config is not valid JSON: {e}", member=member, inconclusive=True)
        return None


def scan_config(ctx: Context, view: tuple[Any, int, int], *, member: str | None) -> None:
    """Check the ``config.json`` of a ``.keras`` archive."""
    buf, start, end = view
    check_config(ctx, _load_json(ctx, bytes(buf[start:end]), member), member)


def scan_hdf5(ctx: Context, buf: Any, start: int, end: int, *, member: str | None) -> str:
    """Check an HDF5 file: a Keras model config if there is one, and links or storage outside the file."""
    try:
        import h5py
    except ImportError:
        reason = "HDF5 file not inspected: h5py is not installed (pip install 'openckpt[scan]')"
        ctx.add("hdf5-unavailable", Severity.INFO, reason, member=member, inconclusive=True)
        return "hdf5"
    kind = "hdf5"
    try:
        with h5py.File(io.BytesIO(bytes(buf[start:end])), "r") as f:
            for attr in ("model_config", "training_config"):
                raw = f.attrs.get(attr)
                if raw is not None:
                    kind = "keras-h5"
                    data = raw if isinstance(raw, bytes) else str(raw).encode()
                    check_config(ctx, _load_json(ctx, data, member), member)
            _walk(ctx, f, member)
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        ctx.add("hdf5-invalid", Severity.INFO, f"unreadable HDF5 file: {e}", member=member, inconclusive=True)
    return kind


def _walk(ctx: Context, root: Any, member: str | None) -> None:
    import h5py

    groups, count = [root], 0
    while groups:
        group = groups.pop()
        for name in group:
            count += 1
            if count > ctx.limits.max_entries:
                raise ctx.limit(f"more than {ctx.limits.max_entries} HDF5 objects", member=member)
            link = group.get(name, getlink=True)
            path = f"{group.name.rstrip('/')}/{name}"
            if isinstance(link, h5py.ExternalLink):
                reason = f"external link {path} → {link.filename}:{link.path}"
                ctx.add("hdf5-external", Severity.SUSPICIOUS, reason, member=member)
                continue
            if isinstance(link, h5py.SoftLink):
                continue
            obj = group.get(name)
            if isinstance(obj, h5py.Group):
                groups.append(obj)
            elif isinstance(obj, h5py.Dataset):
                if obj.external:
                    ctx.add(
                        "hdf5-external",
                        Severity.SUSPICIOUS,
                        f"dataset {path} stores data in other files",
                        member=member,
                    )
                if obj.is_virtual:
                    ctx.add(
                        "hdf5-external", Severity.SUSPICIOUS, f"virtual dataset {path} maps other files", member=member
                    )
