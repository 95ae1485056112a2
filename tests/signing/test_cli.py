"""``openckpt signature sign|verify``: output, JSON, and exit codes (0 ok, 1 does not verify, 2 error)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import Result
from typer.testing import CliRunner

from openckpt.cli.app import app

from .conftest import SHARD
from .pki import KeyPair, Pki


def run(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_sign_and_verify_with_a_key(model: Path, keys: KeyPair) -> None:
    signed = run("signature", "sign", model, "--key", keys.private)
    assert signed.exit_code == 0, signed.output
    assert "signed" in signed.stdout and "model.sig" in signed.stdout
    checked = run("signature", "verify", model, "--key", keys.public)
    assert checked.exit_code == 0, checked.output
    assert "ok: 5 files match the signature (sha256, files), signed by key hint" in checked.stdout


def test_sign_and_verify_with_a_chain(tmp_path: Path, model: Path, pki: Pki) -> None:
    sig = tmp_path / "model.sig"
    args = ["--key", pki.leaf_key, "--cert", pki.leaf, "--chain", pki.intermediate, "--signature", sig]
    signed = run("signature", "sign", model, *args, "--serialization", "shards", "--shard-size", SHARD)
    assert signed.exit_code == 0, signed.output
    checked = run("signature", "verify", model, "--signature", sig, "--cert-chain", pki.root, "--json")
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.stdout)
    assert report["ok"] and report["serialization"]["method"] == "shards"
    assert report["certificates"] == ["CN=pki signer", "CN=pki intermediate", "CN=pki root"]


def test_verify_names_each_difference_and_exits_1(model: Path, keys: KeyPair) -> None:
    assert (
        run("signature", "sign", model, "--key", keys.private, "--hash", "blake3", "--ignore", "cache").exit_code == 0
    )
    (model / "weights.bin").write_bytes(b"changed")
    (model / "config.json").rename(model / "config.old")
    (model / "cache").mkdir()
    (model / "cache" / "x").write_text("ignored\n")
    result = run("signature", "verify", model, "--key", keys.public)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: file weights.bin: digest differs",
        "error: missing file: config.json",
        "error: extra file: config.old (same bytes as missing config.json: renamed?)",
    ]
    as_json = json.loads(run("signature", "verify", model, "--key", keys.public, "--json").stdout)
    assert as_json["error"] == "ModelMismatchError" and len(as_json["differences"]) == 3


def test_wrong_key_exits_1(model: Path, keys: KeyPair, other_keys: KeyPair) -> None:
    run("signature", "sign", model, "--key", keys.private)
    result = run("signature", "verify", model, "--key", other_keys.public)
    assert result.exit_code == 1
    assert "signature does not verify with the given key (P-256 key hint" in result.stderr


def test_errors_exit_with_the_documented_codes(tmp_path: Path, model: Path, keys: KeyPair) -> None:
    """2 for usage and bad input, 3 for a file that is not there (the exit codes of ``openckpt --help``)."""
    both = run("signature", "verify", model, "--key", keys.public, "--cert-chain", keys.public)
    assert both.exit_code == 2 and "either --key or --cert-chain" in both.output
    missing = run("signature", "verify", model, "--key", keys.public)
    assert missing.exit_code == 3 and "model.sig" in missing.stderr
    bad_key = run("signature", "sign", model, "--key", keys.public)
    assert bad_key.exit_code == 2 and "SigningKeyError" in bad_key.stderr
    not_dir = run("signature", "sign", tmp_path / "nope", "--key", keys.private)
    assert not_dir.exit_code == 2 and "not a model directory" in not_dir.stderr


def test_help() -> None:
    assert "signature" in run("--help").stdout
    for command in ("sign", "verify"):
        assert run("signature", command, "--help").exit_code == 0
