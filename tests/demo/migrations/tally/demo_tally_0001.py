"""demo tally: counts per account, every arrival in order, frozen accounts.

Revision ID: demo_tally_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "demo_tally_0001"
down_revision = None
branch_labels = ("demo_tally",)
depends_on = "platform_0001"


def upgrade() -> None:
    op.create_table(
        "tallies",
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("entries", sa.Integer, nullable=False),
        sa.Column("total", sa.Numeric(18, 4), nullable=False),
    )
    # No unique key on entry_id on purpose: a second effect of one event must show as a row.
    op.create_table(
        "arrivals",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("entry_id", sa.String(64), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
    )
    op.create_table("frozen_accounts", sa.Column("account", sa.String(64), primary_key=True))


def downgrade() -> None:
    op.drop_table("frozen_accounts")
    op.drop_table("arrivals")
    op.drop_table("tallies")
