"""The HTML pages through the app in-process (TestClient), SQLite and PostgreSQL: sign-in and its cookies,
CSRF, every route's error paths, the headers, and tenant isolation of the pages and the CSV."""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from conftest import open_priced
from priced import EVIL, TENANTS, seed
from test_serve_api import Api
from usagectl import config as cfgmod
from usagectl.periods import Window, utc_today
from usagectl.records import MetricRow
from usagectl.reports import EMPTY_MESSAGE
from usagectl.store.engine import Store
from usagectl.store.sessions import open_session, session_scope
from usagectl.store.tables import web_sessions
from usagectl.store.tenants import sync_tenants
from usagectl.store.tokens import create_token, revoke_token
from usagectl.web.app import ServeSettings, create_app
from usagectl.web.session import CSRF_COOKIE, SESSION_COOKIE, Session, read_session, sign_session

SECRET = "test-session-secret-0123456789"
BILLING = "/admin/billing-usage"
SYSTEM = "/admin/system-usage"


class Site(Api):
    """test_serve_api's Api, for the pages: its client follows no redirect."""

    def fresh(self) -> TestClient:
        return TestClient(self.client.app, follow_redirects=False)


def _csrf(client: TestClient, path: str = "/signin") -> str:
    html = client.get(path).text
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, html
    return m.group(1)


def sign_in(client: TestClient, token: str) -> Any:
    return client.post("/signin", data={"token": token, "csrf_token": _csrf(client)})


def make_site(
    db_url: str,
    write_config: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
    cli: Callable[..., Any],
    extra: str = "",
) -> tuple[Store, cfgmod.Config]:
    """The shared priced config with evil and a session secret (`extra`: more [serve] keys), and the standard
    usage (tests/priced.py) over the last 30 days, rolled up; the caller closes the store."""
    secret = write_config(SECRET, "secret.txt")
    env = open_priced(
        db_url, write_config, monkeypatch, cli,
        tenants=(*TENANTS, ("evil", EVIL, "starter")), extra=f'[serve]\nsession_secret_file = "{secret}"\n{extra}\n',
    )  # fmt: skip
    try:
        env.standard(Window.last_days(30))
    except BaseException:
        env.store.close()
        raise
    return env.store, env.cfg


@pytest.fixture
def site(
    db_url: str, write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Any]
) -> Iterator[Site]:
    store, cfg = make_site(db_url, write_config, monkeypatch, cli)
    site = Site.open(store, cfg, follow_redirects=False)
    yield site
    site.client.close()
    store.close()


def test_pages_need_a_session_and_redirect_to_sign_in(site: Site) -> None:
    for path in (BILLING, BILLING + ".csv", SYSTEM):
        r = site.client.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/signin", path
    # A bearer token on a page is not a session: pages are for browsers.
    r = site.client.get(BILLING, headers={"Authorization": f"Bearer {site.acme}"})
    assert r.status_code == 303


