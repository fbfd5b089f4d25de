"""Property tests of the usage API: no input is a 500, and a tenant token never sees another tenant's rows."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usagectl import config as cfgmod
from usagectl.periods import Window
from usagectl.records import MetricRow
from usagectl.store.engine import Store, open_store
from usagectl.store.metrics import upsert_metric
from usagectl.store.tenants import get_tenant, sync_tenants
from usagectl.store.tokens import create_token
from usagectl.web.app import ServeSettings, create_app
from usagectl.web.session import CSRF_COOKIE, SESSION_COOKIE

SLUGS = ("acme", "globex", "initech", "umbrella")
# Each tenant's SMS per day is unique to it, so a row of another tenant is recognisable by its figure.
SMS_PER_DAY = {"acme": 11, "globex": 2_203, "initech": 30_007, "umbrella": 400_009}
DAYS = Window(date(2026, 9, 20), date(2026, 11, 10))
ENDPOINTS = (
    "/api/admin/usage/daily",
    "/api/admin/usage/summary",
    "/api/root-admin/usage/tenants",
    "/healthz",
    "/openapi.json",
)
PARAM_NAMES = ("from", "to", "month", "tenant", "sort", "limit", "offset")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@dataclass
class World:
    client: TestClient
    tokens: dict[str, str]  # slug -> tenant token; "" -> root
    real: dict[str, str]  # "session", "csrf": cookies of a signed-in browser (acme)


@pytest.fixture
def world(db_url: str, write_config: Callable[[str], Path]) -> Iterator[World]:
    cfg = cfgmod.load(write_config("".join(f'[[tenants]]\nslug = "{s}"\nplan = "pro"\n' for s in SLUGS)))
    store: Store = open_store(db_url)
    sync_tenants(store, cfg.tenants)
    with store.engine.begin() as conn:
        for slug in SLUGS:
            tid = get_tenant(conn, slug).id  # type: ignore[union-attr]
            for d in DAYS:
                upsert_metric(conn, tid, d, "twilio", MetricRow(sms_outbound_count=SMS_PER_DAY[slug]))
    from usagectl.rollup import run_rollup

    run_rollup(store, cfg, DAYS)
    tokens = {slug: create_token(store, tenant=slug)[0] for slug in SLUGS}
    tokens[""] = create_token(store, tenant=None)[0]
    with TestClient(
        create_app(ServeSettings(cfg, store=store, access_log=False)), follow_redirects=False
    ) as client:
        # A real session and CSRF cookie, for the fuzzers to send as they are, cut up or recombined.
        form = client.get("/signin")
        csrf = form.cookies[CSRF_COOKIE]
        token_field = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token_field
        signed = client.post("/signin", data={"token": tokens["acme"], "csrf_token": token_field.group(1)})
        real = {"session": signed.cookies[SESSION_COOKIE], "csrf": csrf}
        client.cookies.clear()
        yield World(client, tokens, real)
    store.close()


_query_value = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "2026-10-01",
            "2026-10",
            "0000-00",
            "0001-01-01",
            "9999-12-31",
            "9999-12",
            "-1",
            "1e9",
            "cost",
            "acme",
            "",
            "%00",
        ]
    ),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
)
_header_value = st.binary(max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b)
# Cookies and form fields as a browser (or anyone) may send them: any text, non-ASCII and control characters
# included, and pieces of real values (a session cookie's payload and signature, a CSRF token) recombined.
_any_text = st.text(max_size=40)
_pieces = st.sampled_from(
    ["é", "ééé", ".", "..", "=", "%C3%A9", "日本", "\u00ff", "\x00", "AAAA", "eyJzIjoi"]
)
_cookie_name = st.sampled_from(["usagectl_session", "usagectl_session", "usagectl_csrf", "platform", "é"])
_cookie_value = st.one_of(_any_text, st.lists(_pieces, max_size=4).map("".join))
_form_name = st.sampled_from(["csrf_token", "csrf_token", "token", "x", "é"])
PAGES = (
    ("GET", "/admin/billing-usage"),
    ("GET", "/admin/billing-usage.csv"),
    ("GET", "/admin/system-usage"),
    ("GET", "/signin"),
    ("POST", "/signin"),
    ("POST", "/signout"),
    ("GET", "/static/usage.css"),
    ("GET", "/api/admin/usage/summary"),
)


def _cookie_header(cookies: list[tuple[str, str]], real: dict[str, str], encoding: str) -> bytes:
    """`name=value; ...`, with "{session}"/"{csrf}" in a value replaced by this world's real cookie."""
    parts = []
    for name, value in cookies:
        value = value.replace("{session}", real["session"]).replace("{csrf}", real["csrf"])
        parts.append(f"{name}={value}".encode(encoding, "replace"))
    return b"; ".join(parts).replace(b"\r", b"").replace(b"\n", b"")


