"""Fixtures shared by the whole suite: real hub processes on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hubtools import S3_ENV, HubProcess, Postgres, S3Server, postgres_cluster, s3_server, start_hub
from tests.scan.realfiles import RealFile, build_corpus

# The hub speaks Git LFS and Xet; the tests' clients use Git LFS unless a test enables Xet for its own client
# processes (tests/hub/test_xet_*.py). Background ingestion of LFS uploads into xorbs (on by default) is off for
# the tests that check whole blobs in the store; tests/hub/test_xet_reads.py has a hub fixture with it on.
os.environ["HF_HUB_DISABLE_XET"] = "1"
# One intra-op thread per process: scripts/test runs one more pytest worker than there are cores, each with its hubs,
# clients and training runs, so torch's (and OpenBLAS's) thread pools would oversubscribe the cores, and OpenMP's
# spin-waiting for a thread that is not running costs more than the threads save (building the models of
# tests/hub/test_storage_deltas.py on this 2-core machine, under load: 56.7 CPU-s on two threads, 7.3 on one).
# Set here, before anything imports torch; every process the tests start inherits it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENCKPT_XET_INGEST", "0")
os.environ.setdefault("OPENCKPT_COMPRESS_AT_REST", "0")  # on in tests/hub/test_storage_compression.py
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with postgres_cluster() as pg:
        yield pg


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """A ``moto[server]`` process with one bucket; the session (and the hubs it starts) get its test credentials."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in S3_ENV.items():
            mp.setenv(name, value)
        with s3_server() as server:
            yield server


SHARED_HUB_MODULES = frozenset(
    {
        "checkpoint/test_bucket_resume.py",
        "cli/test_errors.py",
        "cli/test_exit_codes.py",
        "cli/test_governance_commands.py",
        "cli/test_hub_commands.py",
        "cli/test_login.py",
        "cli/test_push.py",
        "client/test_bucket_push.py",
        "client/test_pull_gate.py",
        "client/test_push_pull.py",
        "evaluate/test_backdoor.py",
        "evaluate/test_hub.py",
        "finetune/test_hub.py",
        "finetune/test_reproduce.py",
        "hub/test_card_xss_browser.py",
        "hub/test_commit_chain.py",
        "hub/test_compat_download.py",
        "hub/test_compat_hf.py",
        "hub/test_compat_input.py",
        "hub/test_compat_listing.py",
        "hub/test_compat_tools.py",
        "hub/test_gated.py",
        "hub/test_governance_api.py",
        "hub/test_smoke.py",
    }
)
"""Modules (under tests/) whose ``hub`` is one process per database for the whole session instead of one per
module: each of their tests works in names of its own (``unique`` repos and users, ``people``'s accounts only
to read or to own such repos) and none changes what the hub as a whole holds or is (settings, other accounts,
listings of everything, its log, its store, its process). A module that does not fit keeps a hub of its own."""


def _start_hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> HubProcess:
    data = tmp_path_factory.mktemp("hub") / "data"
    url = ""
    if request.param == "postgresql":
        pg: Postgres = request.getfixturevalue("postgres")
        url = pg.create_database(f"hub_{uuid.uuid4().hex[:8]}")
    return start_hub(data, url)


@pytest.fixture(scope="session")
def shared_hubs() -> Iterator[dict[str, HubProcess]]:
    """The hubs of ``SHARED_HUB_MODULES``, by database, started on first use and stopped after the session."""
    hubs: dict[str, HubProcess] = {}
    yield hubs
    for server in hubs.values():
        server.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub process, once on SQLite and once on PostgreSQL, shared by the tests of a module (by the tests of all
    ``SHARED_HUB_MODULES`` for theirs)."""
    module = Path(request.path).relative_to(Path(__file__).parent).as_posix()
    if module in SHARED_HUB_MODULES:
        hubs: dict[str, HubProcess] = request.getfixturevalue("shared_hubs")
        if request.param not in hubs:
            hubs[request.param] = _start_hub(request, tmp_path_factory)
        yield hubs[request.param]
        return
    server = _start_hub(request, tmp_path_factory)
    yield server
    server.stop()


@pytest.fixture
def unique() -> str:
    """A fresh repo name for each test."""
    return f"r{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def real_corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RealFile]:
    """The files the field's libraries write (tests/scan/realfiles.py), built once per session: name → RealFile."""
    return {f.name: f for f in build_corpus(tmp_path_factory.mktemp("realfiles"))}


COSTLY_MODULES = (
    "tests/hub/test_reliability.py",
    "tests/hub/test_xet_compat.py",
    "tests/finetune/test_finetune.py",
    "tests/hub/test_mirror.py",
    "tests/evaluate/test_backdoor.py",
    "tests/hub/test_storage_deltas.py",
    "tests/hub/test_scale_out.py",
    "tests/finetune/test_reproduce.py",
    "tests/checkpoint/test_exact_resume.py",
    "tests/test_readme_tour.py",
    "tests/hub/test_webhooks.py",
    "tests/hub/security/test_bounds.py",
    "tests/hub/test_storage_gc.py",
    "tests/hub/security/test_names.py",
    "tests/hub/test_buckets.py",
    "tests/hub/test_ui_owner_browser.py",
    "tests/hub/test_trees_migration.py",
    "tests/hub/security/test_tree_growth.py",
    "tests/hub/test_discussions.py",
    "tests/hub/test_compat_tools.py",
    "tests/hub/test_lineage_verify.py",
    "tests/hub/test_gate_policy.py",
    "tests/hub/test_xet_scale.py",
    "tests/finetune/test_estimate.py",
    "tests/cli/test_inspect_layouts.py",
    "tests/cli/test_hub_commands.py",
)
"""The modules that took longest in a fresh-clone run under xdist (2026-12-08, longest first): under xdist they
start first. Only the order of the run depends on this list; a module missing from it or named here after it
changed still runs."""


def _cost_rank(item: pytest.Item) -> int:
    """The place of ``item``'s module in ``COSTLY_MODULES``; after those, a ``slow`` test, then one that runs hub
    processes, then the rest."""
    module = item.nodeid.split("::", 1)[0]
    if module in COSTLY_MODULES:
        return COSTLY_MODULES.index(module)
    if item.get_closest_marker("slow") is not None:
        return len(COSTLY_MODULES)
    fixtures = getattr(item, "fixturenames", ())
    if "hub" in fixtures or "postgres" in fixtures or "hub" in item.path.parts:
        return len(COSTLY_MODULES) + 1
    return len(COSTLY_MODULES) + 2


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under xdist (scripts/test), whole modules go to the workers in collection order: hand out the costly ones
    first, so the cheap ones fill the end instead of one long module keeping a worker busy after the others finished.
    Tests keep their order within a module; a run without workers keeps pytest's order."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    by_module: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        by_module[module] = min(by_module.get(module, len(COSTLY_MODULES) + 2), _cost_rank(item))
    items.sort(key=lambda item: by_module[item.nodeid.split("::", 1)[0]])