def test_sign_in_sets_a_signed_expiring_cookie_without_the_token(site: Site) -> None:
    r = sign_in(site.client, site.acme)
    assert r.status_code == 303 and r.headers["location"] == BILLING
    cookies = [v for k, v in r.headers.multi_items() if k == "set-cookie"]
    session = next(c for c in cookies if c.startswith(SESSION_COOKIE + "="))
    flags = [f.strip().lower() for f in session.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "secure" not in flags  # plain HTTP (a test client)
    max_age = int(next(f for f in flags if f.startswith("max-age=")).split("=")[1])
    assert 0 < max_age <= 8 * 3600
    value = session.split(";")[0].split("=", 1)[1]
    assert site.acme not in value and site.acme[12:20] not in value
    s = read_session(SECRET.encode(), value)
    assert s is not None
    scope = session_scope(site.store, s.sid)
    assert scope is not None and scope.prefix == site.acme[:12] and scope.tenant == "acme"
    # The database keeps the session id's hash, never the id.
    with site.store.engine.connect() as conn:
        kept = conn.execute(select(web_sessions.c.sid_sha256)).scalars().all()
    assert len(kept) == 1 and s.sid not in kept[0]
    page = site.client.get(BILLING)
    assert page.status_code == 200 and "Billing &amp; Usage" in page.text and "Acme Corp" in page.text


def test_cookie_is_secure_over_https(site: Site) -> None:
    https = TestClient(site.client.app, base_url="https://testserver", follow_redirects=False)
    r = sign_in(https, site.acme)
    session = next(
        v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith(SESSION_COOKIE)
    )
    assert "secure" in [f.strip().lower() for f in session.split(";")]


def test_bad_token_csrf_missing_and_wrong_are_refused(site: Site) -> None:
    c = site.fresh()
    r = sign_in(c, "uct_" + "x" * 43)
    assert (
        r.status_code == 401
        and "not valid" in r.text
        and SESSION_COOKIE not in r.headers.get("set-cookie", "")
    )
    c = site.fresh()
    c.get("/signin")
    r = c.post("/signin", data={"token": site.acme})  # no CSRF field
    assert r.status_code == 403 and SESSION_COOKIE + "=" not in r.headers.get("set-cookie", "")
    r = c.post("/signin", data={"token": site.acme, "csrf_token": "forged"})
    assert r.status_code == 403
    # A token made for another browser's CSRF cookie does not fit this one (double submit).
    other = site.fresh()
    token_of_other = _csrf(other)
    r = c.post("/signin", data={"token": site.acme, "csrf_token": token_of_other})
    assert r.status_code == 403
    r = c.post("/signin", content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 400


def test_sign_out_needs_csrf_and_clears_the_cookie(site: Site) -> None:
    assert sign_in(site.client, site.acme).status_code == 303
    r = site.client.post("/signout", data={"csrf_token": "forged"})
    assert r.status_code == 403
    assert site.client.get(BILLING).status_code == 200  # still signed in
    token = _csrf(site.client, BILLING)
    r = site.client.post("/signout", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/signin"
    assert any(
        v.startswith(SESSION_COOKIE + '=""')
        or v.startswith(SESSION_COOKIE + "=;")
        or "max-age=0" in v.lower()
        for k, v in r.headers.multi_items()
        if k == "set-cookie" and v.startswith(SESSION_COOKIE)
    )
    assert site.client.get(BILLING).status_code == 303


def _tampered(value: str) -> str:
    i = value.index(".") + 3
    return value[:i] + ("B" if value[i] != "B" else "C") + value[i + 1 :]


def test_revoked_token_and_expired_or_forged_cookie_sign_out(site: Site) -> None:
    assert sign_in(site.client, site.acme).status_code == 303
    assert revoke_token(site.store, site.acme[:12])
    assert site.client.get(BILLING).status_code == 303
    key = SECRET.encode()
    later = int(time.time()) + 600
    sid = open_session(site.store, site.globex[:12], datetime.fromtimestamp(later, UTC))
    assert sid is not None
    for value in (
        sign_session(key, Session(sid, int(time.time()) - 1)),  # expired
        sign_session(b"another-secret", Session(sid, later)),  # not ours
        sign_session(key, Session(sid, later))[:-2] + "AA",  # tampered
        sign_session(key, Session("x" * 43, later)),  # ours, but no such session on the server
    ):
        c = site.fresh()
        c.cookies.set(SESSION_COOKIE, value)
        r = c.get(BILLING)
        assert r.status_code == 303, value
        assert SESSION_COOKIE in r.headers.get("set-cookie", "")  # cleared
    c = site.fresh()
    c.cookies.set(SESSION_COOKIE, sign_session(key, Session(sid, later)))
    assert c.get(BILLING).status_code == 200  # the same session, unexpired and ours, works


def test_sign_out_ends_the_session_on_the_server(site: Site) -> None:
    """Issue 23 item 3: a copy of the session cookie taken before sign-out opens nothing afterwards."""
    assert sign_in(site.client, site.acme).status_code == 303
    saved = site.client.cookies[SESSION_COOKIE]
    other = site.fresh()  # another browser, or whoever copied the cookie
    other.cookies.set(SESSION_COOKIE, saved)
    assert other.get(BILLING).status_code == 200
    r = site.client.post("/signout", data={"csrf_token": _csrf(site.client, BILLING)})
    assert r.status_code == 303
    for path in (BILLING, BILLING + ".csv", SYSTEM):
        r = other.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/signin", path
        assert SESSION_COOKIE in r.headers.get("set-cookie", "")  # cleared
    # Signing out ends this session only: the same token's other sessions stay open.
    a, b = site.fresh(), site.fresh()
    assert sign_in(a, site.acme).status_code == 303 and sign_in(b, site.acme).status_code == 303
    assert a.post("/signout", data={"csrf_token": _csrf(a, BILLING)}).status_code == 303
    assert a.get(BILLING).status_code == 303 and b.get(BILLING).status_code == 200


NON_ASCII_COOKIES = (
    "é.é",
    "ééé",
    ".é",
    "é.",
    "eyJzIjoiYSIsImUiOjF9.ééé",
    "日本.語",
    "ÿ\u00a0.\u00a0ÿ",
)


@pytest.mark.parametrize("value", NON_ASCII_COOKIES)
def test_a_non_ascii_session_cookie_is_a_redirect_that_clears_it(site: Site, value: str) -> None:
    """Issue 23 item 1: `hmac.compare_digest` raised TypeError on a non-ASCII str (a 500)."""
    # As UTF-8 and as Latin-1 bytes, alone and after a valid payload (the signature part alone non-ASCII).
    assert sign_in(site.client, site.acme).status_code == 303
    good = site.client.cookies[SESSION_COOKIE]
    cookies = [
        f"{SESSION_COOKIE}={value}".encode(),
        f"{SESSION_COOKIE}={good.split('.')[0]}.{value}".encode(),
    ]
    if all(ord(ch) < 256 for ch in value):
        cookies.append(f"{SESSION_COOKIE}={value}".encode("latin-1"))
    for cookie in cookies:
        for path in (BILLING, SYSTEM, BILLING + ".csv"):
            r = site.fresh().get(path, headers={"cookie": cookie})
            assert r.status_code == 303 and r.headers["location"] == "/signin", (path, cookie)
            assert any(
                v.startswith(SESSION_COOKIE + "=") and "max-age=0" in v.lower()
                for k, v in r.headers.multi_items()
                if k == "set-cookie"
            ), r.headers
        r = site.fresh().get("/signin", headers={"cookie": cookie})
        assert r.status_code == 200 and 'name="token"' in r.text


@pytest.mark.parametrize("field", ["%C3%A9", "%C3%A9" * 40, "%E6%97%A5", "%FF", "%00", "%C3%A9%C3%A9AAAA"])
def test_a_non_ascii_csrf_field_is_the_form_expired_page(site: Site, field: str) -> None:
    """Issue 23 item 2: the same TypeError in `csrf_ok` on POST /signin and POST /signout."""
    form = {"content-type": "application/x-www-form-urlencoded"}
    c = site.fresh()
    _csrf(c)  # the browser has its CSRF cookie
    r = c.post("/signin", content=f"token={site.acme}&csrf_token={field}".encode(), headers=form)
    assert r.status_code == 403 and "The form expired" in r.text
    assert SESSION_COOKIE + "=" not in r.headers.get("set-cookie", "")
    assert sign_in(c, site.acme).status_code == 303
    r = c.post("/signout", content=f"csrf_token={field}".encode(), headers=form)
    assert r.status_code == 403 and "The form expired" in r.text
    assert c.get(BILLING).status_code == 200  # still signed in
    # A non-ASCII CSRF cookie with a non-ASCII field: the same page, never a 500.
    cookie = f"{SESSION_COOKIE}={c.cookies[SESSION_COOKIE]}; {CSRF_COOKIE}=ééé".encode()
    r = site.fresh().post(
        "/signout", content=f"csrf_token={field}".encode(), headers={**form, "cookie": cookie}
    )
    assert r.status_code == 403 and "The form expired" in r.text


def test_tenant_session_never_sees_another_tenants_page_or_csv(site: Site) -> None:
    assert sign_in(site.client, site.acme).status_code == 303
    for path in (BILLING, BILLING + ".csv"):
        for other in ("globex", "nosuch"):
            r = site.client.get(path, params={"tenant": other})
            assert r.status_code == 403, (path, other)
            assert "987,654" not in r.text and "Globex" not in r.text
    own = site.client.get(BILLING, params={"tenant": "acme"})
    assert own.status_code == 200 and "987,654" not in own.text
    body = site.client.get(BILLING + ".csv")
    assert body.status_code == 200 and body.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body.text)))
    assert rows and {r["tenant"] for r in rows} == {"acme"}
    r = site.client.get(SYSTEM)
    assert r.status_code == 403 and "Not allowed" in r.text and "Globex" not in r.text


