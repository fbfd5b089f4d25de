"""Dated plans: the rollup prices each tenant-day with the plan in effect that day; a month with a plan change is
charged by Stripe's default proration (docs/cost-model.md, Plan changes). On SQLite and PostgreSQL, against a
hand computation with Decimal in this file."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from usagectl import config as cfgmod
from usagectl.periods import Window
from usagectl.records import MetricRow
from usagectl.reports import tenant_report
from usagectl.rollup import run_rollup, seal
from usagectl.store.directory import record_plan
from usagectl.store.engine import Store
from usagectl.store.metrics import upsert_metric
from usagectl.store.tables import tenant_plans, usage_adjustments, usage_rollups_daily
from usagectl.store.tenants import get_tenant, sync_tenants

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
monthly_fee = "30"
included = { sms = 1000 }

[plans.pro]
monthly_fee = "100"
overrides = { sms = "0.010" }
included = { sms = 5000 }

[[tenants]]
slug = "acme"
name = "Acme"
plan = "starter"
"""
SMS_PER_DAY = 200
NOV = Window.month(2026, 11)
CHANGE = date(2026, 11, 15)


def _setup(store: Store, write_config: Callable[[str], Path]) -> tuple[cfgmod.Config, int]:
    cfg = cfgmod.load(write_config(CONFIG))
    sync_tenants(store, cfg.tenants, today=date(2026, 10, 1))
    with store.engine.begin() as conn:
        tid = get_tenant(conn, "acme").id  # type: ignore[union-attr]
        for d in NOV:
            upsert_metric(conn, tid, d, "twilio", MetricRow(sms_outbound_count=SMS_PER_DAY))
        record_plan(conn, tid, "pro", CHANGE, "manual")
    return cfg, tid


def _micro(x: Decimal) -> Decimal:
    return x.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def _hand_charge() -> dict[str, Decimal]:
    """Starter 1-14 Nov (14 of 30 days), Pro 15-30 Nov (16 days)."""
    starter_days, pro_days, n = Decimal(14), Decimal(16), Decimal(30)
    fee_starter = _micro(Decimal(30) * starter_days / n)  # 14.000000
    fee_pro = _micro(Decimal(100) * pro_days / n)  # 53.333333
    inc_starter = int((Decimal(1000) * starter_days / n).quantize(Decimal(1), rounding=ROUND_HALF_UP))  # 467
    inc_pro = int((Decimal(5000) * pro_days / n).quantize(Decimal(1), rounding=ROUND_HALF_UP))  # 2667
    over_starter = 14 * SMS_PER_DAY - inc_starter  # 2333
    over_pro = 16 * SMS_PER_DAY - inc_pro  # 533
    sms_starter = _micro(over_starter * Decimal("0.014"))
    sms_pro = _micro(over_pro * Decimal("0.010"))
    return {
        "fee_starter": fee_starter,
        "fee_pro": fee_pro,
        "sms_starter": sms_starter,
        "sms_pro": sms_pro,
        "fee": fee_starter + fee_pro,
        "total": fee_starter + fee_pro + sms_starter + sms_pro,
        "included": Decimal(inc_starter + inc_pro),
    }


def test_rollup_prices_each_day_with_its_plan_and_the_month_is_prorated(
    store: Store, write_config: Callable[[str], Path]
) -> None:
    cfg, _ = _setup(store, write_config)
    run_rollup(store, cfg, NOV, today=date(2026, 12, 2), seal_by_age=False)
    r = usage_rollups_daily.c
    with store.engine.connect() as conn:
        rows = {
            d: (tier, cost) for d, tier, cost in conn.execute(select(r.date, r.plan_tier, r.sms_cost_usd))
        }
    for d in NOV:
        if d < CHANGE:
            assert rows[d] == ("starter", _micro(SMS_PER_DAY * Decimal("0.014"))), d
        else:
            assert rows[d] == ("pro", _micro(SMS_PER_DAY * Decimal("0.010"))), d
    rep = tenant_report(store, cfg, "acme", NOV, today=date(2026, 12, 2))
    charge = rep.plan_charge
    assert charge is not None
    hand = _hand_charge()
    assert charge.total == hand["total"] == Decimal("105.325333")
    assert charge.fee == hand["fee"]
    assert [(p.plan_tier, p.days.start, p.days.last) for p in charge.parts] == [
        ("starter", date(2026, 11, 1), date(2026, 11, 14)),
        ("pro", date(2026, 11, 15), date(2026, 11, 30)),
    ]
    starter, pro = charge.parts
    assert (starter.charge.fee, pro.charge.fee) == (hand["fee_starter"], hand["fee_pro"])
    sms = {line.meter: line for line in charge.lines}["sms"]
    assert sms.included == hand["included"] and sms.amount == hand["sms_starter"] + hand["sms_pro"]
    # The report's allowance is the one the charge used: 467 + 2,667, not Pro's 5,000.
    assert {a.metric: a.included for a in rep.allowances} == {"sms": 467 + 2667}
    # The daily figures still add up to the month: sum of days == the month's estimated cost.
    assert rep.totals.estimated_cost == sum((c for _, c in rows.values()), Decimal(0))


