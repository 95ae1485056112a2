"""Every public exception of openckpt.

::

    OpenckptError
    ├── FormatError (ValueError)               a file is not what the format says it must be
    │   ├── ManifestError                      openckpt.json missing fields, malformed, wrong version
    │   ├── SigningKeyError                    a key or certificate file is not a usable EC key / X.509 certificate
    │   └── XetFormatError                     a Xet xorb, shard or hash string is malformed or its hashes lie
    ├── IntegrityError                         bytes on disk differ from their recorded digest or size
    │   └── SignatureError                     a model signature (Sigstore bundle) is malformed or does not verify
    │       ├── UntrustedSignatureError        not signed by the given key, or its chain does not reach the given roots
    │       └── ModelMismatchError             the model's files differ from the signed ones: ``.differences``
    │   └── UploadMismatchError                an upload's bytes differ from the size or sha256 announced for them
    ├── StateMismatchError (ValueError)        checkpoint and target disagree (keys, shapes, dtypes)
    ├── UnsupportedStateError (TypeError)      a state value openckpt cannot store without pickle
    ├── UnsafeFileError                        refusing to load a file that needs unpickling
    ├── CheckpointNotFoundError (FileNotFoundError)
    ├── CheckpointExistsError (FileExistsError)
    ├── NoValidCheckpointError                 checkpoints exist but none of them loads
    ├── AsyncSaveError                         a background save failed; raised on the next call
    │   └── MirrorError                        copying a checkpoint to (or from) the manager's mirror failed
    ├── LicenseError (ValueError)              a license policy file or license declaration cannot be used
    ├── InvalidDigestError (ValueError)        a blob named by something that is not a lowercase hex sha256
    ├── UploadAbortedError                     bytes written to, or a commit of, a blob upload that was aborted
    ├── UploadTooLargeError                    an upload larger than the blob store takes in one blob
    ├── StorageError                           the blob store cannot be used: bad URL, no bucket, unreachable
    │   └── StorageBusyError                   storage maintenance cannot run now: another run holds it; retry
    ├── UnsuitableModelError (ValueError)      a bias suite does not fit the checkpoint's model type
    ├── HubUnreachableError                    (client) no hub answers at the endpoint: refused, unknown host
    ├── NotAHubError                           (client) the endpoint answers, but not as a hub (HTML, not JSON)
    └── HubError                               a hub request failed: ``.status`` (HTTP) and ``.code`` (X-Error-Code)
        ├── BadRequestError                    400 BadRequest: invalid name, path, body
        │   ├── UnsafeUploadError              400 UnsafeFile: a commit adds a file the scanner refuses
        │   └── XetUploadError                 400 InvalidXetUpload: a xorb or shard is malformed, lies or is unknown
        ├── UnauthorizedError                  401 Unauthorized: missing or invalid token
        ├── ForbiddenError                     403 Forbidden: authenticated, not allowed
        │   ├── FileFlaggedError               403 FileFlagged: the scanner flagged the file; not released yet
        │   └── PolicyViolationError           403 PolicyViolation: a commit breaks the owner's license policy
        ├── GatedRepoError                     403 GatedRepo: access must be requested first
        ├── RepoNotFoundError                  404 RepoNotFound (also for private repos the caller cannot see)
        │   ├── RepoMovedError                 the repo has a new name: 307 to it for reads, 404 for writes
        │   └── BucketNotFoundError            no bucket the caller may see (the client's BucketNotFoundError)
        ├── RevisionNotFoundError              404 RevisionNotFound
        ├── EntryNotFoundError                 404 EntryNotFound
        ├── WebhookNotFoundError               404 WebhookNotFound: no webhook of the caller has this id
        ├── AccountNotFoundError               404 AccountNotFound: no user (or organisation) of this name
        ├── CollectionNotFoundError            404 CollectionNotFound: no collection (or item of it) the caller may see
        ├── DiscussionNotFoundError            404 DiscussionNotFound: no discussion (or comment) of this number/id
        ├── ConflictError                      409 Conflict: exists already
        ├── PreconditionFailedError            412 PreconditionFailed: parentCommit is not the branch head
        ├── RequestTimeoutError                408 RequestTimeout: the client stopped sending the request body
        ├── PayloadTooLargeError               413 PayloadTooLarge: a body, a JSON value or a file over a bound
        ├── RangeNotSatisfiableError           416 RangeNotSatisfiable: a Range that starts at or past the end
        ├── HeaderFieldsTooLargeError          431 HeaderFieldsTooLarge: too many or too large request headers
        └── UpstreamError                      502 UpstreamError: a mirror's upstream hub failed or answered wrongly
            └── UpstreamTimeoutError           504 UpstreamTimeout: a mirror's upstream hub did not answer in time

Errors about a file carry it in ``.path`` and name it in the message. Library layers raise library errors only; the
hub answers each class with the status of its HubError, or of its entry in ``openckpt.hub.error_boundary``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AccountNotFoundError",
    "AsyncSaveError",
    "BadRequestError",
    "BucketNotFoundError",
    "CollectionNotFoundError",
    "DiscussionNotFoundError",
    "ConflictError",
    "EntryNotFoundError",
    "FileFlaggedError",
    "ForbiddenError",
    "GatedRepoError",
    "HeaderFieldsTooLargeError",
    "HubError",
    "HubUnreachableError",
    "InvalidDigestError",
    "NotAHubError",
    "LicenseError",
    "MirrorError",
    "PayloadTooLargeError",
    "PolicyViolationError",
    "PreconditionFailedError",
    "RangeNotSatisfiableError",
    "RepoMovedError",
    "RepoNotFoundError",
    "RequestTimeoutError",
    "RevisionNotFoundError",
    "UnauthorizedError",
    "UnsafeUploadError",
    "UpstreamError",
    "UpstreamTimeoutError",
    "WebhookNotFoundError",
    "XetUploadError",
    "CheckpointExistsError",
    "CheckpointNotFoundError",
    "FormatError",
    "IntegrityError",
    "ManifestError",
    "ModelMismatchError",
    "NoValidCheckpointError",
    "OpenckptError",
    "SignatureError",
    "SigningKeyError",
    "StateMismatchError",
    "StorageBusyError",
    "StorageError",
    "UnsafeFileError",
    "UntrustedSignatureError",
    "UnsupportedStateError",
    "UnsuitableModelError",
    "UploadAbortedError",
    "UploadMismatchError",
    "UploadTooLargeError",
    "XetFormatError",
]


class OpenckptError(Exception):
    """Root of every openckpt error. ``path`` is the file or directory concerned, if any."""

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        super().__init__(f"{path}: {message}" if path is not None else message)


class FormatError(OpenckptError, ValueError):
    """A file does not follow the format it claims (safetensors header, JSON, layout)."""


class ManifestError(FormatError):
    """``openckpt.json`` is missing, malformed, or of an unsupported version."""


class SigningKeyError(FormatError):
    """A key or certificate cannot be used for model signing: not PEM, not EC P-256/P-384/P-521, or mismatched."""


class XetFormatError(FormatError):
    """Xet bytes are malformed: a truncated or corrupt xorb or shard, a bad hash string, or a lying hash."""


class IntegrityError(OpenckptError):
    """A file's bytes differ from the size or digest recorded in the manifest."""


