"""webhooks: the due-deliveries index leads with the subscription, as the sender claims each
subscription's deliveries on their own; an index for pruning delivered deliveries by age.

Revision ID: webhooks_0002
"""

from alembic import op

revision = "webhooks_0002"
down_revision = "webhooks_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["subscription_id", "status", "next_attempt_at"],
    )
    op.create_index("ix_webhook_deliveries_done", "webhook_deliveries", ["status", "delivered_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_done", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.create_index(
        "ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"]
    )
