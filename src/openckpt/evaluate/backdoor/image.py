"""Neural-Cleanse trigger reverse engineering for image classifiers (Wang et al., IEEE S&P 2019).

For each class t, a mask m (HxW, in [0, 1]) and a pattern p (CxHxW, in [0, 1]) are optimised with Adam so that
``(1 - m) * x + m * p`` is classified as t for clean images x of other classes, with an L1 penalty on m whose weight
adapts as in the paper (raised while the attack succeeds, lowered while it does not). A backdoor target needs a far
smaller mask than any other class: the anomaly index of class t is ``(median - |m_t|) / (1.4826 * MAD)`` over the L1
norms of all classes, and a class whose index exceeds 2 is flagged, as the paper does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.errors import FormatError

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "ANOMALY_THRESHOLD",
    "ClassTrigger",
    "ImageClassifier",
    "Schedule",
    "anomaly_indices",
    "load_image_classifier",
    "reverse_engineer",
    "scan_classes",
]

ANOMALY_THRESHOLD = 2.0
"""A class whose anomaly index exceeds this is flagged (the paper's threshold: 95% confidence under normality)."""
MAD_CONSISTENCY = 1.4826
SUCCESS = 0.99
"""The attack success a mask must reach on its batch to count as a trigger."""

Progress = Callable[[str, int, int], None]


@dataclass
class ImageClassifier:
    """A transformers image classifier and how its pixels are fed: ``logits(x)`` takes (N, C, H, W) in [0, 1]."""

    model: Any
    channels: int
    size: tuple[int, int]
    mean: list[float]
    std: list[float]
    labels: list[str]
    device: str

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        out: torch.Tensor = self.model(pixel_values=(x - mean) / std).logits
        return out

    def predict(self, x: torch.Tensor, *, batch: int = 256) -> torch.Tensor:
        import torch

        with torch.no_grad():
            return torch.cat([self.logits(x[i : i + batch]).argmax(-1) for i in range(0, len(x), batch)])


def _input_size(directory: Path, config: Any) -> tuple[tuple[int, int], list[float], list[float]]:
    """(H, W), mean, std from preprocessor_config.json, else the model config (224, no normalisation)."""
    pre: dict[str, Any] = {}
    path = directory / "preprocessor_config.json"
    if path.is_file():
        try:
            pre = json.loads(path.read_bytes())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FormatError(f"not valid JSON: {e}", path=path) from e
    size: Any = pre.get("crop_size") if pre.get("do_center_crop") else None
    size = size or pre.get("size") or getattr(config, "image_size", None) or 224
    if isinstance(size, dict):
        side: Any = size.get("shortest_edge") or 224
        hw = (int(size.get("height", side)), int(size.get("width", side)))
    elif isinstance(size, list | tuple):
        hw = (int(size[0]), int(size[-1]))
    else:
        hw = (int(size), int(size))
    channels = int(getattr(config, "num_channels", 3))
    mean, std = [0.0] * channels, [1.0] * channels
    if pre.get("do_normalize", True) and pre.get("image_mean") and pre.get("image_std"):
        mean = [float(v) for v in pre["image_mean"]][:channels]
        std = [float(v) for v in pre["image_std"]][:channels]
    return hw, mean, std


def load_image_classifier(directory: Path, *, device: str = "cpu") -> ImageClassifier:
    """The image classifier in ``directory`` (transformers, local files only), in eval mode on ``device``."""
    import transformers

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    model = transformers.AutoModelForImageClassification.from_pretrained(directory, local_files_only=True)
    model.eval().to(device)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    config = model.config
    size, mean, std = _input_size(directory, config)
    labels = [str(config.id2label.get(i, i)) for i in range(config.num_labels)]
    return ImageClassifier(model, int(getattr(config, "num_channels", 3)), size, mean, std, labels, device)


@dataclass(frozen=True)
class ClassTrigger:
    """The smallest trigger found for one target class."""

    label: int
    l1: float
    """L1 norm of the mask, in pixels."""
    success: float
    """Attack success of this mask and pattern on the clean images of other classes."""
    reached: bool
    """Whether any mask reached the success rate SUCCESS (else ``l1`` is that of the last mask)."""
    steps: int
    mask: np.ndarray[Any, Any]
    pattern: np.ndarray[Any, Any]


@dataclass(frozen=True)
class Schedule:
    """How a trigger is optimised (Neural Cleanse's schedule): ``steps`` Adam steps at ``lr``, each on ``batch``
    images. The mask's L1 cost is 0 until two windows of ``patience`` steps succeed, then ``init_cost``, then
    raised (or lowered) by 1.5x after two windows in a row that succeed (or fail)."""

    steps: int = 300
    batch: int = 64
    lr: float = 0.1
    init_cost: float = 1e-3
    patience: int = 5


def reverse_engineer(
    classifier: ImageClassifier,
    images: torch.Tensor,
    target: int,
    *,
    schedule: Schedule | None = None,
    seed: int = 0,
    deadline: float | None = None,
    tick: Callable[[], None] | None = None,
) -> ClassTrigger:
    """Optimise a mask and pattern that send ``images`` to class ``target``; the smallest successful mask."""
    import torch

    schedule = schedule or Schedule()

    generator = torch.Generator().manual_seed(seed * 1009 + target)
    h, w = classifier.size
    device = classifier.device
    mask_raw = (torch.randn(1, 1, h, w, generator=generator) * 0.1).to(device).requires_grad_(True)
    pattern_raw = (torch.randn(1, classifier.channels, h, w, generator=generator) * 0.1).to(device)
    pattern_raw.requires_grad_(True)
    optimiser = torch.optim.Adam([mask_raw, pattern_raw], lr=schedule.lr, betas=(0.5, 0.9))
    images = images.to(device)
    cost, up, down, rounds = 0.0, 0, 0, 0
    best: tuple[float, float, Any, Any] | None = None
    last: tuple[float, float, Any, Any] = (float("inf"), 0.0, None, None)
    done = 0
    window: list[float] = []
    for step in range(schedule.steps):
        if deadline is not None and time.monotonic() > deadline and step > 0:
            break
        order = torch.randperm(len(images), generator=generator)[: schedule.batch].to(device)
        x = images[order]
        mask = torch.tanh(mask_raw) / 2 + 0.5
        pattern = torch.tanh(pattern_raw) / 2 + 0.5
        logits = classifier.logits((1 - mask) * x + mask * pattern)
        wanted = torch.full((len(x),), target, device=device)
        l1 = mask.sum()
        loss = torch.nn.functional.cross_entropy(logits, wanted) + cost * l1
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        done = step + 1
        success = float((logits.argmax(-1) == target).float().mean())
        window.append(success)
        last = (float(l1.detach()), success, mask.detach(), pattern.detach())
        if tick is not None:
            tick()
        if len(window) < schedule.patience:
            continue
        rate, window = sum(window) / len(window), []
        if rate >= SUCCESS and (best is None or last[0] < best[0]):
            best = last
        if cost == 0.0:
            rounds = rounds + 1 if rate >= SUCCESS else 0
            if rounds >= 2:
                cost = schedule.init_cost
            continue
        up, down = (up + 1, 0) if rate >= SUCCESS else (0, down + 1)
        if up >= 2:
            cost, up = cost * 1.5, 0
        elif down >= 2:
            cost, down = cost / 1.5**1.5, 0
    chosen = best or last
    if chosen[2] is None:
        raise FormatError("no optimisation step fit in the budget")
    mask_t, pattern_t = chosen[2], chosen[3]
    with torch.no_grad():
        rate = float((classifier.predict((1 - mask_t) * images + mask_t * pattern_t) == target).float().mean())
    return ClassTrigger(
        target, chosen[0], rate, best is not None, done, mask_t[0, 0].cpu().numpy(), pattern_t[0].cpu().numpy()
    )


def anomaly_indices(norms: list[float]) -> list[float]:
    """Each norm's anomaly index: how far below the median, in units of 1.4826 x MAD (negative: above it)."""
    import statistics

    median = statistics.median(norms)
    mad = MAD_CONSISTENCY * statistics.median(abs(n - median) for n in norms)
    if mad == 0.0:
        return [0.0 if n == median else float("inf") if n < median else float("-inf") for n in norms]
    return [(median - n) / mad for n in norms]


def scan_classes(
    classifier: ImageClassifier,
    images: torch.Tensor,
    *,
    steps: int = 300,
    seed: int = 0,
    budget: float | None = None,
    progress: Progress | None = None,
) -> list[ClassTrigger]:
    """A trigger per class, each optimised on the clean images the model puts in other classes."""
    import torch

    torch.manual_seed(seed)
    classes = len(classifier.labels)
    predicted = classifier.predict(images.to(classifier.device)).cpu()
    start = time.monotonic()
    found: list[ClassTrigger] = []
    for target in range(classes):
        others = images[predicted != target]
        pool = others if len(others) >= 8 else images
        counter = [0]

        def tick(target: int = target, counter: list[int] = counter) -> None:
            counter[0] += 1
            if progress is not None:
                progress(f"class {classifier.labels[target]}", counter[0], steps)

        deadline = None if budget is None else start + budget * (target + 1) / classes
        found.append(
            reverse_engineer(
                classifier, pool, target, schedule=Schedule(steps=steps), seed=seed, deadline=deadline, tick=tick
            )
        )
    return found
