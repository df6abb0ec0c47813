"""Run a service's Alembic migrations (the platform branch plus the service's own branch)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from mercato.platform.storage.database import advisory_key, is_postgres, schema_engine
from mercato.platform.storage.sql import Database

PLATFORM_MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(service_versions: Path | None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(PLATFORM_MIGRATIONS))
    locations = [str(PLATFORM_MIGRATIONS / "versions")]
    if service_versions is not None:
        locations.append(str(service_versions))
    # A path separator that no path contains, so directories with spaces still work.
    cfg.set_main_option("path_separator", "newline")
    cfg.set_main_option("version_locations", "\n".join(locations))
    return cfg


# Held by the migrating transaction until it commits: replicas starting at once migrate one
# after the other, and those after the first find nothing left to do. The lock lives in the
# service's own database, so services on one server do not wait for each other.
MIGRATION_LOCK = text("SELECT pg_advisory_xact_lock(:k)")


async def migrate(db: Database, service_versions: Path | None) -> None:
    """Bring the database to the newest revision of every branch (``upgrade heads``).

    Safe for several processes at once: on PostgreSQL they take turns on an advisory lock;
    on SQLite the migration's ``BEGIN IMMEDIATE`` takes the file's write lock first."""
    cfg = alembic_config(service_versions)

    def upgrade(conn: Connection) -> None:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")

    engine = schema_engine(db.url)
    try:
        async with engine.begin() as conn:
            if is_postgres(db.url):
                await conn.execute(MIGRATION_LOCK, {"k": advisory_key("mercato.migrate")})
            await conn.run_sync(upgrade)
    finally:
        await engine.dispose()
