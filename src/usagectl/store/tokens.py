"""API tokens for `usagectl serve`: created, listed, revoked and verified here.

A token is `uct_` + 43 URL-safe characters (256 random bits). The database keeps its SHA-256 and its first
characters (the prefix) only, so a leaked database or `token list` never reveals a usable token. Verification
finds the row by prefix and compares the hashes in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from usagectl.errors import InputError
from usagectl.store.engine import Store
from usagectl.store.tables import api_tokens, tenants, utcnow
from usagectl.store.tenants import get_tenant

TOKEN_PREFIX = "uct_"
PREFIX_LEN = 12  # "uct_" + 8 random characters: shown by `token list`, accepted by `token revoke`
_TOKEN_RE = re.compile(r"uct_[A-Za-z0-9_-]{43}")
# last_used_at is bookkeeping, not an audit trail: one write per token per minute keeps busy clients from
# turning every read into a write (SQLite has a single writer).
LAST_USED_GRANULARITY = timedelta(minutes=1)


@dataclass(frozen=True)
class TokenInfo:
    prefix: str
    scope: str  # root | tenant
    tenant: str | None
    name: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    def status(self, now: datetime | None = None) -> str:
        now = now or utcnow()
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class TokenScope:
    """Who a verified token speaks for: root (tenant None) or one tenant."""

    prefix: str
    tenant: str | None

    @property
    def is_root(self) -> bool:
        return self.tenant is None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def parse_duration(text: str) -> timedelta:
    """`90d`, `12h`, `30m`, `2w`: a token's lifetime."""
    m = re.fullmatch(r"\s*(\d{1,6})\s*([mhdw])\s*", text)
    if not m or int(m.group(1)) == 0:
        raise InputError(f"--expires: {text!r} is not a duration like 90d, 12h, 30m or 2w")
    n = int(m.group(1))
    unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
    try:
        return timedelta(**{unit: n})
    except OverflowError:
        raise InputError(f"--expires: {text!r} is too long") from None


def create_token(
    store: Store, *, tenant: str | None, name: str = "", expires_in: timedelta | None = None
) -> tuple[str, TokenInfo]:
    """A new token for one tenant (or root when tenant is None). Returns the secret (shown once) and its info."""
    now = utcnow()
    with store.engine.begin() as conn:
        tenant_id: int | None = None
        if tenant is not None:
            row = get_tenant(conn, tenant)
            if row is None:
                raise InputError(f"unknown tenant {tenant!r}; `usagectl tenants` lists them")
            tenant_id = row.id
        while True:
            token = TOKEN_PREFIX + secrets.token_urlsafe(32)
            prefix = token[:PREFIX_LEN]
            taken = conn.execute(select(api_tokens.c.id).where(api_tokens.c.prefix == prefix)).first()
            if taken is None:
                break
        expires_at = now + expires_in if expires_in is not None else None
        conn.execute(
            api_tokens.insert().values(
                prefix=prefix,
                token_sha256=_digest(token),
                scope="tenant" if tenant is not None else "root",
                tenant_id=tenant_id,
                name=name,
                created_at=now,
                expires_at=expires_at,
            )
        )
    info = TokenInfo(prefix, "tenant" if tenant else "root", tenant, name, now, None, expires_at, None)
    return token, info


def list_tokens(store: Store) -> list[TokenInfo]:
    t = api_tokens.c
    q = (
        select(
            t.prefix,
            t.scope,
            tenants.c.slug,
            t.name,
            t.created_at,
            t.last_used_at,
            t.expires_at,
            t.revoked_at,
        )
        .select_from(api_tokens.outerjoin(tenants, tenants.c.id == t.tenant_id))
        .order_by(t.created_at, t.id)
    )
    with store.engine.connect() as conn:
        return [TokenInfo(*row) for row in conn.execute(q)]


def revoke_token(store: Store, prefix: str) -> bool:
    """Revoke the token with this prefix; False when there is none (or it is already revoked)."""
    with store.engine.begin() as conn:
        res = conn.execute(
            update(api_tokens)
            .where(api_tokens.c.prefix == prefix, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    return bool(res.rowcount)


def verify_token(store: Store, token: str) -> TokenScope | None:
    """The scope of a valid token; None for anything else (malformed, unknown, revoked, expired)."""
    if not _TOKEN_RE.fullmatch(token):
        return None
    prefix = token[:PREFIX_LEN]
    t = api_tokens.c
    now = utcnow()
    with store.engine.connect() as conn:
        row = conn.execute(
            select(t.id, t.token_sha256, t.scope, tenants.c.slug, t.expires_at, t.revoked_at, t.last_used_at)
            .select_from(api_tokens.outerjoin(tenants, tenants.c.id == t.tenant_id))
            .where(t.prefix == prefix)
        ).first()
    if row is None or not hmac.compare_digest(row.token_sha256, _digest(token)):
        return None
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    if row.scope == "tenant" and row.slug is None:
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_GRANULARITY:
        with store.engine.begin() as conn:
            conn.execute(update(api_tokens).where(t.id == row.id).values(last_used_at=now))
    return TokenScope(prefix=prefix, tenant=row.slug if row.scope == "tenant" else None)


def token_expiry(store: Store, prefix: str) -> datetime | None:
    with store.engine.connect() as conn:
        value: datetime | None = conn.execute(
            select(api_tokens.c.expires_at).where(api_tokens.c.prefix == prefix)
        ).scalar()
    return value
