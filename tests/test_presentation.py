"""The presentation model (render.layout) on its surfaces, on SQLite and PostgreSQL: the Billing & Usage page's
plan charge, projection and month picker, its empty state, System Usage's default month, month-over-month column
and CSV, and a meter added to a fixture catalogue showing on every surface with no template edit."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import Priced
from priced import FORMULA_NAME, OCT, SMS_V1, SMS_V2, STARTER_FEE, V2_FROM, micro
from test_web_pages import ROOT, TENANT, card, parse, rows
from usagectl import config as cfgmod
from usagectl import meters
from usagectl.periods import Window
from usagectl.records import MetricRow
from usagectl.render.json import tenant_summary_dict
from usagectl.render.table import render_tenant_report
from usagectl.reports import EMPTY_MESSAGE, estimated_costs, tenant_report, tenants_report
from usagectl.store.engine import Store
from usagectl.store.tokens import create_token
from usagectl.web.app import ServeSettings, create_app
from usagectl.web.pages import (
    SystemUsageQuery,
    render_billing_usage,
    render_system_usage,
    system_default_month,
)

SEP, NOV = Window.month(2026, 9), Window.month(2026, 11)


# Everyone on starter ($49 a month, 500 SMS included); formula's name is a spreadsheet formula.
TENANTS = (
    ("acme", "Acme Corp", "starter"),
    ("formula", FORMULA_NAME, "starter"),
    ("quiet", "Quiet Ltd", "starter"),
)


@pytest.fixture
def env(priced: Callable[..., Priced]) -> tuple[Store, cfgmod.Config]:
    env = priced(tenants=TENANTS)
    # acme: 40 SMS a day in October, 20 a day in September, 3 jobs a day; formula: 10 SMS a day in October.
    env.seed("acme", OCT, MetricRow(sms_outbound_count=40, jobs_executed=3))
    env.seed("acme", SEP, MetricRow(sms_outbound_count=20))
    env.seed("formula", OCT, MetricRow(sms_outbound_count=10))
    env.rollup(Window(SEP.start, OCT.end))
    return env.store, env.cfg


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

    # On 11 October (10 days, 400 SMS): at this pace 1,240 SMS, 740 above the 500 included, at the price of the
    # last day counted (10 October: book v1).
    later = tenant_report(store, cfg, "acme", Window(OCT.start, date(2026, 10, 11)), today=date(2026, 10, 11))
    pace = STARTER_FEE + micro(740 * SMS_V1)
    assert later.projected_charge == pace == Decimal("59.360000")
    charge = card(parse(render_billing_usage(later, TENANT, today=date(2026, 10, 11))), "Charge")
    assert charge["At this pace (projection)"] == "$59.36"
    # A month that is over has its actual charge, no projection: 1,240 SMS, 740 over. The 500 included go to
    # the first days (book v1, 15 x 40 = 600 SMS): 100 over at v1's price, then all 640 of v2's days at v2's.
    done = tenant_report(store, cfg, "acme", OCT, today=date(2026, 11, 5))
    assert done.projected_charge is None
    v1_sms, v2_sms = 40 * (V2_FROM - OCT.start).days, 40 * (OCT.end - V2_FROM).days
    sms_line = micro((v1_sms - 500) * SMS_V1 + v2_sms * SMS_V2)
    assert (v1_sms, v2_sms, sms_line) == (600, 640, Decimal("7.800000"))
    assert done.plan_charge is not None and done.plan_charge.total == STARTER_FEE + sms_line
    charge = card(parse(render_billing_usage(done, TENANT, today=date(2026, 11, 5))), "Charge")
    assert charge["Plan charge, month total"] == "$56.80" and charge["SMS +740"] == "$7.80"


def test_empty_state_keeps_the_sentence_and_shows_the_plan(env: Any) -> None:
    store, cfg = env
    report = tenant_report(store, cfg, "quiet", OCT, today=date(2026, 11, 5))
    doc = parse(render_billing_usage(report, TENANT))
    assert doc.one("p", class_="empty").text() == EMPTY_MESSAGE
    assert EMPTY_MESSAGE == "Usage metrics will appear here once you begin messaging."
    plan = doc.one("section", class_="plan-summary")
    assert "Plan starter" in plan.text() and card(doc, "Plan") == {"Monthly fee": "$49.00"}
    allowances = {li.attrs["data-metric"]: li.one("span", class_="figures").text() for li in plan.iter("li")}
    assert allowances == {
        "sms": "0 of 500", "voice_minutes": "0 of 100", "emails": "0 of 5,000", "ai_tokens": "0 of 200,000",
    }  # fmt: skip


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
    # acme: $14.80 in October (600 SMS at v1's price, 640 at v2's) against $8.40 in September (600 at v1's),
    # +76.2%; formula: nothing in September.
    october = micro(600 * SMS_V1) + micro(640 * SMS_V2)
    september = micro(600 * SMS_V1)
    assert (october, september) == (Decimal("14.80"), Decimal("8.40"))
    change = ((october - september) * 100 / september).quantize(Decimal("0.1"), ROUND_HALF_UP)
    assert by_tenant["acme"][at] == f"+{change}%" == "+76.2%" and by_tenant["formula"][at] == "new"
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