class SignatureError(IntegrityError):
    """A model signature is malformed, untrusted, or does not match the model."""


class UntrustedSignatureError(SignatureError):
    """The signature does not verify with the given key, or its certificate chain does not reach the given roots."""


class ModelMismatchError(SignatureError):
    """The model's files differ from the signed manifest; ``differences`` names each one."""

    def __init__(self, message: str, *, differences: list[str], path: str | Path | None = None) -> None:
        super().__init__(message, path=path)
        self.differences = differences


class UploadMismatchError(IntegrityError):
    """An upload's bytes differ from the size or sha256 announced for it: the blob is not made visible."""


class StateMismatchError(OpenckptError, ValueError):
    """The checkpoint does not fit the target state (missing keys, shape or dtype differences)."""


class UnsupportedStateError(OpenckptError, TypeError):
    """A state value has a type that cannot be stored as tensors + JSON."""


class UnsafeFileError(OpenckptError):
    """Loading the file would require unpickling arbitrary objects; openckpt refuses."""


class CheckpointNotFoundError(OpenckptError, FileNotFoundError):
    """No checkpoint at the given path."""


class CheckpointExistsError(OpenckptError, FileExistsError):
    """A checkpoint already exists where a new one was to be committed."""


class NoValidCheckpointError(OpenckptError):
    """Checkpoints exist, but every one of them failed to load; resuming from scratch would be silent data loss."""


class AsyncSaveError(OpenckptError):
    """A background save failed. The original exception is ``__cause__``."""


class MirrorError(AsyncSaveError):
    """Uploading a checkpoint to the manager's mirror failed (raised on the next call), or reading the mirror did."""


class LicenseError(OpenckptError, ValueError):
    """A license policy or declaration that cannot be used (bad YAML, unknown keys, unknown license ids)."""


class InvalidDigestError(OpenckptError, ValueError):
    """A blob was named by a string that is not a lowercase hex sha256."""


class UploadAbortedError(OpenckptError):
    """Bytes were written to, or a commit asked of, a blob upload that was aborted."""


