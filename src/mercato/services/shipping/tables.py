"""shipping's tables (created by migrations/shipping_0001_initial.py)."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, MetaData, String, Table, Text, UniqueConstraint

metadata = MetaData()
When = DateTime(timezone=True)
Id = String(200)

# Deliveries and returns. One of each kind per order at most (the unique key makes a racing
# duplicate fail instead of shipping twice).
shipments = Table(
    "shipments",
    metadata,
    Column("id", Id, primary_key=True),
    Column("order_id", Id, nullable=False),
    Column("user_id", Id),  # the order's owner, who may see it
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("items", Text, nullable=False),  # [{productId, quantity}] as JSON
    Column("address", Text),  # Address as JSON
    Column("return_of", Id),
    Column("reason", Text),
    Column("created_at", When, nullable=False),
    Column("updated_at", When, nullable=False),
    UniqueConstraint("order_id", "kind", name="uq_shipments_order_kind"),
)
Index("ix_shipments_status_created", shipments.c.status, shipments.c.created_at)

# Orders known to be cancelled: a hand-over that arrives after its cancellation ships nothing.
cancelled_orders = Table(
    "cancelled_orders",
    metadata,
    Column("order_id", Id, primary_key=True),
    Column("previous_status", String(16)),
    Column("cancelled_at", When, nullable=False),
)
