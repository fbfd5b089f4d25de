"""The presentation model (render.layout) on its surfaces, on SQLite and PostgreSQL: the Billing & Usage page's
plan charge, projection and month picker, its empty state, System Usage's default month, month-over-month column
and CSV, and a meter added to a fixture catalogue showing on every surface with no template edit."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from test_reports import _collect
from test_web_pages import ROOT, TENANT, card, parse, rows
from usagectl import config as cfgmod
from usagectl import meters
from usagectl.periods import Window
from usagectl.records import MetricRow
from usagectl.render.json import tenant_summary_dict
from usagectl.render.table import render_tenant_report
from usagectl.reports import EMPTY_MESSAGE, estimated_costs, tenant_report, tenants_report
from usagectl.store.engine import Store, open_store
from usagectl.store.tenants import sync_tenants
from usagectl.store.tokens import create_token
from usagectl.web.app import ServeSettings, create_app
from usagectl.web.pages import (
    SystemUsageQuery,
    render_billing_usage,
    render_system_usage,
    system_default_month,
)

CONFIG = """
[[pricing.books]]
version = "v1"
effective_from = "2026-01-01"
sms = "0.014"
mms = "0.02"
voice_minute = "0.015"
email = "0.0005"
ai_token = "0.000002"

[plans.starter]
monthly_fee = "49"
included = { sms = 500, emails = 5000 }

[[tenants]]
slug = "acme"
name = "Acme Corp"
plan = "starter"

[[tenants]]
slug = "formula"
name = "=HYPERLINK(\\"http://evil\\")"
plan = "starter"

