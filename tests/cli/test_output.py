"""Output that survives a pipe (no wrapping, no colour codes), decimal sizes as on the Hub, help for the terminal."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

import openckpt
from openckpt.cli._output import human_bytes
from openckpt.cli.app import terminal_text
from tests import zygote

from .helpers import Invoke


def test_sizes_are_decimal_as_on_the_hub() -> None:
    assert [human_bytes(n) for n in (0, 999, 1000, 1536, 201_000_000, 1_200_000_000)] == [
        "0 B",
        "999 B",
        "1.0 kB",
        "1.5 kB",
        "201 MB",
        "1.2 GB",
    ]


def test_diff_and_inspect_survive_a_pipe(tmp_path: Path) -> None:
    long = "encoder." + "very_long_module_name." * 8 + "weight"
    for name, seed in (("a", 0), ("b", 1)):
        torch.manual_seed(seed)
        openckpt.save(tmp_path / name, {"model": {long: torch.randn(3, 5)}})
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR")}
    for args in (["diff", tmp_path / "a", tmp_path / "b"], ["inspect", tmp_path / "a"]):
        command = [sys.executable, "-m", "openckpt.cli.app", *map(str, args)]
        result = zygote.run(command, capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode in (0, 1), result.stderr
        assert "\x1b[" not in result.stdout
        (row,) = [line for line in result.stdout.splitlines() if long in line]
        assert "[3, 5]" in row  # the whole row on one line


def test_help_paragraphs_are_one_line_each() -> None:
    text = terminal_text("""First line.

    A paragraph wrapped
    by hand in ``the source``, see :func:`openckpt.save`.

    - one item
      continued
    - another
    """)
    assert text == (
        "First line.\n\nA paragraph wrapped by hand in `the source`, see `openckpt.save`.\n\n"
        "- one item continued\n- another"
    )


def test_help_is_grouped(invoke: Invoke) -> None:
    text = invoke("-h").stdout
    panels = ["Local checkpoint tools", "Trust", "Governance", "Reuse", "Hub client", "Server administration"]
    assert [text.index(p) for p in panels] == sorted(text.index(p) for p in panels)
