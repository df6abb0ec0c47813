"""Dead letters: when each first failed, and why an operator discarded it (never deleted).

``failed_at`` stays the last failure; ``first_failed_at`` is filled from it for the letters
already there (their first failure was not kept).

Revision ID: platform_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "platform_0004"
down_revision = "platform_0003"
branch_labels = None
depends_on = None

When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("dead_letters", sa.Column("first_failed_at", When))
    op.add_column("dead_letters", sa.Column("discard_reason", sa.Text))
    op.add_column("dead_letters", sa.Column("discarded_at", When))
    op.execute("UPDATE dead_letters SET first_failed_at = failed_at")


def downgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("discarded_at")
        batch.drop_column("discard_reason")
        batch.drop_column("first_failed_at")
