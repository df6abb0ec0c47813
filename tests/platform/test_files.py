"""The data directory holds password hashes, addresses and keys: only its owner reads it."""

from __future__ import annotations

import stat
from pathlib import Path

from mercato.services import all_services
from tests.support import ADMIN, running
from tests.support import test_settings as make_settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_data_directory_and_its_files_are_the_owners_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = make_settings(data, admin_email=ADMIN["email"], admin_password=ADMIN["password"])
    async with running(all_services(), settings) as (_system, http):
        assert (await http.get("/api/v1/products")).status_code == 200
        made = sorted(p.name for p in data.iterdir())
        assert "identity.db" in made and "identity-signing-key.pem" in made
        assert mode(data) == 0o700
        readable = {p.name: oct(mode(p)) for p in data.iterdir() if mode(p) & 0o077}
        assert readable == {}


def test_of_processes_writing_one_secret_at_once_each_reads_the_whole_of_one(
    tmp_path: Path,
) -> None:
    """Replicas starting together generate a key each; every one must end up with the same
    complete key, never an empty or half-written file."""
    import multiprocessing

    key = tmp_path / "data" / "key"
    with multiprocessing.get_context("fork").Pool(8) as pool:
        seen = pool.map(_write_key, [(key, n) for n in range(32)])
    assert len({content for content, _ in seen}) == 1
    assert sum(written for _, written in seen) == 1
    assert seen[0][0] == key.read_bytes() and len(key.read_bytes()) == 4096
    assert mode(key) == 0o600 and [p.name for p in key.parent.iterdir()] == ["key"]


def _write_key(args: tuple[Path, int]) -> tuple[bytes, bool]:
    from mercato.platform.files import write_once

    path, n = args
    return write_once(path, lambda: bytes([n]) * 4096)
