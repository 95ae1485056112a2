"""The hub's error boundary: every class of the error tree has a status and an ``X-Error-Code`` the stock client
understands, and what the hub did not expect is a 500 with a request id in its log, never a 400."""

from __future__ import annotations

import hashlib
import inspect
import re
import uuid

import httpx
import httpx2  # the HTTP library of the installed huggingface_hub: its responses are the client's
import pytest
from huggingface_hub import HfApi
from huggingface_hub import errors as hf_errors
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

import openckpt.errors
from openckpt.errors import HubError, OpenckptError, RepoNotFoundError, RevisionNotFoundError
from openckpt.hub.error_boundary import INTERNAL, LIBRARY_ERRORS, answer_of, request_id_of
from tests.hubtools import HubProcess

ENDPOINT = "http://hub.test"

CLIENT_CLASSES: dict[str, type[Exception]] = {
    "RepoNotFound": hf_errors.RepositoryNotFoundError,
    "RevisionNotFound": hf_errors.RevisionNotFoundError,
    "EntryNotFound": hf_errors.RemoteEntryNotFoundError,
    "GatedRepo": hf_errors.GatedRepoError,
}
"""The ``X-Error-Code`` values huggingface_hub turns into an error class of their own, and that class."""


def error_tree(root: type[OpenckptError] = OpenckptError) -> list[type[OpenckptError]]:
    """``root`` and every subclass of it, recursively."""
    return [root, *(c for sub in root.__subclasses__() for c in error_tree(sub))]


def client_codes() -> set[str]:
    """The codes the installed client's ``hf_raise_for_status`` compares ``X-Error-Code`` with, read from its source."""
    return set(re.findall(r'error_code == "(\w+)"', inspect.getsource(hf_raise_for_status)))


def answered(kind: type[BaseException], request_id: str) -> httpx2.Response:
    status, code = answer_of(kind)
    headers = {"X-Error-Code": code, "X-Error-Message": f"a {kind.__name__}", "X-Request-Id": request_id}
    request = httpx2.Request("GET", f"{ENDPOINT}/api/models/alice/model/revision/main")
    return httpx2.Response(status, headers=headers, json={"error": f"a {kind.__name__}"}, request=request)


def test_the_client_knows_the_codes_we_give_meaning() -> None:
    assert set(CLIENT_CLASSES) == client_codes()  # a new code in the client: decide which of ours maps to it


@pytest.mark.parametrize("kind", error_tree(), ids=lambda k: k.__name__)
def test_every_error_class_has_a_status_and_a_code_the_client_understands(kind: type[OpenckptError]) -> None:
    assert kind.__name__ in (openckpt.errors.__doc__ or ""), "each class is drawn in the tree of openckpt.errors"
    status, code = answer_of(kind)
    assert 400 <= status <= 599 and re.fullmatch(r"[A-Z][A-Za-z]+", code)
    if not issubclass(kind, HubError) and not any(issubclass(kind, k) for k in LIBRARY_ERRORS):
        assert (status, code) == INTERNAL  # a library error the hub does not expect is the server's fault
    request_id = uuid.uuid4().hex
    with pytest.raises(hf_errors.HfHubHTTPError) as raised:
        hf_raise_for_status(answered(kind, request_id))
    assert raised.value.response.status_code == status
    assert request_id in str(raised.value)
    if code in CLIENT_CLASSES:
        assert type(raised.value) is CLIENT_CLASSES[code]
    elif status == 400:
        assert type(raised.value) is hf_errors.BadRequestError
    else:  # not one of the client's not-found or gated errors: a user would be told something false
        assert type(raised.value) is hf_errors.HfHubHTTPError


def test_only_the_classes_meant_use_the_clients_codes() -> None:
    meant = {"RepoNotFound": RepoNotFoundError, "RevisionNotFound": RevisionNotFoundError}
    for kind in error_tree():
        code = answer_of(kind)[1]
        if code in meant:
            assert issubclass(kind, meant[code]), kind


def test_unexpected_exceptions_are_server_errors() -> None:
    for kind in (ValueError, KeyError, RuntimeError, openckpt.errors.IntegrityError, openckpt.errors.FormatError):
        assert answer_of(kind) == INTERNAL
    assert answer_of(openckpt.errors.UploadMismatchError) == (400, "BadRequest")  # the client's bytes
    assert answer_of(openckpt.errors.StorageBusyError) == (503, "StorageUnavailable")


def test_request_ids_are_the_clients_when_well_formed() -> None:
    def scope(**headers: str) -> dict[str, object]:
        return {"headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]}

    assert request_id_of(scope(x_request_id="abc-123")) == "abc-123"
    assert request_id_of(scope(x_amzn_trace_id="Root=1-67-abc")) == "Root=1-67-abc"
    for bad in ("", "a b", "x" * 200, "\u00e9t\u00e9", "-leading"):
        assert re.fullmatch(r"[0-9a-f]{32}", request_id_of(scope(x_request_id=bad)))


def test_a_blob_missing_under_a_committed_file_is_a_500_with_a_request_id(hub: HubProcess) -> None:
    api = HfApi(endpoint=hub.url, token=hub.token)
    repo = api.create_repo(f"r{uuid.uuid4().hex[:10]}").repo_id
    content = b"weights that the store loses " + uuid.uuid4().bytes
    api.upload_file(path_or_fileobj=content, path_in_repo="w.bin", repo_id=repo)
    sha256 = hashlib.sha256(content).hexdigest()
    blob = hub.data_dir / "store" / "blobs" / sha256[:2] / sha256[2:4] / sha256
    blob.unlink()  # a store that lost a committed file's bytes: the server's fault, not the request's
    url = f"{hub.url}/{repo}/resolve/main/w.bin"
    response = get_session().get(url, headers=build_hf_headers(token=hub.token))
    assert response.status_code == 500
    assert response.headers["X-Error-Code"] == "InternalError"
    request_id = response.headers["X-Request-Id"]
    with pytest.raises(hf_errors.HfHubHTTPError) as raised:
        hf_raise_for_status(response)
    assert request_id in str(raised.value)
    log = hub.log.read_text(errors="replace")
    assert f"request {request_id} failed" in log and "IntegrityError" in log and "Traceback" in log
    # a request id the client sends is the one logged and answered
    mine = f"client-{uuid.uuid4().hex}"
    response = httpx.get(url, headers={**build_hf_headers(token=hub.token), "X-Request-Id": mine})
    assert (response.status_code, response.headers["X-Request-Id"]) == (500, mine)
    assert f"request {mine} failed" in hub.log.read_text(errors="replace")


def test_every_answer_carries_a_request_id(hub: HubProcess) -> None:
    ok = httpx.get(f"{hub.url}/api/models")
    missing = httpx.get(f"{hub.url}/api/models/nobody/nothing")
    assert ok.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", ok.headers["X-Request-Id"])
    assert (missing.status_code, missing.headers["X-Error-Code"]) == (404, "RepoNotFound")
    assert missing.headers["X-Request-Id"] != ok.headers["X-Request-Id"]
