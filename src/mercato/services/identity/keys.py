"""The key that signs access tokens: from configuration, or generated once in the data dir."""

from __future__ import annotations

from pathlib import Path

import structlog

from mercato.platform.files import write_once
from mercato.platform.settings import Settings
from mercato.platform.signing import SigningKey

log = structlog.get_logger(__name__)

GENERATED_KEY = "identity-signing-key.pem"


def load_signing_key(settings: Settings) -> SigningKey:
    """``MERCATO_JWT_PRIVATE_KEY`` (PEM), else ``MERCATO_JWT_PRIVATE_KEY_FILE``, else the key
    generated on first start in the data directory (fine embedded; several machines need the
    same configured key)."""
    if settings.jwt_private_key:
        return SigningKey.from_pem(settings.jwt_private_key)
    if settings.jwt_private_key_file is not None:
        return SigningKey.from_pem(settings.jwt_private_key_file.read_bytes())
    if settings.database_url:
        log.warning(
            "no MERCATO_JWT_PRIVATE_KEY configured: using a key generated in the data directory; "
            "identity replicas on other machines will not share it"
        )
    return _generated(settings.data_dir / GENERATED_KEY)


def _generated(path: Path) -> SigningKey:
    pem, made = write_once(path, lambda: SigningKey.generate().to_pem())
    key = SigningKey.from_pem(pem)
    if made:
        log.info("generated the token signing key", path=str(path), kid=key.kid)
    return key
