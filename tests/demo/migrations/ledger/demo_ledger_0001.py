"""demo ledger: entries.

Revision ID: demo_ledger_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "demo_ledger_0001"
down_revision = None
branch_labels = ("demo_ledger",)
depends_on = "platform_0001"


def upgrade() -> None:
    op.create_table(
        "entries",
        sa.Column("entry_id", sa.String(64), primary_key=True),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("amount", sa.Numeric(18, 4), nullable=False),
        sa.UniqueConstraint("account", "n"),
    )


def downgrade() -> None:
    op.drop_table("entries")
