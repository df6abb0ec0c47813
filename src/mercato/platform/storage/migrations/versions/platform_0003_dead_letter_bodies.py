"""Dead letters keep the body as the bytes that came off the broker (bytea / BLOB).

A body held in TEXT could not hold every message: PostgreSQL refuses a NUL character in
TEXT, so a message carrying one could never be stored as a dead letter. Existing bodies are
kept as their UTF-8 bytes.

Revision ID: platform_0003
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "platform_0003"
down_revision = "platform_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _body_as(sa.LargeBinary(), "convert_to(body, 'UTF8')")


def downgrade() -> None:
    # A body that is not UTF-8 (or holds a NUL) cannot go back to TEXT: escaped instead.
    _body_as(sa.Text(), "encode(body, 'escape')")


def _body_as(type_: sa.types.TypeEngine[Any], postgresql_using: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("dead_letters", "body", type_=type_, postgresql_using=postgresql_using)
        return
    # SQLite: the table is copied, with CAST to the new type (TEXT's UTF-8 bytes as a BLOB).
    with op.batch_alter_table("dead_letters", recreate="always") as batch:
        batch.alter_column("body", type_=type_, existing_nullable=False)
