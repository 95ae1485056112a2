"""Hub settings: command-line options and ``OPENCKPT_*`` environment variables, read here and nowhere else."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = ["SECRET_KEY_FILE", "Settings"]


def _boolean(value: object) -> bool:
    return value if isinstance(value, bool) else str(value).lower() not in ("0", "false", "no", "off", "")


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


_ENV: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "data_dir": ("OPENCKPT_DATA_DIR", Path),
    "host": ("OPENCKPT_HOST", str),
    "port": ("OPENCKPT_PORT", int),
    "workers": ("OPENCKPT_WORKERS", int),
    "threads": ("OPENCKPT_THREADS", int),
    "database_url": ("OPENCKPT_DATABASE_URL", str),
    "public_url": ("OPENCKPT_PUBLIC_URL", str),
    "max_inline_bytes": ("OPENCKPT_MAX_INLINE_BYTES", int),
    "max_commit_bytes": ("OPENCKPT_MAX_COMMIT_BYTES", int),
    "max_commit_operations": ("OPENCKPT_MAX_COMMIT_OPERATIONS", int),
    "max_file_size": ("OPENCKPT_MAX_FILE_SIZE", int),
    "max_json_bytes": ("OPENCKPT_MAX_JSON_BYTES", int),
    "max_header_bytes": ("OPENCKPT_MAX_HEADER_BYTES", int),
    "max_headers": ("OPENCKPT_MAX_HEADERS", int),
    "body_timeout": ("OPENCKPT_BODY_TIMEOUT", float),
    "multipart_threshold": ("OPENCKPT_MULTIPART_THRESHOLD", int),
    "multipart_chunk_size": ("OPENCKPT_MULTIPART_CHUNK_SIZE", int),
    "signed_url_ttl": ("OPENCKPT_SIGNED_URL_TTL", int),
    "scan_policy": ("OPENCKPT_SCAN_POLICY", str),
    "scan_rules_version": ("OPENCKPT_SCAN_RULES_VERSION", str),
    "scan_monitor": ("OPENCKPT_SCAN_MONITOR", _boolean),
    "policy_file": ("OPENCKPT_POLICY_FILE", str),
    "storage_url": ("OPENCKPT_STORAGE_URL", str),
    "secret": ("OPENCKPT_SECRET", _bytes),
    "secret_file": ("OPENCKPT_SECRET_FILE", str),
    "session_idle": ("OPENCKPT_SESSION_IDLE", int),
    "session_lifetime": ("OPENCKPT_SESSION_LIFETIME", int),
    "gc_interval": ("OPENCKPT_GC_INTERVAL", int),
    "gc_grace": ("OPENCKPT_GC_GRACE", int),
    "xet_ingest": ("OPENCKPT_XET_INGEST", _boolean),
    "compress_at_rest": ("OPENCKPT_COMPRESS_AT_REST", _boolean),
    "deltas_at_rest": ("OPENCKPT_DELTAS_AT_REST", _boolean),
    "webhooks_allow_local": ("OPENCKPT_WEBHOOKS_ALLOW_LOCAL", _boolean),
    "signup": ("OPENCKPT_SIGNUP", str),
    "upstream": ("OPENCKPT_UPSTREAM", str),
    "upstream_ttl": ("OPENCKPT_UPSTREAM_TTL", int),
    "upstream_token": ("OPENCKPT_UPSTREAM_TOKEN", str),
    "upstream_token_file": ("OPENCKPT_UPSTREAM_TOKEN_FILE", str),
    "upstream_namespaces": ("OPENCKPT_UPSTREAM_NAMESPACES", str),
}
SCAN_POLICIES = ("flag", "block", "allow")
SIGNUP_MODES = ("open", "invite", "closed")


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = field(default_factory=lambda: min(os.cpu_count() or 1, 4))
    """Worker processes; the API processes are stateless, so one per core serves concurrent clients best."""
    threads: int = 8
    """Requests a worker serves at once in threads (those that wait on the database or files); more wait their turn
    in order. Threads beyond a few only contend for the GIL: under 32 ``model_info`` clients, p99 was 97-103 ms with
    anyio's default of 40 and 64-67 ms with 8 (bench/hub_transfer.py's load, two workers on two cores)."""
    database_url: str = ""
    """SQLAlchemy URL; empty means SQLite at ``<data_dir>/openckpt.db``."""
    public_url: str = ""
    """The URL clients use (``HF_ENDPOINT``); empty means ``http://<host>:<port>``."""
    max_inline_bytes: int = 10 * 2**20
    """Files up to this size may travel inside a commit (regular); larger ones go through LFS."""
    max_commit_bytes: int = 512 * 2**20
    """Upper bound on a commit request body (inline files are base64 inside it)."""
    max_commit_operations: int = 100_000
    """Upper bound on the lines (files added, copied or deleted) of one commit request."""
    max_file_size: int = 5 * 10**12
    """The largest file the hub takes (5 TB, as the Hub); the LFS batch refuses larger objects one by one."""
    max_json_bytes: int = 4 * 2**20
    """Upper bound on a JSON or form request body (commits have their own, ``max_commit_bytes``)."""
    max_header_bytes: int = 64 * 2**10
    """Upper bound on a request's target and headers together; larger ones are answered 431."""
    max_headers: int = 100
    """Upper bound on the number of a request's headers; more are answered 431."""
    body_timeout: float = 60.0
    """Seconds the hub waits for the next bytes of a request body before answering 408: a bound on idleness, not
    on the whole transfer, so large uploads take as long as they need."""
    multipart_threshold: int = 5 * 10**9
    multipart_chunk_size: int = 512 * 2**20
    signed_url_ttl: int = 3600
    scan_policy: str = "allow"
    """What "needs code" and inconclusive files get on the whole hub: ``allow`` (served), ``flag`` (stored, downloads
    refused until released) or ``block`` (the commit is refused; suspicious files too). Malicious files are always
    refused; organisations tighten this with the ``scan`` rules of their policy (``openckpt.governance.scan_rules``)."""
    scan_rules_version: str = ""
    """The scanner rules' version to record; empty means ``openckpt.scan.RULES_VERSION`` (set it to force a rescan)."""
    scan_monitor: bool = True
    """Rescan, in the background, stored files whose scan predates the current rules version."""
    policy_file: str = ""
    """A license policy (YAML) applied to every repo, with its organisation's; empty: none."""
    storage_url: str = ""
    """Where blobs live (``openckpt.store.url``): empty means files under ``<data_dir>/store``; ``file:///path``;
    ``s3://bucket/prefix?endpoint_url=…&region=…`` for S3-compatible object storage."""
    secret: bytes = field(default=b"", repr=False)
    """The key that signs transfer URLs, Xet tokens and form tokens, and encrypts webhook secrets; every server of
    one hub must share it (``OPENCKPT_SECRET`` or ``OPENCKPT_SECRET_FILE``). Empty: ``<data_dir>/secret.key``,
    created on first start (``openckpt.hub.services.hub_secret``)."""
    secret_file: str = ""
    """A file holding the secret (as ``OPENCKPT_SECRET`` would), readable by its owner only: a group- or
    world-accessible one is refused."""
    session_idle: int = 12 * 3600
    """Seconds a web session lasts without being used."""
    session_lifetime: int = 7 * 86400
    """Seconds a web session lasts at most; then its browser signs in again."""
    gc_interval: int = 6 * 3600
    """Seconds between garbage collections of the storage (run by one process of the hub); 0 turns them off."""
    gc_grace: int = 3600
    """Seconds an unreferenced blob, xorb or Xet file is kept (uploads in flight are not referenced yet)."""
    xet_ingest: bool = True
    """Chunk files committed as whole blobs (Git LFS, large inline files) into Xet xorbs in the background, then
    drop the whole blobs: every upload path dedups against every other, and hf_xet clients download them by Xet."""
    compress_at_rest: bool = False
    """Pack each commit's xorbs in the background into the smallest lossless coding measured (byte planes coded by
    huff0 for floats, as ZipNN does; zstd). Off by default until downloads of packed files keep the download figures
    (docs/benchmarks.md, "Storage at rest")."""
    deltas_at_rest: bool = True
    """With ``compress_at_rest``: then store a derivative's xorbs as XOR against its base's (a declared
    ``base_model`` the hub holds, or a stored file with the same tensors), packed, where that measures smaller."""
    webhooks_allow_local: bool = False
    """Let webhooks POST to loopback, private and link-local addresses (the hub's own network). Off by default, as
    in GitLab and Gitea: otherwise any user could make the hub send requests to internal services."""
    signup: str = "closed"
    """Who may create an account from the web (``/join``): anyone (``open``), people with an invite link an admin
    made (``invite``), or nobody (``closed``: admins create accounts on ``/admin/users`` or with the CLI)."""
    upstream: str = ""
    """Hubs to mirror (comma-separated URLs, asked in order): a read of a repo this hub lacks is fetched from them,
    scanned and committed locally at the upstream's commit id (``services/mirror/cache.py``); empty: no mirror."""
    upstream_ttl: int = 300
    """Seconds a mirrored branch (``main``) is served before it is checked against the upstream again; commit ids are
    served from the cache for ever."""
    upstream_token: str = field(default="", repr=False)
    """The hub-wide token sent to the upstreams (an admin's setting); empty: ``upstream_token_file``'s, else
    anonymous."""
    upstream_token_file: str = ""
    """A file holding the hub-wide upstream token, readable by its owner only (as ``secret_file``)."""
    upstream_namespaces: str = ""
    """Upstream namespaces that may be mirrored (comma-separated, e.g. ``google,meta-llama``); empty: all."""

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Defaults, overridden by ``OPENCKPT_*`` variables, overridden by explicit (non-None) arguments."""
        return cls.configured(**overrides).resolved()

    @classmethod
    def configured(cls, **overrides: Any) -> Settings:
        """What :meth:`from_env` reads, before :meth:`resolved`: touches no file (for admin commands)."""
        values: dict[str, Any] = {}
        for name, (var, kind) in _ENV.items():
            if var in os.environ:
                values[name] = kind(os.environ[var])
        values.update({k: _ENV[k][1](v) if k in _ENV else v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def __post_init__(self) -> None:
        if self.scan_policy not in SCAN_POLICIES:
            raise ValueError(f"scan policy must be one of {', '.join(SCAN_POLICIES)}, not {self.scan_policy!r}")
        if self.signup not in SIGNUP_MODES:
            raise ValueError(f"sign-up must be one of {', '.join(SIGNUP_MODES)}, not {self.signup!r}")

    def upstreams(self) -> list[str]:
        """The upstream hubs' URLs, in the order they are asked."""
        return [u.strip().rstrip("/") for u in self.upstream.split(",") if u.strip()]

    def upstream_credential(self) -> str | None:
        """The hub-wide upstream token: ``upstream_token``, else the contents of ``upstream_token_file``; None when
        neither is set. A file other users may access is refused."""
        if self.upstream_token or not self.upstream_token_file:
            return self.upstream_token or None
        path = Path(self.upstream_token_file)
        if path.stat().st_mode & 0o077:
            raise PermissionError(f"{path} is accessible to other users: `chmod 600 {path}` it (it holds a token)")
        return path.read_text().strip() or None

    def database(self) -> str:
        """The SQLAlchemy URL: ``database_url``, or SQLite at ``<data_dir>/openckpt.db``."""
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'openckpt.db'}"

    def resolved(self) -> Settings:
        """Fill derived defaults (absolute data dir, database URL, public URL, the secret); creates the data dir, or
        takes group and world access away from an existing one."""
        data_dir = self.data_dir.resolve()
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if data_dir.stat().st_mode & 0o077:  # older hubs made it 0755: the database and blobs were readable by all
            try:
                data_dir.chmod(0o700)
            except PermissionError:
                logging.getLogger("openckpt.hub").warning("%s is readable by other users: `chmod 700` it", data_dir)
        url = self.database()
        public = (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")
        resolved = replace(self, data_dir=data_dir, database_url=url, public_url=public)
        return replace(resolved, secret=resolved.configured_secret())

    def configured_secret(self) -> bytes:
        """``secret``, else the contents of ``secret_file``; ``b""`` when neither is set. Refuses a secret shorter
        than 32 characters, and a file other users may access (as ssh refuses such a private key)."""
        secret, source = self.secret, "OPENCKPT_SECRET"
        if not secret and self.secret_file:
            path = Path(self.secret_file)
            mode = path.stat().st_mode
            if mode & 0o077:
                raise PermissionError(
                    f"{path} is accessible to other users (mode {mode & 0o777:o}): it holds the hub's signing "
                    f"secret, `chmod 600 {path}` it"
                )
            secret, source = path.read_bytes().strip(), "OPENCKPT_SECRET_FILE"
        if secret and len(secret) < 32:
            raise ValueError(f"{source} must be at least 32 characters (e.g. `openssl rand -hex 32`)")
        return secret

    def generated_secret(self) -> bytes:
        """The secret the hub generated on first start in ``<data_dir>/secret.key`` (as hex); ``b""`` if none.
        A key file others could read (older hubs wrote one 0644) is made private first."""
        path = self.data_dir / SECRET_KEY_FILE
        if not path.is_file():
            return b""
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return bytes.fromhex(path.read_text().strip())


SECRET_KEY_FILE = "secret.key"
"""Where the hub keeps the secret it generated (when none is configured): in its data dir, as hex, mode 0600."""
