"""``openckpt login|whoami|logout`` against a real hub: a token per endpoint in openckpt's store, huggingface_hub's
token file (usually a huggingface.co token) left alone unless asked, and the one token resolver every command uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.hubtools import HubProcess

from .helpers import Invoke

HF_COM_TOKEN = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"  # what a huggingface.co login leaves there


def hf_token(home: Path) -> Path:
    return home / "hf" / "token"


def store(home: Path) -> Path:
    return home / "openckpt" / "tokens.json"


def test_login_keeps_the_huggingface_token(hub: HubProcess, invoke: Invoke, auth_home: Path) -> None:
    hf_token(auth_home).parent.mkdir(parents=True)
    hf_token(auth_home).write_text(HF_COM_TOKEN)

    logged = invoke("login", "--token", hub.token, "--endpoint", hub.url)
    assert logged.exit_code == 0, logged.output
    assert f"logged in to {hub.url} as admin" in logged.stdout
    assert "left as it is" in logged.stderr
    assert hf_token(auth_home).read_text() == HF_COM_TOKEN
    assert json.loads(store(auth_home).read_text()) == {hub.url: hub.token}
    assert store(auth_home).stat().st_mode & 0o077 == 0
    assert json.loads((auth_home / "openckpt" / "config.json").read_text()) == {"endpoint": hub.url}


def test_login_add_to_hf_token_replaces_it(hub: HubProcess, invoke: Invoke, auth_home: Path) -> None:
    hf_token(auth_home).parent.mkdir(parents=True)
    hf_token(auth_home).write_text(HF_COM_TOKEN)
    logged = invoke("login", "--token", hub.token, "--endpoint", hub.url, "--add-to-hf-token")
    assert logged.exit_code == 0, logged.output
    assert hf_token(auth_home).read_text() == hub.token
    assert hf_token(auth_home).stat().st_mode & 0o077 == 0


def test_login_writes_an_absent_hf_token_file_for_the_hf_endpoint_hub(
    hub: HubProcess, invoke: Invoke, auth_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert invoke("login", "--token", hub.token, "--endpoint", hub.url).exit_code == 0
    assert not hf_token(auth_home).exists()  # HF_ENDPOINT unset: not huggingface_hub's hub
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    assert invoke("login", "--token", hub.token).exit_code == 0
    assert hf_token(auth_home).read_text() == hub.token


def test_whoami_and_logout(hub: HubProcess, invoke: Invoke, auth_home: Path) -> None:
    assert invoke("login", "--token", hub.token, "--endpoint", hub.url).exit_code == 0

    who = invoke("whoami")  # the endpoint from the config, the token from the store
    assert who.exit_code == 0, who.output
    assert who.stdout.startswith(f"admin at {hub.url}")
    assert str(store(auth_home)) in who.stderr
    identity = json.loads(invoke("whoami", "--json").stdout)
    assert identity["user"] == "admin" and identity["endpoint"] == hub.url and identity["role"] == "write"

    out = invoke("logout")
    assert out.exit_code == 0, out.output
    assert "logged out" in out.stdout
    assert json.loads(store(auth_home).read_text()) == {}
    gone = invoke("whoami")
    assert gone.exit_code == 4
    assert f"not logged in to {hub.url}" in gone.stderr
    again = invoke("logout")
    assert again.exit_code == 0 and "no token stored" in again.stderr


def test_logout_empties_the_hf_token_file_only_if_it_holds_the_hub_token(
    hub: HubProcess, invoke: Invoke, auth_home: Path
) -> None:
    assert invoke("login", "--token", hub.token, "--endpoint", hub.url, "--add-to-hf-token").exit_code == 0
    assert invoke("logout").exit_code == 0
    assert not hf_token(auth_home).exists()

    assert invoke("login", "--token", hub.token, "--endpoint", hub.url).exit_code == 0
    hf_token(auth_home).write_text(HF_COM_TOKEN)
    assert invoke("logout").exit_code == 0
    assert hf_token(auth_home).read_text() == HF_COM_TOKEN


def test_the_hf_token_file_goes_only_to_the_hf_endpoint_hub(
    hub: HubProcess, invoke: Invoke, auth_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hf_token(auth_home).parent.mkdir(parents=True)
    hf_token(auth_home).write_text(hub.token)
    refused = invoke("whoami", "--endpoint", hub.url)
    assert refused.exit_code == 4, refused.output  # HF_ENDPOINT names another hub (huggingface.co): not sent
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    who = invoke("whoami")
    assert who.exit_code == 0, who.output
    assert str(hf_token(auth_home)) in who.stderr


def test_hf_token_and_explicit_token_still_win(
    hub: HubProcess, invoke: Invoke, auth_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", hub.token)
    who = invoke("whoami", "--endpoint", hub.url)
    assert who.exit_code == 0, who.output
    assert "token from HF_TOKEN" in who.stderr
    bad = invoke("whoami", "--endpoint", hub.url, "--token", "oc_not-a-token")
    assert bad.exit_code == 4
    assert "does not accept this token (401)" in bad.stderr


def test_login_with_a_bad_token_saves_nothing(hub: HubProcess, invoke: Invoke, auth_home: Path) -> None:
    result = invoke("login", "--token", "oc_not-a-token", "--endpoint", hub.url)
    assert result.exit_code == 4
    assert "does not accept this token (401)" in result.stderr
    assert not store(auth_home).exists()
    assert not hf_token(auth_home).exists()
