"""Readers on files the field's own libraries write (tests/scan/realfiles.py): each tensor equals what the library
itself loads, each layout's facts are found, and what needs code is named, never run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from openckpt.errors import UnsafeFileError
from openckpt.format.readers import TensorSource, open_source, sniff
from tests.scan.realfiles import RealFile, build_corpus

BENIGN = [
    "transformers-safetensors",
    "transformers-bin",
    "transformers-trainer-checkpoint",
    "diffusers-unet-safetensors",
    "diffusers-vae-bin",
    "diffusers-pipeline-safetensors",
    "diffusers-pipeline-bin",
    "timm-state-dict",
    "timm-checkpoint-saver",
    "ultralytics-yolo",
    "lightning-trainer-ckpt",
    "stable-diffusion-1x-ckpt",
    "whisper-checkpoint",
    "torchscript-module",
    "sb3-ppo",
    "sb3-dqn",
    "policy-state-dict",
    "torch-export-pt2",
    "dcp-directory",
    "onnx-model",
    "gguf-model",
    "keras-v3",
    "keras-h5",
    "sklearn-joblib",
    "sklearn-joblib-compressed",
    "numpy-npz",
    "openvino-ir",
    "word2vec-binary",
    "fasttext-binary",
    "random-bytes",
    "tar-container",
    "zip-container",
    "7z-container",
]
PICKLE_TWINS = [
    "transformers-bin-malicious",
    "transformers-training-args-malicious",
    "ultralytics-yolo-malicious",
    "lightning-trainer-ckpt-malicious",
    "stable-diffusion-1x-ckpt-malicious",
    "sb3-serialized-malicious",
    "sb3-policy-pth-malicious",
    "dcp-metadata-malicious",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RealFile]:
    files = build_corpus(tmp_path_factory.mktemp("corpus"), only=set(BENIGN + PICKLE_TWINS))
    return {f.name: f for f in files}


@pytest.fixture
def opened(corpus: dict[str, RealFile], request: pytest.FixtureRequest) -> Iterator[TensorSource]:
    with open_source(corpus[request.param].path, opaque_ok=True) as source:
        yield source


def _all(source: TensorSource, prefix: str = "") -> dict[str, torch.Tensor]:
    return {n.removeprefix(prefix): source.read(n) for n in source.tensors if n.startswith(prefix)}


def _same(got: dict[str, torch.Tensor], want: dict[str, Any]) -> None:
    assert set(got) == set(want)
    for name, tensor in want.items():
        expected = torch.as_tensor(np.asarray(tensor)) if not isinstance(tensor, torch.Tensor) else tensor
        assert got[name].dtype == expected.dtype and torch.equal(got[name], expected.contiguous()), name


def test_every_benign_file_opens(corpus: dict[str, RealFile]) -> None:
    for name in BENIGN:
        with open_source(corpus[name].path, opaque_ok=True) as source:
            assert source.kind, name


def test_hf_bin_directory(corpus: dict[str, RealFile]) -> None:
    path = corpus["transformers-bin"].path
    assert sniff(path) == "huggingface-bin"
    with open_source(path) as source:
        assert source.layout == "Hugging Face model (.bin weights)" and source.config is not None
        assert source.config["model_type"] == "bert" and source.refusal is None
        _same(_all(source), torch.load(path / "pytorch_model.bin", weights_only=True))


def test_trainer_checkpoint(corpus: dict[str, RealFile]) -> None:
    path = corpus["transformers-trainer-checkpoint"].path
    with open_source(path) as source:
        assert source.kind == "trainer" and source.refusal is None
        model = {n: source.read(n) for n in source.tensors if "/" not in n}
        _same(model, load_file(path / "model.safetensors"))
        optimizer = torch.load(path / "optimizer.pt", weights_only=True)
        for index, state in optimizer["state"].items():
            for key, value in state.items():
                assert torch.equal(source.read(f"optimizer/state.{index}.{key}"), value)
        assert all(not source.is_weight(n) for n in source.tensors if n.startswith(("optimizer/", "rng/")))
        assert source.entry_of("optimizer/state.0.exp_avg") == ("optimizer", "state.0.exp_avg")
        assert "rng/cpu" in source.tensors
        assert source.sections["Trainer state"]["global_step"] == 2
        assert "transformers.training_args.TrainingArguments" in source.needs_code["training_args.bin"]
        assert source.sections["Training arguments"]["learning_rate"] > 0


@pytest.mark.parametrize("name", ["diffusers-pipeline-safetensors", "diffusers-pipeline-bin"])
def test_diffusers_pipeline(corpus: dict[str, RealFile], name: str) -> None:
    from diffusers import UNet2DModel

    path = corpus[name].path
    assert sniff(path) == "diffusers"
    with open_source(path) as source:
        assert source.layout is not None and "DDPMPipeline" in source.layout
        assert source.sections["Components"]["unet"].startswith("UNet2DModel (diffusers)")
        assert "DDPMScheduler" in source.sections["Components"]["scheduler"]
        assert source.entry_of("unet/conv_in.weight") == ("unet", "conv_in.weight")
        assert source.entry_configs["unet"]["_class_name"] == "UNet2DModel"
        _same(_all(source, "unet/"), UNet2DModel.from_pretrained(path / "unet").state_dict())


def test_diffusers_model_bin(corpus: dict[str, RealFile]) -> None:
    path = corpus["diffusers-vae-bin"].path
    with open_source(path) as source:
        _same(_all(source), torch.load(path / "diffusion_pytorch_model.bin", weights_only=True))


def test_lightning_ckpt(corpus: dict[str, RealFile]) -> None:
    path = corpus["lightning-trainer-ckpt"].path
    raw = torch.load(path, weights_only=True)
    with open_source(path) as source:
        assert source.layout == "Lightning checkpoint" and source.refusal is None
        _same(_all(source), raw["state_dict"])
        assert source.sections["Training"]["global_step"] == raw["global_step"]
        assert source.sections["Hyperparameters"] == dict(raw["hyper_parameters"])


def test_sd1_ckpt_reads_without_lightning_running(corpus: dict[str, RealFile]) -> None:
    from pytorch_lightning.callbacks import ModelCheckpoint

    path = corpus["stable-diffusion-1x-ckpt"].path
    allowed = [ModelCheckpoint, np._core.multiarray.scalar, np.dtype, np.dtypes.Float64DType]
    with torch.serialization.safe_globals(allowed):
        raw = torch.load(path, weights_only=True)
    with open_source(path) as source:
        assert source.layout == "Stable Diffusion (Lightning) checkpoint" and source.refusal is None
        _same(_all(source), raw["state_dict"])
        callbacks = source.sections["Callbacks"]
        assert callbacks["pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"]["best_model_score"] == 0.12
        assert source.needs_code == {path.name: ["pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"]}


def test_timm_checkpoint_saver(corpus: dict[str, RealFile]) -> None:
    import argparse

    path = corpus["timm-checkpoint-saver"].path
    with torch.serialization.safe_globals([argparse.Namespace]):
        raw = torch.load(path, weights_only=True)
    with open_source(path) as source:
        assert source.layout == "timm CheckpointSaver checkpoint" and source.refusal is None
        _same({n: source.read(n) for n in source.tensors if source.is_weight(n)}, raw["state_dict"])
        for index, state in raw["optimizer"]["state"].items():
            assert torch.equal(source.read(f"optimizer/state.{index}.momentum_buffer"), state["momentum_buffer"])
        assert source.entry_of("optimizer/state.0.momentum_buffer") == ("optimizer", "state.0.momentum_buffer")
        assert source.sections["Args"] == vars(raw["args"])
        assert source.sections["Training"]["arch"] == raw["arch"] and source.sections["Training"]["epoch"] == 1


def test_whisper(corpus: dict[str, RealFile]) -> None:
    path = corpus["whisper-checkpoint"].path
    raw = torch.load(path, weights_only=True)
    with open_source(path) as source:
        assert source.layout == "openai-whisper checkpoint" and source.sections["Dims"] == raw["dims"]
        _same(_all(source), raw["model_state_dict"])


def test_ultralytics_lists_weights_and_names_the_classes(corpus: dict[str, RealFile]) -> None:
    with open_source(corpus["ultralytics-yolo"].path) as source:
        assert source.layout == "ultralytics checkpoint"
        assert source.refusal is not None and "ultralytics.nn.tasks.DetectionModel" in source.refusal
        assert "model.0.conv.weight" in source.tensors and source.sections["Args"]
        assert "ultralytics.nn.modules.head.Detect" in source.needs_code["yolov8n.pt"]


def test_torchscript_data_without_its_program(corpus: dict[str, RealFile]) -> None:
    path = corpus["torchscript-module"].path
    assert sniff(path) == "torchscript"
    with open_source(path) as source:
        assert source.refusal is not None and "TorchScript" in source.refusal
        _same(_all(source), torch.jit.load(str(path)).state_dict())  # the test runs it; openckpt never does
        assert source.values.get("threshold") == 0.5


@pytest.mark.parametrize("name", ["sb3-ppo", "sb3-dqn"])
def test_sb3(corpus: dict[str, RealFile], name: str) -> None:
    import stable_baselines3

    path = corpus[name].path
    algo = getattr(stable_baselines3, name.removeprefix("sb3-").upper())
    with open_source(path) as source:
        assert source.layout is not None and source.layout.startswith("Stable-Baselines3 model")
        assert source.refusal is None
        _same({n: source.read(n) for n in source.tensors if source.is_weight(n)}, algo.load(path).policy.state_dict())
        assert source.sections["Policy"]["class"].startswith("stable_baselines3.")
        assert source.sections["Policy"]["observation_space"]["type"] == "gymnasium.spaces.box.Box"
        assert source.sections["Hyperparameters"]["gamma"] == 0.99
        assert any(n.startswith("optimizer/") for n in source.tensors)
        assert "data:policy_class" in source.needs_code


def test_torch_export(corpus: dict[str, RealFile]) -> None:
    path = corpus["torch-export-pt2"].path
    with open_source(path) as source:
        assert source.kind == "pt2"
        _same(_all(source), dict(torch.export.load(path).state_dict))


def test_dcp(corpus: dict[str, RealFile]) -> None:
    import torch.distributed.checkpoint as dcp

    path = corpus["dcp-directory"].path
    with open_source(path) as source:
        assert source.kind == "dcp" and source.values["step"] == 3
        assert source.values["extra.lr"] == 0.1 and source.values["extra.names"] == ["a", "b"]  # DCP flattens
        target = {"model": {n.removeprefix("model."): torch.zeros(e.shape) for n, e in source.tensors.items()}}
        dcp.load(target, checkpoint_id=str(path), no_dist=True)
        _same({f"model.{k}": v for k, v in target["model"].items()}, _all(source))


def test_onnx(corpus: dict[str, RealFile]) -> None:
    import onnx

    path = corpus["onnx-model"].path
    with open_source(path) as source:
        model = onnx.load(str(next(path.glob("*.onnx")) if path.is_dir() else path))
        want = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
        _same(_all(source), want)
        assert set(source.sections["Inputs"]) == {i.name for i in model.graph.input}


def test_gguf(corpus: dict[str, RealFile], tmp_path: Path) -> None:
    import gguf

    path = corpus["gguf-model"].path
    with open_source(path) as source:
        reader = gguf.GGUFReader(str(path))
        _same(_all(source), {t.name: np.array(t.data) for t in reader.tensors})
        assert source.sections["GGUF metadata"]["general.architecture"] == "llama" and source.refusal is None
    writer = gguf.GGUFWriter(str(tmp_path / "q.gguf"), "llama")
    block = np.zeros((34,), dtype=np.uint8)  # one Q8_0 block: fp16 scale + 32 int8
    writer.add_tensor("q.weight", block, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file(), writer.write_kv_data_to_file(), writer.write_tensors_to_file(), writer.close()
    bf16 = torch.randn(3, 4).to(torch.bfloat16)
    writer = gguf.GGUFWriter(str(tmp_path / "bf16.gguf"), "llama")
    writer.add_tensor("b.weight", bf16.view(torch.uint16).numpy(), raw_dtype=gguf.GGMLQuantizationType.BF16)
    writer.write_header_to_file(), writer.write_kv_data_to_file(), writer.write_tensors_to_file(), writer.close()
    with open_source(tmp_path / "bf16.gguf") as source:
        assert source.refusal is None and torch.equal(source.read("b.weight"), bf16)
    with open_source(tmp_path / "q.gguf") as quantized:
        assert quantized.refusal is not None and "Q8_0" in quantized.refusal and "q.weight" in quantized.refusal


@pytest.mark.parametrize("name", ["keras-v3", "keras-h5"])
def test_keras(corpus: dict[str, RealFile], name: str) -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    path = corpus[name].path
    with open_source(path) as source:
        assert source.kind == "keras" and source.sections["Model"]["layers"]
        got = sorted((tuple(t.shape), t.sum().item()) for t in _all(source).values())
        want = sorted((tuple(w.shape), float(np.asarray(w).sum())) for w in keras.saving.load_model(path).get_weights())
        assert [s for s, _ in got] == [s for s, _ in want]
        assert all(g == pytest.approx(w) for (_, g), (_, w) in zip(got, want, strict=True))


def test_openvino(corpus: dict[str, RealFile]) -> None:
    import openvino

    path = corpus["openvino-ir"].path
    xml = next(path.glob("*.xml")) if path.is_dir() else path
    with open_source(path) as source:
        model = openvino.Core().read_model(str(xml))
        consts = {op.get_friendly_name(): op.get_data() for op in model.get_ops() if op.get_type_name() == "Constant"}
        _same(_all(source), consts)


@pytest.mark.parametrize("name", ["sklearn-joblib", "sklearn-joblib-compressed"])
def test_joblib_is_listed_never_loaded(corpus: dict[str, RealFile], name: str) -> None:
    with open_source(corpus[name].path) as source:
        assert source.kind == "pickle" and not source.tensors
        assert source.refusal is not None and "sklearn.linear_model._logistic.LogisticRegression" in source.refusal


def test_containers(corpus: dict[str, RealFile]) -> None:
    with open_source(corpus["tar-container"].path) as tar:
        _same(_all(tar), torch.load(corpus["transformers-bin"].path / "pytorch_model.bin", weights_only=True))
    with open_source(corpus["7z-container"].path) as seven:
        _same(_all(seven), torch.load(corpus["whisper-checkpoint"].path, weights_only=True)["model_state_dict"])
    with open_source(corpus["zip-container"].path) as z:
        assert z.refusal is not None and "LogisticRegression" in z.refusal


@pytest.mark.parametrize("name", ["random-bytes", "word2vec-binary", "fasttext-binary"])
def test_opaque_data(corpus: dict[str, RealFile], name: str) -> None:
    with open_source(corpus[name].path, opaque_ok=True) as source:
        assert source.kind == "opaque" and not source.tensors and source.refusal is not None


def test_rng_state_alone(corpus: dict[str, RealFile]) -> None:
    path = corpus["transformers-trainer-checkpoint"].path / "rng_state.pth"
    with open_source(path) as source:
        assert source.layout == "RNG state (transformers Trainer)" and source.refusal is None
        assert source.tensors["numpy.1"].dtype == "U32" and source.tensors["cpu"].dtype == "U8"
        assert source.values["numpy.0"] == "MT19937"


@pytest.mark.parametrize("name", PICKLE_TWINS)
def test_pickle_twins_are_refused(corpus: dict[str, RealFile], name: str, capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UnsafeFileError, match=r"os\.system"):
        open_source(corpus[name].path)
    assert "pwned" not in capfd.readouterr().out


def test_sharded_bin_directory(tmp_path: Path) -> None:
    import json

    torch.manual_seed(0)
    state = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2)).state_dict()
    shards = {
        "pytorch_model-00001-of-00002.bin": ["0.weight", "0.bias"],
        "pytorch_model-00002-of-00002.bin": ["1.weight", "1.bias"],
    }
    for file, names in shards.items():
        torch.save({n: state[n] for n in names}, tmp_path / file)
    weight_map = {n: file for file, names in shards.items() for n in names}
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with open_source(tmp_path) as source:
        _same(_all(source), dict(state))
        assert {n: e.file for n, e in source.tensors.items()} == weight_map


def test_plain_weights_win_over_variants(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, tmp_path / "diffusion_pytorch_model.safetensors")
    save_file({"w": torch.ones(2, dtype=torch.float16)}, tmp_path / "diffusion_pytorch_model.fp16.safetensors")
    with open_source(tmp_path) as source:
        assert source.tensors["w"].dtype == "F32"


class _Typed(torch.nn.Module):
    """A scripted module with typed list attributes (TorchScript pickles them through torch.jit._pickle)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)
        self.sizes: list[int] = [1, 2, 3]
        self.scales: list[float] = [0.5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * self.scales[0]


def test_torchscript_typed_lists_are_plain_values(tmp_path: Path) -> None:
    torch.jit.save(torch.jit.script(_Typed()), str(tmp_path / "typed.pt"))
    with open_source(tmp_path / "typed.pt") as source:
        assert source.values == {"sizes": [1, 2, 3], "scales": [0.5]}
        assert set(source.tensors) == {"lin.weight", "lin.bias"}
        assert not any(c.startswith("torch.jit") for c in source.needs_code["typed.pt"])
