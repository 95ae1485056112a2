"""The hub's database: SQLAlchemy models, engine and Alembic migrations."""
