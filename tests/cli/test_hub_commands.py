"""``serve``, ``user|org|token`` (local admin on the hub's database) and ``login`` / ``repo`` against a real hub.

The admin commands run in-process on the database of the ``hub`` fixture's server process (SQLite and PostgreSQL);
what they do is checked through the server with the stock huggingface_hub client.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
from typer.testing import CliRunner

from openckpt.cli.app import app
from tests import zygote
from tests.hubtools import HubProcess, free_port, wait_for

from .helpers import Invoke


def db(hub: HubProcess) -> list[str]:
    return ["--database-url", hub.database_url]


def secret_of(output: str) -> str:
    """The token secret printed alone on stdout by ``token create``."""
    line = output.strip().splitlines()[0]
    assert line.startswith("oc_"), output
    return line


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Isolated huggingface_hub token file and openckpt config; no HF_TOKEN / HF_ENDPOINT from the environment."""
    home = tmp_path / "hf-home"
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setenv("OPENCKPT_CONFIG", str(tmp_path / "openckpt" / "config.json"))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    return home


# -- tokens, users, organisations -------------------------------------------------------------------------------


def test_token_create_list_revoke(hub: HubProcess, invoke: Invoke, unique: str) -> None:
    user = f"u{unique}"
    assert invoke("user", "create", user, *db(hub)).exit_code == 0

    created = invoke("token", "create", "--user", user, "--role", "write", "--name", "laptop", *db(hub))
    assert created.exit_code == 0, created.output
    secret = secret_of(created.stdout)
    assert "shown only once" in created.stderr
    whoami = HfApi(endpoint=hub.url, token=secret).whoami()
    assert whoami["name"] == user
    assert whoami["auth"]["accessToken"] == {"displayName": "laptop", "role": "write"}

    listed = invoke("token", "list", "--user", user, "--json", *db(hub))
    assert listed.exit_code == 0, listed.output
    assert secret not in listed.stdout  # only a hint of the secret is ever shown again
    (row,) = json.loads(listed.stdout)
    assert (row["user"], row["name"], row["role"], row["hint"]) == (user, "laptop", "write", f"…{secret[-4:]}")
    assert row["last_used"] != "-"  # the whoami above; written at most once a minute per token
    table = invoke("token", "list", *db(hub))
    assert table.exit_code == 0 and "laptop" in table.stdout

    revoked = invoke("token", "revoke", row["id"], *db(hub))
    assert revoked.exit_code == 0, revoked.output
    with pytest.raises(HfHubHTTPError) as e:
        HfApi(endpoint=hub.url, token=secret).whoami()
    assert e.value.response.status_code == 401

    assert json.loads(invoke("token", "list", "--user", user, "--json", *db(hub)).stdout) == []
    (gone,) = json.loads(invoke("token", "list", "--user", user, "--all", "--json", *db(hub)).stdout)
    assert gone["revoked"] != "-"
    again = invoke("token", "revoke", row["id"], *db(hub))
    assert again.exit_code == 3 and "no active token" in again.stderr


def test_read_token_cannot_create_repos(hub: HubProcess, invoke: Invoke, unique: str) -> None:
    user = f"u{unique}"
    assert invoke("user", "create", user, *db(hub)).exit_code == 0
    secret = secret_of(invoke("token", "create", "--user", user, *db(hub)).stdout)  # read is the default
    api = HfApi(endpoint=hub.url, token=secret)
    assert api.whoami()["auth"]["accessToken"]["role"] == "read"
    with pytest.raises(HfHubHTTPError) as e:
        api.create_repo(f"{user}/x")
    assert e.value.response.status_code == 403


def test_user_and_org_commands(hub: HubProcess, invoke: Invoke, unique: str) -> None:
    owner, member, org = f"o{unique}", f"m{unique}", f"org{unique}"
    assert invoke("user", "create", owner, "--fullname", "Owner Person", *db(hub)).exit_code == 0
    assert invoke("user", "create", member, *db(hub)).exit_code == 0
    created = invoke("org", "create", org, "--owner", owner, *db(hub))
    assert created.exit_code == 0, created.output
    added = invoke("org", "add-member", org, member, "--role", "write", *db(hub))
    assert added.exit_code == 0, added.output

    def whoami(user: str) -> dict[str, object]:
        token = secret_of(invoke("token", "create", "--user", user, "--role", "write", *db(hub)).stdout)
        info: dict[str, object] = HfApi(endpoint=hub.url, token=token).whoami()
        HfApi(endpoint=hub.url, token=token).create_repo(f"{org}/{user}")  # both may create repos in the org
        return info

    assert whoami(owner)["orgs"] == [{"type": "org", "name": org, "fullname": org, "roleInOrg": "admin"}]
    assert whoami(member)["orgs"] == [{"type": "org", "name": org, "fullname": org, "roleInOrg": "write"}]

    duplicate = invoke("user", "create", owner, *db(hub))
    assert duplicate.exit_code == 2 and "already exists" in duplicate.stderr
    no_owner = invoke("org", "create", f"x{unique}", "--owner", f"nobody{unique}", *db(hub))
    assert no_owner.exit_code == 2 and "no user named" in no_owner.stderr
    not_an_org = invoke("org", "add-member", owner, member, *db(hub))
    assert not_an_org.exit_code == 2 and "no org named" in not_an_org.stderr
    bad_role = invoke("org", "add-member", org, member, "--role", "owner", *db(hub))
    assert bad_role.exit_code == 2


