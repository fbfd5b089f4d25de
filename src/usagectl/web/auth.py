"""Who is calling: a bearer credential becomes a `Principal` (tenant admin of one tenant, or root admin).

Two verifiers, chosen by `[serve.auth].mode`: our own API tokens (usagectl.store.tokens) or the host platform's
JWTs (PyJWT). Neither ever logs or echoes the credential. Failures are `AuthError` (401) or `ForbiddenError`
(403); the app turns them into responses.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from usagectl.config import ServeAuthConfig
from usagectl.errors import ConfigError
from usagectl.store.engine import Store

Role = Literal["tenant_admin", "root_admin"]


@dataclass(frozen=True)
class Principal:
    role: Role
    tenant: str | None  # the tenant a tenant admin may read; None for root

    @property
    def is_root(self) -> bool:
        return self.role == "root_admin"


class AuthError(Exception):
    """Missing or bad credentials: 401. The message is safe to return (it never quotes the credential)."""


class ForbiddenError(Exception):
    """Valid credentials, wrong scope: 403."""


class Verifier(Protocol):
    def verify(self, credential: str) -> Principal: ...


class TokenVerifier:
    def __init__(self, store: Store) -> None:
        self.store = store

    def verify(self, credential: str) -> Principal:
        from usagectl.store.tokens import verify_token

        scope = verify_token(self.store, credential)
        if scope is None:
            raise AuthError("invalid, expired or revoked token")
        if scope.is_root:
            return Principal("root_admin", None)
        return Principal("tenant_admin", scope.tenant)


class JwtVerifier:
    """The platform's JWTs, with the one algorithm the config names: `alg: none` and an HS256 token signed with
    an RS256 public key (key confusion) fail the algorithm check before any key is used."""

    def __init__(self, cfg: ServeAuthConfig) -> None:
        import jwt

        self.cfg = cfg
        self._jwt = jwt
        self._key: Any = None
        self._jwks: dict[str, Any] = {}
        if cfg.jwt_algorithm == "HS256":
            assert cfg.jwt_secret is not None
            self._key = cfg.jwt_secret.resolve("serve.auth.jwt_secret").get_secret_value().encode()
        elif cfg.jwt_public_key_file is not None:
            self._key = self._read(cfg.jwt_public_key_file, "jwt_public_key_file")
            try:
                jwt.get_algorithm_by_name(cfg.jwt_algorithm).prepare_key(self._key)
            except NotImplementedError:
                raise ConfigError(
                    f"serve.auth: {cfg.jwt_algorithm} needs the 'cryptography' package"
                ) from None
            except Exception as exc:
                raise ConfigError(
                    f"serve.auth.jwt_public_key_file: not a {cfg.jwt_algorithm} public key ({type(exc).__name__})"
                ) from None
        else:
            assert cfg.jwt_jwks_file is not None
            text = self._read(cfg.jwt_jwks_file, "jwt_jwks_file")
            try:
                keyset = jwt.PyJWKSet.from_json(text)
            except (jwt.PyJWKSetError, jwt.PyJWKError, json.JSONDecodeError) as exc:
                raise ConfigError(f"serve.auth.jwt_jwks_file: {cfg.jwt_jwks_file}: {exc}") from None
            self._jwks = {k.key_id or "": k for k in keyset.keys}

    @staticmethod
    def _read(path: Path, key: str) -> str:
        try:
            return path.expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"serve.auth.{key}: cannot read {path}: {exc.strerror}") from None

    def _key_for(self, credential: str) -> Any:
        if not self._jwks:
            return self._key
        kid = self._jwt.get_unverified_header(credential).get("kid")
        if not isinstance(kid, str):
            if len(self._jwks) == 1:
                return next(iter(self._jwks.values()))
            raise AuthError("token has no key id (kid)")
        found = self._jwks.get(kid)
        if found is None:
            raise AuthError("token signed with an unknown key")
        return found

    def verify(self, credential: str) -> Principal:
        jwt = self._jwt
        cfg = self.cfg
        try:
            claims = jwt.decode(
                credential,
                self._key_for(credential),
                algorithms=[cfg.jwt_algorithm],
                audience=cfg.jwt_audience,
                issuer=cfg.jwt_issuer,
                leeway=cfg.jwt_leeway_seconds,
                options={"require": ["exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token not yet valid") from None
        except (jwt.InvalidTokenError, ValueError, TypeError, KeyError, OverflowError):
            # InvalidTokenError covers signature, algorithm, audience, issuer, malformed input.
            raise AuthError("invalid token") from None
        # RFC 7519 4.1.4-4.1.6: exp, nbf and iat are NumericDates, JSON numbers. PyJWT compares int(value), so it
        # accepts "1893456000" (a string) too: refuse anything that is not a finite number.
        for name in ("exp", "nbf", "iat"):
            if name in claims and not _numeric_date(claims[name]):
                raise AuthError("invalid token")
        roles = claims.get(cfg.role_claim)
        # A platform may send one role or a list of them.
        role_set: set[str] = set()
        if isinstance(roles, str):
            role_set = {roles}
        elif isinstance(roles, list):
            role_set = {r for r in roles if isinstance(r, str)}
        if role_set & set(cfg.root_admin_roles):
            return Principal("root_admin", None)
        if role_set & set(cfg.tenant_admin_roles):
            tenant = claims.get(cfg.tenant_claim)
            if not isinstance(tenant, str) or not tenant:
                raise ForbiddenError(f"token has no {cfg.tenant_claim!r} claim")
            return Principal("tenant_admin", tenant)
        raise ForbiddenError("token grants no usagectl role")


def _numeric_date(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def make_verifier(cfg: ServeAuthConfig, store: Store) -> Verifier:
    if cfg.mode == "jwt":
        return JwtVerifier(cfg)
    return TokenVerifier(store)
