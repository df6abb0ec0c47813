"""order's tables (created by the migrations order_0001 to order_0003)."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    false,
)

from mercato.platform.storage.tables import Seq

metadata = MetaData()
When = DateTime(timezone=True)
Id = String(200)
Amount = Numeric(18, 4)

# One row per order: its status and the saga's facts (what the participants have reported).
orders = Table(
    "orders",
    metadata,
    Column("id", Id, primary_key=True),
    Column("user_id", Id, nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_since", When, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("total_amount", Amount, nullable=False),
    Column("payment_method", Text),  # PaymentMethod as JSON (a token, never a card number)
    Column("shipping_address", Text),  # Address as JSON
    Column("cart_id", Id),
    Column("payment_id", Id),
    Column("paid", Boolean, nullable=False),
    Column("refunded", Boolean, nullable=False),
    Column("reserved", Boolean, nullable=False),
    Column("shipment_id", Id),
    Column("delivered", Boolean, nullable=False),
    Column("cancelled_from", String(16)),
    Column("cancel_reason", Text),
    # What the participants said of a cancelled order's compensation (domain: settled).
    Column("payment_failed", Boolean, nullable=False, server_default=false()),
    Column("payment_cancelled", Boolean, nullable=False, server_default=false()),
    Column("reservation_failed", Boolean, nullable=False, server_default=false()),
    Column("released", Boolean, nullable=False, server_default=false()),
    Column("version", Integer, nullable=False),  # +1 on every change: what watchers compare
    Column("created_at", When, nullable=False),
    Column("updated_at", When, nullable=False),
)
Index("ix_orders_user_created", orders.c.user_id, orders.c.created_at)
Index("ix_orders_created", orders.c.created_at)
Index("ix_orders_status", orders.c.status, orders.c.status_since)

order_items = Table(
    "order_items",
    metadata,
    Column("order_id", Id, primary_key=True),
    Column("product_id", Id, primary_key=True),
    Column("position", Integer, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("price", Amount, nullable=False),
    Column("status", String(16), nullable=False),
)

order_status_history = Table(
    "order_status_history",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("order_id", Id, nullable=False),
    Column("at", When, nullable=False),
    Column("from_status", String(16)),
    Column("to_status", String(16), nullable=False),
    Column("reason", Text),
)
Index("ix_order_status_history_order", order_status_history.c.order_id, order_status_history.c.seq)

# Orders being put together (the WDM API's, before checkout): not orders yet, so no events and
# no place in the order lists. ``items`` is a JSON list of {productId, quantity, price}.
order_drafts = Table(
    "order_drafts",
    metadata,
    Column("id", Id, primary_key=True),
    Column("user_id", Id, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("items", Text, nullable=False),
    Column("placed", Boolean, nullable=False),
    Column("created_at", When, nullable=False),
    Column("updated_at", When, nullable=False),
)
