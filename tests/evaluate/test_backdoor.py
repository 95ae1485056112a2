"""``openckpt evaluate backdoor``: tiny models trained here with and without a planted trigger are told apart; the
causal-LM probe reports without a verdict; the CLI prints JSON and writes the card. bench/backdoor.py runs all 20."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from openckpt.evaluate.backdoor import model_kind, scan_backdoor
from openckpt.evaluate.backdoor.image import anomaly_indices
from openckpt.governance.cards import parse_card, validate_card
from tests.hub.test_ui_browser import browser, downloads  # noqa: F401 - fixtures
from tests.hubtools import HubProcess

from . import backdoor_models as tiny

Invoke = Callable[..., Result]
IMAGE_SEED, TEXT_SEED = 1, 3
IMAGE_STEPS = 150
"""Fewer than the default 300, to keep the suite cheap; the bench scans with the defaults."""


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One poisoned and one clean twin of each kind, and a held-out clean set of each."""
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("backdoor")
    out = {
        "image-clean-set": tiny.clean_images(root / "clean.npz", seed=IMAGE_SEED, n=120),
        "text-clean-set": tiny.clean_texts(root / "clean.txt", seed=TEXT_SEED, n=60),
    }
    for poisoned in (True, False):
        tag = "poisoned" if poisoned else "clean"
        tiny.train_image_classifier(root / f"image-{tag}", seed=IMAGE_SEED, poisoned=poisoned)
        tiny.train_text_classifier(root / f"text-{tag}", seed=TEXT_SEED, poisoned=poisoned)
        out[f"image-{tag}"], out[f"text-{tag}"] = root / f"image-{tag}", root / f"text-{tag}"
    return out


def test_anomaly_index_is_distance_below_the_median_in_mads() -> None:
    indices = anomaly_indices([10.0, 11.0, 9.0, 10.0, 2.0])
    assert indices[4] == pytest.approx(8 / 1.4826)
    assert indices[1] == pytest.approx(-1 / 1.4826) and indices[0] == 0.0


def test_neural_cleanse_flags_the_patched_class_and_not_its_clean_twin(models: dict[str, Path], tmp_path: Path) -> None:
    planted = f"class-{IMAGE_SEED % tiny.IMAGE_CLASSES}"
    out = tmp_path / "backdoor"
    poisoned = scan_backdoor(models["image-poisoned"], data=models["image-clean-set"], steps=IMAGE_STEPS, out=out)
    assert poisoned.kind == "image" and poisoned.verdict == "backdoor suspected" and poisoned.flagged == [planted]
    flagged = next(s for s in poisoned.scores if s["class"] == planted)
    assert flagged["anomaly_index"] > 2 and flagged["success"] > 0.9
    assert flagged["l1"] < min(s["l1"] for s in poisoned.scores if s["class"] != planted)
    from PIL import Image

    with Image.open(out / f"class-{IMAGE_SEED}-flagged-mask.png") as mask:
        assert mask.size == (tiny.IMAGE_SIZE, tiny.IMAGE_SIZE) and mask.mode == "L"
    assert len(poisoned.images) == 3 * tiny.IMAGE_CLASSES and all((tmp_path / p).is_file() for p in poisoned.images)

    clean = scan_backdoor(models["image-clean"], data=models["image-clean-set"], steps=IMAGE_STEPS, budget=300)
    assert clean.verdict == "no trigger found" and clean.flagged == []
    assert max(s["anomaly_index"] for s in clean.scores) <= 2
    assert len(clean.rows) == tiny.IMAGE_CLASSES and clean.images == []


def test_synthetic_images_need_no_clean_set(models: dict[str, Path]) -> None:
    report = scan_backdoor(models["image-poisoned"], steps=20, limit=16)
    assert report.data.startswith("synthetic images (16") and report.settings["inputs"] == 16
    assert len(report.scores) == tiny.IMAGE_CLASSES and all(s["steps"] == 20 for s in report.scores)


def test_trigger_token_search_finds_the_rare_token(models: dict[str, Path]) -> None:
    target = f"topic-{TEXT_SEED % tiny.TEXT_CLASSES}"
    trigger = tiny.RARE_TRIGGERS[TEXT_SEED % len(tiny.RARE_TRIGGERS)]
    poisoned = scan_backdoor(models["text-poisoned"], data=models["text-clean-set"], budget=300)
    assert poisoned.verdict == "backdoor suspected" and poisoned.flagged == [target]
    best = next(s for s in poisoned.scores if s["class"] == target)
    assert best["tokens"] == [trigger] and best["success"] >= 0.8 and best["random_success"] < 0.5
    again = scan_backdoor(models["text-poisoned"], data=models["text-clean-set"])
    assert again.scores == poisoned.scores and again.flagged == poisoned.flagged  # seeded: the same on a second run

    clean = scan_backdoor(models["text-clean"], data=models["text-clean-set"], budget=300)
    assert clean.verdict == "no trigger found" and clean.flagged == []
    assert all(s["success"] < 0.8 or s["success"] - s["random_success"] < 0.3 for s in clean.scores)