def test_csv_equals_the_api_daily_rows(site: Site) -> None:
    assert sign_in(site.client, site.acme).status_code == 303
    # The page's month (here: last month, complete) against the API's days of the same dates.
    month = (utc_today().replace(day=1) - timedelta(days=1)).replace(day=1)
    text = site.client.get(BILLING + ".csv", params={"month": f"{month:%Y-%m}"}).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert "provider_cost_usd" not in text.splitlines()[0].split(",")
    last = utc_today().replace(day=1) - timedelta(days=1)
    api = (
        site.fresh()
        .get(
            "/api/admin/usage/daily",
            params={"from": month.isoformat(), "to": last.isoformat()},
            headers={"Authorization": f"Bearer {site.acme}"},
        )
        .json()
    )
    assert rows
    assert [r["date"] for r in rows] == [d["date"] for d in api["days"]]
    assert [r["estimated_cost_usd"] for r in rows] == [d["estimated_cost_usd"] for d in api["days"]]
    assert [int(r["sms_total"]) for r in rows] == [d["sms_total"] for d in api["days"]]


def test_csv_neutralises_a_formula_name(
    db_url: str, write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Any]
) -> None:
    store, cfg = make_site(db_url, write_config, monkeypatch, cli)
    cfg = cfg.model_copy(
        update={
            "tenants": [
                t.model_copy(update={"name": "=HYPERLINK(1)"}) if t.slug == "acme" else t for t in cfg.tenants
            ]
        }
    )
    sync_tenants(store, cfg.tenants)
    token, _ = create_token(store, tenant="acme")
    client = TestClient(create_app(ServeSettings(cfg, store=store, access_log=False)), follow_redirects=False)
    try:
        assert sign_in(client, token).status_code == 303
        text = client.get(BILLING + ".csv").text
        assert "=HYPERLINK" in text and ",=HYPERLINK" not in text and "\n=HYPERLINK" not in text
    finally:
        client.close()
        store.close()


