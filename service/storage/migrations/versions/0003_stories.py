"""stories: LSH band keys for near-duplicate grouping

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 10:00:00

Adds ``story_keys``: one row per (article, LSH band key) of ``service.stories``, with the
article's story and the time it counts as published (``seen_at``). Near-duplicate lookup
reads it by ``band_key`` within a time window, hence the (band_key, seen_at) index.

Articles stored before this revision get keys too, so copies of recent stories still find
them: only those first seen within ``BACKFILL_DAYS`` of the newest article (older ones are
outside any sensible window), in batches.
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Twice the default [stories] window: enough for any copy still to come of a stored story.
BACKFILL_DAYS = 14
BATCH = 500


def upgrade() -> None:
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
    _backfill()


def _backfill() -> None:
    from service.stories import fingerprint  # pure; the rules of the code at this revision

    conn = op.get_bind()
    articles = sa.table(
        "articles",
        sa.column("id", sa.Integer),
        sa.column("story_id", sa.Integer),
        sa.column("title", sa.Text),
        sa.column("summary", sa.Text),
        sa.column("text", sa.Text),
        sa.column("published_at", sa.DateTime(timezone=True)),
        sa.column("first_seen_at", sa.DateTime(timezone=True)),
    )
    keys = sa.table(
        "story_keys",
        sa.column("article_id", sa.Integer),
        sa.column("band_key", sa.String),
        sa.column("story_id", sa.Integer),
        sa.column("seen_at", sa.DateTime(timezone=True)),
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
            for key in fingerprint(r.title, r.summary, r.text).band_keys:
                # str(): later code makes integer keys; this revision's column is text.
                values.append(
                    {"article_id": r.id, "band_key": str(key)}
                    | {"story_id": r.story_id, "seen_at": at}
                )
        if values:
            conn.execute(sa.insert(keys), values)
        last_id = rows[-1].id


def downgrade() -> None:
    with op.batch_alter_table("story_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_story_keys_story_id"))
        batch_op.drop_index("ix_story_keys_band_key_seen_at")
    op.drop_table("story_keys")