def test_a_month_on_one_plan_is_not_prorated(store: Store, write_config: Callable[[str], Path]) -> None:
    cfg, _ = _setup(store, write_config)
    run_rollup(store, cfg, NOV, today=date(2026, 12, 2), seal_by_age=False)
    rep = tenant_report(store, cfg, "acme", Window.month(2026, 10), today=date(2026, 12, 2))
    assert rep.plan_charge is not None and rep.plan_charge.parts == ()
    assert rep.plan_charge.fee == Decimal("30.000000")  # October: starter all month


def test_sealed_days_are_adjusted_with_the_dated_plan(
    store: Store, write_config: Callable[[str], Path]
) -> None:
    cfg = cfgmod.load(write_config(CONFIG))
    sync_tenants(store, cfg.tenants, today=date(2026, 10, 1))
    with store.engine.begin() as conn:
        tid = get_tenant(conn, "acme").id  # type: ignore[union-attr]
        for d in NOV:
            upsert_metric(conn, tid, d, "twilio", MetricRow(sms_outbound_count=SMS_PER_DAY))
    run_rollup(store, cfg, NOV, today=date(2026, 12, 2), seal_by_age=False)
    seal(store, date(2026, 11, 30), today=date(2026, 12, 2))
    # The upgrade is recorded late, by hand: the sealed days from the 15th move by an adjustment, the others not.
    with store.engine.begin() as conn:
        record_plan(conn, tid, "pro", CHANGE, "manual")
    run_rollup(store, cfg, NOV, today=date(2026, 12, 2), seal_by_age=False, reason="reprice")
    a = usage_adjustments.c
    with store.engine.connect() as conn:
        adj = {d: c for d, c in conn.execute(select(a.date, a.sms_cost_usd))}
    assert sorted(adj) == [d for d in NOV if d >= CHANGE]
    assert set(adj.values()) == {_micro(SMS_PER_DAY * (Decimal("0.010") - Decimal("0.014")))}


def test_config_plan_change_takes_effect_from_that_day(
    store: Store, write_config: Callable[[str], Path]
) -> None:
    cfg = cfgmod.load(write_config(CONFIG))
    sync_tenants(store, cfg.tenants, today=date(2026, 10, 1))
    pro = cfg.model_copy(update={"tenants": [cfg.tenants[0].model_copy(update={"plan": "pro"})]})
    sync_tenants(store, pro.tenants, today=CHANGE)
    sync_tenants(store, pro.tenants, today=date(2026, 11, 20))  # unchanged: nothing new
    # A plan set by hand is not undone by the next sync of the unchanged config.
    with store.engine.begin() as conn:
        tid = get_tenant(conn, "acme").id  # type: ignore[union-attr]
        record_plan(conn, tid, "elite", date(2026, 11, 25), "manual")
    sync_tenants(store, pro.tenants, today=date(2026, 11, 26))
    p = tenant_plans.c
    with store.engine.connect() as conn:
        got = conn.execute(select(p.plan_tier, p.valid_from, p.valid_to, p.how).order_by(p.valid_from)).all()
        assert get_tenant(conn, "acme").plan_tier == "elite"  # type: ignore[union-attr]
    assert [tuple(r) for r in got] == [
        ("starter", date(1, 1, 1), CHANGE, "config"),
        ("pro", CHANGE, date(2026, 11, 25), "config"),
        ("elite", date(2026, 11, 25), None, "manual"),
    ]


def test_report_json_shows_the_plan_parts(
    store: Store, write_config: Callable[[str], Path], tmp_path: Path
) -> None:
    from usagectl.render.json import tenant_report_dict

    cfg, _ = _setup(store, write_config)
    run_rollup(store, cfg, NOV, today=date(2026, 12, 2), seal_by_age=False)
    rep = tenant_report(store, cfg, "acme", NOV, today=date(2026, 12, 2))
    doc: dict[str, Any] = json.loads(json.dumps(tenant_report_dict(rep), default=str))
    parts = doc["plan_charge"]["parts"]
    assert [(p["plan_tier"], p["from"], p["to"], p["fee"]) for p in parts] == [
        ("starter", "2026-11-01", "2026-11-14", "14.000000"),
        ("pro", "2026-11-15", "2026-11-30", "53.333333"),
    ]
    assert doc["plan_charge"]["summary"] == "Starter 1-14 Nov, Pro from 15 Nov"


def test_billing_usage_page_and_table_show_the_plan_parts(
    store: Store, write_config: Callable[[str], Path]
) -> None:
    import io

    from usagectl.render.table import render_tenant_report
    from usagectl.web.pages import PageContext, render_billing_usage

    cfg, _ = _setup(store, write_config)
    run_rollup(store, cfg, NOV, today=date(2026, 12, 2), seal_by_age=False)
    rep = tenant_report(store, cfg, "acme", NOV, today=date(2026, 12, 2))
    page = render_billing_usage(rep, PageContext(role="tenant", tenant="acme", csrf_token="t"))
    out = io.StringIO()
    render_tenant_report(rep, out, width=100)
    text = out.getvalue()
    assert "Starter 1-14 Nov" in text and "$14.00" in text and "Pro from 15 Nov" in text and "$53.33" in text
    assert "Starter 1-14 Nov" in page and "$14.00" in page and "Pro from 15 Nov" in page and "$53.33" in page
