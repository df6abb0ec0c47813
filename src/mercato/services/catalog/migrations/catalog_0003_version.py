"""catalog: catalog_version, a number that changes whenever a product row does.

A page of products can then be kept by whoever shows it (the gateway) and asked for again
with the version it was read at: the same version means the same page (ListProducts'
``if_version``). The number is moved by triggers, so no writer can forget it, in the
transaction that changes the product: a reader that sees the new version sees the change.

It starts at a random number, so that two catalogs' versions (another data directory, a
database made again) do not meet.

On PostgreSQL the trigger is a deferred constraint trigger: the version row is locked at
commit, after every product row the transaction locks, so two writers never wait for each
other in opposite orders. On SQLite there is one writer at a time.

Revision ID: catalog_0003
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "catalog_0003"
down_revision = "catalog_0002"
branch_labels = None
depends_on = None

_BUMP = "UPDATE catalog_version SET version = version + 1 WHERE id = 1"


def upgrade() -> None:
    op.create_table(
        "catalog_version",
        sa.Column("id", sa.SmallInteger, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.CheckConstraint("id = 1", name="ck_catalog_version_one_row"),
    )
    start = secrets.randbelow(2**62)
    op.execute(f"INSERT INTO catalog_version (id, version) VALUES (1, {start})")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION catalog_changed() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {_BUMP}; RETURN NULL; END $$"
        )
        op.execute(
            "CREATE CONSTRAINT TRIGGER products_changed"
            " AFTER INSERT OR UPDATE OR DELETE ON products"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION catalog_changed()"
        )
    else:
        for event in ("INSERT", "UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER products_{event.lower()}_changed AFTER {event} ON products"
                f" BEGIN {_BUMP}; END"
            )
