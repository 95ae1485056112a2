"""``finetune``: one fine-tuning run from a local base model directory and a data file to a published-ready output.

Order: the license is checked first (a refused license stops before any data is read), then the data is read,
split and tokenised, the model loaded (LoRA-wrapped or not), trained under ``<out>/checkpoints`` (resuming what a
killed run left), evaluated on the held-out split, and written to ``<out>/model`` with its card and its recipe
(``openckpt-recipe.json``, with the installed packages in ``openckpt-packages.txt``): what ``openckpt reproduce``
re-runs.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from openckpt.finetune.card import CardFacts, render_card
from openckpt.finetune.data import encode, label_ids, read_data, split_rows
from openckpt.finetune.licensing import BaseModel, final_report, inherit, prefixed
from openckpt.finetune.lora import LoraOptions, wrap
from openckpt.finetune.model import TASKS, load_model
from openckpt.finetune.output import write_output
from openckpt.finetune.train import PRECISIONS, StepDigests, StepInfo, TrainSettings, evaluate, train
from openckpt.format.manifest import Recipe, RecipeData, read_manifest
from openckpt.governance.compat import Report

__all__ = [
    "DEFAULT_LR",
    "PACKAGES_FILE",
    "RECIPE_FILE",
    "FinetuneOptions",
    "FinetuneResult",
    "finetune",
    "options_from_config",
]

log = logging.getLogger("openckpt")
RECIPE_FILE = "openckpt-recipe.json"
PACKAGES_FILE = "openckpt-packages.txt"
DEFAULT_SEQ_LEN = 128
BATCH_SIZES = (8, 4, 2, 1)
"""The default batch size is the largest of these whose estimate fits in 90% of the device's free memory."""

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
    batch_size: int | None = None
    """None: the largest of :data:`BATCH_SIZES` the memory estimate says fits on the device."""
    seq_len: int | None = None
    """None: 128, or the model's maximum positions if fewer."""
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
    device: str = "auto"
    precision: str = "fp32"
    """fp32, or bf16/fp16 autocast (weights and optimizer stay fp32; fp16 uses a grad scaler)."""
    accumulate: int = 1
    """Micro-batches per optimizer step (gradient accumulation)."""
    gradient_checkpointing: bool = False


def options_from_config(config: Mapping[str, Any]) -> FinetuneOptions:
    """The options a recipe's ``config["finetune"]`` records (unknown keys from newer versions ignored)."""
    known = {f for f in FinetuneOptions.__dataclass_fields__}
    values = {k: v for k, v in config.items() if k in known}
    lora = dict(values.pop("lora", None) or {})
    if lora.get("targets") is not None:
        lora["targets"] = tuple(lora["targets"])
    return FinetuneOptions(**values, lora=LoraOptions(**lora))


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
    options: FinetuneOptions | None = None
    """The options as resolved (device, batch size and sequence length filled in)."""


def _check(options: FinetuneOptions) -> None:
    if options.task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}")
    if options.method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}")
    if options.merge and options.method != "lora":
        raise ValueError("--merge applies to LoRA only")
    if min(options.epochs, options.batch_size or 1, options.seq_len or 1, options.save_every, options.accumulate) < 1:
        raise ValueError("epochs, batch size, sequence length, accumulation and save interval must be >= 1")
    if options.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")


def _resolve(options: FinetuneOptions, base: BaseModel) -> FinetuneOptions:
    """Device, sequence length (within the model's positions) and a batch size that fits, filled in."""
    from openckpt.finetune.estimate import device_memory, estimate, max_positions, resolve_device
    from openckpt.finetune.model import read_config

    device = resolve_device(options.device)
    limit = max_positions(read_config(base.directory))
    seq_len = options.seq_len or min(DEFAULT_SEQ_LEN, limit or DEFAULT_SEQ_LEN)
    if limit is not None and seq_len > limit:
        raise ValueError(f"--seq-len {seq_len} exceeds the model's {limit} positions")
    batch_size = options.batch_size
    if batch_size is None:
        _where, free = device_memory(device)
        batch_size = BATCH_SIZES[-1]
        for size in BATCH_SIZES:
            need = estimate(
                base.directory,
                method=options.method,
                dtype="float32",
                batch_size=size,
                seq_len=seq_len,
                task=options.task,
                lora=options.lora,
            ).total
            if free is None or need <= 0.9 * free:
                batch_size = size
                break
    return replace(options, device=device, seq_len=seq_len, batch_size=batch_size)


