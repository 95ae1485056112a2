"""The one place the CLI turns an exception into a one-line message and an exit code.

Exit codes (documented in ``openckpt --help``): 0 ok; 1 findings or differences; 2 usage (bad arguments, input the
command cannot use or refuses as unsafe, a request the hub refuses as invalid or conflicting); 3 not found (file,
repo, revision, entry, account); 4 authentication or permission (no token, a refused token, a gated or forbidden
repo); 5 network or server (no hub answers, not a hub, a 5xx, the blob store). Messages never carry a transport's
links or Python reprs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from openckpt.errors import (
    CheckpointNotFoundError,
    HubError,
    HubUnreachableError,
    IntegrityError,
    NotAHubError,
    OpenckptError,
    StorageError,
)

__all__ = [
    "EXIT_AUTH",
    "EXIT_FINDINGS",
    "EXIT_NETWORK",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "Failure",
    "describe",
]

EXIT_OK = 0
EXIT_FINDINGS = 1
"""verify, pull or scan found a mismatch or an unsafe file; diff found differences."""
EXIT_USAGE = 2
"""Bad arguments, or input the command cannot use, an unsafe file among them (the framework's code for usage
errors)."""
EXIT_NOT_FOUND = 3
EXIT_AUTH = 4
EXIT_NETWORK = 5


@dataclass(frozen=True)
class Failure:
    message: str
    code: int


@dataclass(frozen=True)
class Call:
    """What the failed command was asked: to name the hub and suggest repos."""

    endpoint: str | None = None
    token: str | None = None
    repo_id: str | None = None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _code_of_status(status: int) -> int:
    if status in (401, 403):
        return EXIT_AUTH
    if status in (404, 410):
        return EXIT_NOT_FOUND
    if status >= 500:
        return EXIT_NETWORK
    return EXIT_USAGE


def _endpoint(call: Call) -> str:
    from openckpt.client.config import resolve_endpoint

    try:
        return resolve_endpoint(call.endpoint)
    except OpenckptError:
        return call.endpoint or "the hub"


def _server_message(error: BaseException) -> str:
    """What the hub said (its JSON ``error``), without huggingface_hub's URL and documentation links."""
    said = getattr(error, "server_message", None)
    if said:
        return " ".join(str(said).split())
    response = getattr(error, "response", None)
    if response is not None:
        try:
            body = response.json()
        except Exception:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error") or body.get("detail"), str):
            return str(body.get("error") or body.get("detail"))
        return f"HTTP {response.status_code} {getattr(response, 'reason_phrase', '')}".strip()
    first = str(error).strip().splitlines()
    return first[0] if first else type(error).__name__


def _suggestion(repo_id: str, repo_type: str | None, call: Call) -> str:
    try:
        from openckpt.client.repos import similar_repos

        kind = repo_type if repo_type in ("dataset", "space") else "model"
        close = similar_repos(repo_id, repo_type=kind, endpoint=call.endpoint, token=call.token)  # type: ignore[arg-type]
    except Exception:
        return ""
    return f": did you mean {close[0]}?" if close else ""


