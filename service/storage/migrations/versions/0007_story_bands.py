"""story_bands: LSH band keys as integers in one index

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 11:00:00

Replaces ``story_keys`` (a hex-string key, the story id, a timestamp; a row table with
three indexes) by ``story_bands``: (band_key BIGINT, article_id) as the primary key,
``seen_at`` as epoch seconds, and on SQLite no rowid, so that each band key costs one
entry in one B-tree. Storing a first poll wrote 32 keys per article into four B-trees,
the largest cost of a first poll (bench/bench_poll.py).

Keys are rebuilt from the articles first seen within ``BACKFILL_DAYS`` of the newest one,
as revision 0003 did; older articles are outside any sensible window. Downgrading
recreates the old, empty ``story_keys`` table: near-duplicate lookups then find only
articles stored afterwards.
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL_DAYS = 14
BATCH = 500


def upgrade() -> None:
    op.create_table(
        "story_bands",
        sa.Column("band_key", sa.BigInteger(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("seen_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["article_id"], ["articles.id"]),
        sa.PrimaryKeyConstraint("band_key", "article_id"),
        sqlite_with_rowid=False,
    )
    _backfill()
    with op.batch_alter_table("story_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_story_keys_story_id"))
        batch_op.drop_index("ix_story_keys_band_key_seen_at")
    op.drop_table("story_keys")


def _backfill() -> None:
    from service.stories import fingerprint  # pure; the rules of the code at this revision

    conn = op.get_bind()
    articles = sa.table(
        "articles",
        sa.column("id", sa.Integer),
        sa.column("title", sa.Text),
        sa.column("summary", sa.Text),
        sa.column("text", sa.Text),
        sa.column("published_at", sa.DateTime(timezone=True)),
        sa.column("first_seen_at", sa.DateTime(timezone=True)),
    )
    bands = sa.table(
        "story_bands",
        sa.column("band_key", sa.BigInteger),
        sa.column("article_id", sa.Integer),
        sa.column("seen_at", sa.BigInteger),
    )
    newest = conn.execute(sa.select(sa.func.max(articles.c.first_seen_at))).scalar()
    if newest is None:
        return
    since = newest - timedelta(days=BACKFILL_DAYS)
    last_id = 0
    while True:
        rows = conn.execute(
            sa.select(articles)
            .where(articles.c.id > last_id, articles.c.first_seen_at >= since)
            .order_by(articles.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        values = []
        for r in rows:
            at = r.published_at or r.first_seen_at or datetime.now(UTC)
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
            for key in fingerprint(r.title, r.summary, r.text).band_keys:
                values.append({"band_key": key, "article_id": r.id, "seen_at": int(at.timestamp())})
        if values:
            conn.execute(sa.insert(bands), values)
        last_id = rows[-1].id


def downgrade() -> None:
    op.drop_table("story_bands")
    op.create_table(
        "story_keys",
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("band_key", sa.String(), nullable=False),
        sa.Column("story_id", sa.Integer(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["article_id"], ["articles.id"]),
        sa.ForeignKeyConstraint(["story_id"], ["stories.id"]),
        sa.PrimaryKeyConstraint("article_id", "band_key"),
    )
    with op.batch_alter_table("story_keys", schema=None) as batch_op:
        batch_op.create_index(
            "ix_story_keys_band_key_seen_at", ["band_key", "seen_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_story_keys_story_id"), ["story_id"], unique=False)
