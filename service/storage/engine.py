"""Engine factory and schema migrations (Alembic, run in-process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from service.errors import StorageError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Seconds a SQLite writer waits for another writer's lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 30
# Key of the PostgreSQL session advisory lock held while migrating, so that several workers
# starting at once upgrade the schema one after the other ("dw-migra" in ASCII).
MIGRATION_LOCK_KEY = 0x64772D6D69677261
# psycopg prepares a statement on the server after its 5th run, and PostgreSQL may then plan
# it once, generically, from the statistics of that moment: a new database's near-empty
# tables. The near-duplicate look-up (500 band keys IN (...) within a time window) then kept
# a plan that filtered the whole band-key table instead of looking the keys up in its index
# (measured on the story_keys table migration 0007 replaced: 200 ms a query at 90k keys and
# growing, one worker's first poll 5x slower; bench/bench_workers.py). Custom plans see the
# actual values; statements stay prepared, so parsing is still saved.
PG_PLAN_CACHE_MODE = "force_custom_plan"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the poller's writes
    cur.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; fsync at checkpoints
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    cur.close()


def make_engine(url: str) -> Engine:
    """Create the engine for a database URL; creates the SQLite file's folder."""
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise StorageError(f"bad database URL {url!r}: {e}") from e
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        connect_args={"options": f"-c plan_cache_mode={PG_PLAN_CACHE_MODE}"},
    )


def _alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Upgrade the schema to the newest revision. Returns (before, after) revisions.

    Refuses (StorageError) a database whose schema is newer than this release knows. On
    PostgreSQL the upgrade holds an advisory lock, so processes starting together take turns.
    """
    try:
        with engine.connect() as lock:
            postgres = engine.dialect.name == "postgresql"
            if postgres:
                lock.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
                lock.commit()
            try:
                before = check_schema(engine)
                command.upgrade(_alembic_config(engine), "head")
            finally:
                if postgres:
                    lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
                    lock.commit()
        return before, head_revision()
    except (SQLAlchemyError, CommandError) as e:
        raise StorageError(f"migration failed: {e}") from e


def check_schema(engine: Engine) -> str | None:
    """The database's schema revision; StorageError when it is one this release does not
    know (written by a newer detainer-watch): running on it could corrupt data."""
    current = current_revision(engine)
    if current is None:
        return None
    known = {s.revision for s in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()}
    if current not in known:
        raise StorageError(
            f"the database schema is at revision {current}, newer than this detainer-watch "
            f"(newest it knows: {head_revision()}); upgrade detainer-watch to the release "
            "that wrote it (or newer) and start again; do not run this release on it"
        )
    return current


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as e:
        raise StorageError(f"cannot reach the database: {e}") from e


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    return head
