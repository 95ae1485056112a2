"""The migrations build exactly the schema the models declare, on SQLite and on PostgreSQL: no table, column,
index or constraint of one is missing from the other."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Base


def test_the_migrated_schema_is_the_models(database: Database) -> None:
    with database.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