[[tenants]]
slug = "quiet"
name = "Quiet Ltd"
plan = "starter"
"""
SEP, OCT, NOV = Window.month(2026, 9), Window.month(2026, 10), Window.month(2026, 11)


@pytest.fixture
def env(
    db_url: str, write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Any]
) -> Iterator[tuple[Store, cfgmod.Config]]:
    path = write_config(CONFIG)
    monkeypatch.setenv("USAGECTL_CONFIG", str(path))
    monkeypatch.setenv("USAGECTL_DATABASE_URL", db_url)
    cfg = cfgmod.load(path)
    store = open_store(db_url)
    sync_tenants(store, cfg.tenants)
    # acme: 40 SMS a day in October, 20 a day in September, 3 jobs a day; formula: 10 SMS a day in October.
    _collect(store, "acme", OCT, MetricRow(sms_outbound_count=40, jobs_executed=3))
    _collect(store, "acme", SEP, MetricRow(sms_outbound_count=20))
    _collect(store, "formula", OCT, MetricRow(sms_outbound_count=10))
    assert cli("-q", "rollup", "--since", "2026-09-01", "--until", "2026-10-31").code == 0
    yield store, cfg
    store.close()


def test_plan_charge_leads_and_no_projection_before_seven_days(env: Any) -> None:
    store, cfg = env
    # On 4 October (3 days counted): the charge so far, no projection of either kind.
    early = tenant_report(store, cfg, "acme", Window(OCT.start, date(2026, 10, 4)), today=date(2026, 10, 4))
    assert early.projected_charge is None and not early.month_to_date.projection_ready
    doc = parse(render_billing_usage(early, TENANT, today=date(2026, 10, 4)))
    charge = card(doc, "Charge")
    assert charge["Monthly fee"] == "$49.00" and charge["Plan charge to 03 Oct"] == "$49.00"
    assert not [k for k in charge if "projection" in k] and not [
        k for k in card(doc, "Cost") if "projection" in k
    ]
    assert "No month-end projection before 7 days of the month have passed (3 so far)." in doc.text()
    # The charge comes first on the page, before the usage cards.
    order = [s.attrs["data-card"] for s in doc.iter("section") if "data-card" in s.attrs]
    assert order[0] == "Charge" and order.index("Charge") < order.index("SMS")

    # On 11 October (10 days, 400 SMS): at this pace 1,240 SMS, 740 above the 500 included at $0.014.
    later = tenant_report(store, cfg, "acme", Window(OCT.start, date(2026, 10, 11)), today=date(2026, 10, 11))
    assert str(later.projected_charge) == "59.360000"
    charge = card(parse(render_billing_usage(later, TENANT, today=date(2026, 10, 11))), "Charge")
    assert charge["At this pace (projection)"] == "$59.36"
    # A month that is over has its actual charge, no projection: 1,240 SMS, 740 over = $10.36 + $49.
    done = tenant_report(store, cfg, "acme", OCT, today=date(2026, 11, 5))
    assert done.projected_charge is None
    charge = card(parse(render_billing_usage(done, TENANT, today=date(2026, 11, 5))), "Charge")
    assert charge["Plan charge, month total"] == "$59.36" and charge["SMS +740"] == "$10.36"


def test_empty_state_keeps_the_sentence_and_shows_the_plan(env: Any) -> None:
    store, cfg = env
    report = tenant_report(store, cfg, "quiet", OCT, today=date(2026, 11, 5))
    doc = parse(render_billing_usage(report, TENANT))
    assert doc.one("p", class_="empty").text() == EMPTY_MESSAGE
    assert EMPTY_MESSAGE == "Usage metrics will appear here once you begin messaging."
    plan = doc.one("section", class_="plan-summary")
    assert "Plan starter" in plan.text() and card(doc, "Plan") == {"Monthly fee": "$49.00"}
    allowances = {li.attrs["data-metric"]: li.one("span", class_="figures").text() for li in plan.iter("li")}
    assert allowances == {"sms": "0 of 500", "emails": "0 of 5,000"}


def _client(store: Store, cfg: cfgmod.Config) -> tuple[TestClient, dict[str, str], dict[str, str]]:
    acme, _ = create_token(store, tenant="acme")
    root, _ = create_token(store, tenant=None)
    client = TestClient(create_app(ServeSettings(cfg, store=store, access_log=False)))
    return client, {"Authorization": f"Bearer {acme}"}, {"Authorization": f"Bearer {root}"}


def test_system_usage_csv_is_the_api_ranking_neutralised(env: Any) -> None:
    store, cfg = env
    client, _, root = _client(store, cfg)
    api = client.get("/api/root-admin/usage/tenants", params={"month": "2026-10"}, headers=root).json()
    # The page's CSV needs a session: the page itself is behind the sign-in form.
    from test_web_app import sign_in

    with TestClient(client.app, follow_redirects=False) as browser:
        assert sign_in(browser, root["Authorization"].split()[1]).status_code == 303
        r = browser.get("/admin/system-usage.csv", params={"month": "2026-10"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert 'filename="tenants-2026-10.csv"' in r.headers["content-disposition"]
        lines = list(csv.DictReader(io.StringIO(r.text)))
        bad = browser.get("/admin/system-usage", params={"month": "2026-13"})
        assert (
            bad.status_code == 400
            and "month must look like 2026-10" in bad.text
            and "--month" not in bad.text
        )
        for month in ("10/2026", "2026-13", "0001-01", "9999-12"):
            bad = browser.get("/admin/billing-usage", params={"month": month, "tenant": "acme"})
            assert bad.status_code == 400 and "month must look like 2026-10" in bad.text, month
            bad = browser.get("/admin/system-usage", params={"month": month})
            assert bad.status_code == 400 and "month must look like 2026-10" in bad.text, month
    body = [row for row in lines if row["tenant"] != "TOTAL"]
    assert [row["tenant"] for row in body] == [t["tenant"] for t in api["tenants"]]
    assert [row["estimated_cost_usd"] for row in body] == [t["estimated_cost_usd"] for t in api["tenants"]]
    assert [row["plan_charge_usd"] for row in body] == [t["plan_charge_usd"] for t in api["tenants"]]
    formula = next(row for row in body if row["tenant"] == "formula")
    assert formula["tenant_name"].startswith("'=")


def test_system_usage_before_the_7th_and_month_over_month(env: Any) -> None:
    store, cfg = env
    assert system_default_month(date(2026, 11, 3)) == OCT
    assert system_default_month(date(2026, 11, 6)) == OCT
    assert system_default_month(date(2026, 11, 7)) == NOV
    report = tenants_report(store, OCT, cfg=cfg)
    page = render_system_usage(
        report,
        SystemUsageQuery(OCT),
        ROOT,
        previous=estimated_costs(store, SEP, [t.slug for t in report.lines]),
        today=date(2026, 11, 3),
    )
    doc = parse(page)
    link = doc.one("a", class_="month-so-far")
    assert link.text() == "November 2026 so far" and "month=2026-11" in link.attrs["href"]
    table = doc.one("table", class_="tenants")
    heads = [th.text() for th in table.one("thead").iter("th")]
    assert "vs last month" in heads
    at = heads.index("vs last month")
    by_tenant = {r[0].split()[-1]: r for r in rows(table)}
    # acme: $17.36 in October against $8.40 in September; formula: nothing in September.
    assert by_tenant["acme"][at] == "+106.7%" and by_tenant["formula"][at] == "new"
    assert (
        doc.one("a", class_="download")
        .attrs["href"]
        .startswith("/usage/admin/system-usage.csv?month=2026-10")
    )


def test_a_new_meter_shows_on_every_surface(env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    store, cfg = env
    # A fixture catalogue: one more meter, on a card of its own (reading the jobs counter the reports already sum).
    fax = meters.Meter("fax", "Fax pages", "pages", raw=("jobs_executed",), rollup="jobs_executed", total="jobs",
                       card="Fax", card_label="pages")  # fmt: skip
    monkeypatch.setattr(meters, "METERS", (*meters.METERS, fax))
    report = tenant_report(store, cfg, "acme", OCT, today=date(2026, 11, 5))

    # The page: a Fax card and a Fax pages column, with no template edit.
    for ctx in (TENANT, ROOT):
        doc = parse(render_billing_usage(report, ctx))
        assert card(doc, "Fax") == {"pages": "93"}
        table = doc.one("table", class_="daily")
        heads = [th.text() for th in table.one("thead").iter("th")]
        assert "Fax pages" in heads and rows(table)[0][heads.index("Fax pages")] == "3"
        assert rows(table, "tfoot")[0][heads.index("Fax pages")] == "93"
    # The terminal.
    buf = io.StringIO()
    render_tenant_report(report, buf, width=120)
    assert "Fax" in buf.getvalue() and "Fax pages" in buf.getvalue()
    # JSON and the API.
    assert tenant_summary_dict(report, "tenant")["cards"]["fax"] == {"jobs_executed": 93}
    client, acme, _ = _client(store, cfg)
    summary = client.get("/api/admin/usage/summary", params={"month": "2026-10"}, headers=acme).json()
    assert summary["cards"]["fax"] == {"jobs_executed": 93}
    # And without it, nothing of it anywhere (the catalogue drives it, not the templates).
    monkeypatch.undo()
    assert "Fax" not in render_billing_usage(report, TENANT)
    assert "fax" not in json.dumps(tenant_summary_dict(report, "tenant"))