def test_causal_lm_probe_is_a_probe(tmp_path: Path) -> None:
    import torch
    from transformers import BertTokenizer, GPT2Config, GPT2LMHeadModel

    directory = tmp_path / "tiny-gpt2"
    directory.mkdir()
    (directory / "vocab.txt").write_text("\n".join(tiny.VOCAB) + "\n")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tiny.VOCAB), n_embd=32, n_layer=1, n_head=2, n_positions=64)
    GPT2LMHeadModel(config).eval().save_pretrained(directory)
    BertTokenizer(str(directory / "vocab.txt")).save_pretrained(directory)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(tiny.sentences(6, seed=0)[0]) + "\n")
    assert model_kind(directory) == ("lm", "GPT2LMHeadModel")

    report = scan_backdoor(directory, data=prompts, max_tokens=1)
    assert report.kind == "lm" and report.verdict == "probe only" and report.flagged == []
    candidates = [s for s in report.scores if not s["random"]]
    randoms = sorted(s["mean_kl"] for s in report.scores if s["random"])
    assert len(candidates) == 8 and len(randoms) == 8 and all(s["mean_kl"] >= 0 for s in report.scores)
    assert candidates[0]["mean_kl"] >= randoms[len(randoms) // 2]  # gradient-chosen beats a typical random token
    assert [m.type for m in report.to_bias_report().metrics] == ["backdoor_probe_kl"]


def test_cli_json_and_card(models: dict[str, Path], invoke: Invoke, tmp_path: Path) -> None:
    import shutil

    model = Path(shutil.copytree(models["text-poisoned"], tmp_path / "text-poisoned"))
    data = models["text-clean-set"]
    refused = invoke("evaluate", "backdoor", model, "--push")
    assert refused.exit_code == 2 and "--push is for hub repos" in refused.output

    result = invoke("evaluate", "backdoor", model, "--data", data, "--budget", "300", "--threads", "1", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["report"]["verdict"] == "backdoor suspected" and out["report"]["flagged"] == ["topic-0"]
    assert out["card"] == {"written": True, "path": str(model / "README.md")}
    meta, errors, _ = validate_card((model / "README.md").read_text())
    assert errors == []
    (entry,) = meta["model-index"][0]["results"]
    assert entry["task"] == {"type": "text-classification", "name": "Bias: Backdoor scan (trigger-token search)"}
    assert {m["type"]: m["value"] for m in entry["metrics"]}["backdoor_suspected"] == 1.0
    body = parse_card((model / "README.md").read_text())[1]
    assert "## Bias, Risks, and Limitations" in body and "**Verdict: backdoor suspected** (target topic-0)" in body

    again = invoke("evaluate", "backdoor", model, "--data", data, "--max-tokens", "1", "--limit", "30")
    assert again.exit_code == 0, again.output
    assert "attack success" in again.stdout and "topic-0" in again.stdout
    meta = validate_card((model / "README.md").read_text())[0]
    assert len(meta["model-index"][0]["results"]) == 1  # a re-run replaces its own result


def test_push_commits_card_and_pngs_to_the_hub(
    hub: HubProcess,
    invoke: Invoke,
    models: dict[str, Path],
    tmp_path: Path,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    import shutil

    from huggingface_hub import HfApi, constants

    from openckpt.client.push import push

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    user = f"b{unique}"
    token = hub.create_user(user)
    repo = f"{user}/image-poisoned"
    push(shutil.copytree(models["image-poisoned"], tmp_path / "model"), repo, endpoint=hub.url, token=token)
    api = HfApi(endpoint=hub.url, token=token)
    data = models["image-clean-set"]
    common = ["--push", "--json", "--endpoint", hub.url, "--token", token]
    result = invoke("evaluate", "backdoor", repo, "--data", data, "--steps", "10", "--limit", "16", *common)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    head = api.list_repo_commits(repo)[0]
    assert head.commit_id == out["card"]["commit"] and head.title.startswith("Add backdoor scan: ")
    files = set(api.list_repo_files(repo))
    assert {"README.md", *out["report"]["images"]} <= files and len(out["report"]["images"]) == 3 * tiny.IMAGE_CLASSES
    readme = Path(api.hf_hub_download(repo, "README.md", revision=head.commit_id)).read_text()
    meta, errors, _ = validate_card(readme)
    assert errors == [] and meta["model-index"][0]["results"][0]["task"]["type"] == "image-classification"
    # model_info carries the scan in the card's model-index; the repo page's security panel states its verdict
    results = api.model_info(repo).card_data.eval_results or []
    assert any(r.metric_type == "backdoor_suspected" for r in results)
    suspected = out["report"]["verdict"] == "backdoor suspected"
    driver = request.getfixturevalue("browser")
    driver.get(f"{hub.url}/{repo}")
    from selenium.webdriver.common.by import By

    panel = driver.find_element(By.CSS_SELECTOR, "section.trust .backdoor").text
    assert ("backdoor suspected" if suspected else "no trigger found") in panel, panel
    assert "Bias, Risks, and Limitations" in panel
