"""Identity's use cases over its tables: accounts, logins and refresh-token families.

Functions that refuse (a wrong password, a reused refresh token) return ``Refused`` instead of
raising, because what they wrote (the failure counter, the revoked family) must commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mercato.contracts.events import (
    LoginFailed,
    ProfileUpdated,
    UserAuthenticated,
    UserCreated,
    UserRolesUpdated,
)
from mercato.platform.ids import new_id
from mercato.platform.storage.sql import Connection
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.identity.domain import Throttle, check_roles
from mercato.services.identity.passwords import NO_PASSWORD
from mercato.services.identity.tables import login_failures, refresh_tokens, users
from mercato.services.identity.tokens import Issued, Refused, TokenIssuer, hash_refresh_token


class EmailTaken(Exception):
    pass


class UserNotFound(Exception):
    pass


class LastAdmin(Exception):
    pass


@dataclass(frozen=True)
class Account:
    user_id: str
    email: str
    name: str
    roles: list[str]
    created_at: datetime


def _account(row: Any) -> Account:
    return Account(row.id, row.email, row.name, row.roles.split(","), row.created_at)


async def user_by_email(conn: Connection, email: str) -> Any:
    return (await conn.execute(select(users).where(users.c.email == email))).first()


async def get_account(conn: Connection, user_id: str) -> Account:
    row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
    if row is None:
        raise UserNotFound(user_id)
    return _account(row)


async def register(
    uow: UnitOfWork, email: str, name: str, password_hash: str, roles: list[str]
) -> str:
    if await user_by_email(uow.conn, email) is not None:
        raise EmailTaken(email)
    user_id, now = new_id(), datetime.now(UTC)
    await uow.conn.execute(
        users.insert().values(
            id=user_id,
            email=email,
            name=name,
            password_hash=password_hash,
            roles=",".join(check_roles(roles)),
            created_at=now,
            updated_at=now,
        )
    )
    uow.publish(UserCreated(userId=user_id, email=email, name=name), subject=user_id)
    return user_id


async def create_many(uow: UnitOfWork, new: list[tuple[str, str, str]]) -> int:
    """Customer accounts (id, email, name) without a password, in one statement; those whose
    id or email is taken are skipped. UserCreated for each one made."""
    now = datetime.now(UTC)
    insert = postgresql.insert if uow.conn.dialect.name == "postgresql" else sqlite.insert
    rows = [
        {
            "id": user_id,
            "email": email,
            "name": name,
            "password_hash": NO_PASSWORD,
            "roles": "customer",
            "created_at": now,
            "updated_at": now,
        }
        for user_id, email, name in new
    ]
    made = await uow.conn.execute(
        insert(users).values(rows).on_conflict_do_nothing().returning(users.c.id)
    )
    names = {user_id: (email, name) for user_id, email, name in new}
    count = 0
    for (user_id,) in made:
        email, name = names[user_id]
        uow.publish(UserCreated(userId=user_id, email=email, name=name), subject=user_id)
        count += 1
    return count


async def seconds_locked(conn: Connection, key: str, now: datetime) -> int:
    """How long logins counted by ``key`` (``domain.throttle_key``) still wait."""
    locked = await conn.scalar(
        select(login_failures.c.locked_until).where(login_failures.c.email == key)
    )
    return Throttle.seconds_left(locked, now)


async def refuse_login(
    uow: UnitOfWork, email: str, key: str, reason: str, throttle: Throttle, now: datetime
) -> Refused:
    """Count a failed login by ``key`` (``domain.throttle_key``), and make the next wait after
    too many; publish LoginFailed."""
    uow.publish(LoginFailed(email=email, reason=reason), subject=email)
    if reason == "throttled":
        wait = await seconds_locked(uow.conn, key, now)
        return Refused(reason, "too many failed logins; retry later", retry_after=wait)
    insert = postgresql.insert if uow.conn.dialect.name == "postgresql" else sqlite.insert
    count = await uow.conn.scalar(
        insert(login_failures)
        .values(email=key, failures=1, last_failed_at=now)
        .on_conflict_do_update(
            index_elements=[login_failures.c.email],
            set_={"failures": login_failures.c.failures + 1, "last_failed_at": now},
        )
        .returning(login_failures.c.failures)
    )
    locked_until = throttle.locked_until(int(count or 0), now)
    if locked_until is not None:
        await uow.conn.execute(
            update(login_failures)
            .where(login_failures.c.email == key)
            .values(locked_until=locked_until)
        )
    return Refused(reason, "wrong email or password")


async def accept_login(
    uow: UnitOfWork, user: Any, key: str, issuer: TokenIssuer, now: datetime, new_hash: str | None
) -> Issued:
    await uow.conn.execute(login_failures.delete().where(login_failures.c.email == key))
    if new_hash is not None:
        await uow.conn.execute(
            update(users).where(users.c.id == user.id).values(password_hash=new_hash)
        )
    uow.publish(UserAuthenticated(userId=user.id), subject=user.id)
    return await _issue(uow.conn, user.id, user.roles.split(","), new_id(), issuer, now)


async def _issue(
    conn: Connection,
    user_id: str,
    roles: list[str],
    family_id: str,
    issuer: TokenIssuer,
    now: datetime,
) -> Issued:
    token, token_hash = issuer.new_refresh_token()
    await conn.execute(
        refresh_tokens.insert().values(
            id=new_id(),
            token_hash=token_hash,
            family_id=family_id,
            user_id=user_id,
            created_at=now,
            expires_at=now + issuer.refresh_ttl,
        )
    )
    access = issuer.access_token(user_id, roles, now)
    return Issued(access, token, int(issuer.access_ttl.total_seconds()))


async def refresh(
    uow: UnitOfWork, token: str, issuer: TokenIssuer, now: datetime
) -> Issued | Refused:
    """Spend a refresh token for a new pair. A token presented twice means it was stolen (or
    its holder is confused): the whole family is revoked, the thief's copy with it."""
    row = (
        await uow.conn.execute(
            select(refresh_tokens)
            .where(refresh_tokens.c.token_hash == hash_refresh_token(token))
            .with_for_update()
        )
    ).first()
    invalid = Refused("unknown", "invalid refresh token")
    if row is None or row.revoked_at is not None:
        return invalid
    if row.spent_at is not None:
        await revoke_family(uow.conn, row.family_id, now)
        return Refused("reused", "refresh token already used; sign in again")
    if row.expires_at <= now:
        return Refused("expired", "refresh token expired; sign in again")
    user = (await uow.conn.execute(select(users).where(users.c.id == row.user_id))).first()
    if user is None:
        return invalid
    await uow.conn.execute(
        update(refresh_tokens).where(refresh_tokens.c.id == row.id).values(spent_at=now)
    )
    return await _issue(uow.conn, user.id, user.roles.split(","), row.family_id, issuer, now)


