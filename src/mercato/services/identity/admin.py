"""The first admin account, made on first start: from MERCATO_ADMIN_EMAIL/PASSWORD, or with a
generated password written to a file only its owner reads (``ADMIN_PASSWORD_FILE`` in the data
directory; its path is printed, never the password: a terminal's scroll-back and a service
manager's logs are read by others). Never a built-in password."""

from __future__ import annotations

import secrets
import sys

import structlog
from sqlalchemy.exc import IntegrityError

from mercato.contracts.events import UserRolesUpdated
from mercato.platform.files import write_private
from mercato.platform.runtime.service import ServiceContext
from mercato.services.identity import accounts
from mercato.services.identity.domain import Invalid, check_password, normalize_email
from mercato.services.identity.passwords import hash_password

log = structlog.get_logger(__name__)

DEFAULT_EMAIL = "admin@mercato.local"
ADMIN_PASSWORD_FILE = "admin-password.txt"


class AdminSetupError(RuntimeError):
    pass


def _generated_password(email: str) -> str:
    while True:
        password = secrets.token_urlsafe(18)
        try:
            check_password(password, email)
            return password
        except Invalid:
            continue


async def ensure_admin(ctx: ServiceContext) -> None:
    """Create the admin account unless an admin exists already."""
    async with ctx.db.connect() as conn:
        if await accounts.count_admins(conn) > 0:
            return
    settings = ctx.settings
    try:
        email = normalize_email(settings.admin_email or DEFAULT_EMAIL)
        password = settings.admin_password
        if password is not None:
            check_password(password, email)
    except Invalid as exc:
        raise AdminSetupError(f"MERCATO_ADMIN_EMAIL / MERCATO_ADMIN_PASSWORD: {exc}") from None
    generated = password is None
    password = password or _generated_password(email)
    password_hash = await hash_password(password)
    try:
        async with ctx.transaction() as uow:
            user_id = await accounts.register(uow, email, "Administrator", password_hash, ["admin"])
            uow.publish(UserRolesUpdated(userId=user_id, roles=["admin"]), subject=user_id)
    except (accounts.EmailTaken, IntegrityError):
        # Another replica made it first, or the email belongs to someone who is not an admin
        # (then an operator must decide: nothing is granted silently).
        async with ctx.db.connect() as conn:
            if await accounts.count_admins(conn) == 0:
                log.error("cannot create the admin account: the email is taken", email=email)
        return
    log.info("created the admin account", email=email, user_id=user_id)
    if generated:
        kept = write_private(settings.data_dir / ADMIN_PASSWORD_FILE, f"{password}\n".encode())
        print(
            f"\n  Mercato admin account created: {email}\n"
            f"  its password is in {kept.resolve()} (readable by you only; delete the file "
            "once you have it, or set MERCATO_ADMIN_PASSWORD)\n",
            file=sys.stderr,
            flush=True,
        )
