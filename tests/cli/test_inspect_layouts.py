"""``openckpt inspect`` and ``convert`` on the real-library corpus (tests/scan/realfiles.py): every benign file
inspects with its layout's facts; every layout whose weights read without code converts to an openckpt checkpoint
with the same tensors; the rest are refused naming the class that would run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from openckpt.format.readers import open_source
from tests import zygote
from tests.scan.realfiles import RealFile, build_corpus

from .helpers import Invoke

FACTS = {
    "transformers-safetensors": ["Hugging Face model directory", "model_type", "bert", "embeddings.word_embeddings"],
    "transformers-bin": ["Hugging Face model (.bin weights)", "bert", "embeddings.word_embeddings"],
    "transformers-trainer-checkpoint": [
        "transformers Trainer checkpoint",
        "Trainer state",
        "global_step",
        "optimizer/state.0.exp_avg",
        "rng/cpu",
        "Training arguments",
        "learning_rate",
        "transformers.training_args.TrainingArguments",
    ],
    "diffusers-unet-safetensors": ["Hugging Face model directory", "conv_in.weight", "F32"],
    "diffusers-vae-bin": ["Hugging Face model (.bin weights)", "encoder.conv_in.weight"],
    "diffusers-pipeline-safetensors": ["DDPMPipeline", "Components", "UNet2DModel (diffusers)", "unet/conv_in.weight"],
    "diffusers-pipeline-bin": [
        "DDPMPipeline",
        "Components",
        "DDPMScheduler (diffusers)",
        "unet/conv_in.weight",
        "unet config",
        "block_out_channels",
        "scheduler config",
        "num_train_timesteps",
    ],
    "timm-state-dict": ["PyTorch file (read weights-only)", "conv1.weight", "fc.weight"],
    "timm-checkpoint-saver": ["timm CheckpointSaver checkpoint", "Args", "arch", "epoch", "conv1.weight"],
    "ultralytics-yolo": ["ultralytics checkpoint", "ultralytics.nn.tasks.DetectionModel", "convert:", "Args"],
    "lightning-trainer-ckpt": ["Lightning checkpoint", "Hyperparameters", "global_step", "Training"],
    "stable-diffusion-1x-ckpt": [
        "Stable Diffusion (Lightning) checkpoint",
        "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
        "model.diffusion_model.",
        "470000",
    ],
    "whisper-checkpoint": ["openai-whisper checkpoint", "Dims", "n_audio_state", "encoder.conv1.weight"],
    "torchscript-module": ["TorchScript archive", "proj.weight", "convert:", "TorchScript program"],
    "sb3-ppo": ["Stable-Baselines3 model", "Policy", "ActorCriticPolicy", "gamma", "observation_space"],
    "sb3-dqn": ["Stable-Baselines3 model", "Policy", "DQNPolicy", "buffer_size", "q_net"],
    "policy-state-dict": ["PyTorch file (read weights-only)", "0.weight"],
    "torch-export-pt2": ["torch.export archive", "Program", "weights"],
    "dcp-directory": ["torch.distributed.checkpoint directory", "model.weight", "step"],
    "onnx-model": ["ONNX model", "Inputs", "Outputs", "MatMul"],
    "gguf-model": ["GGUF file", "GGUF metadata", "general.architecture", "llama"],
    "keras-v3": ["Keras 3 model (.keras)", "Dense", "keras_version"],
    "keras-h5": ["Keras model (HDF5)", "Dense"],
    "sklearn-joblib": ["joblib pickle", "sklearn.linear_model._logistic.LogisticRegression", "convert:"],
    "sklearn-joblib-compressed": ["joblib pickle", "LogisticRegression"],
    "numpy-npz": ["numpy .npz archive"],
    "openvino-ir": ["OpenVINO IR", "Network", "Const"],
    "word2vec-binary": ["opaque data"],
    "fasttext-binary": ["opaque data"],
    "random-bytes": ["opaque data"],
    "tar-container": ["tar archive", "Members", "pytorch_model.bin", "embeddings.word_embeddings"],
    "zip-container": ["zip archive", "LogisticRegression"],
    "7z-container": ["7z archive", "Dims", "encoder.conv1.weight"],
}
REFUSED = {
    "ultralytics-yolo": "ultralytics.nn.tasks.DetectionModel",
    "torchscript-module": "TorchScript",
    "sklearn-joblib": "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn-joblib-compressed": "LogisticRegression",
    "zip-container": "LogisticRegression",
    "word2vec-binary": "opaque data",
    "fasttext-binary": "opaque data",
    "random-bytes": "opaque data",
}
CONVERTED = sorted(set(FACTS) - set(REFUSED))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RealFile]:
    return {f.name: f for f in build_corpus(tmp_path_factory.mktemp("corpus"))}


def test_every_benign_file_inspects(invoke: Invoke, corpus: dict[str, RealFile]) -> None:
    """Entries added to the corpus later are inspected too; those in FACTS have their facts checked below."""
    benign = {name for name, f in corpus.items() if not f.malicious}
    assert set(FACTS) <= benign, "FACTS names an entry the corpus no longer has"
    for name in sorted(benign - set(FACTS)):
        result = invoke("inspect", corpus[name].path)
        assert result.exit_code == 0, f"{name}: {result.stderr}"


@pytest.mark.parametrize("name", sorted(FACTS))
def test_inspect_shows_the_layout(invoke: Invoke, corpus: dict[str, RealFile], name: str) -> None:
    result = invoke("inspect", corpus[name].path)
    assert result.exit_code == 0, result.stderr
    for fact in FACTS[name]:
        assert fact in result.stdout, f"{name}: {fact!r} missing"
    as_json = invoke("inspect", corpus[name].path, "--json")
    assert as_json.exit_code == 0
    summary = json.loads(as_json.stdout)
    assert summary["convertible"] is (name not in REFUSED)
    if name in REFUSED:
        assert REFUSED[name] in summary["refusal"]


def test_piped_output_is_not_wrapped(corpus: dict[str, RealFile]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    path = corpus["diffusers-pipeline-safetensors"].path
    cmd = [sys.executable, "-m", "openckpt.cli.app", "inspect", str(path)]
    out = zygote.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    with open_source(path) as source:
        longest = max(source.tensors.values(), key=lambda t: len(t.name))
    line = next(line for line in out.splitlines() if longest.name in line)
    assert line.split()[:3] == [longest.name, longest.dtype, str(list(longest.shape)).split()[0]]
    assert max(len(line) for line in out.splitlines()) > 120


@pytest.mark.parametrize("name", CONVERTED)
def test_convert_keeps_every_tensor(invoke: Invoke, corpus: dict[str, RealFile], name: str, tmp_path: Path) -> None:
    src = corpus[name].path
    result = invoke("convert", src, tmp_path / "ck")
    assert result.exit_code == 0, result.stderr
    with open_source(src, opaque_ok=True) as source, open_source(tmp_path / "ck") as converted:
        assert len(converted.tensors) == len(source.tensors) > 0
        for tensor in source.tensors:
            entry, inner = source.entry_of(tensor)
            assert torch.equal(converted.read(f"{entry}/{inner}"), source.read(tensor)), tensor
        manifest = converted.manifest
        assert all(manifest.entries[e].kind == "module" for e in ("model", "unet", "vae") if e in manifest.entries)
        for entry in ("optimizer", "rng"):
            if entry in manifest.entries:
                assert manifest.entries[entry].kind == "state"


def test_convert_records_training_progress(invoke: Invoke, corpus: dict[str, RealFile], tmp_path: Path) -> None:
    assert invoke("convert", corpus["transformers-trainer-checkpoint"].path, tmp_path / "t").exit_code == 0
    assert invoke("convert", corpus["stable-diffusion-1x-ckpt"].path, tmp_path / "sd").exit_code == 0
    with open_source(tmp_path / "t") as trainer, open_source(tmp_path / "sd") as sd:
        assert trainer.manifest.training.step == 2 and set(trainer.manifest.entries) >= {"model", "optimizer", "rng"}
        assert sd.manifest.training.step == 470000 and sd.manifest.training.epoch == 6


def test_convert_pipeline_makes_an_entry_per_component(
    invoke: Invoke, corpus: dict[str, RealFile], tmp_path: Path
) -> None:
    assert invoke("convert", corpus["diffusers-pipeline-bin"].path, tmp_path / "p").exit_code == 0
    with open_source(tmp_path / "p") as converted:
        assert set(converted.manifest.entries) == {"unet"}
        configs = converted.manifest.training.hyperparameters["configs"]
        assert configs["unet"]["_class_name"] == "UNet2DModel"


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_convert_refuses_naming_the_class(
    invoke: Invoke, corpus: dict[str, RealFile], name: str, tmp_path: Path
) -> None:
    result = invoke("convert", corpus[name].path, tmp_path / "ck")
    assert result.exit_code != 0
    assert REFUSED[name] in result.stderr
    assert not (tmp_path / "ck").exists()


def test_convert_refuses_every_malicious_twin(
    invoke: Invoke, corpus: dict[str, RealFile], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    for entry in corpus.values():
        if entry.malicious:
            result = invoke("convert", entry.path, tmp_path / entry.name)
            assert result.exit_code != 0, entry.name
            assert not (tmp_path / entry.name).exists()
    assert "pwned" not in capfd.readouterr().out
