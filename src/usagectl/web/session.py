"""The pages' session cookie and CSRF tokens (token mode), signed with HMAC-SHA256 from the standard library.

The cookie carries a random session id and an expiry, never the token. The database keeps the id's SHA-256 with
the token it was opened by (usagectl.store.sessions), and each request looks it up again: signing out deletes the
row, so a copy of the cookie is worth nothing afterwards, and a revoked or expired token ends its sessions at once.
The CSRF token of a POST form is an HMAC of a random per-browser cookie (a signed double submit), on top of
SameSite=Strict.

Cookie values and form fields come from the browser: anything, non-ASCII included. A MAC is ASCII, so anything
else is refused before `hmac.compare_digest` (which raises TypeError on a non-ASCII str).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass

from usagectl.config import ServeConfig

SESSION_COOKIE = "usagectl_session"
CSRF_COOKIE = "usagectl_csrf"
CSRF_FIELD = "csrf_token"
# Set by `usagectl serve` when no secret is configured, so its worker processes share one random secret.
ENV_PROCESS_SECRET = "USAGECTL_SERVE_SESSION_SECRET"


def session_secret(cfg: ServeConfig) -> bytes:
    """The configured secret ([serve] session_secret_env / _file, at least MIN_SESSION_SECRET_BYTES), else the one
    `usagectl serve` made for its workers, else a random one for this process only."""
    configured = cfg.session_secret_bytes()
    if configured is not None:
        return configured
    inherited = os.environ.get(ENV_PROCESS_SECRET)
    if inherited:
        return inherited.encode()
    return secrets.token_bytes(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, purpose: str, payload: str) -> str:
    # The purpose keeps a CSRF token from ever being accepted as a session (and the reverse).
    return _b64(hmac.new(secret, f"{purpose}\n{payload}".encode(), hashlib.sha256).digest())


def _same_mac(submitted: str, expected: str) -> bool:
    # compare_digest takes str only when both are ASCII; a browser can send anything.
    return submitted.isascii() and hmac.compare_digest(submitted.encode("ascii"), expected.encode("ascii"))


@dataclass(frozen=True)
class Session:
    sid: str  # the random session id (store.sessions keeps its SHA-256), never the token
    expires: int  # Unix seconds


def sign_session(secret: bytes, session: Session) -> str:
    payload = _b64(json.dumps({"s": session.sid, "e": session.expires}, separators=(",", ":")).encode())
    return f"{payload}.{_mac(secret, 'session', payload)}"


def read_session(secret: bytes, value: str, *, now: float | None = None) -> Session | None:
    """The session of a cookie value whose signature is ours and which has not expired; None otherwise. Whether
    the session is still open is the store's to say (store.sessions.session_scope)."""
    payload, _, mac = value.partition(".")
    if not payload or not mac or not payload.isascii():
        return None
    if not _same_mac(mac, _mac(secret, "session", payload)):
        return None
    try:
        data = json.loads(_unb64(payload))
        sid, expires = data["s"], data["e"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(sid, str) or not isinstance(expires, int) or isinstance(expires, bool):
        return None
    if expires <= (time.time() if now is None else now):
        return None
    return Session(sid, expires)


def new_csrf_cookie() -> str:
    return secrets.token_urlsafe(24)


def csrf_token(secret: bytes, cookie: str) -> str:
    """The form token for a browser's CSRF cookie."""
    return _mac(secret, "csrf", cookie)


def csrf_ok(secret: bytes, cookie: str | None, submitted: str | None) -> bool:
    if not cookie or not submitted:
        return False
    return _same_mac(submitted, csrf_token(secret, cookie))
