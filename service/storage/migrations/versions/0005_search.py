"""search: full-text index of hits, and their topics and places as rows

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:00:00

What a hit is about is its title and the summary and text of the sighting that made it (the
hit's ``article_id``). That goes into a full-text index:

- SQLite: an FTS5 table ``hits_fts`` (porter stemming, like PostgreSQL's ``english``) with
  external content: it stores only the index and reads the words for ``snippet()`` from the
  view ``hits_search_doc``, so no text is stored twice.
- PostgreSQL: a ``tsvector`` column ``hits.search_vector`` (title weighted A, the article B)
  with a GIN index. It cannot be a generated column, because the text lives in ``articles``.

``hit_topics`` and ``hit_places`` hold a hit's topics and jurisdictions as rows, so filters and
counts by topic, state and place are exact SQL on both databases instead of LIKE over JSON.

All of it is filled by triggers on ``hits`` in the database, so every writer of hits (poll,
rematch, a future one) keeps it in step inside its own transaction, and the backfill below is
the same SQL. Hits are never updated in place; deleting one removes its rows.

Note for later migrations: SQLite ``batch_alter_table("hits")`` recreates the table and drops
these triggers; such a migration must call ``create_sqlite_triggers()`` again
(``tests/test_search.py`` checks the triggers exist at head).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER hits_search_insert AFTER INSERT ON hits BEGIN
        INSERT INTO hits_fts(rowid, title, summary, text)
            SELECT NEW.id, NEW.title, a.summary, a.text FROM articles a
            WHERE a.id = NEW.article_id;
        INSERT INTO hit_topics(hit_id, topic)
            SELECT DISTINCT NEW.id, value FROM json_each(NEW.topics)
            WHERE value IS NOT NULL;
        INSERT INTO hit_places(hit_id, name, kind, state)
            SELECT DISTINCT NEW.id, json_extract(value, '$.name'),
                   coalesce(json_extract(value, '$.kind'), ''),
                   upper(coalesce(json_extract(value, '$.state'), ''))
            FROM json_each(NEW.jurisdictions)
            WHERE json_extract(value, '$.name') IS NOT NULL;
    END
    """,
    """
    CREATE TRIGGER hits_search_delete AFTER DELETE ON hits BEGIN
        INSERT INTO hits_fts(hits_fts, rowid, title, summary, text)
            SELECT 'delete', OLD.id, OLD.title, a.summary, a.text FROM articles a
            WHERE a.id = OLD.article_id;
        DELETE FROM hit_topics WHERE hit_id = OLD.id;
        DELETE FROM hit_places WHERE hit_id = OLD.id;
    END
    """,
)

POSTGRES_TRIGGERS = (
    """
    CREATE FUNCTION hits_search_vector() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        SELECT setweight(to_tsvector('english', coalesce(NEW.title, '')), 'A')
               || setweight(to_tsvector('english', coalesce(a.summary, '') || ' '
                                        || coalesce(a.text, '')), 'B')
          INTO NEW.search_vector
          FROM articles a WHERE a.id = NEW.article_id;
        IF NEW.search_vector IS NULL THEN
            NEW.search_vector := setweight(to_tsvector('english', coalesce(NEW.title, '')), 'A');
        END IF;
        RETURN NEW;
    END $$
    """,
    """
    CREATE FUNCTION hits_rows_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO hit_topics(hit_id, topic)
            SELECT DISTINCT NEW.id, t FROM json_array_elements_text(NEW.topics) AS t
            WHERE t IS NOT NULL;
        INSERT INTO hit_places(hit_id, name, kind, state)
            SELECT DISTINCT NEW.id, j ->> 'name', coalesce(j ->> 'kind', ''),
                   upper(coalesce(j ->> 'state', ''))
            FROM json_array_elements(NEW.jurisdictions) AS j
            WHERE j ->> 'name' IS NOT NULL;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER hits_search_vector BEFORE INSERT OR UPDATE OF title, article_id ON hits
        FOR EACH ROW EXECUTE FUNCTION hits_search_vector()
    """,
    """
    CREATE TRIGGER hits_rows_insert AFTER INSERT ON hits
        FOR EACH ROW EXECUTE FUNCTION hits_rows_insert()
    """,
)


