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
