"""Fine-tuning benchmark: LoRA against a full fine-tune of the same GPT-2-style model on CPU, with ``openckpt
finetune``'s own code path (tokenised data, ResumableLoader, CheckpointManager saves, held-out evaluation, output).

Each method runs in a process of its own and reports: trainable parameters, the median time per optimizer step,
the growth of the peak resident set over the run (VmHWM minus the resident set before the model is loaded), the
size of the output (PEFT adapter vs full ``model.safetensors``) and of one resumable training checkpoint; and,
beside them, what ``openckpt estimate`` predicted for that run. Ratios are LoRA / full.

    python bench/finetune.py [--hidden 256] [--layers 4] [--vocab 8192] [--steps 30] [--batch-size 8] [--seq-len 128]
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def build(root: Path, *, hidden: int, layers: int, vocab: int, seq_len: int, rows: int) -> tuple[Path, Path]:
    """A GPT-2-style model with a word-level tokenizer of ``vocab`` words, and ``rows`` lines of random text."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    torch.manual_seed(0)
    model_dir = root / "base"
    config = GPT2Config(vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=max(1, hidden // 64),
                        n_positions=max(seq_len, 128), bos_token_id=1, eos_token_id=1, pad_token_id=0)  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(model_dir)
    words = {f"w{i}": i for i in range(vocab)}
    words["[PAD]"], words["[EOS]"] = 0, 1
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token="[EOS]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", eos_token="[EOS]").save_pretrained(model_dir)
    (model_dir / "README.md").write_text("---\nlicense: apache-2.0\n---\n# bench base\n")
    rng = random.Random(0)
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps({"text": " ".join(f"w{rng.randrange(2, vocab)}" for _ in range(seq_len))})
                            + "\n" for _ in range(rows)))  # fmt: skip
    return model_dir, data


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One method's run (in a fresh process, so peaks do not mix)."""
    import peft  # noqa: F401 - imported before the baseline, as in a real run
    import torch
    import transformers

    from openckpt.finetune.estimate import estimate
    from openckpt.finetune.licensing import BaseModel
    from openckpt.finetune.run import FinetuneOptions, finetune
    from openckpt.finetune.train import StepInfo

    transformers.utils.logging.disable_progress_bar()
    warm = torch.nn.Linear(4, 4)
    warm(torch.randn(2, 4)).sum().backward()
    base, out, method = Path(spec["base"]), Path(spec["out"]), spec["method"]
    predicted = estimate(base, method=method, batch_size=spec["batch_size"], seq_len=spec["seq_len"],
                         task="causal-lm").total  # fmt: skip
    baseline = _status("VmRSS")
    stamps: list[float] = []

    def on_step(info: StepInfo) -> None:
        stamps.append(time.perf_counter())

    options = FinetuneOptions(task="causal-lm", method=method, epochs=1, batch_size=spec["batch_size"],
                              seq_len=spec["seq_len"], save_every=spec["save_every"], eval_fraction=0.05)  # fmt: skip
    started = time.perf_counter()
    result = finetune(BaseModel(base, "bench/base"), Path(spec["data"]), out, options, on_step=on_step)
    wall = time.perf_counter() - started
    steps = [b - a for a, b in itertools.pairwise(stamps)]
    weights = out / "model" / ("adapter_model.safetensors" if method == "lora" else "model.safetensors")
    latest = out / "checkpoints" / (out / "checkpoints" / "LATEST").read_text().strip()
    return {
        "method": method, "trainable": result.trainable_parameters, "parameters": result.total_parameters,
        "step_s": statistics.median(steps), "wall_s": wall, "peak_growth": _status("VmHWM") - baseline,
        "estimate": predicted, "output_bytes": weights.stat().st_size,
        "checkpoint_bytes": sum(p.stat().st_size for p in latest.iterdir() if p.is_file()), "steps": result.steps,
    }  # fmt: skip


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory(prefix="openckpt-bench-ft-") as tmp:
        root = Path(tmp)
        rows = int(args.steps * args.batch_size / 0.95) + 1
        base, data = build(root, hidden=args.hidden, layers=args.layers, vocab=args.vocab, seq_len=args.seq_len,
                           rows=rows)  # fmt: skip
        results = {}
        for method in ("full", "lora"):
            spec = {"base": str(base), "data": str(data), "out": str(root / method), "method": method,
                    "batch_size": args.batch_size, "seq_len": args.seq_len, "save_every": 10}  # fmt: skip
            done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                                  text=True, timeout=1800)  # fmt: skip
            if done.returncode != 0:
                raise SystemExit(f"{method} run failed:\n{done.stderr[-4000:]}")
            results[method] = json.loads(done.stdout.strip().splitlines()[-1])
    full, lora = results["full"], results["lora"]
    print(f"# openckpt finetune: LoRA vs full, GPT-2-style {full['parameters']:,} parameters "
          f"(hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}), batch {args.batch_size} x "
          f"{args.seq_len} tokens, {full['steps']} steps")  # fmt: skip
    machine = platform.processor() or platform.machine()
    print(f"# {machine}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    rows_out = [
        ("trainable parameters", lambda r: f"{r['trainable']:,}", "trainable"),
        ("time per step (median)", lambda r: f"{r['step_s'] * 1000:.1f} ms", "step_s"),
        ("peak memory growth", lambda r: _mib(r["peak_growth"]), "peak_growth"),
        ("estimate (openckpt estimate)", lambda r: _mib(r["estimate"]), "estimate"),
        ("output weights", lambda r: _mib(r["output_bytes"]), "output_bytes"),
        ("training checkpoint", lambda r: _mib(r["checkpoint_bytes"]), "checkpoint_bytes"),
    ]
    print(f"{'':32} {'full':>14} {'lora':>14} {'lora/full':>10}")
    for label, fmt, key in rows_out:
        print(f"{label:32} {fmt(full):>14} {fmt(lora):>14} {lora[key] / full[key]:>10.4f}")
    for r in (full, lora):
        print(f"# {r['method']}: estimate / measured peak = {r['estimate'] / r['peak_growth']:.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(worker(json.loads(sys.argv[2]))))
    else:
        main()
