"""catalog: displayed_stock_rebuild, where a rebuild of the displayed stock from the event log
is built, under its own consumer name, before it is swapped in (see ``rebuild``).

Revision ID: catalog_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "catalog_0004"
down_revision = "catalog_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "displayed_stock_rebuild",
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("product_id", sa.String(64), primary_key=True),
        sa.Column("available", sa.BigInteger, nullable=False),
        sa.Column("stock_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("displayed_stock_rebuild")
