"""payment: the wallets' ledger (one entry per change of a balance).

Revision ID: payment_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "payment_0002"
down_revision = "payment_0001"
branch_labels = None
depends_on = None

When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "wallet_entries",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("order_id", sa.String(200)),
        sa.Column("payment_id", sa.String(64)),
        sa.Column("reason", sa.String(500)),
        sa.Column("at", When, nullable=False),
    )
    op.create_index("ix_wallet_entries_user_at", "wallet_entries", ["user_id", "at"])


def downgrade() -> None:
    op.drop_table("wallet_entries")
