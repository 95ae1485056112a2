"""Fixtures of the Xet format tests: the reference vectors and real hf_xet 1.8.0 upload bodies in ``data/``.

``data/`` is a copy of the spec's ``xet/`` folder: xet-core's Merkle vectors, the gearhash table, and a shard and two
xorbs that stock hf_xet 1.8.0 uploaded to a test server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data() -> Path:
    """The folder of reference vectors and samples."""
    return DATA
