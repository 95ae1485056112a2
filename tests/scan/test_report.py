"""``openckpt scan``: table, JSON and SARIF output, and exit codes 0 (clean, opaque, needs code), 1 (malicious or
suspicious), 2 (inconclusive)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import openckpt
from openckpt.cli.app import app

from .crafted import P4, STOP, call, sg, u

EVIL = P4 + call(sg("os", "system"), u("id")) + STOP
BENIGN = P4 + b"}" + STOP


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {"evil": tmp_path / "evil.pkl", "benign": tmp_path / "ok.pkl", "junk": tmp_path / "junk.bin"}
    paths["evil"].write_bytes(EVIL)
    paths["benign"].write_bytes(BENIGN)
    paths["junk"].write_bytes(b"\x89PNG\r\n\x1a\n\x00")
    paths["broken"] = tmp_path / "broken.pkl"
    paths["broken"].write_bytes(P4 + call(sg("collections", "OrderedDict")) + b"\xff")
    return paths


def _run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["scan", *map(str, args)], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout


def test_exit_codes(files: dict[str, Path]) -> None:
    assert _run(files["benign"])[0] == 0
    assert _run(files["evil"])[0] == 1
    assert _run(files["junk"])[0] == 0  # opaque: no loader runs anything from it
    assert _run(files["broken"])[0] == 2
    assert _run(files["benign"], files["evil"])[0] == 1
    assert _run(files["benign"].parent / "missing.pt")[0] == 3  # not found (openckpt.cli._errors)


def test_table(files: dict[str, Path]) -> None:
    code, out = _run(files["evil"], files["benign"])
    assert code == 1
    assert "malicious" in out and "os.system" in out and "clean" in out


def test_json(files: dict[str, Path]) -> None:
    code, out = _run("--json", files["evil"].parent)
    report = json.loads(out)
    assert code == 1 and report["verdict"] == "malicious" and report["completeness"] == "inconclusive"
    by_name = {Path(f["path"]).name: f for f in report["files"]}
    evil = by_name["evil.pkl"]
    assert evil["verdict"] == "malicious"
    finding = evil["findings"][0]
    assert finding["callable"] == "os.system" and finding["offset"] is not None and finding["severity"] == "malicious"
    assert by_name["ok.pkl"]["verdict"] == "clean" and by_name["junk.bin"]["verdict"] == "opaque"
    assert by_name["broken.pkl"]["verdict"] == "inconclusive"
    assert evil["imports"] == ["os.system"] and evil["packages"] == ["os"] and evil["runs"] == []


def test_sarif(files: dict[str, Path]) -> None:
    code, out = _run("--sarif", files["evil"])
    log = json.loads(out)
    assert code == 1 and log["version"] == "2.1.0"
    run = log["runs"][0]
    assert run["tool"]["driver"]["name"] == "openckpt-scan"
    result = run["results"][0]
    assert result["level"] == "error" and result["ruleId"] == "pickle-global"
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith("evil.pkl")


def test_python_api(files: dict[str, Path]) -> None:
    report = openckpt.scan([files["benign"], files["evil"]])
    assert [r.verdict.value for r in report.results] == ["clean", "malicious"]
    assert report.exit_code == 1 and not report.clean


def test_scan_never_imports_torch(tmp_path: Path) -> None:
    """Scanning a torch checkpoint needs neither torch nor any unpickler: the bytes are only read."""
    import subprocess
    import sys

    import torch

    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, path)
    code = (
        "import sys\n"
        "from openckpt.cli.app import main\n"
        f"sys.argv = ['openckpt', 'scan', {str(path)!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "clean" in result.stdout


def test_needs_code_is_named_and_exits_0(tmp_path: Path) -> None:
    needs = tmp_path / "yolo.pt"
    needs.write_bytes(P4 + call(sg("ultralytics.nn.tasks", "DetectionModel")) + STOP)
    code, out = _run(needs)
    assert code == 0 and "needs_code" in out and "needs packages: ultralytics" in out
    code, out = _run("--json", needs)
    (entry,) = json.loads(out)["files"]
    assert entry["imports"] == ["ultralytics.nn.tasks.DetectionModel"] and entry["packages"] == ["ultralytics"]
    assert entry["findings"][0]["severity"] == "needs_code"