def finetune(
    base: BaseModel,
    data_path: Path,
    out: Path,
    options: FinetuneOptions,
    *,
    on_step: Callable[[StepInfo], None] | None = None,
    stop_at: int | None = None,
    command: list[str] | None = None,
) -> FinetuneResult:
    """Fine-tune ``base`` on ``data_path`` into ``out``; run it again after a crash to resume exactly.

    ``stop_at`` trains only that many steps (checkpointed there), and writes no model. ``command`` is recorded in
    the recipe (default ``sys.argv``).
    """
    import torch
    import transformers

    _check(options)
    options = _resolve(options, base)
    assert options.seq_len is not None and options.batch_size is not None
    adapter = options.method == "lora" and not options.merge
    relation = "adapter" if adapter else "finetune"
    out = out.resolve()
    inherited = inherit(base, name=options.name or out.name, license=options.license, relation=relation)
    name = prefixed(options.name or out.name, inherited.naming_prefix)

    data = read_data(data_path, task=options.task, text_column=options.text_column, label_column=options.label_column)
    split = split_rows(data.rows, eval_fraction=options.eval_fraction, seed=options.seed)
    labels = label_ids(data.rows, options.label_column) if options.task == "text-classification" else None
    tokenizer: Any = transformers.AutoTokenizer.from_pretrained(base.directory)
    kw: dict[str, Any] = {
        "task": options.task,
        "seq_len": options.seq_len,
        "labels": labels,
        "text_column": options.text_column,
        "label_column": options.label_column,
    }
    train_data, eval_data = encode(split.train, tokenizer, **kw), encode(split.eval, tokenizer, **kw)

    torch.manual_seed(options.seed)
    model, config = load_model(base.directory, task=options.task, labels=labels)
    total_parameters = sum(p.numel() for p in model.parameters())
    if options.gradient_checkpointing:
        enable: Any = getattr(model, "gradient_checkpointing_enable", None)
        if enable is None:
            raise ValueError("this model does not support gradient checkpointing")
        enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if options.method == "lora":
        model = wrap(model, options.lora, task=options.task, model_type=str(config["model_type"]))
    model.to(options.device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lr = options.lr or DEFAULT_LR[options.method]
    settings = TrainSettings(
        epochs=options.epochs,
        lr=lr,
        batch_size=options.batch_size,
        seed=options.seed,
        save_every=options.save_every,
        precision=options.precision,
        accumulate=options.accumulate,
        gradient_checkpointing=options.gradient_checkpointing,
    )
    targets = list(options.lora.resolved_targets(str(config["model_type"]))) if options.method == "lora" else None
    run = {
        "base": base.id,
        "revision": base.revision,
        "data_sha256": data.sha256,
        "task": options.task,
        "method": options.method,
        "seq_len": options.seq_len,
        "eval_fraction": options.eval_fraction,
        "rank": options.lora.rank if targets else None,
        "alpha": options.lora.alpha if targets else None,
        "targets": targets,
        "labels": labels,
    }
    resumed: list[int] = []

    def step(info: StepInfo) -> None:
        resumed[:] = [info.resumed_from]
        if on_step is not None:
            on_step(info)

    digests = StepDigests()
    progress = train(
        model,
        train_data,
        out / CHECKPOINTS,
        settings=settings,
        run=run,
        device=options.device,
        full=options.method == "full",
        on_step=step,
        stop_at=stop_at,
        digests=digests,
    )
    if stop_at is not None:
        return FinetuneResult(
            out / CHECKPOINTS,
            [],
            name,
            relation,
            inherited.license,
            {},
            progress.step,
            resumed[0] if resumed else progress.step,
            trainable,
            total_parameters,
            Report("not checked", inherited.license, (), ()),
            inherited.warnings,
            options,
        )
    metrics = evaluate(
        model,
        eval_data,
        task=options.task,
        batch_size=options.batch_size,
        device=options.device,
        precision=options.precision,
    )
    model.to("cpu")

    hyper: dict[str, Any] = {
        "epochs": options.epochs,
        "learning rate": settings.lr,
        "batch size": options.batch_size,
        "sequence length": options.seq_len,
        "seed": options.seed,
    }
    if targets:
        hyper.update(
            {"LoRA rank": options.lora.rank, "LoRA alpha": options.lora.alpha, "LoRA targets": ", ".join(targets)}
        )
    recipe = _recipe(
        options,
        base=base,
        data_path=data_path,
        data_sha256=data.sha256,
        metrics=metrics,
        checkpoints=out / CHECKPOINTS,
        digests=digests,
        command=command,
    )
    recorded = json.loads(recipe[RECIPE_FILE])
    environment = (
        f"{options.device} ({', '.join(recorded['torch'].get('devices', []))}), {options.precision}, "
        f"torch {recorded['torch']['version']}, Python {recorded['python']}, packages sha256 "
        f"{recorded['packages_sha256'][:16]}…"
    )
    facts = CardFacts(
        name=name,
        base_model=base.id,
        base_revision=base.revision,
        relation=relation,
        method=options.method,
        task=options.task,
        license=inherited.license,
        dataset=data.name,
        dataset_sha256=data.sha256,
        train_rows=len(split.train),
        eval_rows=len(split.eval),
        metrics=metrics,
        hyperparameters=hyper,
        steps=progress.step,
        trainable_parameters=trainable,
        total_parameters=total_parameters,
        environment=environment,
    )
    reports: list[Report] = []

    def card(files: dict[str, bytes]) -> str:
        draft = render_card(facts, built_with=inherited.built_with)
        report = final_report({**files, "README.md": draft.encode()}, name=name, ancestors=inherited.ancestors)
        reports.append(report)
        return render_card(
            facts, built_with=inherited.built_with, obligations=report.obligations, notes=inherited.warnings
        )

    files = write_output(
        out / MODEL,
        model,
        tokenizer,
        base=base,
        weights="adapter" if adapter else "merged" if options.merge else "full",
        inherited=inherited,
        card=card,
        extra=recipe,
    )
    return FinetuneResult(
        out / MODEL,
        files,
        name,
        relation,
        inherited.license,
        metrics,
        progress.step,
        resumed[0] if resumed else progress.step,
        trainable,
        total_parameters,
        reports[-1],
        inherited.warnings,
        options,
    )


def _recipe(
    options: FinetuneOptions,
    *,
    base: BaseModel,
    data_path: Path,
    data_sha256: str,
    metrics: Mapping[str, float],
    checkpoints: Path,
    digests: StepDigests,
    command: list[str] | None,
) -> dict[str, bytes]:
    """``openckpt-recipe.json`` and ``openckpt-packages.txt`` of the output: how to run this fine-tune again."""
    import hashlib

    from openckpt.checkpoint.recipe import collect_recipe, packages_text

    packages = packages_text()
    last = sorted(checkpoints.glob("step-*"))
    loaded: Recipe | None = read_manifest(last[-1]).recipe if last else None
    data = [RecipeData(name=data_path.name, sha256=data_sha256)]
    data += [
        d.model_copy(update={"name": f"{data_path.name} (training order)"}) for d in (loaded.data if loaded else [])
    ]
    config = {
        "finetune": asdict(options),
        "base": base.id,
        "base_revision": base.revision,
        "base_path": None if base.revision else str(base.directory.resolve()),
        "data_file": str(data_path.resolve()),
        "data_sha256": data_sha256,
        "metrics": dict(metrics),
    }
    recipe = collect_recipe(
        config=config,
        seeds={"seed": options.seed},
        data=data,
        command=list(sys.argv) if command is None else command,
        entry="openckpt finetune",
        packages=(hashlib.sha256(packages).hexdigest(), PACKAGES_FILE),
    )
    recipe = recipe.model_copy(update={"checkpoints": digests.steps})
    text = json.dumps(recipe.model_dump(mode="json", exclude_none=True), indent=2, sort_keys=True) + "\n"
    return {RECIPE_FILE: text.encode(), PACKAGES_FILE: packages}
