"""Run a service's Alembic migrations (the platform branch plus the service's own branch)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

from mercato.platform.storage.database import schema_engine
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


async def migrate(db: Database, service_versions: Path | None) -> None:
    """Bring the database to the newest revision of every branch (``upgrade heads``)."""
    cfg = alembic_config(service_versions)

    def upgrade(conn: Connection) -> None:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")

    engine = schema_engine(db.url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(upgrade)
    finally:
        await engine.dispose()
