"""fewer indexes: drop three that no query needs and every stored article writes

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 05:00:00

- ``ix_stories_canonical_url`` and ``ix_stories_content_hash``: stories are found through
  their articles (``articles.url``, ``articles.content_hash`` and the band keys), never by
  these columns of ``stories``.
- ``ix_articles_feed_id``: ``uq_articles_feed_guid`` (feed_id, guid) starts with the same
  column and serves every look-up by feed (and the foreign key's checks) on both databases.

Each index is one more B-tree that every stored article inserts into, at a random place
for the two hashed and URL keys: a commit then writes most of its pages again. Without
these three a 500-feed first poll wrote 678 MB instead of 826 (the WAL and its
checkpoints; /proc/self/io of bench/bench_poll.py's polling process). Downgrading
recreates them.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_stories_canonical_url", table_name="stories")
    op.drop_index("ix_stories_content_hash", table_name="stories")
    op.drop_index("ix_articles_feed_id", table_name="articles")


def downgrade() -> None:
    op.create_index("ix_articles_feed_id", "articles", ["feed_id"], unique=False)
    op.create_index("ix_stories_content_hash", "stories", ["content_hash"], unique=False)
    op.create_index("ix_stories_canonical_url", "stories", ["canonical_url"], unique=False)
