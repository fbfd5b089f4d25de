"""`[serve.auth] mode = "jwt"`: the host platform's JWTs, verified with PyJWT."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from usagectl import config as cfgmod
from usagectl.errors import ConfigError
from usagectl.store.engine import Store, open_store
from usagectl.store.tenants import sync_tenants
from usagectl.web.app import ServeSettings, create_app
from usagectl.web.auth import AuthError, JwtVerifier

SECRET = "platform-signing-secret-0123456789abcdef"
TENANTS = """
[[tenants]]
slug = "acme"
plan = "starter"

[[tenants]]
slug = "globex"
plan = "pro"
"""
AUTH = """
[serve.auth]
mode = "jwt"
jwt_algorithm = "HS256"
jwt_secret_env = "PLATFORM_JWT_SECRET"
jwt_issuer = "https://platform.example"
jwt_audience = "usage-api"
jwt_leeway_seconds = 5
tenant_claim = "org"
role_claim = "roles"
tenant_admin_roles = ["org_admin"]
root_admin_roles = ["platform_admin", "support"]
"""
SUMMARY = "/api/admin/usage/summary"
ROOT = "/api/root-admin/usage/tenants"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": "https://platform.example",
        "aud": "usage-api",
        "exp": now + 300,
        "nbf": now - 5,
        "org": "acme",
        "roles": ["org_admin"],
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def hs256(payload: dict[str, Any], key: str = SECRET) -> str:
    return str(jwt.encode(payload, key, algorithm="HS256"))


@pytest.fixture
def client(
    db_url: str, write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    monkeypatch.setenv("PLATFORM_JWT_SECRET", SECRET)
    cfg = cfgmod.load(write_config(TENANTS + AUTH))
    store: Store = open_store(db_url)
    sync_tenants(store, cfg.tenants)
    with TestClient(create_app(ServeSettings(cfg, store=store, access_log=False))) as c:
        yield c
    store.close()


def get(c: TestClient, url: str, token: str, **params: str) -> Any:
    return c.get(url, params=params, headers={"Authorization": f"Bearer {token}"})


def test_tenant_admin_jwt_reads_its_own_tenant_only(client: TestClient) -> None:
    tok = hs256(claims())
    r = get(client, SUMMARY, tok)
    assert r.status_code == 200 and r.json()["tenant"]["slug"] == "acme"
    assert get(client, SUMMARY, tok, tenant="globex").status_code == 403
    assert get(client, SUMMARY, tok, tenant="ghost").status_code == 403
    assert get(client, ROOT, tok).status_code == 403


def test_root_roles_read_every_tenant(client: TestClient) -> None:
    for role in ("platform_admin", ["x", "support"]):
        tok = hs256(claims(roles=role, org=None))
        assert get(client, ROOT, tok).status_code == 200
        assert get(client, SUMMARY, tok, tenant="globex").json()["tenant"]["slug"] == "globex"


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"roles": ["viewer"]}, 403),
        ({"org": None}, 403),
        ({"exp": -60}, 401),
        ({"nbf": 60}, 401),
        ({"iss": "https://evil.example"}, 401),
        ({"aud": "another-api"}, 401),
        ({"exp": None}, 401),
    ],
    ids=["no-role", "no-tenant-claim", "expired", "not-yet-valid", "issuer", "audience", "no-exp"],
)
def test_claims_are_checked(client: TestClient, payload: dict[str, Any], status: int) -> None:
    # Times are offsets from now, taken when the test runs (not when it is collected).
    now = int(time.time())
    over = {k: now + v if k in ("exp", "nbf") and v is not None else v for k, v in payload.items()}
    r = get(client, SUMMARY, hs256(claims(**over)))
    assert r.status_code == status, r.text
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "claim, value",
    [
        ("exp", lambda now: str(now + 300)),  # a numeric string: PyJWT's int() took it
        ("exp", lambda now: f"{now + 300}.0"),
        ("exp", lambda now: True),
        ("exp", lambda now: float("inf")),
        ("exp", lambda now: [now + 300]),
        ("nbf", lambda now: str(now - 5)),
        ("iat", lambda now: str(now)),
        ("iat", lambda now: float("nan")),
    ],
    ids=[
        "exp-string",
        "exp-decimal-string",
        "exp-bool",
        "exp-infinity",
        "exp-list",
        "nbf-string",
        "iat-string",
        "iat-nan",
    ],
)
def test_time_claims_that_are_not_numbers_are_refused(
    client: TestClient, claim: str, value: Callable[[int], Any]
) -> None:
    """Issue 23: RFC 7519 NumericDate is a JSON number; a JWT whose `exp` is "1893456000" was accepted."""
    token = hs256(claims(**{claim: value(int(time.time()))}))
    r = get(client, SUMMARY, token)
    assert r.status_code == 401 and r.json()["error"] in ("invalid token", "token expired"), r.text
    # The same claims with numbers are fine, a fraction of a second included.
    now = time.time()
    assert get(client, SUMMARY, hs256(claims(exp=now + 300.5, nbf=now - 5, iat=now))).status_code == 200


def test_leeway_accepts_a_just_expired_token(client: TestClient) -> None:
    assert get(client, SUMMARY, hs256(claims(exp=int(time.time()) - 2))).status_code == 200


def test_wrong_secret_and_garbage_get_401_without_echo(client: TestClient) -> None:
    forged = hs256(claims(), key="not-the-platform-secret-at-all-0000")
    r = get(client, SUMMARY, forged)
    assert r.status_code == 401 and forged not in r.text
    for junk in ("x", "a.b.c", "....", "eyJ.eyJ.", "é"):
        assert client.get(SUMMARY, headers={"Authorization": f"Bearer {junk}".encode()}).status_code == 401


def test_alg_none_is_refused(client: TestClient) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims(roles="platform_admin")).encode())
    for token in (f"{header}.{body}.", f"{header}.{body}"):
        assert get(client, ROOT, token).status_code == 401


PUBLIC_PEM = """-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEVs/o5+uQbTjL3chynL4wXgUg2R9
q9UU8I5mEovUf86QZ7kOBIjJwqnzD1omageEHWwHdBO6B+dFabmdT9POxg==
-----END PUBLIC KEY-----
"""


def test_key_confusion_hs256_signed_with_the_public_key_is_refused(tmp_path: Path) -> None:
    # The attack: the server verifies RS256/ES256 with a public key; the attacker signs HS256 with that same
    # public key as an HMAC secret. Built by hand: PyJWT itself refuses to sign HS256 with a PEM key.
    cfg = cfgmod.ServeAuthConfig(mode="jwt", jwt_algorithm="ES256", jwt_public_key_file=tmp_path / "k.pem")
    verifier = JwtVerifier.__new__(JwtVerifier)
    verifier.cfg, verifier._jwt, verifier._key, verifier._jwks = cfg, jwt, PUBLIC_PEM, {}
    signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims(roles='root_admin')).encode())}"
    sig = hmac.new(PUBLIC_PEM.encode(), signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(AuthError):
        verifier.verify(f"{signing_input}.{_b64(sig)}")


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ('mode = "jwt"', "needs jwt_secret_env or jwt_secret_file"),
        ('mode = "jwt"\njwt_algorithm = "RS256"', "exactly one of jwt_public_key_file and jwt_jwks_file"),
        ('mode = "jwt"\njwt_secret = "inline"', "must not hold a secret inline"),
        (
            'mode = "jwt"\njwt_algorithm = "none"\njwt_secret_env = "X"',
            "'none' is not one of HS256, RS256, ES256",
        ),
        ('mode = "jwt"\njwt_secret_env = "X"\nroot_admin_roles = ["a"]\ntenant_admin_roles = ["a"]', "both"),
    ],
)
def test_bad_auth_config_is_one_clear_line(
    write_config: Callable[[str], Path], auth: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=r"serve\.auth") as err:
        cfgmod.load(write_config(f"[serve.auth]\n{auth}\n"))
    assert message in str(err.value)


def test_missing_secret_env_fails_at_start(
    write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PLATFORM_JWT_SECRET", raising=False)
    cfg = cfgmod.load(write_config(AUTH))
    with pytest.raises(ConfigError, match="PLATFORM_JWT_SECRET is not set"):
        JwtVerifier(cfg.serve.auth)


def _crypto() -> Any:
    return pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ec")


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_asymmetric_pem_and_jwks(tmp_path: Path, alg: str) -> None:
    _crypto()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    private = (
        rsa.generate_private_key(65537, 2048) if alg == "RS256" else ec.generate_private_key(ec.SECP256R1())
    )
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "k.pem").write_bytes(pem)
    jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(private.public_key()))
    jwk["kid"] = "k1"
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    good = jwt.encode(claims(), private, algorithm=alg, headers={"kid": "k1"})
    confused = hs256(claims(roles="platform_admin"), key="x" * 32)
    for source in ({"jwt_public_key_file": tmp_path / "k.pem"}, {"jwt_jwks_file": tmp_path / "jwks.json"}):
        cfg = cfgmod.ServeAuthConfig(
            mode="jwt", jwt_algorithm=alg, jwt_issuer="https://platform.example", jwt_audience="usage-api",
            tenant_claim="org", role_claim="roles", tenant_admin_roles=["org_admin"], **source,
        )  # fmt: skip
        v = JwtVerifier(cfg)
        assert v.verify(good).tenant == "acme"
        with pytest.raises(AuthError):
            v.verify(confused)
