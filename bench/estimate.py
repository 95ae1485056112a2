"""``openckpt estimate`` against measured peak memory, on configurations its coefficients were not fitted on.

The coefficients (``src/openckpt/finetune/estimate.py``) were fitted on BERT- and GPT-2-style models of hidden size
256, 4 layers, vocabulary 8192, batch 8 x 128 tokens. Each held-out configuration here differs in model size, method,
batch and sequence length. Each runs in a process of its own: torch, transformers and peft imported and autograd run
once, then the resident set (``VmRSS``) is read as the baseline, as when the coefficients were fitted; the model is
loaded (LoRA-wrapped or not) and three real steps run (forward, backward, AdamW; forward only for inference); the
measured figure is the peak resident set, ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, minus that baseline
(tracemalloc does not see torch's allocations). The estimate's error is
``estimate / measured - 1``; the stated tolerance is :data:`openckpt.finetune.estimate.TOLERANCE`.

    python bench/estimate.py [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

HELD_OUT: list[dict[str, Any]] = [
    {"arch": "gpt2", "hidden": 384, "layers": 6, "vocab": 8192, "method": "full", "batch_size": 4, "seq_len": 256},
    {"arch": "gpt2", "hidden": 128, "layers": 2, "vocab": 16384, "method": "lora", "batch_size": 16, "seq_len": 64},
    {"arch": "bert", "hidden": 512, "layers": 4, "vocab": 8192, "method": "full", "batch_size": 4, "seq_len": 128},
    {"arch": "bert", "hidden": 192, "layers": 6, "vocab": 4096, "method": "lora", "batch_size": 16, "seq_len": 96},
    {"arch": "gpt2", "hidden": 256, "layers": 8, "vocab": 8192, "method": "inference", "batch_size": 8,
     "seq_len": 384},
    {"arch": "gpt2", "hidden": 512, "layers": 4, "vocab": 8192, "method": "lora", "batch_size": 2, "seq_len": 512},
]  # fmt: skip


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def build(root: Path, spec: dict[str, Any]) -> Path:
    """The model of ``spec`` saved under ``root`` (heads: hidden // 64, at least 2)."""
    sys.path.insert(0, str(ROOT))
    from tests.finetune.tiny import build_bert, build_gpt2

    shape = {"hidden": spec["hidden"], "layers": spec["layers"], "heads": max(2, spec["hidden"] // 64),
             "vocab": spec["vocab"], "positions": max(512, spec["seq_len"]), "tokenizer": False}  # fmt: skip
    directory = root / "-".join(str(spec[k]) for k in ("arch", "hidden", "layers", "vocab"))
    if not directory.exists():
        if spec["arch"] == "gpt2":
            build_gpt2(directory, **shape)
        else:
            build_bert(directory, intermediate=4 * spec["hidden"], **shape)
    return directory


def measure(spec: dict[str, Any]) -> int:
    """(In the child process) the growth of the peak resident set over three steps of ``spec``."""
    import peft  # noqa: F401 - imported before the baseline, as a real run has it
    import torch
    import transformers

    from openckpt.finetune.lora import LoraOptions, wrap
    from openckpt.finetune.model import load_model

    transformers.utils.logging.disable_progress_bar()
    warm = torch.nn.Linear(4, 4)
    warm(torch.randn(2, 4)).sum().backward()
    del warm
    baseline = _rss()
    task = "causal-lm" if spec["arch"] == "gpt2" else "text-classification"
    model, config = load_model(Path(spec["model"]), task=task)
    if spec["method"] == "lora":
        model = wrap(model, LoraOptions(), task=task, model_type=str(config["model_type"]))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, int(config["vocab_size"]), (spec["batch_size"], spec["seq_len"]), generator=g)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    inputs["labels"] = ids if task == "causal-lm" else torch.randint(0, 2, (spec["batch_size"],), generator=g)
    if spec["method"] == "inference":
        model.eval()
        with torch.no_grad():
            for _ in range(2):
                model(**{k: v for k, v in inputs.items() if k != "labels"})
    else:
        model.train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        for _ in range(3):
            loss = model(**inputs).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            del loss
    return _maxrss() - baseline


def run(root: Path) -> list[dict[str, Any]]:
    from openckpt.finetune.estimate import TOLERANCE, estimate

    rows = []
    for spec in HELD_OUT:
        model = build(root, spec)
        task = "causal-lm" if spec["arch"] == "gpt2" else "text-classification"
        predicted = estimate(model, method=spec["method"], batch_size=spec["batch_size"], seq_len=spec["seq_len"],
                             task=task).total  # fmt: skip
        done = subprocess.run([sys.executable, __file__, "--child", json.dumps({**spec, "model": str(model)})],
                              capture_output=True, text=True, timeout=900, cwd=ROOT, check=True)  # fmt: skip
        measured = int(done.stdout.strip().splitlines()[-1])
        error = predicted / measured - 1
        rows.append({**spec, "estimate": predicted, "measured": measured, "error": error,
                     "within": abs(error) <= TOLERANCE})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        print(measure(json.loads(args.child)))
        return
    from openckpt.finetune.estimate import TOLERANCE

    with tempfile.TemporaryDirectory() as tmp:
        rows = run(Path(tmp))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    mib = 1 << 20
    print("| model | method | batch x seq | estimate | measured | error |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        model = f"{r['arch']} h{r['hidden']} L{r['layers']} V{r['vocab']}"
        print(f"| {model} | {r['method']} | {r['batch_size']} x {r['seq_len']} | {r['estimate'] / mib:.1f} MiB | "
              f"{r['measured'] / mib:.1f} MiB | {r['error']:+.1%} |")  # fmt: skip
    worst = max(abs(r["error"]) for r in rows)
    print(f"\nworst |error| {worst:.1%}; tolerance {TOLERANCE:.0%}: {'within' if worst <= TOLERANCE else 'EXCEEDED'}")


if __name__ == "__main__":
    main()
