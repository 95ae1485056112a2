"""The routes' dependencies: the caller (anonymous, by token, refused), the repo a path names, and JSON bodies as
models read within the body bounds, each error in the Hub's shape."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient
from pydantic import field_validator

from openckpt.hub.app import create_app
from openckpt.hub.bodies import MAX_DEPTH, JsonObject
from openckpt.hub.context import SESSION_COOKIE
from openckpt.hub.deps import HubDep, PrincipalDep, RepoDep, RepoIdDep, SettingsDep, UserDep, ViewerDep, json_body
from openckpt.hub.services.accounts import authenticate
from openckpt.hub.services.people_admin import create_user
from openckpt.hub.services.web_sessions import start_session
from openckpt.hub.settings import Settings
from openckpt.protocol import ERROR_CODE


class Shape(JsonObject):
    expected = "expected JSON {name, size?}"
    name: str
    size: int = 0

    @field_validator("size")
    @classmethod
    def _size(cls, value: int) -> int:
        if value < 0:
            raise ValueError("size must not be negative")
        return value


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str, str]]:
    data: Path = tmp_path_factory.mktemp("hub")
    app = create_app(Settings.from_env(data_dir=data, max_json_bytes=1000), migrate=True)
    before = len(app.router.routes)

    @app.get("/t/who")
    def who(principal: PrincipalDep, hub: HubDep, settings: SettingsDep) -> dict[str, Any]:
        assert hub.settings is settings
        return {"name": principal.name if principal else None}

    @app.post("/t/viewer")
    async def viewer(viewer: ViewerDep) -> dict[str, Any]:
        return {"name": viewer.name if viewer else None}

    @app.post("/t/user")
    async def signed_in(user: UserDep) -> dict[str, Any]:
        return {"name": user.name}

    @app.get("/t/{plural}/{owner}/{name}")
    def repo(repo: RepoDep, repo_id: RepoIdDep) -> dict[str, Any]:
        return {"type": repo.type, "id": repo.id, "same": repo_id == repo.id}

    @app.post("/t/body")
    async def body(user: UserDep, shape: Annotated[Shape, Depends(json_body(Shape))]) -> dict[str, Any]:
        return shape.model_dump()

    @app.post("/t/optional")
    async def optional(shape: Annotated[Shape, Depends(json_body(Shape, optional=True))]) -> dict[str, Any]:
        return shape.model_dump()

    app.router.routes[:] = app.router.routes[before:] + app.router.routes[:before]  # before the UI's /{owner}/{name}
    with app.state.hub.db.write() as session:
        _, secret = create_user(session, "alice")
        cookie = start_session(session, authenticate(session, secret), lifetime=3600)
    with TestClient(app) as client:
        yield client, secret, cookie


def _error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers[ERROR_CODE] == code
    return str(response.json()["error"])


def test_the_caller(app: tuple[TestClient, str, str]) -> None:
    client, secret, _ = app
    auth = {"Authorization": f"Bearer {secret}"}
    assert client.get("/t/who").json() == {"name": None}
    assert client.get("/t/who", headers=auth).json() == {"name": "alice"}
    _error(client.get("/t/who", headers={"Authorization": "Bearer nope"}), 401, "Unauthorized")
    assert client.post("/t/user", headers=auth).json() == {"name": "alice"}
    assert "needs a token" in _error(client.post("/t/user"), 401, "Unauthorized")
    _error(client.post("/t/user", headers={"Authorization": "Bearer nope"}), 401, "Unauthorized")


def test_the_repo_of_the_path(app: tuple[TestClient, str, str]) -> None:
    client, _, _ = app
    assert client.get("/t/datasets/alice/data").json() == {"type": "dataset", "id": "alice/data", "same": True}
    assert "unknown repo type" in _error(client.get("/t/things/alice/data"), 400, "BadRequest")
    _error(client.get("/t/models/alice/bad%20name"), 400, "BadRequest")


def test_json_bodies_as_models(app: tuple[TestClient, str, str]) -> None:
    client, secret, _ = app
    auth = {"Authorization": f"Bearer {secret}"}
    assert client.post("/t/body", headers=auth, json={"name": "x", "more": 1}).json() == {"name": "x", "size": 0}
    assert _error(client.post("/t/body", headers=auth, json={"name": 3}), 400, "BadRequest") == Shape.expected
    assert _error(client.post("/t/body", headers=auth, json=[1]), 400, "BadRequest") == "expected a JSON object"
    message = _error(client.post("/t/body", headers=auth, json={"name": "x", "size": -1}), 400, "BadRequest")
    assert message == "size must not be negative"
    _error(client.post("/t/body", headers=auth, content=b"{"), 400, "BadRequest")
    deep = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
    assert "nested deeper" in _error(client.post("/t/body", headers=auth, content=deep), 400, "BadRequest")
    big = {"name": "x" * 2000}
    _error(client.post("/t/body", headers=auth, json=big), 413, "PayloadTooLarge")
    _error(client.post("/t/body", json={"name": "x"}), 401, "Unauthorized")  # the caller is checked first
    assert _error(client.post("/t/optional"), 400, "BadRequest") == Shape.expected  # {} lacks the name
    _error(client.post("/t/body", headers=auth), 400, "BadRequest")  # an empty body is not JSON


def test_the_viewer_of_a_web_form(app: tuple[TestClient, str, str]) -> None:
    """A form post counts the session cookie (the API's caller does not); an ended session is signed out."""
    client, _, cookie = app
    assert client.post("/t/viewer").json() == {"name": None}
    try:
        client.cookies.set(SESSION_COOKIE, cookie)
        assert client.post("/t/viewer").json() == {"name": "alice"}
        _error(client.post("/t/user"), 401, "Unauthorized")
        client.cookies.set(SESSION_COOKIE, "ended")
        assert client.post("/t/viewer").json() == {"name": None}
    finally:
        client.cookies.clear()