def test_root_pages_and_bad_parameters(site: Site) -> None:
    assert sign_in(site.client, site.root).status_code == 303
    r = site.client.get(SYSTEM)
    assert r.status_code == 200
    html = r.text
    assert html.index("Globex") < html.index("Acme Corp")  # highest cost first
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    r = site.client.get(BILLING)
    assert r.status_code == 303 and r.headers["location"] == SYSTEM  # a root admin picks the tenant
    assert site.client.get(BILLING, params={"tenant": "globex"}).status_code == 200
    r = site.client.get(BILLING, params={"tenant": "nosuch"})
    assert r.status_code == 404 and "tenant" in r.text
    for path, params, name in (
        (BILLING, {"tenant": "Bad Slug!"}, "tenant"),
        (SYSTEM, {"sort": "nope"}, "sort"),
        (SYSTEM, {"month": "2026-13"}, "month"),
        (SYSTEM, {"limit": "0"}, "limit"),
        (SYSTEM, {"offset": "x"}, "offset"),
    ):
        r = site.client.get(path, params=params)
        assert r.status_code == 400, (path, params)
        assert r.headers["content-type"].startswith("text/html")
        assert name in r.text and "Bad request" in r.text
    r = site.client.get(BILLING, params={"tenant": "quiet"})
    assert r.status_code == 200 and EMPTY_MESSAGE in r.text


