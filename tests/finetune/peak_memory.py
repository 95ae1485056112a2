"""Measure the peak memory of a few real training (or inference) steps, in a process of its own.

``python -m tests.finetune.peak_memory '{"model": DIR, "method": "full", "task": "causal-lm", ...}'`` prints one
JSON line: ``growth`` is the peak resident set (VmHWM) minus the resident set just before the model was loaded,
after torch, transformers and peft were imported and autograd had run once. What it counts is what the estimate
counts: weights, gradients, optimizer moments and activations, plus whatever the allocator keeps around.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(spec: dict[str, object]) -> dict[str, object]:
    import peft  # noqa: F401 - imported before the baseline, as a real run has it
    import torch
    import transformers

    from openckpt.finetune.lora import LoraOptions, wrap
    from openckpt.finetune.model import load_model

    transformers.utils.logging.disable_progress_bar()
    warm = torch.nn.Linear(4, 4)
    warm(torch.randn(2, 4)).sum().backward()
    del warm
    baseline = _status("VmRSS")
    method, task = str(spec["method"]), str(spec["task"])
    batch, seq = int(spec["batch_size"]), int(spec["seq_len"])  # type: ignore[call-overload]
    model, config = load_model(Path(str(spec["model"])), task=task, dtype=str(spec.get("dtype", "float32")))
    if method == "lora":
        model = wrap(model, LoraOptions(), task=task, model_type=str(config["model_type"]))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(4, int(config["vocab_size"]), (batch, seq), generator=generator)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    inputs["labels"] = ids if task == "causal-lm" else torch.randint(0, 2, (batch,), generator=generator)
    if method == "inference":
        model.eval()
        with torch.no_grad():
            for _ in range(2):
                model(**{k: v for k, v in inputs.items() if k != "labels"})
    else:
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-4)
        for _ in range(int(spec.get("steps", 3))):  # type: ignore[call-overload]
            loss = model(**inputs).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            del loss
    return {"growth": _status("VmHWM") - baseline, "baseline": baseline}


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))
