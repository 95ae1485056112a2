"""The README lists every ``OPENCKPT_*`` variable the code reads, so a new setting can't go undocumented."""

from __future__ import annotations

import re
from pathlib import Path

from openckpt.hub.settings import _ENV

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"OPENCKPT_[A-Z0-9_]*[A-Z0-9]")


def _names_in(*paths: Path) -> set[str]:
    return {
        name
        for path in paths
        for file in path.rglob("*")
        if file.suffix in ("", ".py", ".sh") and file.is_file()
        for name in NAME.findall(file.read_text(errors="replace"))
    }


def test_every_server_setting_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = sorted(variable for variable, _ in _ENV.values() if f"`{variable}`" not in readme)
    assert not missing, f"README.md does not list {missing}"


def test_every_variable_the_code_reads_is_in_the_readme() -> None:
    readme = set(NAME.findall((ROOT / "README.md").read_text()))
    used = _names_in(ROOT / "src" / "openckpt", ROOT / "scripts")
    assert not used - readme, f"README.md does not mention {sorted(used - readme)}"
