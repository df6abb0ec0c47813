"""audit: the event log and replay requests.

Revision ID: audit_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "audit_0001"
down_revision = None
branch_labels = ("audit",)
depends_on = "platform_0001"

When = sa.DateTime(timezone=True)
Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("seq", Seq, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(300)),
        sa.Column("correlation_id", sa.String(300)),
        sa.Column("causation_id", sa.String(300)),
        sa.Column("time", When, nullable=False),
        sa.Column("recorded_at", When, nullable=False),
        sa.Column("envelope", sa.Text, nullable=False),
        sa.UniqueConstraint("event_id", name="uq_audit_events_event_id"),
    )
    # Newest first, paged by (time, event_id): each filter's index ends with the time.
    op.create_index("ix_audit_events_time", "audit_events", ["time", "event_id"])
    op.create_index("ix_audit_events_type_time", "audit_events", ["type", "time"])
    op.create_index("ix_audit_events_subject_time", "audit_events", ["subject", "time"])
    op.create_index("ix_audit_events_correlation_time", "audit_events", ["correlation_id", "time"])
    op.create_index("ix_audit_events_causation", "audit_events", ["causation_id"])
    op.create_table(
        "audit_replays",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("target", sa.String(100), nullable=False),
        sa.Column("patterns", sa.Text, nullable=False),
        sa.Column("filters", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("matched", sa.Integer, nullable=False, server_default="0"),
        sa.Column("delivered", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
        sa.Column("requested_at", When, nullable=False),
        sa.Column("finished_at", When),
    )
    op.create_index("ix_audit_replays_status", "audit_replays", ["status"])


def downgrade() -> None:
    op.drop_table("audit_replays")
    op.drop_table("audit_events")
