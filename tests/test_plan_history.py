"""Dated plans: the rollup prices each tenant-day with the plan in effect that day; a month with a plan change is
charged by Stripe's default proration (docs/cost-model.md, Plan changes). On SQLite and PostgreSQL, against a
hand computation with Decimal in this file."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from sqlalchemy import select

from conftest import Priced
from priced import PRO_FEE, PRO_VOICE, SMS_V2, STARTER_FEE, VOICE, micro
from usagectl.periods import Window
from usagectl.records import MetricRow
from usagectl.reports import TenantReport, tenant_report
from usagectl.rollup import run_rollup, seal
from usagectl.store.directory import record_plan
from usagectl.store.tables import tenant_plans, usage_adjustments, usage_rollups_daily
from usagectl.store.tenants import get_tenant, sync_tenants

# acme starts on starter and moves to pro on 15 November (all of November is at book v2: SMS $0.010 on both plans;
# voice at the book's $0.015 on starter, at pro's override $0.0123457).
TENANTS = (("acme", "Acme", "starter"),)
SMS_PER_DAY, VOICE_PER_DAY = 200, 10
NOV = Window.month(2026, 11)
CHANGE = date(2026, 11, 15)


@pytest.fixture
def env(priced: Callable[..., Priced]) -> Priced:
    return priced(tenants=TENANTS)


def _seed(env: Priced) -> None:
    env.seed("acme", NOV, MetricRow(sms_outbound_count=SMS_PER_DAY, voice_minutes=VOICE_PER_DAY))


def _setup(env: Priced) -> int:
    _seed(env)
    with env.store.engine.begin() as conn:
        tid: int = get_tenant(conn, "acme").id  # type: ignore[union-attr]
        record_plan(conn, tid, "pro", CHANGE, "manual")
    return tid


def _november(env: Priced) -> TenantReport:
    """The plan change in November, rolled up on 2 December; acme's November report."""
    _setup(env)
    run_rollup(env.store, env.cfg, NOV, today=date(2026, 12, 2), seal_by_age=False)
    return tenant_report(env.store, env.cfg, "acme", NOV, today=date(2026, 12, 2))


def _share(x: Decimal, days: int) -> Decimal:
    """`days` of November's 30 of a monthly figure (Stripe's default proration)."""
    return x * days / 30