def test_page_headers_and_frame_ancestors(
    site: Site,
    db_url: str,
    write_config: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
    cli: Callable[..., Any],
) -> None:
    for path in ("/signin", BILLING):
        r = site.client.get(path)
        if r.status_code == 303:
            continue
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["cache-control"] == "private, no-store"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
        assert r.headers["x-frame-options"] == "DENY"
        csrf = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith(CSRF_COOKIE))
        assert "httponly" in csrf.lower() and "samesite=strict" in csrf.lower()
    css = site.client.get("/static/usage.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "prefers-color-scheme" in css.text
    # Embedding: the host platform's origin in frame-ancestors, no X-Frame-Options to contradict it.
    store, cfg = make_site(
        db_url, write_config, monkeypatch, cli, 'frame_ancestors = "https://admin.example.com"'
    )
    client = TestClient(create_app(ServeSettings(cfg, store=store, access_log=False)), follow_redirects=False)
    try:
        r = client.get("/signin")
        assert "frame-ancestors https://admin.example.com;" in r.headers["content-security-policy"]
        assert "x-frame-options" not in r.headers
    finally:
        client.close()
        store.close()


def test_frame_ancestors_cannot_inject_a_directive(write_config: Callable[[str], Path]) -> None:
    from usagectl.errors import ConfigError

    path = write_config("[serve]\nframe_ancestors = \"'self'; script-src *\"\n")
    with pytest.raises(ConfigError, match="frame_ancestors"):
        cfgmod.load(path)


def test_missing_or_short_session_secret_is_a_config_error(
    write_config: Callable[[str], Path], cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config('[serve]\nsession_secret_env = "USAGECTL_TEST_NO_SUCH_SECRET"\n')
    monkeypatch.delenv("USAGECTL_TEST_NO_SUCH_SECRET", raising=False)
    res = cli("--config", str(path), "serve", "--port", "1")
    assert res.code == 2 and "USAGECTL_TEST_NO_SUCH_SECRET" in res.err
    monkeypatch.setenv("USAGECTL_TEST_NO_SUCH_SECRET", "short-secret")
    res = cli("--config", str(path), "serve", "--port", "1")
    assert res.code == 2 and "at least 16" in res.err and "short-secret" not in res.err


def _jwt_site(
    db_url: str,
    write_config: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
    cli: Callable[..., Any],
    extra: str = "",
) -> tuple[Store, TestClient]:
    """make_site in JWT mode (the secret "k" x 40 in USAGECTL_TEST_JWT; `extra`: more [serve.auth] keys) and a
    client that follows no redirect; the caller closes both."""
    monkeypatch.setenv("USAGECTL_TEST_JWT", "k" * 40)
    auth = '[serve.auth]\nmode = "jwt"\njwt_secret_env = "USAGECTL_TEST_JWT"\n' + extra
    store, cfg = make_site(db_url, write_config, monkeypatch, cli, auth)
    client = TestClient(create_app(ServeSettings(cfg, store=store, access_log=False)), follow_redirects=False)
    return store, client


def test_jwt_mode_reads_the_cookie_and_has_no_sign_in_form(
    db_url: str, write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Any]
) -> None:
    import jwt

    store, client = _jwt_site(db_url, write_config, monkeypatch, cli, 'jwt_cookie = "platform_session"\n')
    exp = int(time.time()) + 600
    acme = jwt.encode({"role": "tenant_admin", "tenant": "acme", "exp": exp}, "k" * 40, algorithm="HS256")
    root = jwt.encode({"role": "root_admin", "exp": exp}, "k" * 40, algorithm="HS256")
    try:
        assert client.get("/signin").status_code == 404
        r = client.get(BILLING)
        assert r.status_code == 401 and r.headers["content-type"].startswith("text/html")
        client.cookies.set("platform_session", acme)
        r = client.get(BILLING)
        assert r.status_code == 200 and "Acme Corp" in r.text and "Sign out" not in r.text
        assert client.get(BILLING, params={"tenant": "globex"}).status_code == 403
        assert client.get(SYSTEM).status_code == 403
        client.cookies.set("platform_session", "not-a-jwt")
        assert client.get(BILLING).status_code == 401
        client.cookies.clear()
        r = client.get(SYSTEM, headers={"Authorization": f"Bearer {root}"})
        assert r.status_code == 200 and "Globex" in r.text
    finally:
        client.close()
        store.close()


def test_sign_in_form_errors_and_sign_out_without_a_session(site: Site) -> None:
    c = site.fresh()
    token = _csrf(c)
    # Too large a form, or not a form: 400, no session.
    r = c.post("/signin", data={"token": "x" * 5000, "csrf_token": token})
    assert r.status_code == 400 and SESSION_COOKIE + "=" not in r.headers.get("set-cookie", "")
    r = c.post("/signin", content=b"token=a&csrf_token=b", headers={"content-type": "text/plain"})
    assert r.status_code == 400
    # An empty token: 401, the form again, the token never echoed.
    r = c.post("/signin", data={"token": "", "csrf_token": token})
    assert r.status_code == 401 and 'name="token"' in r.text
    r = c.post("/signin", data={"token": site.acme[:-1] + "Z", "csrf_token": token})
    assert r.status_code == 401 and site.acme[:-1] not in r.text
    # Sign-out without the CSRF cookie is refused; with it and no session, it just lands on /signin.
    assert site.fresh().post("/signout", data={"csrf_token": token}).status_code == 403
    r = c.post("/signout", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/signin"
    # Signed in, /signin sends the admin home.
    assert sign_in(c, site.root).status_code == 303
    r = c.get("/signin")
    assert r.status_code == 303 and r.headers["location"] == SYSTEM


def test_jwt_mode_has_no_sign_in_or_sign_out(
    db_url: str, write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Any]
) -> None:
    store, client = _jwt_site(db_url, write_config, monkeypatch, cli)
    try:
        for method, path in (("GET", "/signin"), ("POST", "/signin"), ("POST", "/signout")):
            r = client.request(method, path)
            assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), (method, path)
        # Without jwt_cookie, a cookie is not read; the Authorization header is.
        import jwt

        acme = jwt.encode(
            {"role": "tenant_admin", "tenant": "acme", "exp": int(time.time()) + 60},
            "k" * 40,
            algorithm="HS256",
        )
        client.cookies.set("platform_session", acme)
        assert client.get(BILLING).status_code == 401
        client.cookies.clear()
        assert client.get(BILLING, headers={"Authorization": f"Bearer {acme}"}).status_code == 200
        nobody = jwt.encode({"role": "viewer", "exp": int(time.time()) + 60}, "k" * 40, algorithm="HS256")
        r = client.get(BILLING, headers={"Authorization": f"Bearer {nobody}"})
        assert r.status_code == 403 and "Not allowed" in r.text
    finally:
        client.close()
        store.close()


