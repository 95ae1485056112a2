"""Fixtures for scanner tests: scanning bytes written to a temporary file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from openckpt.scan.api import scan_file
from openckpt.scan.verdict import FileResult

ScanBytes = Callable[..., FileResult]


@pytest.fixture
def scan_bytes(tmp_path: Path) -> ScanBytes:
    """``scan_bytes(data, name="x.bin")``: write the bytes to a file and scan it."""

    def run(data: bytes, name: str = "sample.bin") -> FileResult:
        path = tmp_path / name
        path.write_bytes(data)
        return scan_file(path)

    return run
