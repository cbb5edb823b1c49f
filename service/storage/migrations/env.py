"""Alembic environment: the engine is handed in by service.storage.engine.migrate."""

from alembic import context
from alembic.util.exc import CommandError
from sqlmodel import SQLModel

import service.storage.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

engine = context.config.attributes["engine"]
sqlite = engine.dialect.name == "sqlite"
with engine.connect() as connection:
    if sqlite:
        # batch_alter_table rebuilds a SQLite table (copy, DROP, rename), and with foreign
        # keys on, dropping a table that other rows reference fails: 0004 could not upgrade
        # a database with any delivery (tests/test_migrations.py). SQLite ignores this pragma
        # inside a transaction, so it goes first; the keys are checked before committing.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    try:
        with connection.begin():
            context.configure(
                connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True
            )
            with context.begin_transaction():
                context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:  # raising rolls the upgrade back
                    raise CommandError(f"the upgrade broke foreign keys: {broken[:5]}")
    finally:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
