"""The pages' session cookie and CSRF tokens (token mode), signed with HMAC-SHA256 from the standard library.

The cookie carries the API token's prefix (its public id) and an expiry, never the token: each request looks
the prefix up again, so a revoked or expired token signs the session out at once. The CSRF token of a POST form
is an HMAC of a random per-browser cookie (a signed double submit), on top of SameSite=Strict.
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
from usagectl.errors import ConfigError

SESSION_COOKIE = "usagectl_session"
CSRF_COOKIE = "usagectl_csrf"
CSRF_FIELD = "csrf_token"
# Set by `usagectl serve` when no secret is configured, so its worker processes share one random secret.
ENV_PROCESS_SECRET = "USAGECTL_SERVE_SESSION_SECRET"
MIN_SECRET_BYTES = 16


def session_secret(cfg: ServeConfig) -> bytes:
    """The configured secret ([serve] session_secret_env / _file), else the one `usagectl serve` made for its
    workers, else a random one for this process only."""
    if cfg.session_secret is not None:
        value = cfg.session_secret.resolve("serve.session_secret").get_secret_value().encode()
        if len(value) < MIN_SECRET_BYTES:
            where = cfg.session_secret.describe()
            raise ConfigError(
                f"serve.session_secret: {where} holds {len(value)} bytes; use at least {MIN_SECRET_BYTES}"
            )
        return value
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


@dataclass(frozen=True)
class Session:
    prefix: str  # the API token's prefix (store.tokens.PREFIX_LEN characters), never the token
    expires: int  # Unix seconds


def sign_session(secret: bytes, session: Session) -> str:
    payload = _b64(json.dumps({"p": session.prefix, "e": session.expires}, separators=(",", ":")).encode())
    return f"{payload}.{_mac(secret, 'session', payload)}"


def read_session(secret: bytes, value: str, *, now: float | None = None) -> Session | None:
    """The session of a cookie value whose signature is ours and which has not expired; None otherwise."""
    payload, _, mac = value.partition(".")
    if not payload or not mac or not hmac.compare_digest(mac, _mac(secret, "session", payload)):
        return None
    try:
        data = json.loads(_unb64(payload))
        prefix, expires = data["p"], data["e"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(prefix, str) or not isinstance(expires, int) or isinstance(expires, bool):
        return None
    if expires <= (time.time() if now is None else now):
        return None
    return Session(prefix, expires)


def new_csrf_cookie() -> str:
    return secrets.token_urlsafe(24)


def csrf_token(secret: bytes, cookie: str) -> str:
    """The form token for a browser's CSRF cookie."""
    return _mac(secret, "csrf", cookie)


def csrf_ok(secret: bytes, cookie: str | None, submitted: str | None) -> bool:
    if not cookie or not submitted:
        return False
    return hmac.compare_digest(submitted, csrf_token(secret, cookie))
