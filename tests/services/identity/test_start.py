"""identity's first start: the admin account and the signing key, made once and kept."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mercato.platform.signing import SigningKey
from mercato.services.identity.admin import ADMIN_PASSWORD_FILE, AdminSetupError
from tests.services.identity.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, start_identity


async def test_the_configured_admin_can_sign_in_and_is_made_once(tmp_path: Path) -> None:
    async for ident in start_identity(tmp_path):
        tokens = await ident.login(ADMIN_EMAIL, ADMIN_PASSWORD)
        assert tokens.access_token
        kid = (await ident.jwks())["keys"][0]["kid"]
    async for ident in start_identity(tmp_path):
        assert len(await ident.events("UserCreated")) == 1
        # The generated key was kept in the data directory: old tokens still verify.
        assert (await ident.jwks())["keys"][0]["kid"] == kid


async def test_without_a_configured_password_one_is_generated_into_a_private_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async for ident in start_identity(tmp_path, admin_email=None, admin_password=None):
        printed = capsys.readouterr().err
        kept = tmp_path / ADMIN_PASSWORD_FILE
        assert "admin@mercato.local" in printed and str(kept.resolve()) in printed
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        password = kept.read_text().strip()
        assert password not in printed
        await ident.login("admin@mercato.local", password)
    async for _ident in start_identity(tmp_path, admin_email=None, admin_password=None):
        assert "password" not in capsys.readouterr().err


async def test_a_weak_configured_admin_password_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(AdminSetupError, match="MERCATO_ADMIN_PASSWORD"):
        async for _ident in start_identity(tmp_path, admin_password="admin"):
            pass


async def test_a_configured_key_signs_the_tokens(tmp_path: Path) -> None:
    key = SigningKey.generate()
    async for ident in start_identity(tmp_path, jwt_private_key=key.to_pem().decode()):
        assert (await ident.jwks())["keys"] == [key.public_jwk()]
    assert not (tmp_path / "identity-signing-key.pem").exists()