def test_admin_commands_never_create_a_database(tmp_path: Path, invoke: Invoke) -> None:
    missing = tmp_path / "nowhere"
    result = invoke("token", "list", "--data-dir", missing)
    assert result.exit_code == 3  # not found
    assert "no hub database" in result.stderr
    assert not missing.exists()


# -- login and repos ----------------------------------------------------------------------------------------------


def test_login_then_repo_create_ls_rm(hub: HubProcess, invoke: Invoke, unique: str, hf_home: Path) -> None:
    logged = invoke("login", "--token", hub.token, "--endpoint", hub.url)
    assert logged.exit_code == 0, logged.output
    assert "as admin" in logged.stdout
    assert not (hf_home / "token").exists()  # huggingface_hub's file is left alone (tests/cli/test_login.py)
    config = Path(os.environ["OPENCKPT_CONFIG"])
    assert json.loads(config.read_text()) == {"endpoint": hub.url}
    assert json.loads((config.parent / "tokens.json").read_text()) == {hub.url: hub.token}

    # No --endpoint and no --token from here on: the config names the hub, the token store authenticates.
    created = invoke("repo", "create", unique)
    assert created.exit_code == 0, created.output
    assert f"admin/{unique}" in created.stdout
    private = invoke("repo", "create", f"admin/{unique}-p", "--private")
    assert private.exit_code == 0, private.output
    exists = invoke("repo", "create", f"admin/{unique}")
    assert exists.exit_code == 2
    assert invoke("repo", "create", f"admin/{unique}", "--exist-ok").exit_code == 0

    listed = invoke("repo", "ls", "--author", "admin", "--json")
    assert listed.exit_code == 0, listed.output
    repos = {r["repo_id"]: r for r in json.loads(listed.stdout)}
    assert repos[f"admin/{unique}"]["private"] is False
    assert repos[f"admin/{unique}-p"]["private"] is True
    table = invoke("repo", "ls", "--search", unique)
    assert f"admin/{unique}-p" in table.stdout and "private" in table.stdout

    refused = CliRunner().invoke(app, ["repo", "rm", f"admin/{unique}"], input="n\n")
    assert refused.exit_code == 1  # aborted at the confirmation
    assert invoke("repo", "rm", f"admin/{unique}", "--yes").exit_code == 0
    assert invoke("repo", "rm", f"admin/{unique}-p", "-y").exit_code == 0
    left = {r["repo_id"] for r in json.loads(invoke("repo", "ls", "--search", unique, "--json").stdout)}
    assert left == set()


def test_login_with_a_bad_token_saves_nothing(hub: HubProcess, invoke: Invoke, hf_home: Path) -> None:
    result = invoke("login", "--token", "oc_not-a-token", "--endpoint", hub.url)
    assert result.exit_code == 4
    assert "does not accept this token (401)" in result.stderr
    assert not (hf_home / "token").exists()


def test_explicit_endpoint_beats_the_environment(hub: HubProcess, invoke: Invoke, monkeypatch: pytest.MonkeyPatch,
                                                 hf_home: Path) -> None:  # fmt: skip
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    listed = invoke("repo", "ls", "--endpoint", hub.url, "--token", hub.token, "--json")
    assert listed.exit_code == 0, listed.output


# -- serve ----------------------------------------------------------------------------------------------------------


def _serve(data_dir: Path, port: int) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "openckpt.cli.app", "serve", "--data-dir", str(data_dir), "--port", str(port),
           "--log-level", "warning"]  # fmt: skip
    env = {**os.environ, "COLUMNS": "200"}
    return zygote.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)


def _stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    try:
        out, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    return out


def test_serve_prints_the_lines_to_paste_on_first_start_only(tmp_path: Path) -> None:
    data, port = tmp_path / "data", free_port()
    url = f"http://127.0.0.1:{port}"
    process = _serve(data, port)
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:  # the panel is printed and flushed before the server starts
            lines.append(line)
            if "HF_TOKEN" in line:
                break
        text = "".join(lines)
        assert f"export HF_ENDPOINT={url}" in text, text
        found = re.search(r"export HF_TOKEN=(oc_\S+)", text)
        assert found, text
        assert "│" not in text  # the export lines copy without border characters
        wait_for(f"{url}/api/models", timeout=90)
        assert HfApi(endpoint=url, token=found.group(1)).whoami()["name"] == "admin"
    finally:
        _stop(process)
    assert (data / "openckpt.db").is_file()

    process = _serve(data, port)
    try:
        wait_for(f"{url}/api/models", timeout=90)
    finally:
        second = _stop(process)
    assert "HF_TOKEN" not in second  # the admin exists: no new token


def test_serve_help_lists_the_options(invoke: Invoke) -> None:
    result = invoke("serve", "--help")
    assert result.exit_code == 0
    for option in ("--data-dir", "--host", "--port", "--workers", "--database-url", "OPENCKPT_DATABASE_URL"):
        assert option in result.stdout


def test_serve_on_a_busy_port_fails_before_creating_the_admin(tmp_path: Path, invoke: Invoke) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = invoke("serve", "--data-dir", tmp_path / "data", "--port", port)
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "HF_TOKEN" not in result.stdout
    assert not (tmp_path / "data" / "openckpt.db").exists()