@FUZZ
@given(
    path=st.sampled_from(ENDPOINTS),
    known=st.fixed_dictionaries({}, optional={name: _query_value for name in PARAM_NAMES}),
    params=st.lists(st.tuples(st.text(max_size=8), _query_value), max_size=2),
    raw_tail=st.text(alphabet="%&=;+?#abc019-\\[]", max_size=12),
    who=st.sampled_from(["", "", "acme", "acme", None, "junk"]),
    extra_headers=st.lists(
        st.tuples(st.sampled_from(["authorization", "x-forwarded-for", "accept", "x-y"]), _header_value),
        max_size=3,
    ),
    cookies=st.lists(st.tuples(_cookie_name, _cookie_value), max_size=3),
)
def test_no_input_gives_a_server_error(
    world: World,
    path: str,
    known: dict[str, str],
    params: list[tuple[str, str]],
    raw_tail: str,
    who: str | None,
    extra_headers: list[tuple[str, bytes]],
    cookies: list[tuple[str, str]],
) -> None:
    pairs = [*known.items(), *params]
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs) + raw_tail
    headers: list[tuple[bytes, bytes]] = [(k.encode(), v) for k, v in extra_headers]
    if cookies:
        headers.append((b"cookie", _cookie_header(cookies, world.real, "utf-8")))
    if who is not None:
        token = world.tokens.get(who, "uct_" + "A" * 43)
        headers.append((b"authorization", f"Bearer {token}".encode()))
    r = world.client.get(f"{path}?{query}", headers=headers)
    assert r.status_code < 500, (r.status_code, r.text)
    assert r.headers["cache-control"] == "private, no-store"
    if r.status_code >= 400:
        body = r.json()
        assert isinstance(body["error"], str)
        if r.status_code == 422:
            assert body["parameter"]


@FUZZ
@given(
    page=st.sampled_from(PAGES),
    cookies=st.lists(
        st.tuples(
            _cookie_name,
            st.one_of(_cookie_value, st.sampled_from(["{session}", "{csrf}", "{session}é", "{session}.é"])),
        ),
        max_size=3,
    ),
    encoding=st.sampled_from(["utf-8", "latin-1"]),
    fields=st.lists(
        st.tuples(_form_name, st.one_of(_any_text, st.lists(_pieces, max_size=4).map("".join))), max_size=3
    ),
    raw_form=st.one_of(st.none(), st.binary(max_size=80)),
    query=st.text(max_size=20),
)
def test_no_cookie_or_form_field_gives_a_server_error(
    world: World,
    page: tuple[str, str],
    cookies: list[tuple[str, str]],
    encoding: str,
    fields: list[tuple[str, str]],
    raw_form: bytes | None,
    query: str,
) -> None:
    """Issue 23: a non-ASCII session cookie or CSRF field was a 500. Pages and forms, any cookie, any field."""
    method, path = page
    world.client.cookies.clear()
    headers: dict[str, bytes | str] = {}
    if cookies:
        headers["cookie"] = _cookie_header(cookies, world.real, encoding)
    body = b""
    if method == "POST":
        headers["content-type"] = "application/x-www-form-urlencoded"
        body = raw_form if raw_form is not None else urlencode(fields).encode()
    r = world.client.request(method, f"{path}?{quote(query)}", content=body or None, headers=headers)
    assert r.status_code < 500, (r.status_code, r.text)
    if path.startswith("/admin/") and r.status_code == 303:
        assert r.headers["location"] == "/signin"
    if method == "POST" and r.status_code == 403:
        assert "The form expired" in r.text
    sent_session = any(name == SESSION_COOKIE for name, _ in cookies)
    if path.startswith("/admin/") and r.status_code == 200:
        # Only the real, untouched session opens a page.
        assert sent_session and world.real["session"] in headers["cookie"].decode(encoding)  # type: ignore[union-attr]


_day = st.dates(min_value=DAYS.start - timedelta(days=40), max_value=DAYS.last + timedelta(days=40))


@pytest.mark.slow
@FUZZ
@given(
    me=st.sampled_from(SLUGS),
    asked=st.one_of(st.none(), st.sampled_from([*SLUGS, "nobody"])),
    first=_day,
    span=st.integers(min_value=0, max_value=120),
    month=st.sampled_from(["2026-08", "2026-09", "2026-10", "2026-11", None]),
)
def test_a_tenant_token_never_returns_another_tenants_rows(
    world: World, me: str, asked: str | None, first: date, span: int, month: str | None
) -> None:
    auth = {"Authorization": f"Bearer {world.tokens[me]}"}
    tenant_q: dict[str, Any] = {} if asked is None else {"tenant": asked}
    daily = world.client.get(
        "/api/admin/usage/daily",
        params={"from": first.isoformat(), "to": (first + timedelta(days=span)).isoformat(), **tenant_q},
        headers=auth,
    )
    summary = world.client.get(
        "/api/admin/usage/summary", params={**({"month": month} if month else {}), **tenant_q}, headers=auth
    )
    for r in (daily, summary):
        if asked not in (None, me):
            assert r.status_code == 403
            continue
        assert r.status_code == 200
        body = r.json()
        assert body["tenant"]["slug"] == me
    if summary.status_code == 200:
        # A sum with any other tenant's day in it is not a multiple of this tenant's daily figure.
        assert summary.json()["cards"]["sms"]["sms_total"] % SMS_PER_DAY[me] == 0
    if daily.status_code == 200:
        days = daily.json()["days"]
        assert all(d["tenant"] == me and d["sms_total"] == SMS_PER_DAY[me] for d in days)
        assert daily.json()["totals"]["sms_total"] == SMS_PER_DAY[me] * len(days)
    assert world.client.get("/api/root-admin/usage/tenants", headers=auth).status_code == 403