def test_session_cookie_round_trip_and_tampering() -> None:
    key = b"k" * 32
    s = Session("uct_abcdefgh", int(time.time()) + 60)
    value = sign_session(key, s)
    assert read_session(key, value) == s
    assert read_session(b"x" * 32, value) is None
    assert read_session(key, value, now=s.expires) is None  # expiry is exclusive
    payload, mac = value.split(".")
    assert read_session(key, payload) is None and read_session(key, "." + mac) is None
    assert read_session(key, "garbage") is None and read_session(key, "") is None
    # Another purpose's MAC (a CSRF token) is not a session signature.
    from usagectl.web.session import csrf_token

    assert read_session(key, f"{payload}.{csrf_token(key, payload)}") is None


@pytest.mark.parametrize(
    "toml, key",
    [
        ("[serve]\nsession_hours = 0\n", "session_hours"),
        ('[serve]\nsession_secret = "inline"\n', "session_secret"),
        ('[serve.auth]\njwt_cookie = "a b;c"\n', "jwt_cookie"),
        ('[serve]\nframe_ancestors = "https://a.example\\nx"\n', "frame_ancestors"),
    ],
)
def test_bad_page_settings_are_one_line_config_errors(
    write_config: Callable[[str], Path], cli: Callable[..., Any], toml: str, key: str
) -> None:
    path = write_config(toml)
    r = cli("--config", str(path), "config", "show")
    assert r.code == 2 and key in r.err and r.err.strip().count("\n") == 0, r.err


def test_the_stylesheet_is_the_one_cached_response_and_the_docs_say_so(site: Site) -> None:
    """Issue 23: /static/usage.css was sent `public, max-age=3600` while docs/api.md said every response is
    `private, no-store`. The header is right (one file for everyone, no data, no sign-in); the docs now say so."""
    css = site.client.get("/static/usage.css")
    assert css.status_code == 200 and css.headers["cache-control"] == "public, max-age=3600"
    assert css.headers["x-content-type-options"] == "nosniff"
    assert sign_in(site.client, site.acme).status_code == 303
    for path in ("/signin", BILLING, BILLING + ".csv", SYSTEM, "/api/admin/usage/summary", "/healthz"):
        assert site.client.get(path).headers["cache-control"] == "private, no-store", path
    root = Path(__file__).resolve().parent.parent
    api_doc = " ".join((root / "docs" / "api.md").read_text().split())
    assert "`GET /static/usage.css`, is `Cache-Control: public, max-age=3600`" in api_doc
    web_doc = " ".join((root / "docs" / "web.md").read_text().split())
    assert "is the one response sent `Cache-Control: public, max-age=3600`" in web_doc


