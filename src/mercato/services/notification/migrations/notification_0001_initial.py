"""notification: users, orders and products known, requests, the inbox and its mails.

Revision ID: notification_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "notification_0001"
down_revision = None
branch_labels = ("notification",)
depends_on = "platform_0001"

When = sa.DateTime(timezone=True)
Id = sa.String(200)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("user_id", Id, primary_key=True),
        sa.Column("email", sa.String(320)),
        sa.Column("email_at", When),
        sa.Column("name", sa.String(200)),
        sa.Column("name_at", When),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.Column("roles_at", When),
    )
    op.create_index("ix_users_admins", "users", ["is_admin"])
    op.create_table(
        "orders",
        sa.Column("order_id", Id, primary_key=True),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("items", sa.Text, nullable=False),
        sa.Column("total_amount", sa.String(40), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", When, nullable=False),
    )
    op.create_table(
        "products",
        sa.Column("product_id", Id, primary_key=True),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("name_at", When, nullable=False),
    )
    op.create_table(
        "requests",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("received_at", When, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("not_before", When, nullable=False),
    )
    op.create_index("ix_requests_not_before", "requests", ["not_before"])
    op.create_table(
        "notifications",
        sa.Column("id", Id, primary_key=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("html", sa.Text, nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("to_name", sa.String(200)),
        sa.Column("message_id", sa.String(300), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("read_at", When),
        sa.Column("mail_status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("not_before", When),
        sa.Column("claim", sa.String(64)),
        sa.Column("claimed_until", When),
        sa.Column("sent_at", When),
        sa.Column("last_error", sa.Text),
    )
    op.create_index(
        "uq_notifications_event_user", "notifications", ["event_id", "user_id"], unique=True
    )
    op.create_index("ix_notifications_user_created", "notifications", ["user_id", "created_at"])
    op.create_index("ix_notifications_mail", "notifications", ["mail_status", "not_before"])


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("requests")
    op.drop_table("products")
    op.drop_table("orders")
    op.drop_table("users")
