"""``openckpt inspect PATH``: architecture, tensors, metadata and lineage of a checkpoint or model file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from openckpt.cli._output import guard, human_bytes, out, print_json

if TYPE_CHECKING:
    from openckpt.format.readers import TensorSource

__all__ = ["inspect_command", "summarize"]

_KINDS = {
    "openckpt": "openckpt checkpoint",
    "safetensors": "safetensors file",
    "huggingface": "Hugging Face model directory",
    "torch": "PyTorch file (read weights-only)",
    "npz": "numpy .npz archive",
    "diffusers": "diffusers pipeline directory",
    "trainer": "transformers Trainer checkpoint directory",
    "dcp": "torch.distributed.checkpoint directory",
    "sb3": "Stable-Baselines3 model zip",
    "pt2": "torch.export archive",
    "gguf": "GGUF file",
    "onnx": "ONNX model",
    "keras": "Keras model",
    "openvino": "OpenVINO IR",
    "pickle": "plain pickle (not loaded)",
}
_CONFIG_KEYS = (
    "architectures",
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
    "torch_dtype",
    "n_layer",
    "n_embd",
    "n_head",
    "n_positions",
)


def summarize(source: TensorSource) -> dict[str, Any]:
    """Everything ``inspect`` shows, as JSON-able data."""
    from openckpt.format.readers import architecture_of
    from openckpt.format.readers.checkpoint import CheckpointSource

    summary: dict[str, Any] = {"path": str(source.path), "kind": source.kind}
    tensors = list(source.tensors.values())
    manifest = source.manifest if isinstance(source, CheckpointSource) else None
    architecture = manifest.architecture if manifest is not None else None
    if architecture is None:
        model = [t for t in tensors if (manifest is None and source.is_weight(t.name)) or t.name.startswith("model/")]
        architecture = architecture_of(model, source.config)
    summary["architecture"] = architecture.model_dump(exclude_defaults=True)
    summary["tensors"] = [
        {"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "bytes": t.nbytes, "file": t.file} for t in tensors
    ]
    summary["total_bytes"] = sum(t.nbytes for t in tensors)
    summary["metadata"] = dict(source.metadata)
    if source.values:
        summary["values"] = source.values
    if source.notes:
        summary["notes"] = list(source.notes)
    if source.layout:
        summary["layout"] = source.layout
    if source.sections:
        summary["sections"] = {title: _jsonable(facts) for title, facts in source.sections.items()}
    if source.needs_code:
        summary["needs_code"] = {part: list(names) for part, names in source.needs_code.items()}
    summary["convertible"] = source.refusal is None
    if source.refusal:
        summary["refusal"] = source.refusal
    if manifest is not None:
        summary["metadata"].update(
            id=manifest.id, created_at=manifest.created_at, format_version=manifest.format_version
        )
        summary["software"] = manifest.software
        training = manifest.training.model_dump(exclude_defaults=True)
        for counter in ("samples_seen", "tokens_seen"):  # 0 after steps were taken: the loop never counted it
            if training.get(counter) == 0 and training.get("step"):
                del training[counter]
        summary["training"] = training
        summary["lineage"] = manifest.lineage.model_dump(exclude_defaults=True)
        summary["entries"] = {k: e.model_dump(exclude_defaults=True) for k, e in manifest.entries.items()}
        summary["files"] = {name: rec.size for name, rec in manifest.files.items()}
    recipe = _recipe(source.path, manifest.recipe if manifest is not None else None)
    if recipe:
        summary["recipe"] = recipe
    return summary


def _recipe(path: Path, recorded: Any) -> dict[str, Any]:
    """The recipe of a checkpoint's manifest, or of a fine-tune's ``openckpt-recipe.json`` (step digests left out)."""
    file = path / "openckpt-recipe.json"
    if recorded is None and file.is_file():
        data: dict[str, Any] = json.loads(file.read_text("utf-8"))
    else:
        data = recorded.model_dump(exclude_defaults=True) if recorded is not None else {}
    data.pop("checkpoints", None)
    return data


_LONGEST = 300
"""Values longer than this are cut in tables (never in ``--json``)."""


def _jsonable(value: Any) -> Any:
    """``value`` as JSON data: tensors become ``tensor[shape]``, anything else unknown its ``str``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        return f"tensor{list(shape)}"
    return str(value)


