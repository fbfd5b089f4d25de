"""Plan charges (fee + overage) and margin (plan charge - provider-reported cost), on SQLite and PostgreSQL: the
CLI, the API and `reconcile` against figures computed by hand in this file from the rows it stores."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import Priced
from priced import AI_TOKEN, OCT, PRO_EMAIL, PRO_FEE, PRO_VOICE, SMS_V1, SMS_V2, V2_FROM, micro, seed
from usagectl import config as cfgmod
from usagectl.records import MetricRow
from usagectl.store.engine import Store
from usagectl.store.tenants import get_tenant
from usagectl.store.tokens import create_token
from usagectl.web.app import ServeSettings, create_app

# acme on pro ($99 a month, voice at $0.0123457 and email at $0.0004, 500 SMS and 1,000 emails included); globex
# on elite (no plan section: no fee, nothing included, every unit at the book's price).
TENANTS = (("acme", "Acme Corp", "pro"), ("globex", "Globex", "elite"))
UNKNOWN_TWILIO_DAYS = (date(2026, 10, 5), date(2026, 10, 6), date(2026, 10, 7))


def twilio_row(d: date, *, fill: bool = False) -> MetricRow:
    cost = None if d in UNKNOWN_TWILIO_DAYS and not fill else Decimal("0.50")
    return MetricRow(sms_outbound_count=30, sms_inbound_count=10, voice_minutes=3, provider_cost_usd=cost)


def store_october(store: Store, *, fill: bool = False) -> None:
    for d in OCT:
        seed(store, "acme", [d], twilio_row(d, fill=fill))
    seed(store, "acme", OCT, MetricRow(emails_sent=50), "sendgrid")
    seed(
        store,
        "acme",
        OCT,
        MetricRow(ai_tokens_in=1000, ai_tokens_out=500, provider_cost_usd=Decimal("0.002")),
        "openai",
    )
    seed(store, "globex", OCT, MetricRow(sms_outbound_count=10, provider_cost_usd=Decimal("0.10")))


# The hand computation, from the rows above and the config: acme (pro) in October 2026.
V1_DAYS, V2_DAYS = (V2_FROM - OCT.start).days, (OCT.end - V2_FROM).days  # 15 and 16
SMS_ON_V1, SMS_ON_V2 = 40 * V1_DAYS, 40 * V2_DAYS
# The 500 included SMS are used up on the v1 days (600 SMS at $0.014): 100 over there, all 640 v2 SMS over at $0.010.
SMS_LINE = micro((SMS_ON_V1 - 500) * SMS_V1 + SMS_ON_V2 * SMS_V2)
VOICE_LINE = micro(3 * 31 * PRO_VOICE)  # nothing included: 1.1481501 -> 1.148150 (once, not per day)
EMAIL_LINE = micro((50 * 31 - 1000) * PRO_EMAIL)
AI_LINE = micro(1500 * 31 * AI_TOKEN)
ACME_CHARGE = PRO_FEE + SMS_LINE + VOICE_LINE + EMAIL_LINE + AI_LINE
# globex (elite: no [plans.elite], so no fee and nothing included): every SMS at the book's price.
GLOBEX_CHARGE = micro(10 * V1_DAYS * SMS_V1 + 10 * V2_DAYS * SMS_V2)
GLOBEX_PROVIDER = Decimal("0.10") * 31


def test_the_hand_computation_itself() -> None:
    # Pins the figures used below, so that a mistake in this file cannot hide behind a matching one in the code.
    lines = (SMS_LINE, VOICE_LINE, EMAIL_LINE, AI_LINE)
    assert lines == (Decimal("7.800000"), Decimal("1.148150"), Decimal("0.220000"), Decimal("0.093000"))
    charges = (ACME_CHARGE, GLOBEX_CHARGE)
    assert charges == (Decimal("108.261150"), Decimal("3.700000"))


@dataclass
class Env:
    store: Store
    cfg: cfgmod.Config
    client: TestClient
    root: str
    acme: str


@pytest.fixture
def env(priced: Callable[..., Priced]) -> Iterator[Env]:
    base = priced(tenants=TENANTS)
    store_october(base.store)
    base.rollup()
    root, _ = create_token(base.store, tenant=None)
    acme, _ = create_token(base.store, tenant="acme")
    client = TestClient(create_app(ServeSettings(base.cfg, store=base.store, access_log=False)))
    yield Env(base.store, base.cfg, client, root, acme)
    client.close()


def _get(env: Env, url: str, token: str, **params: Any) -> Any:
    r = env.client.get(url, params=params, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()


def test_plan_charge_equals_the_hand_computation_in_cli_and_api(env: Env, cli: Callable[..., Any]) -> None:
    ten = json.loads(cli("tenants", "--month", "2026-10", "--format", "json").out)
    lines = {t["tenant"]: t for t in ten["tenants"]}
    acme = lines["acme"]
    assert acme["plan_charge_usd"] == str(ACME_CHARGE)
    assert acme["plan_charge"]["monthly_fee_usd"] == "99.000000"
    assert acme["plan_charge"]["overage"]["sms_total"] == {
        "used": 1240, "included": 500, "overage": 740, "amount_usd": str(SMS_LINE),
    }  # fmt: skip
    assert acme["plan_charge"]["overage"]["voice_total_minutes"]["amount_usd"] == str(VOICE_LINE)
    assert acme["plan_charge"]["overage"]["email_total"]["overage"] == 550
    assert lines["globex"]["plan_charge_usd"] == str(GLOBEX_CHARGE)
    assert ten["total"]["plan_charge_usd"] == str(ACME_CHARGE + GLOBEX_CHARGE)

    rep = json.loads(cli("report", "--tenant", "acme", "--month", "2026-10", "--format", "json").out)
    assert rep["plan_charge"] == acme["plan_charge"]
    # The sum of the daily costs is still the month's cost: plan charges change no stored figure.
    assert sum(Decimal(d["estimated_cost_usd"]) for d in rep["days"]) == Decimal(
        rep["totals"]["estimated_cost_usd"]
    )
    assert rep["totals"]["estimated_cost_usd"] == acme["estimated_cost_usd"]

    summary = _get(env, "/api/admin/usage/summary", env.acme, month="2026-10")
    assert summary["plan_charge"] == rep["plan_charge"] and "margin_usd" not in summary
    root = _get(env, "/api/admin/usage/summary", env.root, month="2026-10", tenant="acme")
    assert root["plan_charge"] == rep["plan_charge"] and root["margin_usd"] == rep["margin_usd"]
    api_tenants = _get(env, "/api/root-admin/usage/tenants", env.root, month="2026-10")
    assert {t["tenant"]: t["plan_charge_usd"] for t in api_tenants["tenants"]} == {
        "acme": str(ACME_CHARGE), "globex": str(GLOBEX_CHARGE),
    }  # fmt: skip

    exp = json.loads(cli("export", "--format", "json", "--month", "2026-10").out)
    assert {c["tenant"]: c["plan_charge_usd"] for c in exp["plan_charges"]} == {
        "acme": str(ACME_CHARGE), "globex": str(GLOBEX_CHARGE),
    }  # fmt: skip
    assert all(c["month"] == "2026-10" for c in exp["plan_charges"])
    # A window that holds no whole month has no plan charge (a partial month's would mislead).
    part = json.loads(cli("export", "--format", "json", "--since", "2026-10-02", "--until", "2026-10-31").out)
    assert part["plan_charges"] == []


def test_margin_only_where_provider_costs_are_complete(env: Env, cli: Callable[..., Any]) -> None:
    ten = json.loads(cli("tenants", "--month", "2026-10", "--format", "json").out)
    lines = {t["tenant"]: t for t in ten["tenants"]}
    # acme: Twilio reported no cost on 3 days: no margin (null, never a figure made of $0 days).
    assert lines["acme"]["margin_usd"] is None
    assert lines["acme"]["provider_costs"] == {
        "provider_cost_usd": str(micro(Decimal("0.50") * 28 + Decimal("0.002") * 31)),
        "sources": ["openai", "twilio"], "days": 62, "unknown_days": 3, "complete": False,
    }  # fmt: skip
    assert lines["globex"]["margin_usd"] == str(GLOBEX_CHARGE - GLOBEX_PROVIDER) == "0.600000"
    assert ten["total"]["margin_usd"] is None
    table = cli("tenants", "--month", "2026-10").out
    assert "incomplete" in table and "$0.60" in table
    ranked = json.loads(cli("tenants", "--month", "2026-10", "--sort", "margin", "--format", "json").out)
    assert [t["tenant"] for t in ranked["tenants"]] == ["globex", "acme"]  # an unknown margin last
    report = cli("report", "--tenant", "acme", "--month", "2026-10").out
    assert "incomplete" in report and "3 of 62 days" in report
    assert (
        _get(env, "/api/admin/usage/summary", env.root, month="2026-10", tenant="acme")["margin_usd"] is None
    )

    # The three days' costs arrive: the margin is the plan charge less everything the providers reported.
    store_october(env.store, fill=True)
    assert cli("-q", "rollup", "--since", "2026-10-01", "--until", "2026-10-31").code == 0
    acme_margin = ACME_CHARGE - (Decimal("0.50") * 31 + Decimal("0.002") * 31)
    assert acme_margin == Decimal("92.699150")
    ten = json.loads(cli("tenants", "--month", "2026-10", "--format", "json").out)
    assert {t["tenant"]: t["margin_usd"] for t in ten["tenants"]} == {
        "acme": str(acme_margin), "globex": "0.600000",
    }  # fmt: skip
    assert ten["total"]["margin_usd"] == str(acme_margin + Decimal("0.600000"))
    rep = json.loads(cli("report", "--tenant", "acme", "--month", "2026-10", "--format", "json").out)
    summary = _get(env, "/api/admin/usage/summary", env.root, month="2026-10", tenant="acme")
    assert rep["margin_usd"] == summary["margin_usd"] == str(acme_margin)
    api_tenants = _get(env, "/api/root-admin/usage/tenants", env.root, month="2026-10")
    assert {t["tenant"]: t["margin_usd"] for t in api_tenants["tenants"]}["acme"] == str(acme_margin)
    csv_rows = cli("tenants", "--month", "2026-10", "--format", "csv").out.splitlines()
    assert csv_rows[0].endswith(",plan_charge_usd,margin_usd")
    assert any(
        row.startswith("2026-10,acme,") and row.endswith(f",{ACME_CHARGE},{acme_margin}") for row in csv_rows
    )


def _per_day(units: int, price: Decimal) -> Decimal:
    return micro(units * price)


def test_reconcile_per_tenant_and_provider(env: Env, cli: Callable[..., Any]) -> None:
    got = json.loads(cli("reconcile", "--month", "2026-10", "--tenant", "acme", "--format", "json").out)
    assert got["kind"] == "reconcile" and got["month"] == "2026-10"
    lines = {line["provider"]: line for line in got["lines"]}
    assert list(lines) == ["twilio", "sendgrid", "openai"]
    # Our estimate of each provider's part, priced per day like a rollup (pro: voice 0.0123457, email 0.0004).
    twilio_v1 = _per_day(40, SMS_V1) + _per_day(3, PRO_VOICE)
    twilio_v2 = _per_day(40, SMS_V2) + _per_day(3, PRO_VOICE)
    twilio_est = V1_DAYS * twilio_v1 + V2_DAYS * twilio_v2
    tw = lines["twilio"]
    assert tw["usage"]["sms_total"] == 1240 and tw["usage"]["voice_total_minutes"] == 93
    assert tw["estimated_cost_usd"] == str(twilio_est) == "15.948147"
    assert tw["provider_cost_usd"] == "14.000000" and (tw["days"], tw["unknown_days"]) == (31, 3)
    assert tw["difference_usd"] is None and tw["difference_percent"] is None
    sg = lines["sendgrid"]
    assert sg["estimated_cost_usd"] == str(31 * _per_day(50, PRO_EMAIL))
    assert sg["provider_cost_usd"] is None and sg["unknown_days"] == 31
    oa = lines["openai"]
    diff = Decimal("0.002") * 31 - 31 * _per_day(1500, AI_TOKEN)
    assert oa["difference_usd"] == str(diff) == "-0.031000" and oa["difference_percent"] == "-33.3"

    table = cli("reconcile", "--month", "2026-10", "--tenant", "acme").out
    assert "unknown for 3 of 31 days" in table and "unknown for 31 of 31 days" in table
    assert "$0.00" not in table  # an unknown provider cost is never shown as $0

    store_october(env.store, fill=True)
    got = json.loads(cli("reconcile", "--month", "2026-10", "--format", "json").out)
    tw = next(x for x in got["lines"] if (x["tenant"], x["provider"]) == ("acme", "twilio"))
    diff = Decimal("15.50") - twilio_est
    assert tw["difference_usd"] == str(diff) == "-0.448147"
    assert tw["difference_percent"] == str((diff * 100 / twilio_est).quantize(Decimal("0.1"), ROUND_HALF_UP))
    csv_out = cli("reconcile", "--month", "2026-10", "--format", "csv").out.splitlines()
    assert csv_out[0].startswith("month,as_of,tenant,tenant_name,provider,sms_total,")
    assert [row.split(",")[2:5] for row in csv_out[1:]] == [
        ["acme", "Acme Corp", "twilio"], ["acme", "Acme Corp", "sendgrid"], ["acme", "Acme Corp", "openai"],
        ["globex", "Globex", "twilio"],
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("reconcile", "--tenant", "nope"), "unknown tenant 'nope'"),
        (("reconcile", "--format", "toml"), "--format: 'toml' is not one of table, json, csv"),
        (("reconcile", "--month", "2026-13"), "--month"),
        (("tenants", "--sort", "profit"), "--sort: 'profit' is not one of"),
    ],
)
def test_bad_options_are_usage_errors(
    env: Env, cli: Callable[..., Any], args: tuple[str, ...], message: str
) -> None:
    res = cli(*args)
    assert res.code == 2 and res.out == ""
    assert message in res.err and len(res.err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("fee", "problem"),
    [
        ('"-1"', "greater than or equal to 0"),
        ('"0.0000000000001"', "more than 12 decimal places"),
        ('"x"', ""),
    ],
)
def test_a_bad_monthly_fee_names_its_key(
    fee: str, problem: str, write_config: Callable[[str], Path], cli: Callable[..., Any]
) -> None:
    path = write_config(f"[plans.pro]\nmonthly_fee = {fee}\n")
    res = cli("--config", str(path), "config", "check")
    assert res.code == 2
    assert "plans.pro.monthly_fee" in res.err and problem in res.err


def test_pages_show_the_plan_charge_and_only_root_the_margin(env: Env) -> None:
    from usagectl.reports import tenant_report, tenants_report
    from usagectl.web.pages import PageContext, SystemUsageQuery, render_billing_usage, render_system_usage

    store_october(env.store, fill=True)
    rep = tenant_report(env.store, env.cfg, "acme", OCT, today=date(2026, 11, 5))
    root = render_billing_usage(rep, PageContext(role="root", csrf_token="c"))
    tenant = render_billing_usage(rep, PageContext(role="tenant", tenant="acme", csrf_token="c"))
    assert "$108.26" in root and "$108.26" in tenant  # the plan charge
    assert "Margin" in root and "Margin" not in tenant
    system = render_system_usage(
        tenants_report(env.store, OCT, cfg=env.cfg, today=date(2026, 11, 5)),
        SystemUsageQuery(OCT),
        PageContext(role="root", csrf_token="c"),
    )
    assert "Plan charge" in system and "$108.26" in system and "$3.70" in system


def test_a_provider_that_failed_every_day_makes_the_margin_incomplete(
    env: Env, cli: Callable[..., Any]
) -> None:
    # globex's OpenAI collection failed on every day it was tried: no usage_metrics row at all, only the
    # collection_runs rows the collector writes for a failed day. Its cost is unknown, not absent: no margin.
    from datetime import UTC, datetime

    from usagectl.store.tables import collection_runs

    with env.store.engine.begin() as conn:
        tid = get_tenant(conn, "globex").id  # type: ignore[union-attr]
        now = datetime.now(UTC)
        conn.execute(
            collection_runs.insert(),
            [
                {"run_id": "r1", "tenant_id": tid, "source": "openai", "date": d, "status": "failed",
                 "error": "openai: 500", "started_at": now, "finished_at": now}
                for d in OCT
            ],
        )  # fmt: skip
    ten = json.loads(cli("tenants", "--month", "2026-10", "--format", "json").out)
    globex = next(t for t in ten["tenants"] if t["tenant"] == "globex")
    assert globex["margin_usd"] is None
    assert (globex["provider_costs"]["days"], globex["provider_costs"]["unknown_days"]) == (62, 31)
    got = json.loads(cli("reconcile", "--month", "2026-10", "--tenant", "globex", "--format", "json").out)
    openai = next(line for line in got["lines"] if line["provider"] == "openai")
    assert openai["provider_cost_usd"] is None and (openai["days"], openai["unknown_days"]) == (31, 31)


def test_an_idle_tenants_margin_is_its_plan_charge(
    priced: Callable[..., Priced], cli: Callable[..., Any]
) -> None:
    """A tenant with no Twilio or OpenAI usage cost the platform nothing there: its provider cost is a known $0,
    its margin its plan charge, and the system total stays complete (issue 21.8)."""
    env = priced(tenants=(*TENANTS, ("quiet", "Quiet", "pro")))
    store_october(env.store, fill=True)
    # email only (SendGrid reports no cost), within pro's 1,000 included
    env.seed("quiet", OCT, MetricRow(emails_sent=10), "sendgrid")
    env.rollup()
    ten = json.loads(cli("tenants", "--month", "2026-10", "--format", "json").out)
    lines = {t["tenant"]: t for t in ten["tenants"]}
    assert lines["quiet"]["plan_charge_usd"] == str(PRO_FEE) + ".000000" == "99.000000"
    assert lines["quiet"]["margin_usd"] == "99.000000"
    assert lines["quiet"]["provider_costs"]["complete"] is True
    acme = ACME_CHARGE - (Decimal("0.50") * 31 + Decimal("0.002") * 31)
    assert ten["total"]["margin_usd"] == str(acme + GLOBEX_CHARGE - GLOBEX_PROVIDER + PRO_FEE)
    rep = json.loads(cli("report", "--tenant", "quiet", "--month", "2026-10", "--format", "json").out)
    assert rep["margin_usd"] == "99.000000"
    assert "incomplete" not in cli("report", "--tenant", "quiet", "--month", "2026-10").out