async def revoke_family(conn: Connection, family_id: str, now: datetime) -> None:
    await conn.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def logout(uow: UnitOfWork, token: str, now: datetime) -> None:
    family = await uow.conn.scalar(
        select(refresh_tokens.c.family_id).where(
            refresh_tokens.c.token_hash == hash_refresh_token(token)
        )
    )
    if family is not None:
        await revoke_family(uow.conn, family, now)


async def update_profile(
    uow: UnitOfWork, user_id: str, name: str | None, email: str | None
) -> Account:
    account = await get_account(uow.conn, user_id)
    changes: dict[str, str] = {}
    if name is not None and name != account.name:
        changes["name"] = name
    if email is not None and email != account.email:
        if await user_by_email(uow.conn, email) is not None:
            raise EmailTaken(email)
        changes["email"] = email
    if changes:
        await uow.conn.execute(
            update(users)
            .where(users.c.id == user_id)
            .values(**changes, updated_at=datetime.now(UTC))
        )
        uow.publish(ProfileUpdated(userId=user_id, **changes), subject=user_id)
    return await get_account(uow.conn, user_id)


async def set_roles(uow: UnitOfWork, user_id: str, roles: list[str]) -> Account:
    chosen = check_roles(roles)
    account = await get_account(uow.conn, user_id)
    if "admin" in account.roles and "admin" not in chosen and await count_admins(uow.conn) <= 1:
        raise LastAdmin(user_id)
    if chosen != sorted(account.roles):
        await uow.conn.execute(
            update(users)
            .where(users.c.id == user_id)
            .values(roles=",".join(chosen), updated_at=datetime.now(UTC))
        )
        uow.publish(UserRolesUpdated(userId=user_id, roles=chosen), subject=user_id)
    return await get_account(uow.conn, user_id)


async def count_admins(conn: Connection) -> int:
    # roles is a short sorted list: "admin" or "admin,customer".
    found = await conn.scalar(
        select(func.count()).select_from(users).where(users.c.roles.startswith("admin"))
    )
    return int(found or 0)