class UploadTooLargeError(OpenckptError):
    """An upload grew past what the blob store takes in one blob (S3: 10,000 multipart parts)."""


class StorageError(OpenckptError):
    """The blob store cannot be used: an invalid storage URL, a missing bucket, an unreachable endpoint, no access."""


class StorageBusyError(StorageError):
    """Storage maintenance (garbage collection) cannot run now: another run holds its lease, or the database's
    locks could not be taken in time. Retry later."""


class UnsuitableModelError(OpenckptError, ValueError):
    """A bias suite was asked of a model it does not apply to (e.g. CrowS-Pairs of a classifier)."""


class HubUnreachableError(OpenckptError):
    """(Client side) nothing answers at the hub's address: connection refused, unknown host. ``.endpoint``."""

    def __init__(self, message: str, *, endpoint: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class NotAHubError(OpenckptError):
    """(Client side) a server answers at the endpoint, but not with the Hub API: an HTML page, not JSON."""

    def __init__(self, message: str, *, endpoint: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class HubError(OpenckptError):
    """An error the hub answers with ``status``, the ``X-Error-Code`` header ``code`` and extra ``headers``."""

    status = 500
    code = "InternalError"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers or {}


class BadRequestError(HubError, ValueError):
    status, code = 400, "BadRequest"


class UnsafeUploadError(BadRequestError):
    """A commit adds a file the scanner finds malicious (or, under the ``block`` policy, not clean)."""

    code = "UnsafeFile"


class XetUploadError(BadRequestError):
    """A Xet upload the CAS refuses: malformed, hashes that lie, or references to xorbs and chunks it lacks."""

    code = "InvalidXetUpload"


class UnauthorizedError(HubError):
    status, code = 401, "Unauthorized"


class ForbiddenError(HubError, PermissionError):
    status, code = 403, "Forbidden"


class FileFlaggedError(ForbiddenError):
    """A download of a file the scanner flagged, which the repo's owner or an admin has not released."""

    code = "FileFlagged"


class PolicyViolationError(ForbiddenError):
    """A commit that the license policy of the repo's owner (or of the server) refuses."""

    code = "PolicyViolation"


class GatedRepoError(HubError):
    status, code = 403, "GatedRepo"


class RepoNotFoundError(HubError):
    status, code = 404, "RepoNotFound"


class RepoMovedError(RepoNotFoundError):
    """The repo named ``old_id`` was moved to ``new_id``: the hub redirects reads (GET, HEAD) there."""

    def __init__(self, message: str, *, old_id: str, new_id: str) -> None:
        super().__init__(message)
        self.old_id, self.new_id = old_id, new_id


class BucketNotFoundError(RepoNotFoundError):
    """No bucket of this id, or a private one the caller may not see: ``RepoNotFound`` on ``/api/buckets/``."""


class RevisionNotFoundError(HubError):
    status, code = 404, "RevisionNotFound"


class EntryNotFoundError(HubError):
    status, code = 404, "EntryNotFound"


class WebhookNotFoundError(HubError):
    status, code = 404, "WebhookNotFound"


class AccountNotFoundError(HubError):
    """No user, or no organisation, of the name asked for (a user's name asked as an organisation's, too)."""

    status, code = 404, "AccountNotFound"


class CollectionNotFoundError(HubError):
    """No collection of this slug that the caller may see, or no item of this id in it."""

    status, code = 404, "CollectionNotFound"


class DiscussionNotFoundError(HubError):
    """No discussion or pull request of this number in the repo, or no comment of this id in it."""

    status, code = 404, "DiscussionNotFound"


class ConflictError(HubError):
    status, code = 409, "Conflict"


class PreconditionFailedError(HubError):
    status, code = 412, "PreconditionFailed"


class RequestTimeoutError(HubError):
    """The client sent no byte of the request body for longer than the hub waits (``OPENCKPT_BODY_TIMEOUT``)."""

    status, code = 408, "RequestTimeout"


class PayloadTooLargeError(HubError):
    status, code = 413, "PayloadTooLarge"


class RangeNotSatisfiableError(HubError):
    """A ``Range`` that starts at or after the end of the file: the client's signal that it has read everything."""

    status, code = 416, "RangeNotSatisfiable"


class HeaderFieldsTooLargeError(HubError):
    """The request line and headers are larger, or the headers more, than the hub accepts."""

    status, code = 431, "HeaderFieldsTooLarge"


class UpstreamError(HubError):
    """A mirrored read the upstream hub could not answer: unreachable, an error, or bytes other than it announced."""

    status, code = 502, "UpstreamError"


class UpstreamTimeoutError(UpstreamError):
    """A mirrored read the upstream hub did not answer in time."""

    status, code = 504, "UpstreamTimeout"
