"""Errors in one line with what to do next: no hub at the endpoint, a server that is not a hub, a typo'd repo id, a
hub's refusal without huggingface_hub's links; ``--debug`` lets the exception through."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer, SimpleHTTPRequestHandler
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from typer.testing import CliRunner

from openckpt.cli.app import app
from openckpt.errors import HubUnreachableError
from tests.hubtools import HubProcess, free_port

from .helpers import Invoke

LINKS = ("developer.mozilla.org", "huggingface.co/docs", "Traceback", "For more information")


def one_line_error(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("error: "), text
    assert not any(link in text for link in LINKS), text
    return lines[0]


class HtmlPage(BaseHTTPRequestHandler):
    """Any web server that is not a hub: an HTML page for every path."""

    def do_GET(self) -> None:
        body = b"<!doctype html><html><body><h1>It works!</h1></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET  # noqa: N815 (http.server names its handlers so)

    def log_message(self, *args: object) -> None:
        pass


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=[HtmlPage, QuietFiles], ids=["html-200", "http.server-404"])
def not_a_hub(request: pytest.FixtureRequest) -> Iterator[str]:
    """``python -m http.server``-like servers on 127.0.0.1: their URL."""
    server = HTTPServer(("127.0.0.1", 0), request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "command",
    [["repo", "ls"], ["whoami"], ["pull", "admin/tiny-gpt2"], ["repo", "create", "admin/x"]],
    ids=lambda c: " ".join(c),
)
def test_no_hub_running(invoke: Invoke, auth_home: Path, command: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = invoke(*command, "--endpoint", url, "--token", "oc_x")
    assert result.exit_code == 5, result.output
    line = one_line_error(result.stderr)
    assert line == f"error: no hub answers at {url} (connection refused) — is `openckpt serve` running?"
    assert "Retry" not in result.output  # failed at once, not after huggingface_hub's 5 retries


def test_push_with_no_hub_running(invoke: Invoke, auth_home: Path, tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    url = f"http://127.0.0.1:{free_port()}"
    result = invoke("push", tmp_path / "model", "admin/m", "--endpoint", url, "--token", "oc_x")
    assert result.exit_code == 5, result.output
    assert "is `openckpt serve` running?" in one_line_error(result.stderr)


@pytest.mark.parametrize("command", [["repo", "ls"], ["whoami"], ["pull", "admin/tiny-gpt2"]], ids=" ".join)
def test_not_a_hub(invoke: Invoke, auth_home: Path, not_a_hub: str, command: list[str]) -> None:
    result = invoke(*command, "--endpoint", not_a_hub, "--token", "oc_x")
    assert result.exit_code == 5, result.output
    line = one_line_error(result.stderr)
    assert f"error: {not_a_hub} answered /api/" in line
    assert "with an HTML page" in line and "not the Hub API" in line and "HF_ENDPOINT" in line


def test_a_typo_in_a_repo_id_gets_a_suggestion(hub: HubProcess, invoke: Invoke, auth_home: Path, unique: str) -> None:
    HfApi(endpoint=hub.url, token=hub.token).create_repo(f"admin/{unique}-tiny-gpt2")
    result = invoke("pull", f"admin/{unique}-tiny-gtp2", "--endpoint", hub.url, "--token", hub.token)
    assert result.exit_code == 3, result.output
    line = one_line_error(result.stderr)
    assert line == f"error: no repo admin/{unique}-tiny-gtp2 at {hub.url}: did you mean admin/{unique}-tiny-gpt2?"

    nothing_close = invoke("pull", f"admin/{unique}-zzzzzzzzzzzzzz", "--endpoint", hub.url, "--token", hub.token)
    assert nothing_close.exit_code == 3
    assert "private" in one_line_error(nothing_close.stderr)


def test_a_hub_refusal_is_one_line_without_links(hub: HubProcess, invoke: Invoke, auth_home: Path, unique: str) -> None:
    args = ["--endpoint", hub.url, "--token", hub.token]
    assert invoke("repo", "create", f"admin/{unique}", *args).exit_code == 0
    again = invoke("repo", "create", f"admin/{unique}", *args)
    assert again.exit_code == 2
    assert "409" in one_line_error(again.stderr)
    assert invoke("repo", "create", f"admin/{unique}", "--exist-ok", *args).exit_code == 0
    gone = invoke("repo", "rm", f"admin/{unique}-nothere", "--yes", *args)
    assert gone.exit_code == 3
    assert one_line_error(gone.stderr).startswith(f"error: no repo admin/{unique}-nothere at {hub.url}")


def test_debug_shows_the_exception(auth_home: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(app, ["--debug", "repo", "ls", "--endpoint", url])
    assert isinstance(result.exception, HubUnreachableError)
    assert result.exit_code not in (0, 5)