def _pairs(title: str, data: dict[str, Any]) -> Table | None:
    if not data:
        return None
    table = Table(
        title=title, title_justify="left", show_header=False, box=None, padding=(0, 2, 0, 0), min_width=len(title)
    )
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in data.items():
        text = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)
        if len(text) > _LONGEST:
            text = f"{text[:_LONGEST]}… ({len(text):,} characters; --json shows all)"
        table.add_row(escape(str(key)), escape(text))
    return table


def _shown(key: str, value: Any, sections: dict[str, Any]) -> bool:
    """Whether a section already shows ``key`` with ``value`` (or is that value, as ``Dims`` is ``dims``)."""
    return any(
        facts == value or (isinstance(facts, dict) and key in facts and facts[key] == value)
        for facts in sections.values()
    )


def _console() -> Console:
    """stdout; when it is not a terminal (piped), wide enough that no line is wrapped."""
    console = out()
    if not console.is_terminal:
        console = Console(highlight=False, width=1_000_000)
    return console


def _render(summary: dict[str, Any]) -> None:
    console = _console()
    kind = _KINDS.get(summary["kind"], summary["kind"])
    layout = f": {escape(summary['layout'])}" if summary.get("layout") not in (None, kind) else ""
    console.print(f"[bold]{escape(summary['path'])}[/]  {kind}{layout}")
    arch = summary["architecture"]
    overview: dict[str, Any] = {}
    if "class_path" in arch:
        overview["class"] = arch["class_path"]
    overview["parameters"] = f"{arch.get('parameters', 0):,}"
    if "class_path" in arch:
        overview["trainable"] = f"{arch.get('trainable_parameters', 0):,}"
    for dtype, n in arch.get("parameters_by_dtype", {}).items():
        overview[f"  {dtype}"] = f"{n:,}"
    config = arch.get("config") or {}
    overview.update({k: config[k] for k in _CONFIG_KEYS if k in config})
    tables = [_pairs("Architecture", overview)]

    tensors = Table(title=f"Tensors ({len(summary['tensors'])})", title_justify="left", box=None)
    tensors.add_column("name", overflow="fold")
    tensors.add_column("dtype")
    tensors.add_column("shape")
    tensors.add_column("bytes", justify="right")
    for t in summary["tensors"]:
        tensors.add_row(escape(t["name"]), t["dtype"], str(t["shape"]), human_bytes(t["bytes"]))
    tensors.add_row("[bold]total[/]", "", "", f"[bold]{human_bytes(summary['total_bytes'])}[/]")
    tables.append(tensors)

    tables.append(_pairs("Metadata", {**summary["metadata"], **summary.get("software", {})}))
    entries = {k: f"{e.get('kind')}: {', '.join(e.get('files', []))}" for k, e in summary.get("entries", {}).items()}
    tables.append(_pairs("Entries", entries))
    tables.append(_pairs("Training", summary.get("training", {})))
    sections = summary.get("sections", {})
    values = {k: v for k, v in summary.get("values", {}).items() if not _shown(k, v, sections)}
    tables.append(_pairs("Values", values))
    tables.append(_pairs("Lineage", summary.get("lineage", {})))
    tables.append(_pairs("Recipe", summary.get("recipe", {})))
    for title, facts in summary.get("sections", {}).items():
        tables.append(_pairs(title, facts if isinstance(facts, dict) else {"value": facts}))
    needs = {part: ", ".join(names) for part, names in summary.get("needs_code", {}).items()}
    tables.append(_pairs("Needs code (read without running it)", needs))
    for table in tables:
        if table is not None:
            console.print()
            console.print(table)
    for note in summary.get("notes", []):
        console.print(f"[yellow]note:[/] {escape(note)}")
    if summary.get("refusal"):
        console.print(f"[yellow]convert:[/] refuses: {escape(summary['refusal'])}")


@guard
def inspect_command(
    path: Annotated[Path, typer.Argument(help="Checkpoint, model file or directory (see openckpt convert --help)")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show architecture, tensors (name, dtype, shape, bytes), metadata, lineage and the layout's own facts.

    Reads every layout openckpt knows without running code from it: safetensors, HF directories (.bin too),
    diffusers pipelines, Trainer checkpoint-N/, Lightning/timm/whisper/ultralytics torch files, TorchScript (its
    data only), .pt2, DCP directories, SB3 zips, GGUF, ONNX, Keras, OpenVINO IR, .npz and tar/zip/7z archives of
    these; plain pickles (joblib) are listed, never loaded.
    """
    from openckpt.format.readers import open_source

    with open_source(path, opaque_ok=True) as source:
        summary = summarize(source)
    if as_json:
        print_json(summary)
    else:
        _render(summary)
