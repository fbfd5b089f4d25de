"""The day in progress (`collect --today`), with the sandbox providers over real HTTP, on both backends: provisional
rows as of the collect's time that grow through the day, rolled up apart from the final rollups, never sealed,
and replaced by the nightly collect with final rows equal to a fresh collect of the whole day."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from test_collect import SUB, _everyone
from usagectl.collector import collect, default_window
from usagectl.config import Config
from usagectl.errors import InputError
from usagectl.periods import Window
from usagectl.providers.registry import HTTP_SOURCES, open_providers
from usagectl.rollup import run_rollup, seal, sealed_through
from usagectl.sandbox import ModelUsage, Sandbox
from usagectl.store.engine import Store, open_store
from usagectl.store.tables import (
    collection_runs,
    tenants,
    usage_metrics,
    usage_rollups_daily,
    usage_rollups_provisional,
)
from usagectl.store.tenants import sync_tenants

D = date(2026, 11, 24)
NEXT = D + timedelta(days=1)


def at(hh: int, mm: int = 0) -> datetime:
    return datetime(D.year, D.month, D.day, hh, mm, tzinfo=UTC)


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(synthetic=False, page_size_cap=2) as sandbox:
        yield sandbox


def config(sb: Sandbox) -> Config:
    cfg = sb.config(_everyone(), max_retries=2)
    return cfg.model_copy(update={"rollup": cfg.rollup.model_copy(update={"seal_after_days": 1})})


def usage_so_far(sb: Sandbox, scale: int) -> None:
    """What the providers hold for D by some hour: `scale` times a small day."""
    sb.world.set_usage_record(SUB, D, "sms-outbound", 10 * scale, price=f"{0.0079 * 10 * scale:.4f}")
    sb.world.set_email_stats("subuser", "acme", D, requests=100 * scale)
    sb.world.set_email_stats("category", "c-initech", D, requests=7 * scale)
    sb.world.set_ai_usage("proj_acme", D, [ModelUsage("gpt-4o-mini", 1000 * scale, 100 * scale)])


def run_collect(store: Store, cfg: Config, window: Window, **kw: Any) -> None:
    sync_tenants(store, cfg.tenants)
    with open_providers(cfg, store, only=HTTP_SOURCES) as providers:
        result = collect(store, cfg, providers, window, workers=4, **kw)
    assert result.exit_code == 0, [o.errors for o in result.outcomes]


def metrics(store: Store) -> dict[tuple[str, str], dict[str, Any]]:
    m = usage_metrics.c
    q = select(tenants.c.slug, usage_metrics).join(tenants, tenants.c.id == m.tenant_id).where(m.date == D)
    with store.engine.connect() as conn:
        return {
            (r["slug"], r["source"]): {
                k: v for k, v in r.items() if k not in ("id", "created_at", "updated_at", "slug", "tenant_id")
            }
            for r in conn.execute(q).mappings()
        }


def rollups(store: Store, table: Any) -> dict[str, dict[str, Any]]:
    t = table.c
    q = select(tenants.c.slug, table).join(tenants, tenants.c.id == t.tenant_id).where(t.date == D)
    with store.engine.connect() as conn:
        return {
            r["slug"]: {k: v for k, v in r.items() if k not in ("id", "created_at", "slug", "tenant_id")}
            for r in conn.execute(q).mappings()
        }


def statuses(store: Store) -> set[str]:
    c = collection_runs.c
    with store.engine.connect() as conn:
        return set(conn.execute(select(c.status).where(c.date == D)).scalars())


def test_today_is_provisional_grows_is_never_sealed_and_the_nightly_run_makes_it_final(
    sb: Sandbox, store: Store, tmp_path: Path
) -> None:
    cfg = config(sb)
    # 10:00: the morning so far.
    usage_so_far(sb, 1)
    run_collect(store, cfg, Window.day(D), now=at(10))
    morning = metrics(store)
    assert len(morning) == 5  # acme: twilio, sendgrid, openai; initech: twilio, sendgrid
    assert {row["as_of"] for row in morning.values()} == {at(10)}
    assert statuses(store) == {"provisional"}
    run_rollup(store, cfg, today=D)
    assert rollups(store, usage_rollups_daily) == {}  # nothing of today among the final rollups
    early = rollups(store, usage_rollups_provisional)
    assert early["acme"]["as_of"] == at(10) and early["acme"]["sms_total"] == 10
    assert early["acme"]["email_total"] == 100 and early["initech"]["email_total"] == 7

    # 14:00: more sent since; the provisional rows grow and move their as-of time.
    usage_so_far(sb, 3)
    run_collect(store, cfg, Window.day(D), now=at(14))
    afternoon = metrics(store)
    assert {row["as_of"] for row in afternoon.values()} == {at(14)}
    assert afternoon[("acme", "twilio")]["sms_outbound_count"] == 30
    run_rollup(store, cfg, today=D)
    later = rollups(store, usage_rollups_provisional)
    assert later["acme"]["as_of"] == at(14)
    for slug in ("acme", "initech"):
        assert later[slug]["estimated_cost_usd"] > early[slug]["estimated_cost_usd"]
    assert later["acme"]["ai_total_tokens"] == 3 * early["acme"]["ai_total_tokens"]
    assert rollups(store, usage_rollups_daily) == {}

    # Past midnight, before the nightly collect (or with it failing): D cannot be sealed, by age or by hand.
    usage_so_far(sb, 5)  # the whole day, as the providers finally report it
    run_rollup(store, cfg, today=NEXT)  # seal_after_days = 1 would seal D
    with store.engine.connect() as conn:
        assert sealed_through(conn) == D - timedelta(days=1)
    with pytest.raises(InputError, match="provisional figures"):
        seal(store, D, today=NEXT)

    # The nightly run: collect (yesterday) then rollup.
    run_collect(store, cfg, default_window(cfg, 0, today=NEXT), today=NEXT)
    run_rollup(store, cfg, today=NEXT)
    final = metrics(store)
    assert {row["as_of"] for row in final.values()} == {None}
    assert rollups(store, usage_rollups_provisional) == {}
    with store.engine.connect() as conn:
        assert sealed_through(conn) == D  # final now, so sealed by age
    c = collection_runs.c
    with store.engine.connect() as conn:
        latest = conn.execute(select(c.status).where(c.date == D).order_by(c.id.desc()).limit(1)).scalar()
    assert latest == "ok"

    # Equal to a fresh collect of the whole day into an empty database.
    fresh = open_store(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        run_collect(fresh, cfg, Window.day(D), today=NEXT)
        run_rollup(fresh, cfg, Window.day(D), today=NEXT)
        assert metrics(store) == metrics(fresh)
        assert rollups(store, usage_rollups_daily) == rollups(fresh, usage_rollups_daily)
        assert rollups(store, usage_rollups_daily)["acme"]["sms_total"] == 50
    finally:
        fresh.close()


def test_collect_today_on_the_command_line(
    sb: Sandbox, db_url: str, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from usagectl.periods import utc_today

    today = utc_today()
    sb.world.set_email_stats("subuser", "acme", today, requests=12)
    cfg = sb.config(_everyone(), max_retries=2)
    path = tmp_path / "today.toml"
    path.write_text(sb.toml(cfg, db_url))
    monkeypatch.setenv("USAGECTL_CONFIG", str(path))
    monkeypatch.setenv("USAGECTL_DATABASE_URL", db_url)
    r = cli("-q", "collect", "--today", "--provider", "sendgrid")
    assert r.code == 0, r.err
    store = open_store(db_url)
    try:
        m = usage_metrics.c
        with store.engine.connect() as conn:
            row = conn.execute(select(m.date, m.emails_sent, m.as_of).where(m.source == "sendgrid")).all()
        assert {(d, n) for d, n, _ in row} == {(today, 12), (today, 0)}
        assert all(a is not None for _, _, a in row)
    finally:
        store.close()
    bad = cli("collect", "--today", "--date", "yesterday")
    assert bad.code == 2 and "--today" in bad.err


# --- today so far on the report, the API and the Billing & Usage page ----------------------------------------


def test_today_so_far_is_shown_apart_on_the_api_the_report_and_the_page(
    db_url: str, write_config: Any, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    import json

    from fastapi.testclient import TestClient

    from priced import ACME_DAY
    from test_web_app import make_site, sign_in
    from usagectl.periods import utc_today
    from usagectl.records import MetricRow
    from usagectl.store.metrics import upsert_metric
    from usagectl.store.tenants import get_tenant
    from usagectl.store.tokens import create_token
    from usagectl.web.app import ServeSettings, create_app

    store, cfg = make_site(db_url, write_config, monkeypatch, cli)
    per_day = ACME_DAY.sms_outbound_count + ACME_DAY.sms_inbound_count  # the standard day: 30 out, 10 in
    assert per_day == 40
    today = utc_today()
    as_of = datetime(today.year, today.month, today.day, 14, 5, tzinfo=UTC)
    with store.engine.begin() as conn:
        tid = get_tenant(conn, "acme").id  # type: ignore[union-attr]
        upsert_metric(conn, tid, today, "twilio", MetricRow(sms_outbound_count=777), as_of=as_of)
    assert cli("-q", "rollup").code == 0
    label = "today so far, as of 14:05 UTC (provisional)"
    token, _ = create_token(store, tenant="acme")
    client = TestClient(create_app(ServeSettings(cfg, store=store, access_log=False)), follow_redirects=False)
    try:
        auth = {"Authorization": f"Bearer {token}"}
        for url in ("/api/admin/usage/summary", "/api/admin/usage/daily"):
            body = client.get(url, headers=auth).json()
            (day,) = body["provisional_days"]
            assert day["date"] == today.isoformat() and day["sms_total"] == 777 and day["provisional"] is True
            assert day["label"] == label and day["as_of"] == as_of.isoformat().replace("+00:00", "Z")
            # Never in the figures: the days and every total stay those of the final days (40 SMS a day).
            assert all(d["sms_total"] == per_day for d in body.get("days", []))
            assert today.isoformat() not in {d["date"] for d in body.get("days", [])}
        summary = client.get("/api/admin/usage/summary", headers=auth).json()
        assert summary["cards"]["sms"]["sms_total"] % per_day == 0
        # The same in `usagectl report`, JSON and text.
        report = json.loads(cli("report", "--tenant", "acme", "--format", "json").out)
        assert [d["label"] for d in report["provisional_days"]] == [label]
        assert report["totals"]["sms_total"] == 30 * per_day
        text = cli("report", "--tenant", "acme").out
        assert "Today so far, as of 14:05 UTC (provisional)" in text and "777" in text
        # The page: a card of its own with the label, and the charts mark the day.
        sign_in(client, token)
        page = client.get("/admin/billing-usage")
        assert page.status_code == 200
        html = page.text
        assert "Today so far, as of 14:05 UTC (provisional)" in html
        assert html.count('class="card provisional"') == 1
        assert html.count('<polyline class="provisional"') == 5  # cost, 3 channels, AI tokens
        assert 'class="provisional" cx=' in html and f"{today:%m-%d}*" in html
    finally:
        client.close()
        store.close()


@pytest.mark.slow
def test_today_so_far_on_the_page_in_a_real_browser(
    browser: Any, tmp_path: Path, write_config: Any, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    from selenium.webdriver.common.by import By

    from browser import set_color_scheme, set_viewport, static_server
    from test_web_browser import (
        CSP,
        DARK_BG,
        _background,
        _csp_violations,
        _js,
        _no_horizontal_scroll,
        october_store,
        write_site,
    )
    from test_web_pages import TENANT
    from usagectl.records import MetricRow
    from usagectl.reports import tenant_report
    from usagectl.store.metrics import upsert_metric
    from usagectl.store.tenants import get_tenant
    from usagectl.web.pages import render_billing_usage

    nov_1 = date(2026, 11, 1)
    cfg, store = october_store(tmp_path, write_config, monkeypatch, cli)
    try:
        as_of = datetime(2026, 11, 1, 14, 5, tzinfo=UTC)
        with store.engine.begin() as conn:
            tid = get_tenant(conn, "acme").id  # type: ignore[union-attr]
            upsert_metric(conn, tid, nov_1, "twilio", MetricRow(sms_outbound_count=41), as_of=as_of)
        run_rollup(store, cfg, Window.day(nov_1), today=nov_1)
        report = tenant_report(store, cfg, "acme", Window.last_days(30, nov_1), today=nov_1)
    finally:
        store.close()
    root = write_site(tmp_path / "site", {"admin/billing-usage.html": render_billing_usage(report, TENANT)})
    with static_server(root, {"Content-Security-Policy": CSP}) as base:
        browser.get(base + "/admin/billing-usage.html")
        card = browser.find_element(By.CSS_SELECTOR, '[data-card="today"]')
        assert card.is_displayed()
        assert card.find_element(By.TAG_NAME, "h3").text == "Today so far, as of 14:05 UTC (provisional)"
        assert card.find_element(By.TAG_NAME, "dd").text == "41"
        assert _js(
            browser, "return getComputedStyle(document.querySelector('.card.provisional')).borderTopStyle"
        ) == ("dashed")
        # Every chart marks the day: a dashed segment into a hollow point, the date label starred.
        marked = browser.find_element(By.CSS_SELECTOR, "#chart-channels circle.provisional")
        assert marked.get_attribute("data-date") == "2026-11-01"
        dash = "return getComputedStyle(document.querySelector('#chart-cost polyline.provisional')).strokeDasharray"
        assert _js(browser, dash) not in ("", "none")
        fill = "return getComputedStyle(document.querySelector('#chart-cost circle.provisional')).fill"
        assert _js(browser, fill) == "rgb(246, 247, 249)"  # the page background: hollow
        labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#chart-cost .xlabel.provisional")]
        assert labels == ["11-01*"]
        set_color_scheme(browser, "dark")
        assert _background(browser) == DARK_BG and _js(browser, fill) == DARK_BG
        set_color_scheme(browser, "light")
        set_viewport(browser, 390, 844, mobile=True)
        browser.get(base + "/admin/billing-usage.html")
        _no_horizontal_scroll(browser)
        assert browser.find_element(By.CSS_SELECTOR, '[data-card="today"]').is_displayed()
        set_viewport(browser, 1280, 800)
        assert _csp_violations(browser) == []