def _units(x: Decimal) -> int:
    return int(x.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _hand_charge() -> dict[str, Any]:
    """Starter 1-14 Nov (14 of 30 days), Pro 15-30 Nov (16 days)."""
    fee_starter = micro(_share(STARTER_FEE, 14))  # 22.866667
    fee_pro = micro(_share(PRO_FEE, 16))  # 52.800000
    # Each part's allowance is its share of the plan's, in whole units.
    included = {
        "sms": (_units(_share(Decimal(500), 14)), _units(_share(Decimal(500), 16))),  # 233, 267
        "voice_minutes": (_units(_share(Decimal(100), 14)), 0),  # 47; pro includes no voice
        "emails": (_units(_share(Decimal(5000), 14)), _units(_share(Decimal(1000), 16))),  # 2333, 533
        "ai_tokens": (_units(_share(Decimal(200_000), 14)), 0),  # 93333
    }
    sms_starter = micro((14 * SMS_PER_DAY - included["sms"][0]) * SMS_V2)  # 2567 over
    sms_pro = micro((16 * SMS_PER_DAY - included["sms"][1]) * SMS_V2)  # 2933 over
    voice_starter = micro((14 * VOICE_PER_DAY - included["voice_minutes"][0]) * VOICE)  # 93 over
    voice_pro = micro(16 * VOICE_PER_DAY * PRO_VOICE)  # all 160
    return {
        "fee_starter": fee_starter,
        "fee_pro": fee_pro,
        "sms": sms_starter + sms_pro,
        "voice": voice_starter + voice_pro,
        "fee": fee_starter + fee_pro,
        "total": fee_starter + fee_pro + sms_starter + sms_pro + voice_starter + voice_pro,
        "included": {k: a + b for k, (a, b) in included.items()},
    }


def test_rollup_prices_each_day_with_its_plan_and_the_month_is_prorated(
    env: Priced,
) -> None:
    rep = _november(env)
    r = usage_rollups_daily.c
    with env.store.engine.connect() as conn:
        got = conn.execute(select(r.date, r.plan_tier, r.sms_cost_usd, r.voice_cost_usd)).all()
        rows = {d: (tier, sms, voice) for d, tier, sms, voice in got}
        costs = list(conn.execute(select(r.estimated_cost_usd)).scalars())
    sms_day = micro(SMS_PER_DAY * SMS_V2)
    for d in NOV:
        if d < CHANGE:
            assert rows[d] == ("starter", sms_day, micro(VOICE_PER_DAY * VOICE)), d
        else:
            assert rows[d] == ("pro", sms_day, micro(VOICE_PER_DAY * PRO_VOICE)), d
    charge = rep.plan_charge
    assert charge is not None
    hand = _hand_charge()
    assert charge.total == hand["total"] == Decimal("134.036979")
    assert charge.fee == hand["fee"]
    assert [(p.plan_tier, p.days.start, p.days.last) for p in charge.parts] == [
        ("starter", date(2026, 11, 1), date(2026, 11, 14)),
        ("pro", date(2026, 11, 15), date(2026, 11, 30)),
    ]
    starter, pro = charge.parts
    assert (starter.charge.fee, pro.charge.fee) == (hand["fee_starter"], hand["fee_pro"])
    lines = {line.meter: line for line in charge.lines}
    assert lines["sms"].included == hand["included"]["sms"] and lines["sms"].amount == hand["sms"]
    assert lines["voice"].amount == hand["voice"]
    # The report's allowances are the ones the charge used: 233 + 267 SMS, not either plan's 500.
    assert {a.metric: a.included for a in rep.allowances} == hand["included"]
    # The daily figures still add up to the month: sum of days == the month's estimated cost.
    assert rep.totals.estimated_cost == sum(costs, Decimal(0))


def test_a_month_on_one_plan_is_not_prorated(env: Priced) -> None:
    _november(env)
    store, cfg = env.store, env.cfg
    rep = tenant_report(store, cfg, "acme", Window.month(2026, 10), today=date(2026, 12, 2))
    assert rep.plan_charge is not None and rep.plan_charge.parts == ()
    assert rep.plan_charge.fee == STARTER_FEE  # October: starter all month


def test_sealed_days_are_adjusted_with_the_dated_plan(
    env: Priced,
) -> None:
    store, cfg = env.store, env.cfg
    _seed(env)
    with store.engine.connect() as conn:
        tid = get_tenant(conn, "acme").id  # type: ignore[union-attr]
    run_rollup(store, cfg, NOV, today=date(2026, 12, 2), seal_by_age=False)
    seal(store, date(2026, 11, 30), today=date(2026, 12, 2))
    # The upgrade is recorded late, by hand: the sealed days from the 15th move by an adjustment, the others not.
    with store.engine.begin() as conn:
        record_plan(conn, tid, "pro", CHANGE, "manual")
    run_rollup(store, cfg, NOV, today=date(2026, 12, 2), seal_by_age=False, reason="reprice")
    a = usage_adjustments.c
    with store.engine.connect() as conn:
        adj = {
            d: (sms, voice)
            for d, sms, voice in conn.execute(select(a.date, a.sms_cost_usd, a.voice_cost_usd))
        }
    assert sorted(adj) == [d for d in NOV if d >= CHANGE]
    # SMS costs the same on both plans; voice moves from the book's price to pro's override.
    voice = micro(VOICE_PER_DAY * PRO_VOICE) - micro(VOICE_PER_DAY * VOICE)
    assert set(adj.values()) == {(Decimal(0), voice)} and voice == Decimal("-0.026543")


def test_config_plan_change_takes_effect_from_that_day(
    env: Priced,
) -> None:
    store, cfg = env.store, env.cfg
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
    env: Priced,
) -> None:
    from usagectl.render.json import tenant_report_dict

    rep = _november(env)
    doc: dict[str, Any] = json.loads(json.dumps(tenant_report_dict(rep), default=str))
    parts = doc["plan_charge"]["parts"]
    assert [(p["plan_tier"], p["from"], p["to"], p["fee"]) for p in parts] == [
        ("starter", "2026-11-01", "2026-11-14", str(_hand_charge()["fee_starter"])),
        ("pro", "2026-11-15", "2026-11-30", str(_hand_charge()["fee_pro"])),
    ]
    assert doc["plan_charge"]["summary"] == "Starter 1-14 Nov, Pro from 15 Nov"


def test_billing_usage_page_and_table_show_the_plan_parts(
    env: Priced,
) -> None:
    import io

    from usagectl.render.table import render_tenant_report
    from usagectl.web.pages import PageContext, render_billing_usage

    rep = _november(env)
    page = render_billing_usage(rep, PageContext(role="tenant", tenant="acme", csrf_token="t"))
    out = io.StringIO()
    render_tenant_report(rep, out, width=100)
    text = out.getvalue()
    # The prorated fees, $22.866667 and $52.80, to the cent.
    assert "Starter 1-14 Nov" in text and "$22.87" in text and "Pro from 15 Nov" in text and "$52.80" in text
    assert "Starter 1-14 Nov" in page and "$22.87" in page and "Pro from 15 Nov" in page and "$52.80" in page