def _hf_failure(error: BaseException, call: Call) -> Failure | None:
    """huggingface_hub's errors (imported lazily: local commands never load it)."""
    from huggingface_hub import errors as hf

    if isinstance(error, hf.GatedRepoError):
        repo = error.repo_id or "this repo"
        return Failure(f"{repo} is gated: request access on its page at {_endpoint(call)}/{repo}", EXIT_AUTH)
    if isinstance(error, hf.RepositoryNotFoundError):
        kind = f"{error.repo_type} " if error.repo_type and error.repo_type != "model" else ""
        named = error.repo_id or call.repo_id
        repo = f"repo {named}" if named else "such repo"
        hint = _suggestion(named, error.repo_type, call) if named else ""
        if not hint:
            hint = " (or it is private and your token cannot see it)"
        return Failure(f"no {kind}{repo} at {_endpoint(call)}{hint}", EXIT_NOT_FOUND)
    if isinstance(error, hf.RevisionNotFoundError):
        return Failure(f"no such revision in {error.repo_id or 'the repo'}: {_server_message(error)}", EXIT_NOT_FOUND)
    if isinstance(error, hf.EntryNotFoundError | hf.LocalEntryNotFoundError):
        return Failure(f"no such file: {_server_message(error)}", EXIT_NOT_FOUND)
    if isinstance(error, hf.LocalTokenNotFoundError):
        return Failure("not logged in: run `openckpt login` or set HF_TOKEN", EXIT_AUTH)
    if isinstance(error, hf.HfHubHTTPError):
        response = error.response
        status = response.status_code if response is not None else 500
        said = _server_message(error)
        if status == 401:
            return Failure(
                f"{_endpoint(call)} refused the token ({said}): run `openckpt login` or pass --token", EXIT_AUTH
            )
        if status == 409:
            return Failure(f"{said} (409 conflict)", EXIT_USAGE)
        return Failure(f"{said} (HTTP {status})", _code_of_status(status))
    return None


def _transport_failure(error: BaseException, call: Call) -> Failure | None:
    """A transport error huggingface_hub gave up on (timeouts, dropped connections), told apart by class name."""
    names = {(cls.__module__.split(".")[0], cls.__name__) for cls in type(error).__mro__}
    if names & {("httpx", "TransportError"), ("httpx2", "TransportError"), ("requests", "ConnectionError")}:
        where = _endpoint(call)
        if "Connect" in type(error).__name__:
            return Failure(f"no hub answers at {where} — is `openckpt serve` running?", EXIT_NETWORK)
        return Failure(f"the hub at {where} stopped answering ({type(error).__name__})", EXIT_NETWORK)
    if isinstance(error, json.JSONDecodeError):
        where = _endpoint(call)
        return Failure(f"{where} answered something that is not JSON: is it a hub's URL?", EXIT_NETWORK)
    return None


def _openckpt_failure(error: OpenckptError) -> Failure:
    if isinstance(error, HubUnreachableError):
        return Failure(f"{_one_line(error)} — is `openckpt serve` running?", EXIT_NETWORK)
    if isinstance(error, NotAHubError):
        return Failure(f"{_one_line(error)} Set --endpoint or HF_ENDPOINT to the hub's URL.", EXIT_NETWORK)
    if isinstance(error, HubError):  # the hub's words, as its HTTP errors are shown
        return Failure(_one_line(error), _code_of_status(error.status))
    message = f"{type(error).__name__}: {_one_line(error)}"
    if isinstance(error, CheckpointNotFoundError):
        return Failure(message, EXIT_NOT_FOUND)
    if isinstance(error, IntegrityError):
        return Failure(message, EXIT_FINDINGS)
    if isinstance(error, StorageError):
        return Failure(message, EXIT_NETWORK)
    return Failure(message, EXIT_USAGE)


def describe(
    error: BaseException, *, endpoint: str | None = None, token: str | None = None, repo_id: str | None = None
) -> Failure | None:
    """The message and exit code for ``error`` raised by a command given ``endpoint``, ``token`` and ``repo_id``;
    None for an exception no rule knows (a bug: show its traceback)."""
    call = Call(endpoint, token, repo_id)
    if isinstance(error, OpenckptError):
        return _openckpt_failure(error)
    if type(error).__module__.startswith("huggingface_hub") and (failure := _hf_failure(error, call)):
        return failure
    if failure := _transport_failure(error, call):
        return failure
    if isinstance(error, FileNotFoundError):
        return Failure(_one_line(error), EXIT_NOT_FOUND)
    if isinstance(error, PermissionError):
        return Failure(_one_line(error), EXIT_AUTH)
    if isinstance(error, OSError):
        return Failure(_one_line(error), EXIT_USAGE)
    if isinstance(error, ModuleNotFoundError) and error.name == "torch":
        return Failure("this command needs torch: pip install 'openckpt[torch]'", EXIT_USAGE)
    return None
