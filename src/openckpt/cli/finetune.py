"""``openckpt finetune REPO[@REV]|DIR --data FILE --task … --method lora|full --out DIR [--push REPO]``."""

from __future__ import annotations

import warnings
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from openckpt.cli._gate import refuse_unclean
from openckpt.cli._output import err, guard, out, print_json
from openckpt.cli._remote import Endpoint, Token, remote
from openckpt.cli.estimate import Task

if TYPE_CHECKING:
    from openckpt.finetune.licensing import BaseModel
    from openckpt.finetune.run import FinetuneResult
    from openckpt.finetune.train import StepInfo

__all__ = ["Device", "FinetuneMethod", "Precision", "finetune_command"]


class FinetuneMethod(StrEnum):
    lora = "lora"
    full = "full"


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Precision(StrEnum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


def _base(source: str, endpoint: str | None, token: str | None) -> BaseModel:
    """The base model as a local directory that passed the trust gate: pulled and verified, or given."""
    from openckpt.finetune.licensing import BaseModel

    if Path(source).is_dir():
        directory = Path(source)
        files = {p.relative_to(directory).as_posix(): p for p in sorted(directory.rglob("*")) if p.is_file()}
        refuse_unclean(files, what=f"fine-tune {source}")
        return BaseModel(directory, directory.resolve().name)
    from openckpt.client.api import split_revision
    from openckpt.client.pull import pull

    try:
        repo_id, revision = split_revision(source)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="REPO[@REV]|DIR") from None
    result = pull(repo_id, revision=revision, endpoint=endpoint, token=token)  # verified against the hub's tree
    refuse_unclean({f.path: result.directory / f.path for f in result.files}, what=f"fine-tune {source}")
    err().print(f"pulled {escape(repo_id)}@{escape(result.revision)} (commit {result.commit[:12]})")
    return BaseModel(result.directory, result.repo_id, result.commit)


def _progress() -> Progress:
    console = err()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[speed]} samples/s"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def _summary(result: FinetuneResult) -> dict[str, Any]:
    return {
        "output": str(result.directory),
        "files": result.files,
        "name": result.name,
        "relation": result.relation,
        "license": result.license,
        "metrics": result.metrics,
        "steps": result.steps,
        "resumed_from": result.resumed_from,
        "trainable_parameters": result.trainable_parameters,
        "parameters": result.total_parameters,
        "license_check": result.report.to_dict(),
        "warnings": list(result.warnings),
    }


def _print(result: FinetuneResult) -> None:
    console = out()
    if result.resumed_from:
        console.print(f"resumed from step {result.resumed_from}")
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(result.metrics.items()))
    console.print(
        f"[green]trained[/] {result.steps} steps, {result.trainable_parameters:,} of "
        f"{result.total_parameters:,} parameters; held-out {metrics}"
    )
    kind = "adapter" if result.relation == "adapter" else "model"
    console.print(
        f"wrote {kind} {escape(result.name)} to {escape(str(result.directory))}: {', '.join(result.files)}",
        soft_wrap=True,
    )
    report = result.report
    console.print(f"license {escape(str(result.license))}: {report.verdict}")
    for o in report.obligations:
        if o.status != "met":
            console.print(f"  [yellow]{o.status}[/] {escape(o.text)} [dim]({escape(o.clause)})[/]", soft_wrap=True)
    for w in result.warnings:
        err().print(f"[yellow]warning:[/] {escape(w)}", soft_wrap=True)


