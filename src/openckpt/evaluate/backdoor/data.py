"""Inputs of a backdoor scan: the clean set a user gives (images, texts, prompts), or a synthetic one.

Images come as a folder of image files, an ``.npz`` file or a ``.pt`` tensor file, and are returned as floats in
[0, 1], shaped (N, C, H, W) at the model's input size. Texts come as a ``.txt`` file (one per line), a ``.csv`` (its
``text`` column, else its first) or a ``.jsonl``/``.json`` file. Without a clean set, images are synthesised by model
inversion (smooth noise pushed toward each class in turn) and texts are random vocabulary words: a weaker footing,
which the report says.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.errors import FormatError

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["DEFAULT_PROMPTS", "load_images", "load_texts", "synthetic_images", "synthetic_texts"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
_ARRAY_KEYS = ("x", "images", "pixel_values", "inputs", "data")

DEFAULT_PROMPTS = [
    "The weather today is",
    "Here is a short summary of the meeting:",
    "Write a function that adds two numbers.",
    "My favourite book is",
    "The capital of France is",
    "Please translate the following sentence:",
    "Once upon a time",
    "The best way to learn a language is",
]
"""Neutral prompts for the causal-LM probe when none are given."""


def _to_tensor(array: np.ndarray[Any, Any], channels: int, size: tuple[int, int], path: Path) -> torch.Tensor:
    """An image array (N,H,W), (N,H,W,C) or (N,C,H,W) as floats in [0, 1], shaped (N, channels, *size)."""
    import numpy as np
    import torch

    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or array.shape[0] == 0:
        raise FormatError(f"expected a batch of images (N,H,W[,C]) or (N,C,H,W), got shape {array.shape}", path=path)
    if array.shape[-1] in (1, 3, 4) and array.shape[1] not in (1, 3, 4):
        array = array.transpose(0, 3, 1, 2)
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if array.dtype == np.uint8 or float(x.max()) > 1.5:
        x = x / 255.0
    if x.shape[1] == 4:
        x = x[:, :3]
    if x.shape[1] != channels:
        x = x.mean(dim=1, keepdim=True) if channels == 1 else x[:, :1].repeat(1, channels, 1, 1)
    if tuple(x.shape[2:]) != size:
        x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x.clamp(0.0, 1.0)


def _read_array(path: Path) -> np.ndarray[Any, Any]:
    import numpy as np

    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                key = next((k for k in _ARRAY_KEYS if k in archive.files), archive.files[0] if archive.files else None)
                if key is None:
                    raise FormatError("the .npz file holds no array", path=path)
                return np.asarray(archive[key])
        except (OSError, ValueError) as e:
            raise FormatError(f"not a readable .npz file: {e}", path=path) from e
    import torch

    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise FormatError(f"not a readable tensor file: {e}", path=path) from e
    if isinstance(value, dict):
        value = next((value[k] for k in _ARRAY_KEYS if k in value), None)
    if not isinstance(value, torch.Tensor):
        raise FormatError(f"expected a tensor or a dict with one of the keys {', '.join(_ARRAY_KEYS)}", path=path)
    return value.detach().float().numpy() if value.dtype != torch.uint8 else value.numpy()


def load_images(path: Path, *, channels: int, size: tuple[int, int], limit: int | None = None) -> torch.Tensor:
    """The clean images at ``path`` (a folder of images, ``.npz`` or ``.pt``): (N, channels, H, W) in [0, 1]."""
    import numpy as np

    if path.is_dir():
        from PIL import Image

        files = [p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise FormatError("no image files in this folder", path=path)
        mode = "L" if channels == 1 else "RGB"
        arrays = []
        for file in files[:limit]:
            try:
                with Image.open(file) as image:
                    resized = image.convert(mode).resize((size[1], size[0]), Image.Resampling.BILINEAR)
                    arrays.append(np.asarray(resized, dtype=np.uint8))
            except OSError as e:
                raise FormatError(f"not a readable image: {e}", path=file) from e
        return _to_tensor(np.stack(arrays), channels, size, path)
    if path.suffix not in (".npz", ".pt", ".pth"):
        raise FormatError("clean images must be a folder of images, an .npz or a .pt file", path=path)
    return _to_tensor(_read_array(path)[:limit], channels, size, path)


def synthetic_images(
    logits: Callable[[torch.Tensor], torch.Tensor],
    classes: int,
    *,
    channels: int,
    size: tuple[int, int],
    per_class: int = 8,
    steps: int = 40,
    seed: int = 0,
    device: str = "cpu",
) -> torch.Tensor:
    """``per_class`` images per class by model inversion: smooth noise optimised toward that class, in [0, 1]."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    n = classes * per_class
    low = (max(2, size[0] // 4), max(2, size[1] // 4))
    noise = torch.rand(n, channels, *low, generator=generator) * 2 - 1
    start = torch.nn.functional.interpolate(noise, size=size, mode="bilinear", align_corners=False)
    start = start + 0.2 * torch.randn(n, channels, *size, generator=generator)
    raw = start.to(device).requires_grad_(True)
    targets = torch.arange(classes, device=device).repeat_interleave(per_class)
    optimiser = torch.optim.Adam([raw], lr=0.1)
    for _ in range(steps):
        x = torch.sigmoid(raw)
        tv = (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
        loss = torch.nn.functional.cross_entropy(logits(x), targets) + 0.1 * tv
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
    return torch.sigmoid(raw).detach()


def load_texts(path: Path, *, limit: int | None = None) -> list[str]:
    """The texts at ``path``: ``.txt`` lines, a ``.csv``'s column ``text`` (else its first), ``.jsonl``/``.json``."""
    try:
        raw = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"not a readable UTF-8 text file: {e}", path=path) from e
    texts: list[str]
    try:
        if path.suffix == ".csv":
            rows = list(csv.DictReader(raw.splitlines()))
            column = "text" if rows and "text" in rows[0] else next(iter(rows[0]), None) if rows else None
            texts = [str(row[column]) for row in rows] if column is not None else []
        elif path.suffix == ".jsonl":
            items = [json.loads(line) for line in raw.splitlines() if line.strip()]
            texts = [str(i["text"]) if isinstance(i, dict) else str(i) for i in items]
        elif path.suffix == ".json":
            items = json.loads(raw)
            if not isinstance(items, list):
                raise FormatError("a .json file of texts must hold a list", path=path)
            texts = [str(i["text"]) if isinstance(i, dict) else str(i) for i in items]
        else:
            texts = raw.splitlines()
    except (json.JSONDecodeError, KeyError, csv.Error) as e:
        raise FormatError(f"cannot read texts: {e}", path=path) from e
    texts = [t.strip() for t in texts if t.strip()][:limit]
    if not texts:
        raise FormatError("no texts", path=path)
    return texts


def synthetic_texts(vocabulary: list[str], *, count: int = 64, length: int = 12, seed: int = 0) -> list[str]:
    """``count`` texts of ``length`` words drawn at random from ``vocabulary`` (seeded)."""
    import random

    if not vocabulary:
        raise FormatError("the tokenizer has no plain words to build synthetic texts from")
    rng = random.Random(seed)
    return [" ".join(rng.choices(vocabulary, k=length)) for _ in range(count)]
