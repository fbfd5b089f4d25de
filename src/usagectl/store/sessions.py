"""The pages' sign-in sessions (token mode of `usagectl serve`), kept server-side so that signing out ends them.

A session is a random id in the browser's signed cookie (usagectl.web.session) and a row here: the id's SHA-256
(never the id), the API token it was opened with, and its expiry. Each page request looks the row up joined to the
token, so a session ends when it is signed out (its row deleted), when it expires, and when its token is revoked or
expires or its tenant is gone, whichever comes first.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import delete, select

from usagectl.store.engine import Store
from usagectl.store.tables import api_tokens, tenants, utcnow, web_sessions
from usagectl.store.tokens import TokenScope

SID_BYTES = 32


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode("utf-8", "surrogatepass")).hexdigest()


def open_session(store: Store, prefix: str, expires_at: datetime) -> str | None:
    """A new session for the token with this prefix, until `expires_at`; its id (for the cookie only), or None
    when there is no such token. Sessions already expired are deleted on the way (no job needs to)."""
    now = utcnow()
    sid = secrets.token_urlsafe(SID_BYTES)
    with store.engine.begin() as conn:
        token_id = conn.execute(select(api_tokens.c.id).where(api_tokens.c.prefix == prefix)).scalar()
        if token_id is None:
            return None
        conn.execute(delete(web_sessions).where(web_sessions.c.expires_at <= now))
        conn.execute(
            web_sessions.insert().values(
                sid_sha256=_digest(sid), token_id=token_id, created_at=now, expires_at=expires_at
            )
        )
    return sid


def session_scope(store: Store, sid: str) -> TokenScope | None:
    """Who an open session speaks for; None when it was signed out or has expired, or its token is no longer
    valid (revoked, expired, its tenant gone)."""
    s, t = web_sessions.c, api_tokens.c
    now = utcnow()
    with store.engine.connect() as conn:
        row = conn.execute(
            select(t.prefix, t.scope, tenants.c.slug, t.expires_at, t.revoked_at, s.expires_at.label("ends"))
            .select_from(
                web_sessions.join(api_tokens, t.id == s.token_id).outerjoin(
                    tenants, tenants.c.id == t.tenant_id
                )
            )
            .where(s.sid_sha256 == _digest(sid))
        ).first()
    if row is None or row.ends <= now or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    if row.scope == "tenant" and row.slug is None:
        return None
    return TokenScope(prefix=row.prefix, tenant=row.slug if row.scope == "tenant" else None)


def end_session(store: Store, sid: str) -> bool:
    """Sign out: delete the session. False when there was none (already ended, or never ours)."""
    with store.engine.begin() as conn:
        res = conn.execute(delete(web_sessions).where(web_sessions.c.sid_sha256 == _digest(sid)))
    return bool(res.rowcount)