def create_sqlite_triggers() -> None:
    for ddl in SQLITE_TRIGGERS:
        op.execute(ddl)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "hit_topics",
        sa.Column("hit_id", sa.Integer(), sa.ForeignKey("hits.id", ondelete="CASCADE")),
        sa.Column("topic", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("hit_id", "topic"),
    )
    op.create_index("ix_hit_topics_topic_hit", "hit_topics", ["topic", "hit_id"])
    op.create_table(
        "hit_places",
        sa.Column("hit_id", sa.Integer(), sa.ForeignKey("hits.id", ondelete="CASCADE")),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("hit_id", "name", "kind", "state"),
    )
    op.create_index("ix_hit_places_state_hit", "hit_places", ["state", "hit_id"])
    op.create_index("ix_hit_places_name_hit", "hit_places", [sa.text("lower(name)"), "hit_id"])
    # Keyset pages by score and the common equality filters.
    op.create_index("ix_hits_score_id", "hits", ["score", "id"])
    op.create_index("ix_hits_event_type_id", "hits", ["event_type", "id"])
    op.create_index("ix_hits_source", "hits", ["source"])

    if sqlite:
        op.execute(
            "CREATE VIEW hits_search_doc AS SELECT h.id AS id, h.title AS title, "
            "a.summary AS summary, a.text AS text "
            "FROM hits h JOIN articles a ON a.id = h.article_id"
        )
        op.execute(
            "CREATE VIRTUAL TABLE hits_fts USING fts5(title, summary, text, "
            "content='hits_search_doc', content_rowid='id', "
            "tokenize='porter unicode61 remove_diacritics 2')"
        )
        create_sqlite_triggers()
        op.execute("INSERT INTO hits_fts(hits_fts) VALUES ('rebuild')")
        op.execute(
            "INSERT INTO hit_topics(hit_id, topic) SELECT DISTINCT h.id, t.value "
            "FROM hits h, json_each(h.topics) t WHERE t.value IS NOT NULL"
        )
        op.execute(
            "INSERT INTO hit_places(hit_id, name, kind, state) "
            "SELECT DISTINCT h.id, json_extract(j.value, '$.name'), "
            "coalesce(json_extract(j.value, '$.kind'), ''), "
            "upper(coalesce(json_extract(j.value, '$.state'), '')) "
            "FROM hits h, json_each(h.jurisdictions) j "
            "WHERE json_extract(j.value, '$.name') IS NOT NULL"
        )
    else:
        op.execute("ALTER TABLE hits ADD COLUMN search_vector tsvector")
        for ddl in POSTGRES_TRIGGERS:
            op.execute(ddl)
        op.execute(
            "UPDATE hits h SET search_vector = "
            "setweight(to_tsvector('english', coalesce(h.title, '')), 'A') || "
            "setweight(to_tsvector('english', coalesce(a.summary, '') || ' ' || "
            "coalesce(a.text, '')), 'B') FROM articles a WHERE a.id = h.article_id"
        )
        op.execute("CREATE INDEX ix_hits_search_vector ON hits USING gin (search_vector)")
        op.execute(
            "INSERT INTO hit_topics(hit_id, topic) SELECT DISTINCT h.id, t "
            "FROM hits h, json_array_elements_text(h.topics) AS t WHERE t IS NOT NULL"
        )
        op.execute(
            "INSERT INTO hit_places(hit_id, name, kind, state) "
            "SELECT DISTINCT h.id, j ->> 'name', coalesce(j ->> 'kind', ''), "
            "upper(coalesce(j ->> 'state', '')) "
            "FROM hits h, json_array_elements(h.jurisdictions) AS j WHERE j ->> 'name' IS NOT NULL"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS hits_search_insert")
        op.execute("DROP TRIGGER IF EXISTS hits_search_delete")
        op.execute("DROP TABLE IF EXISTS hits_fts")
        op.execute("DROP VIEW IF EXISTS hits_search_doc")
    else:
        op.execute("DROP TRIGGER IF EXISTS hits_rows_insert ON hits")
        op.execute("DROP TRIGGER IF EXISTS hits_search_vector ON hits")
        op.execute("DROP FUNCTION IF EXISTS hits_rows_insert()")
        op.execute("DROP FUNCTION IF EXISTS hits_search_vector()")
        op.execute("DROP INDEX IF EXISTS ix_hits_search_vector")
        op.execute("ALTER TABLE hits DROP COLUMN IF EXISTS search_vector")
    op.drop_index("ix_hits_source", "hits")
    op.drop_index("ix_hits_event_type_id", "hits")
    op.drop_index("ix_hits_score_id", "hits")
    op.drop_table("hit_places")
    op.drop_table("hit_topics")
