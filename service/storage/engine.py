"""Engine factory and schema migrations (Alembic, run in-process).

Alembic is imported only to upgrade: a process that finds the schema current (``run``
after ``migrate``, every API and worker start) reads the revision with one query and the
known revisions from the migration files, and saves Alembic's ~11 MB of resident memory.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from service.config import DEFAULT_SQLITE_CACHE_MB, DEFAULT_SQLITE_CHECKPOINT_MB, Config
from service.errors import StorageError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSIONS_DIR = MIGRATIONS_DIR / "versions"
# Alembic's own table of the applied revision.
VERSION_TABLE = "alembic_version"
# How each migration file names itself and its parent (``revision: str = "0007"``).
_REVISION_LINE = re.compile(
    r"^(revision|down_revision)\b[^=\n]*=\s*(?:[\"']([^\"']+)[\"']|None)", re.MULTILINE
)
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


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, cache_mb: int, checkpoint_mb: int) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the poller's writes
    cur.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; fsync at checkpoints
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    cur.execute(f"PRAGMA cache_size={-1024 * int(cache_mb)}")  # negative: KiB, not pages
    # A commit that leaves the log longer than this many pages copies it into the database.
    # SQLite takes a count past 32 bits as 0 (never), so it is capped (with 512-byte pages,
    # config's largest size, 1 TB, would be 2^31 pages).
    page_size = int(cur.execute("PRAGMA page_size").fetchone()[0])
    pages = min(max(1, int(checkpoint_mb) * 2**20 // page_size), 2**31 - 1)
    cur.execute(f"PRAGMA wal_autocheckpoint={pages}")
    cur.close()


def make_engine(
    url: str,
    sqlite_cache_mb: int = DEFAULT_SQLITE_CACHE_MB,
    sqlite_checkpoint_mb: int = DEFAULT_SQLITE_CHECKPOINT_MB,
) -> Engine:
    """Create the engine for a database URL; creates the SQLite file's folder.
    ``sqlite_cache_mb``: each SQLite connection's page cache; ``sqlite_checkpoint_mb``: the
    write-ahead log's size at which a commit checkpoints it (PostgreSQL: both unused)."""
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise StorageError(f"bad database URL {url!r}: {e}") from e
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
            # Reuse the most recently returned connection: each has its own page cache,
            # and taking them in turn (the pool's default) warms several instead of one
            # (with 32 MB caches taken in turn, a 5,000-feed first poll peaked at 281 MB
            # in all processes; bench/bench_poll.py --feeds 5000).
            pool_use_lifo=True,
        )
        pragmas = functools.partial(
            _sqlite_pragmas, cache_mb=sqlite_cache_mb, checkpoint_mb=sqlite_checkpoint_mb
        )
        event.listen(engine, "connect", pragmas)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        connect_args={"options": f"-c plan_cache_mode={PG_PLAN_CACHE_MODE}"},
    )


def engine_for(cfg: Config) -> Engine:
    """``make_engine`` with the database settings of ``cfg`` (every command and the API)."""
    return make_engine(cfg.database_url, cfg.sqlite_cache_mb, cfg.sqlite_checkpoint_mb)


def _alembic_config(engine: Engine) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

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
                if before != head_revision():
                    from alembic import command

                    command.upgrade(_alembic_config(engine), "head")
            finally:
                if postgres:
                    lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
                    lock.commit()
        return before, head_revision()
    except SQLAlchemyError as e:
        raise StorageError(f"migration failed: {e}") from e
    except Exception as e:
        from alembic.util.exc import CommandError

        if isinstance(e, CommandError):
            raise StorageError(f"migration failed: {e}") from e
        raise


def check_schema(engine: Engine) -> str | None:
    """The database's schema revision; StorageError when it is one this release does not
    know (written by a newer detainer-watch): running on it could corrupt data."""
    current = current_revision(engine)
    if current is None:
        return None
    if current not in _revisions():
        raise StorageError(
            f"the database schema is at revision {current}, newer than this detainer-watch "
            f"(newest it knows: {head_revision()}); upgrade detainer-watch to the release "
            "that wrote it (or newer) and start again; do not run this release on it"
        )
    return current


def current_revision(engine: Engine) -> str | None:
    """The revision Alembic recorded in the database; None for an empty database."""
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(VERSION_TABLE):
                return None
            rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    except SQLAlchemyError as e:
        raise StorageError(f"cannot reach the database: {e}") from e
    if len(rows) > 1:
        raise StorageError(
            f"the database records {len(rows)} schema revisions ({VERSION_TABLE}); "
            "detainer-watch keeps one line of migrations: restore it from a backup"
        )
    return str(rows[0][0]) if rows else None


@functools.cache
def _revisions() -> dict[str, str | None]:
    """Each migration's revision and the revision it follows, read from the files."""
    out: dict[str, str | None] = {}
    for path in sorted(VERSIONS_DIR.glob("*.py")):
        source = path.read_text()
        found = {name: value or None for name, value in _REVISION_LINE.findall(source)}
        if "revision" in found and found["revision"]:
            out[found["revision"]] = found.get("down_revision")
    return out


def head_revision() -> str:
    """The newest revision: the one no migration follows (tests check it is Alembic's)."""
    revisions = _revisions()
    heads = set(revisions) - {parent for parent in revisions.values() if parent}
    if len(heads) != 1:
        raise StorageError(f"migrations must form one line; heads found: {sorted(heads)}")
    return heads.pop()