MANY = 123  # tenants on top of the site's: three pages of 50


def many_tenants(site: Site, month: Window) -> None:
    """MANY more tenants with usage in `month` (some tied, so the order's slug tie-break shows), rolled up."""
    from usagectl.rollup import run_rollup

    extra = cfgmod.parse(
        {"tenants": [{"slug": f"m{i:03d}", "name": f"Many {i}", "plan": "starter"} for i in range(MANY)]}
    ).tenants
    sync_tenants(site.store, [*site.cfg.tenants, *extra])
    for i in range(MANY):
        row = MetricRow(
            sms_outbound_count=1 + (i * 37) % 90, emails_sent=i, provider_cost_usd=Decimal("0.01")
        )
        seed(site.store, f"m{i:03d}", Window(month.start, month.start + timedelta(days=3)), row)
    run_rollup(site.store, site.cfg, month)


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-tenant="([^"]+)"', html)


def _foot(html: str) -> list[str]:
    foot = html[html.index("<tfoot>") : html.index("</tfoot>")]
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", foot, re.S)]


@pytest.mark.parametrize("sort", ["cost", "sms", "name"])
def test_system_usage_page_two_is_the_rankings_rows_51_to_100(
    site: Site, sort: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page reads its page of the ranking in SQL: page 2 shows exactly rows 51-100 of the full ranking, the
    totals are the full ranking's, and the paging links (plain GET links) lead from page to page. No report line
    is built for a tenant off the page, this month or the month before."""
    from usagectl.render.fmt import margin_text, n, usd
    from usagectl.reports import queries, tenants_report

    month = Window.month(2026, 10)
    many_tenants(site, month)
    full = tenants_report(site.store, month, sort=sort, cfg=site.cfg)
    assert full.tenant_count > 100
    built: list[int] = []
    lines = queries._lines

    def counted(conn: Any, cfg: Any, done: Any, rows: Any) -> Any:
        built.append(len(rows))
        return lines(conn, cfg, done, rows)

    monkeypatch.setattr(queries, "_lines", counted)
    assert sign_in(site.client, site.root).status_code == 303
    got = site.client.get(SYSTEM, params={"month": "2026-10", "sort": sort, "offset": "50"})
    assert got.status_code == 200
    assert built and max(built) <= 50, built
    html = got.text
    assert _rows(html) == [t.slug for t in full.lines[50:100]]
    tot = full.total
    assert _foot(html) == [
        f"Total, all tenants ({n(full.tenant_count)})", "", n(tot.sms), n(tot.emails), n(tot.voice_minutes),
        n(tot.ai_tokens), usd(tot.estimated_cost), "", usd(full.plan_charge_total), margin_text(full.margin_total),
    ]  # fmt: skip
    links = dict(re.findall(r'<a href="([^"]+)" rel="(prev|next)"', html))
    by_rel = {rel: href.replace("&amp;", "&") for href, rel in links.items()}
    assert by_rel == {
        "prev": f"{SYSTEM}?month=2026-10&sort={sort}",
        "next": f"{SYSTEM}?month=2026-10&sort={sort}&offset=100",
    }
    last = site.client.get(by_rel["next"]).text
    assert _rows(last) == [t.slug for t in full.lines[100:150]] and 'rel="next"' not in last
    assert _rows(site.client.get(by_rel["prev"]).text) == [t.slug for t in full.lines[:50]]
    # A filter pages the matches and adds their subtotal; the total stays over all.
    matches = [t for t in full.lines if "many 1" in t.name.lower()]
    page = site.client.get(
        SYSTEM, params={"month": "2026-10", "sort": sort, "q": "MANY 1", "limit": "5"}
    ).text
    assert _rows(page) == [t.slug for t in matches[:5]]
    foot = _foot(page)
    assert foot[0] == f"Matching ({len(matches)})" and foot[2] == n(sum(t.sms for t in matches))
    assert foot[len(foot) // 2] == f"Total, all tenants ({n(full.tenant_count)})"
