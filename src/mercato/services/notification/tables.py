"""notification's tables (created by migrations/notification_0001_initial.py)."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()
When = DateTime(timezone=True)
Id = String(200)

# What it knows of users, from identity's events. Each field keeps the time of the event that
# set it, so events handled out of order never put an older value over a newer one.
users = Table(
    "users",
    metadata,
    Column("user_id", Id, primary_key=True),
    Column("email", String(320)),
    Column("email_at", When),  # the time of the event that set it
    Column("name", String(200)),
    Column("name_at", When),
    Column("is_admin", Boolean, nullable=False),
    Column("roles_at", When),  # the event that last set the roles
)
Index("ix_users_admins", users.c.is_admin)

# The orders' owners, items and totals, from OrderCreated (for the mails of later events).
orders = Table(
    "orders",
    metadata,
    Column("order_id", Id, primary_key=True),
    Column("user_id", Id, nullable=False),
    Column("items", Text, nullable=False),  # [{productId, quantity, price}] as JSON
    Column("total_amount", String(40), nullable=False),  # a Decimal, as text
    Column("currency", String(3), nullable=False),
    Column("created_at", When, nullable=False),
)

# Product names, from the catalog's events, so a mail says what was bought.
products = Table(
    "products",
    metadata,
    Column("product_id", Id, primary_key=True),
    Column("name", String(500), nullable=False),
    Column("name_at", When, nullable=False),
)

# Events to tell someone about, as the handlers take them (one insert, nothing else): the
# composer turns each into notifications once it knows who and what (the order may be known
# only a moment later), and deletes it.
requests = Table(
    "requests",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("kind", String(40), nullable=False),
    Column("data", Text, nullable=False),  # the event's payload, JSON
    Column("received_at", When, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("not_before", When, nullable=False),
)
Index("ix_requests_not_before", requests.c.not_before)

# The inbox, and each entry's mail. One per (event, recipient): the unique key makes a second
# one fail, whatever composes it. ``mail_status``: pending → claimed (a sender is talking to
# the SMTP server, nothing handed over yet) → sending (the message is being handed over) →
# sent; or back to pending (refused before the hand-over), dead (tried enough, or refused for
# good), unknown (the hand-over was cut: it may have arrived; never sent again by itself).
notifications = Table(
    "notifications",
    metadata,
    Column("id", Id, primary_key=True),
    Column("event_id", String(64), nullable=False),
    Column("user_id", Id, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("subject", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("html", Text, nullable=False),
    Column("email", String(320)),  # where the mail goes (None: inbox only)
    Column("to_name", String(200)),  # the recipient's name, as the mail shows it
    Column("message_id", String(300), nullable=False),  # the mail's Message-ID, fixed
    Column("created_at", When, nullable=False),
    Column("read_at", When),
    Column("mail_status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("not_before", When),
    Column("claim", String(64)),  # the sender holding it
    Column("claimed_until", When),
    Column("sent_at", When),
    Column("last_error", Text),
)
Index("uq_notifications_event_user", notifications.c.event_id, notifications.c.user_id, unique=True)
Index("ix_notifications_user_created", notifications.c.user_id, notifications.c.created_at)
Index("ix_notifications_mail", notifications.c.mail_status, notifications.c.not_before)
