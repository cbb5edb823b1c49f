"""Alembic environment: the engine is handed in by service.storage.engine.migrate."""

from alembic import context
from sqlmodel import SQLModel

import service.storage.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()
