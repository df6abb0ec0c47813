"""order: drafts, orders being put together before they are placed (the WDM API's).

Revision ID: order_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "order_0002"
down_revision = "order_0001"
branch_labels = None
depends_on = None

When = sa.DateTime(timezone=True)
Id = sa.String(200)


def upgrade() -> None:
    op.create_table(
        "order_drafts",
        sa.Column("id", Id, primary_key=True),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("items", sa.Text, nullable=False),
        sa.Column("placed", sa.Boolean, nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("order_drafts")
