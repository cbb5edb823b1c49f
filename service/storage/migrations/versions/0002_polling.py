"""polling discipline: adaptive rate, failure run start, disabled time

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 09:00:00

Adds to ``feeds``:
- ``items_per_hour``: exponentially weighted rate of new items (adaptive interval);
  NULL until the feed has been polled twice.
- ``failing_since``: when the current run of consecutive failures began (a feed failing
  for ``polling.disable_after`` is disabled); NULL while the feed is healthy.
- ``disabled_at``: when the feed was disabled (410 Gone, long failure, removal).
All nullable, so existing rows need no backfill.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("items_per_hour", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.drop_column("disabled_at")
        batch_op.drop_column("failing_since")
        batch_op.drop_column("items_per_hour")
