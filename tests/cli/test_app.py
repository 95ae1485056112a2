"""The app as a whole: starts without importing torch, shows help, registers every command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import Invoke


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_openckpt_does_not_import_torch() -> None:
    result = _python("import openckpt, sys; assert 'torch' not in sys.modules, 'torch was imported'")
    assert result.returncode == 0, result.stderr


def test_help_runs_without_importing_torch() -> None:
    code = (
        "import sys\n"
        "from openckpt.cli.app import main\n"
        "sys.argv = ['openckpt', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    for command in ("inspect", "verify", "diff", "convert", "scan"):
        assert command in result.stdout


def test_console_script_help() -> None:
    script = Path(sys.executable).parent / "openckpt"
    if not script.exists():
        pytest.skip("console script not installed next to this interpreter")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "convert" in result.stdout


def test_no_arguments_shows_help(invoke: Invoke) -> None:
    result = invoke()
    assert "inspect" in result.output


@pytest.mark.parametrize("command", ["inspect", "verify", "diff", "convert", "scan"])
def test_command_help(invoke: Invoke, command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
