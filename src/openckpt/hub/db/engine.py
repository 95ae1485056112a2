"""Engines and sessions. SQLite runs in WAL mode; its write transactions begin IMMEDIATE so that concurrent
writers from several worker processes queue on the lock instead of failing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["Database"]

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 0x6F70656E636B7074
"""The PostgreSQL advisory lock that serialises migrations (``openckpt`` in ASCII)."""

_JOINED: ContextVar[tuple[Callable[[Session], None], ...]] = ContextVar("openckpt_joined", default=())


def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
    # a pooled connection per request thread: a new one costs its PRAGMAs and a schema read on its first query
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False}, pool_size=40)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=60000"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """The hub's database: ``read()`` and ``write()`` sessions, and ``migrate()``."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            self.engine = _sqlite_engine(url, immediate=False)
            self.write_engine = _sqlite_engine(url, immediate=True)
        else:
            self.engine = self.write_engine = create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.write_engine, expire_on_commit=False)

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.write_engine.connect() as conn:
            if conn.dialect.name == "postgresql":  # servers starting together on one database: one migrates
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")  # until the commit
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            conn.commit()

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction: committed when the block exits normally, rolled back otherwise."""
        with self._write() as session, session.begin():
            yield session
            for work in _JOINED.get():
                work(session)

    @contextmanager
    def joined(self, work: Callable[[Session], None]) -> Iterator[None]:
        """Run ``work(session)`` at the end of each write transaction this thread opens in the block, before it
        commits: what ``work`` writes commits or rolls back with it (a webhook's outbox rows with their event)."""
        token = _JOINED.set((*_JOINED.get(), work))
        try:
            yield
        finally:
            _JOINED.reset(token)

    def dispose(self) -> None:
        self.engine.dispose()
        self.write_engine.dispose()
