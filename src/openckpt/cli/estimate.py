"""``openckpt estimate REPO[@REV]|DIR``: memory for inference, LoRA and a full fine-tune, before downloading weights."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from openckpt.cli._output import guard, human_bytes, out, print_json
from openckpt.cli._remote import Endpoint, Token, remote

if TYPE_CHECKING:
    from openckpt.finetune.estimate import MemoryEstimate
    from openckpt.finetune.facts import ModelFacts

__all__ = ["Method", "Task", "estimate_command"]


class Method(StrEnum):
    inference = "inference"
    lora = "lora"
    full = "full"


class Task(StrEnum):
    text_classification = "text-classification"
    causal_lm = "causal-lm"


def _facts(source: str, endpoint: str | None, token: str | None) -> ModelFacts:
    from openckpt.finetune.facts import hub_facts, read_facts

    if Path(source).is_dir():
        return read_facts(Path(source))
    from openckpt.client.api import hf_api, split_revision

    try:
        repo_id, revision = split_revision(source)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="REPO[@REV]|DIR") from None
    return hub_facts(hf_api(endpoint, token), repo_id, revision=revision)


def _verdict(fits: bool | None) -> str:
    return "[dim]?[/]" if fits is None else "[green]fits[/]" if fits else "[red]does not fit[/]"


def _print(estimates: list[MemoryEstimate]) -> None:
    first = estimates[0]
    console = out()
    console.print(
        f"[bold]{escape(first.source)}[/]: {first.parameters:,} parameters, {first.task}, {first.dtype}, "
        f"batch {first.batch_size} x {first.seq_len} tokens",
        soft_wrap=True,
    )
    table = Table(box=None, pad_edge=False)
    table.add_column("")
    for e in estimates:
        table.add_column(e.method, justify="right", no_wrap=True)
    table.add_row("trainable parameters", *(f"{e.trainable_parameters:,}" for e in estimates))
    for term in ("weights", "gradients", "optimizer", "activations", "overhead"):
        table.add_row(term, *(human_bytes(getattr(e, term)) for e in estimates))
    table.add_row("[bold]total[/]", *(f"[bold]{human_bytes(e.total)}[/]" for e in estimates))
    here = "unknown" if first.available is None else human_bytes(first.available)
    table.add_row(f"this machine, {escape(first.device)} ({here} free)", *(_verdict(e.fits_here) for e in estimates))
    if first.gpu is not None and first.gpu_memory is not None:
        table.add_row(
            f"GPU {escape(first.gpu)} ({human_bytes(first.gpu_memory)})", *(_verdict(e.fits_gpu) for e in estimates)
        )
    console.print(table)


@guard
@remote
def estimate_command(
    source: Annotated[str, typer.Argument(metavar="REPO[@REV]|DIR", help="A model directory, or owner/name on a hub.")],
    method: Annotated[
        list[Method] | None, typer.Option("--method", help="inference, lora or full (repeatable). Default: all three.")
    ] = None,
    dtype: Annotated[
        str | None, typer.Option(help="float32, bfloat16 or float16. Default: the config's.", show_default=False)
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Sequences per step.")] = 1,
    seq_len: Annotated[
        int | None, typer.Option(min=1, help="Tokens per sequence. Default: the context length.", show_default=False)
    ] = None,
    gpu: Annotated[
        str | None, typer.Option(help="A GPU to compare with: a size (24GB) or a name (A100-80GB, H100, T4...).")
    ] = None,
    task: Annotated[
        Task | None, typer.Option(help="Default: a classifier if the config says so, else a causal LM.")
    ] = None,
    rank: Annotated[int, typer.Option(min=1, help="LoRA rank.")] = 8,
    device: Annotated[
        str, typer.Option(help="Compare with the free memory of: auto (the GPU if any, else RAM), cpu, cuda, mps.")
    ] = "auto",
    target_modules: Annotated[
        str | None, typer.Option(help="LoRA target modules, comma-separated. Default: per architecture.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the estimates as JSON.")] = False,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Estimate memory (weights, gradients, AdamW state, activations) from config.json and safetensors headers.

    Nothing but config.json and each safetensors header is read (from a hub, with Range requests). Compared with
    the memory available here and, with --gpu, on that GPU. CPU-measured activations: on a GPU an upper bound.
    """
    from openckpt.finetune.estimate import estimate, gpu_memory
    from openckpt.finetune.lora import LoraOptions

    if gpu is not None:
        try:
            gpu_memory(gpu)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--gpu") from None
    targets = tuple(t.strip() for t in target_modules.split(",") if t.strip()) if target_modules else None
    facts = _facts(source, endpoint, token)
    methods = [m.value for m in method] if method else [m.value for m in Method]
    try:
        estimates = [
            estimate(
                facts,
                method=m,
                dtype=dtype,
                batch_size=batch_size,
                seq_len=seq_len,
                gpu=gpu,
                task=task.value if task else None,
                lora=LoraOptions(rank=rank, targets=targets),
                device=device,
            )
            for m in methods
        ]
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    if as_json:
        print_json([e.to_dict() for e in estimates])
    else:
        _print(estimates)
