"""``finetune``: one fine-tuning run from a local base model directory and a data file to a published-ready output.

Order: the license is checked first (a refused license stops before any data is read), then the data is read,
split and tokenised, the model loaded (LoRA-wrapped or not), trained under ``<out>/checkpoints`` (resuming what a
killed run left), evaluated on the held-out split, and written to ``<out>/model`` with its card.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openckpt.finetune.card import CardFacts, render_card
from openckpt.finetune.data import encode, label_ids, read_data, split_rows
from openckpt.finetune.licensing import BaseModel, final_report, inherit, prefixed
from openckpt.finetune.lora import LoraOptions, wrap
from openckpt.finetune.model import TASKS, load_model
from openckpt.finetune.output import write_output
from openckpt.finetune.train import StepInfo, TrainSettings, evaluate, train
from openckpt.governance.compat import Report

__all__ = ["DEFAULT_LR", "FinetuneOptions", "FinetuneResult", "finetune"]

METHODS = ("lora", "full")
DEFAULT_LR = {"lora": 2e-4, "full": 5e-5}
CHECKPOINTS = "checkpoints"
MODEL = "model"


@dataclass(frozen=True)
class FinetuneOptions:
    task: str
    method: str = "lora"
    epochs: int = 3
    lr: float | None = None
    """None: :data:`DEFAULT_LR` of the method."""
    batch_size: int = 8
    seq_len: int = 128
    seed: int = 0
    save_every: int = 50
    eval_fraction: float = 0.1
    lora: LoraOptions = field(default_factory=LoraOptions)
    merge: bool = False
    license: str | None = None
    name: str | None = None
    """The model's name in its card (default: the output directory's name)."""
    text_column: str = "text"
    label_column: str = "label"


@dataclass(frozen=True)
class FinetuneResult:
    directory: Path
    """Where the adapter or model was written (``<out>/model``)."""
    files: list[str]
    name: str
    relation: str
    license: str | None
    metrics: dict[str, float]
    steps: int
    resumed_from: int
    trainable_parameters: int
    total_parameters: int
    report: Report
    """The governance engine's verdict on the output (obligations met, pending, or for a person to see to)."""
    warnings: tuple[str, ...]


def _check(options: FinetuneOptions) -> None:
    if options.task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}")
    if options.method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}")
    if options.merge and options.method != "lora":
        raise ValueError("--merge applies to LoRA only")
    if min(options.epochs, options.batch_size, options.seq_len, options.save_every) < 1:
        raise ValueError("epochs, batch size, sequence length and save interval must be >= 1")


def finetune(
    base: BaseModel,
    data_path: Path,
    out: Path,
    options: FinetuneOptions,
    *,
    on_step: Callable[[StepInfo], None] | None = None,
) -> FinetuneResult:
    """Fine-tune ``base`` on ``data_path`` into ``out``; run it again after a crash to resume exactly."""
    import torch
    import transformers

    _check(options)
    adapter = options.method == "lora" and not options.merge
    relation = "adapter" if adapter else "finetune"
    out = out.resolve()
    inherited = inherit(base, name=options.name or out.name, license=options.license, relation=relation)
    name = prefixed(options.name or out.name, inherited.naming_prefix)

    data = read_data(data_path, task=options.task, text_column=options.text_column, label_column=options.label_column)
    split = split_rows(data.rows, eval_fraction=options.eval_fraction, seed=options.seed)
    labels = label_ids(data.rows, options.label_column) if options.task == "text-classification" else None
    tokenizer: Any = transformers.AutoTokenizer.from_pretrained(base.directory)
    kw: dict[str, Any] = {"task": options.task, "seq_len": options.seq_len, "labels": labels,
                          "text_column": options.text_column, "label_column": options.label_column}  # fmt: skip
    train_data, eval_data = encode(split.train, tokenizer, **kw), encode(split.eval, tokenizer, **kw)

    torch.manual_seed(options.seed)
    model, config = load_model(base.directory, task=options.task, labels=labels)
    total_parameters = sum(p.numel() for p in model.parameters())
    if options.method == "lora":
        model = wrap(model, options.lora, task=options.task, model_type=str(config["model_type"]))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lr = options.lr or DEFAULT_LR[options.method]
    settings = TrainSettings(epochs=options.epochs, lr=lr, batch_size=options.batch_size, seed=options.seed,
                             save_every=options.save_every)  # fmt: skip
    targets = list(options.lora.resolved_targets(str(config["model_type"]))) if options.method == "lora" else None
    run = {"base": base.id, "revision": base.revision, "data_sha256": data.sha256, "task": options.task,
           "method": options.method, "seq_len": options.seq_len, "eval_fraction": options.eval_fraction,
           "rank": options.lora.rank if targets else None, "alpha": options.lora.alpha if targets else None,
           "targets": targets, "labels": labels}  # fmt: skip
    resumed: list[int] = []

    def step(info: StepInfo) -> None:
        resumed[:] = [info.resumed_from]
        if on_step is not None:
            on_step(info)

    progress = train(model, train_data, out / CHECKPOINTS, settings=settings, run=run,
                     full=options.method == "full", on_step=step)  # fmt: skip
    metrics = evaluate(model, eval_data, task=options.task, batch_size=options.batch_size)

    hyper: dict[str, Any] = {"epochs": options.epochs, "learning rate": settings.lr, "batch size": options.batch_size,
                             "sequence length": options.seq_len, "seed": options.seed}  # fmt: skip
    if targets:
        hyper.update({"LoRA rank": options.lora.rank, "LoRA alpha": options.lora.alpha,
                      "LoRA targets": ", ".join(targets)})  # fmt: skip
    facts = CardFacts(name=name, base_model=base.id, base_revision=base.revision, relation=relation,
                      method=options.method, task=options.task, license=inherited.license, dataset=data.name,
                      dataset_sha256=data.sha256, train_rows=len(split.train), eval_rows=len(split.eval),
                      metrics=metrics, hyperparameters=hyper, steps=progress.step, trainable_parameters=trainable,
                      total_parameters=total_parameters)  # fmt: skip
    reports: list[Report] = []

    def card(files: dict[str, bytes]) -> str:
        draft = render_card(facts, built_with=inherited.built_with)
        report = final_report({**files, "README.md": draft.encode()}, name=name, ancestors=inherited.ancestors)
        reports.append(report)
        return render_card(facts, built_with=inherited.built_with, obligations=report.obligations,
                           notes=inherited.warnings)  # fmt: skip

    files = write_output(out / MODEL, model, tokenizer, base=base, adapter=adapter, merge=options.merge,
                         license_files=inherited.license_files, notices=inherited.notices, card=card)  # fmt: skip
    return FinetuneResult(out / MODEL, files, name, relation, inherited.license, metrics, progress.step,
                          resumed[0] if resumed else progress.step, trainable, total_parameters, reports[-1],
                          inherited.warnings)  # fmt: skip