@guard
@remote
def finetune_command(
    source: Annotated[str, typer.Argument(metavar="REPO[@REV]|DIR", help="The base: owner/name on a hub, or a dir.")],
    data: Annotated[Path, typer.Option(help="Training data: .csv or .jsonl.", exists=True, dir_okay=False)],
    task: Annotated[Task, typer.Option(help="What to train the model for.")],
    out_dir: Annotated[Path, typer.Option("--output", "--out", help="Output: checkpoints/ (resumable) and model/.")],
    method: Annotated[FinetuneMethod, typer.Option(help="LoRA adapter, or every weight.")] = FinetuneMethod.lora,
    push: Annotated[str | None, typer.Option(help="Publish the output to this hub repo (owner/name).")] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 3,
    lr: Annotated[float | None, typer.Option(help="Default: 2e-4 for LoRA, 5e-5 for full.", show_default=False)] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Default: the largest of 8/4/2/1 that fits the device's free memory.")
    ] = None,
    seq_len: Annotated[
        int | None, typer.Option(min=1, help="Tokens per example (padded, truncated). Default: 128 or the model's max.")
    ] = None,
    device: Annotated[Device, typer.Option(help="auto: cuda, else mps, else cpu.")] = Device.auto,
    precision: Annotated[Precision, typer.Option(help="bf16/fp16: autocast (fp16 with a grad scaler).")] = (
        Precision.fp32
    ),
    accumulate: Annotated[int, typer.Option(min=1, help="Micro-batches per optimizer step (accumulation).")] = 1,
    gradient_checkpointing: Annotated[
        bool, typer.Option("--gradient-checkpointing", help="Recompute activations in backward: less memory.")
    ] = False,
    rank: Annotated[int, typer.Option(min=1, help="LoRA rank.")] = 8,
    alpha: Annotated[int, typer.Option(min=1, help="LoRA alpha (scaling is alpha / rank).")] = 16,
    target_modules: Annotated[
        str | None, typer.Option(help="LoRA target modules, comma-separated. Default: per architecture.")
    ] = None,
    merge: Annotated[bool, typer.Option("--merge", help="Merge LoRA into the weights: a full model.")] = False,
    license: Annotated[
        str | None, typer.Option(help="The fine-tune's license id. Default: the base's.", show_default=False)
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Model name in the card. Default: the --push repo's or --out's name.")
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
    save_every: Annotated[int, typer.Option(min=1, help="Checkpoint every N steps.")] = 50,
    text_column: Annotated[str, typer.Option()] = "text",
    label_column: Annotated[str, typer.Option()] = "label",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Fine-tune a transformers model (LoRA or full) on a local dataset; run again after a crash to resume exactly.

    A hub base is pulled, verified and scanned first (files that are not clean are refused). The license is checked
    before training: the base's is inherited, a --license its terms forbid is refused. Writes a PEFT adapter (or a
    full model) with a README.md card: base model and revision, dataset file and sha256, held-out metrics, license
    and the obligations inherited from the base.
    """
    from openckpt.finetune.lora import LoraOptions
    from openckpt.finetune.run import FinetuneOptions, finetune

    targets = tuple(t.strip() for t in target_modules.split(",") if t.strip()) if target_modules else None
    options = FinetuneOptions(
        task=task.value,
        method=method.value,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seq_len=seq_len,
        seed=seed,
        save_every=save_every,
        lora=LoraOptions(rank=rank, alpha=alpha, targets=targets),
        merge=merge,
        license=license,
        name=name or (push.rsplit("/", 1)[-1] if push else None),
        text_column=text_column,
        label_column=label_column,
        device=device.value,
        precision=precision.value,
        accumulate=accumulate,
        gradient_checkpointing=gradient_checkpointing,
    )
    base = _base(source, endpoint, token)
    with _progress() as bar, warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"(peft|transformers)\b")
        task_id = bar.add_task("training", total=None, loss="-", speed="-")

        def on_step(info: StepInfo) -> None:
            bar.update(
                task_id,
                total=info.total,
                completed=info.step,
                loss=f"{info.loss:.4f}",
                speed=f"{info.samples_per_second:.1f}",
            )

        try:
            result = finetune(base, data, out_dir, options, on_step=on_step)
        except ValueError as e:
            from openckpt.errors import OpenckptError

            if isinstance(e, OpenckptError):
                raise
            raise typer.BadParameter(str(e)) from None
    summary = _summary(result)
    if push is not None:
        from openckpt.client.push import push as push_folder

        pushed = push_folder(
            result.directory, push, message=f"Fine-tune of {base.id} with openckpt", endpoint=endpoint, token=token
        )
        summary["pushed"] = {"repo": pushed.repo_id, "commit": pushed.commit, "url": pushed.commit_url}
        if base.revision is not None:  # a hub base: where the hub's model tree lists the fine-tune
            from openckpt.client.licenses import lineage

            tree = lineage(base.id, endpoint=endpoint, token=token)
            summary["model_tree"] = [d for d in tree.get("descendants", []) if d.get("id") == pushed.repo_id]
    if as_json:
        print_json(summary)
        return
    _print(result)
    if push is not None:
        out().print(
            f"[green]pushed[/] to {escape(summary['pushed']['repo'])}: commit {summary['pushed']['commit'][:12]}"
        )
        for child in summary.get("model_tree", []):
            out().print(f"model tree: {escape(base.id)} → {escape(child['id'])} ({child['relation']})")
