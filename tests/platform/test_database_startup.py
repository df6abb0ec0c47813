"""Replicas starting at once on a fresh server: every one creates (or finds) its database and
migrates (or finds it migrated), none fails."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from mercato.platform.storage.database import ensure_database, service_url
from tests.demo.probe import ROOT, service_engine

# Imports everything first, says so, and waits for the word: the replicas then race from the
# same moment, as processes (Alembic keeps its state in module globals, so in one process
# migrations would collide for another reason).
REPLICA = """
import asyncio, sys
from pathlib import Path
from tests.demo.probe import service_engine

async def main() -> None:
    engine = await service_engine(sys.argv[1], "tally", Path(sys.argv[2]))
    await engine.dispose()

print("set", flush=True)
sys.stdin.readline()
asyncio.run(main())
"""


@pytest.mark.postgres
async def test_processes_creating_one_database_at_once_all_succeed(
    postgres_template: str, tmp_path: Path
) -> None:
    url = service_url(postgres_template, "tally", tmp_path)
    await asyncio.gather(*(ensure_database(url) for _ in range(6)))
    await ensure_database(url)  # and once more, when it exists


@pytest.mark.slow
@pytest.mark.postgres
async def test_replicas_on_a_fresh_postgres_database_all_create_and_migrate_it(
    postgres_template: str, tmp_path: Path
) -> None:
    await _replicas_start_at_once(postgres_template, tmp_path)


@pytest.mark.slow
async def test_replicas_on_a_fresh_sqlite_file_all_migrate_it(
    sqlite_template: str, tmp_path: Path
) -> None:
    await _replicas_start_at_once(sqlite_template, tmp_path)


async def _replicas_start_at_once(template: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MERCATO_")}
    replicas = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            REPLICA,
            template,
            str(tmp_path),
            env={**env, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        for _ in range(4)
    ]
    try:
        for replica in replicas:
            assert replica.stdout is not None
            assert await replica.stdout.readline() == b"set\n"
        for replica in replicas:
            assert replica.stdin is not None
            replica.stdin.write(b"go\n")
        for replica in replicas:
            output, _ = await asyncio.wait_for(replica.communicate(), 60)
            assert replica.returncode == 0, output.decode()
    finally:
        for replica in replicas:
            if replica.returncode is None:
                replica.kill()
                await replica.wait()
    engine = await service_engine(template, "tally", tmp_path)
    try:
        async with engine.connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        assert len(versions) == 2, versions  # the platform's head and the tally's, once each
    finally:
        await engine.dispose()
