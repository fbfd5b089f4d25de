from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from usagectl.config import PLAN_TIERS, Config, TenantConfig, parse
from usagectl.periods import Window
from usagectl.pricing import DayUsage, cost_of_day, prices_for
from usagectl.records import MetricRow, ModelTokens
from usagectl.reports import tenant_report, tenants_report
from usagectl.rollup import run_rollup
from usagectl.store.engine import Store
from usagectl.store.metrics import upsert_metric
from usagectl.store.tables import usage_metrics, usage_metrics_ai_models, usage_rollups_daily
from usagectl.store.tenants import get_tenant, sync_tenants

BASE = date(2026, 9, 26)  # the generated days straddle a month end
DAYS = 10
SOURCES = ("twilio", "sendgrid", "openai", "events")
MODELS = ("gpt-a", "gpt-b", "gpt-c")
SLUGS = ("t1", "t2", "t3")

# Prices as whole pico-USD, small and large, so rounding half-up is exercised.
price = st.integers(min_value=0, max_value=50_000_000_000).map(lambda p: str(Decimal(p).scaleb(-12)))


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    n_books = draw(st.integers(1, 3))
    offsets = draw(st.lists(st.integers(-3, DAYS), min_size=n_books, max_size=n_books, unique=True))
    books = []
    for i, off in enumerate(offsets):
        models = {}
        for m in draw(st.lists(st.sampled_from(MODELS), unique=True, max_size=2)):
            rate = {"input": draw(price), "output": draw(price)}
            if draw(st.booleans()):
                rate["cached_input"] = draw(price)
            if draw(st.booleans()):
                rate["cache_write_input"] = draw(price)
            models[m] = rate
        books.append(
            {
                "version": f"v{i}",
                "effective_from": (BASE + timedelta(days=off)).isoformat(),
                "sms": draw(price),
                "mms": draw(price),
                "voice_minute": draw(price),
                "email": draw(price),
                "ai_token": draw(price),
                "ai_models": models,
            }
        )
    plans = {}
    for tier in PLAN_TIERS:
        keys = draw(
            st.lists(st.sampled_from(("sms", "mms", "voice_minute", "email", "ai_token")), unique=True)
        )
        plans[tier] = {"overrides": {k: draw(price) for k in keys}}
    tenants = [{"slug": s, "plan": draw(st.sampled_from(PLAN_TIERS))} for s in SLUGS]
    return {"pricing": {"books": books}, "plans": plans, "tenants": tenants}


count = st.integers(min_value=0, max_value=2_000_000)


@st.composite
def metric_rows(draw: st.DrawFn) -> MetricRow:
    models = []
    for m in draw(st.lists(st.sampled_from(MODELS), unique=True, max_size=3)):
        tin = draw(count)
        cached = draw(st.integers(0, tin))
        written = draw(st.integers(0, tin - cached))
        models.append(ModelTokens(m, tin, draw(count), cached, written))
    return MetricRow(
        sms_outbound_count=draw(count),
        sms_inbound_count=draw(count),
        mms_outbound_count=draw(count),
        mms_inbound_count=draw(count),
        voice_minutes=draw(count),
        emails_sent=draw(count),
        emails_delivered=draw(count),
        ai_tokens_in=sum(m.tokens_in for m in models) + draw(count),
        ai_tokens_out=sum(m.tokens_out for m in models) + draw(count),
        jobs_executed=draw(count),
        storage_bytes=draw(st.none() | st.integers(0, 10**12)),
        provider_cost_usd=draw(st.none() | st.integers(0, 10**9).map(lambda u: Decimal(u).scaleb(-6))),
        ai_models=tuple(models),
    )


raw_metrics = st.dictionaries(
    st.tuples(st.sampled_from(SLUGS), st.integers(0, DAYS - 1), st.sampled_from(SOURCES)),
    metric_rows(),
    max_size=12,
)


def _reset(store: Store) -> None:
    from usagectl.store.tables import tenant_mappings, tenant_plans, tenants

    # The tenants too: a plan changed in the config takes effect from the day of the sync (tenant_plans), and
    # each example's config is its tenants' plan on every day.
    with store.engine.begin() as conn:
        for t in (
            usage_rollups_daily,
            usage_metrics_ai_models,
            usage_metrics,
            tenant_mappings,
            tenant_plans,
            tenants,
        ):
            conn.execute(delete(t))


def _write(store: Store, metrics: dict[tuple[str, int, str], MetricRow]) -> dict[str, int]:
    with store.engine.begin() as conn:
        ids = {s: get_tenant(conn, s).id for s in SLUGS}  # type: ignore[union-attr]
        for (slug, off, source), row in metrics.items():
            upsert_metric(conn, ids[slug], BASE + timedelta(days=off), source, row)
    return ids


def _expected(
    cfg: Config, metrics: dict[tuple[str, int, str], MetricRow]
) -> dict[tuple[str, date], dict[str, Any]]:
    by_day: dict[tuple[str, date], list[MetricRow]] = defaultdict(list)
    for (slug, off, _source), row in metrics.items():
        by_day[(slug, BASE + timedelta(days=off))].append(row)
    out = {}
    for (slug, day), rows in by_day.items():
        usage = DayUsage(
            sms=sum(r.sms_outbound_count + r.sms_inbound_count for r in rows),
            mms=sum(r.mms_outbound_count + r.mms_inbound_count for r in rows),
            voice_minutes=sum(r.voice_minutes for r in rows),
            emails=sum(r.emails_sent for r in rows),
            ai_tokens_in=sum(r.ai_tokens_in for r in rows),
            ai_tokens_out=sum(r.ai_tokens_out for r in rows),
            ai_by_model=tuple(m for r in rows for m in r.ai_models),
        )
        tier = cfg.tenant(slug).plan  # type: ignore[union-attr]
        cost = cost_of_day(usage, prices_for(cfg, tier, day))
        storage = [r.storage_bytes for r in rows if r.storage_bytes is not None]
        provider = [r.provider_cost_usd for r in rows if r.provider_cost_usd is not None]
        out[(slug, day)] = {
            "sms_total": usage.sms,
            "mms_total": usage.mms,
            "voice_total_minutes": usage.voice_minutes,
            "email_total": usage.emails,
            "ai_tokens_in": usage.ai_tokens_in,
            "ai_tokens_out": usage.ai_tokens_out,
            "ai_total_tokens": usage.ai_tokens,
            "jobs_executed": sum(r.jobs_executed for r in rows),
            "storage_bytes": max(storage) if storage else None,
            "provider_cost_usd": sum(provider) if provider else None,
            "sms_cost_usd": cost.sms,
            "mms_cost_usd": cost.mms,
            "voice_cost_usd": cost.voice,
            "email_cost_usd": cost.email,
            "ai_cost_usd": cost.ai,
            "estimated_cost_usd": cost.total,
            "pricing_version": cost.pricing_version,
            "plan_tier": tier,
        }
    return out


def _rollups(store: Store) -> dict[tuple[str, date], dict[str, Any]]:
    from usagectl.store.tables import tenants

    with store.engine.connect() as conn:
        rows = conn.execute(
            select(usage_rollups_daily, tenants.c.slug).join(
                tenants, tenants.c.id == usage_rollups_daily.c.tenant_id
            )
        ).all()
    return {(r.slug, r.date): dict(r._mapping) for r in rows}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@pytest.mark.slow
@given(config=configs(), metrics=raw_metrics)
def test_rollup_equals_sums_of_raw_rows_and_pricing(
    store: Store, config: dict[str, Any], metrics: dict[tuple[str, int, str], MetricRow]
) -> None:
    cfg = parse(config)
    _reset(store)
    sync_tenants(store, cfg.tenants)
    _write(store, metrics)
    window = Window(BASE, BASE + timedelta(days=DAYS))

    run_rollup(store, cfg, window, today=window.end)
    got = _rollups(store)
    expected = _expected(cfg, metrics)
    assert set(got) == set(expected)
    for key, want in expected.items():
        assert {k: got[key][k] for k in want} == want, key

    # Recomputes, never adds: a second run leaves every row exactly as it was (created_at included).
    result = run_rollup(store, cfg, window, today=window.end)
    assert _rollups(store) == got
    assert result.changed == 0

    # A month's cost is the sum of its days' costs, per tenant and over all tenants.
    for month in (Window.month(2026, 9), Window.month(2026, 10)):
        in_month = [v for (s, d), v in expected.items() if d in month]
        ranking = tenants_report(store, month)
        assert ranking.total.estimated_cost == sum((v["estimated_cost_usd"] for v in in_month), Decimal(0))
        for line in ranking.lines:
            mine = [v for (s, d), v in expected.items() if d in month and s == line.slug]
            assert line.estimated_cost == sum((v["estimated_cost_usd"] for v in mine), Decimal(0))
            assert line.sms == sum(v["sms_total"] for v in mine)
            rep = tenant_report(store, cfg, line.slug, month, today=date(2027, 1, 1))
            assert rep.totals.estimated_cost == line.estimated_cost
            assert rep.month_to_date.cost == line.estimated_cost


def _cfg() -> Config:
    # No sealing by age: these tests roll up fixed past dates, which the default window would seal.
    return parse({"rollup": {"seal_after_days": 0}, "tenants": [{"slug": "a", "plan": "pro"}, {"slug": "b"}]})


def test_default_window_is_yesterday_plus_days_collected_since_last_rollup(store: Store) -> None:
    cfg = _cfg()
    sync_tenants(store, cfg.tenants)
    today = date(2026, 11, 20)
    with store.engine.begin() as conn:
        a = get_tenant(conn, "a").id  # type: ignore[union-attr]
        upsert_metric(conn, a, date(2026, 11, 19), "twilio", MetricRow(sms_outbound_count=1))
        upsert_metric(conn, a, date(2026, 11, 3), "twilio", MetricRow(sms_outbound_count=5))
    r = run_rollup(store, cfg, today=today)
    assert r.days == (date(2026, 11, 3), date(2026, 11, 19)) and r.changed == 2

    # Nothing new: only yesterday is looked at again, and nothing changes.
    r = run_rollup(store, cfg, today=today)
    assert r.days == (date(2026, 11, 19),) and r.changed == 0

    # A re-collection of an old day, then an explicit backfill of another range: the run does the range it was
    # given and nothing past it (issue 11.10), and the re-collected day stays pending for the next default run.
    with store.engine.begin() as conn:
        upsert_metric(conn, a, date(2026, 11, 3), "twilio", MetricRow(sms_outbound_count=7))
        upsert_metric(conn, a, date(2026, 10, 1), "twilio", MetricRow(sms_outbound_count=2))
    r = run_rollup(store, cfg, Window(date(2026, 9, 30), date(2026, 10, 2)), today=today)
    assert r.days == (date(2026, 9, 30), date(2026, 10, 1)) and r.changed == 1
    assert _rollups(store)[("a", date(2026, 11, 3))]["sms_total"] == 5
    r = run_rollup(store, cfg, today=today)
    # (2026-10-01, written alongside, may be looked at again: recomputing it changes nothing.)
    assert {date(2026, 11, 3), date(2026, 11, 19)} <= set(r.days) and r.changed == 1
    assert _rollups(store)[("a", date(2026, 11, 3))]["sms_total"] == 7
    assert run_rollup(store, cfg, today=today).days == (date(2026, 11, 19),)


def test_rollup_uses_current_plan_and_keeps_book_version(store: Store) -> None:
    cfg = parse(
        {
            "pricing": {
                "books": [
                    {"version": "v1", "effective_from": "2026-01-01", "sms": "0.014", "mms": "0.02",
                     "voice_minute": "0.015", "email": "0.0005", "ai_token": "0.000002"},
                    {"version": "v2", "effective_from": "2026-11-15", "sms": "0.01", "mms": "0.02",
                     "voice_minute": "0.015", "email": "0.0005", "ai_token": "0.000002"},
                ]
            },
            "plans": {"elite": {"overrides": {"email": "0.0003"}}},
            "tenants": [{"slug": "a", "plan": "elite"}],
        }
    )  # fmt: skip
    sync_tenants(store, cfg.tenants)
    with store.engine.begin() as conn:
        a = get_tenant(conn, "a").id  # type: ignore[union-attr]
        for d in (14, 15):
            upsert_metric(
                conn, a, date(2026, 11, d), "x", MetricRow(sms_outbound_count=100, emails_sent=1000)
            )
    run_rollup(store, cfg, Window(date(2026, 11, 14), date(2026, 11, 16)))
    rows = _rollups(store)
    assert rows[("a", date(2026, 11, 14))]["pricing_version"] == "v1"
    assert rows[("a", date(2026, 11, 14))]["sms_cost_usd"] == Decimal("1.400000")
    assert rows[("a", date(2026, 11, 15))]["pricing_version"] == "v2"
    assert rows[("a", date(2026, 11, 15))]["sms_cost_usd"] == Decimal("1.000000")
    assert rows[("a", date(2026, 11, 15))]["email_cost_usd"] == Decimal("0.300000")
    assert rows[("a", date(2026, 11, 15))]["plan_tier"] == "elite"


def test_tenant_without_raw_metrics_gets_no_rollup_rows(store: Store) -> None:
    cfg = _cfg()
    sync_tenants(store, [*cfg.tenants, TenantConfig(slug="idle")])
    r = run_rollup(store, cfg, Window.day(date(2026, 11, 1)))
    assert r.tenant_days == 0 and _rollups(store) == {}


def test_rollup_waits_for_the_jobs_lock_shared_with_collect(store: Store) -> None:
    import pytest

    from usagectl.errors import LockBusyError
    from usagectl.store.locks import job_lock

    cfg = _cfg()
    sync_tenants(store, cfg.tenants)
    with job_lock(store), pytest.raises(LockBusyError, match="lock"):
        run_rollup(store, cfg, Window.day(date(2026, 11, 1)), lock_wait=0)
    assert run_rollup(store, cfg, Window.day(date(2026, 11, 1)), lock_wait=0).changed == 0


HALF = 2**62  # two of these are 2**63: one past the largest BIGINT


@pytest.mark.parametrize(
    ("rows", "line"),
    [
        # Two sources whose SMS sum passes 64 bits: a SUM overflow (SQLite "integer overflow", PostgreSQL
        # "bigint out of range" before this fix).
        ([("x", MetricRow(sms_outbound_count=HALF)), ("y", MetricRow(sms_outbound_count=HALF))], "sms"),
        # Outbound + inbound of one row: SQLite turned the sum into a float and showed 2**63 - 1.
        ([("x", MetricRow(sms_outbound_count=HALF, sms_inbound_count=HALF))], "sms"),
        ([("x", MetricRow(ai_tokens_in=HALF, ai_tokens_out=HALF))], "ai"),
        # Not priced, but stored as a BIGINT total all the same.
        ([("x", MetricRow(jobs_executed=HALF)), ("y", MetricRow(jobs_executed=HALF))], "jobs"),
    ],
    ids=["sum-over-sources", "sum-in-row", "ai-in-row", "jobs-over-sources"],
)
def test_a_day_total_past_64_bits_gets_the_limits_message_with_the_exact_count(
    store: Store, rows: list[tuple[str, MetricRow]], line: str
) -> None:
    from usagectl.errors import UsagectlError

    cfg = _cfg()
    sync_tenants(store, cfg.tenants)
    with store.engine.begin() as conn:
        a = get_tenant(conn, "a").id  # type: ignore[union-attr]
        upsert_metric(conn, a, date(2026, 11, 1), "x", MetricRow(emails_sent=1))
        for source, row in rows:
            upsert_metric(conn, a, date(2026, 11, 2), source, row)
    with pytest.raises(UsagectlError, match=rf"{line} count \(9,223,372,036,854,775,808\) ") as caught:
        run_rollup(store, cfg, Window(date(2026, 11, 1), date(2026, 11, 3)))
    assert "Limits" in str(caught.value) and "nothing was written" in str(caught.value)
    assert _rollups(store) == {}


def test_costs_beyond_64_bit_integers_are_refused_before_writing(store: Store) -> None:
    import pytest

    from usagectl.errors import UsagectlError

    cfg = _cfg()
    sync_tenants(store, cfg.tenants)
    with store.engine.begin() as conn:
        a = get_tenant(conn, "a").id  # type: ignore[union-attr]
        upsert_metric(conn, a, date(2026, 11, 1), "x", MetricRow(emails_sent=1))
        # 700 million SMS at $0.014 is 9.8e18 pico-USD: past 2**63 - 1.
        upsert_metric(conn, a, date(2026, 11, 2), "x", MetricRow(sms_outbound_count=700_000_000))
    with pytest.raises(UsagectlError, match=r"sms count \(700,000,000\) is too large"):
        run_rollup(store, cfg, Window(date(2026, 11, 1), date(2026, 11, 3)))
    assert _rollups(store) == {}
    # 600 million fit: priced exactly.
    with store.engine.begin() as conn:
        upsert_metric(conn, a, date(2026, 11, 2), "x", MetricRow(sms_outbound_count=600_000_000))
    run_rollup(store, cfg, Window(date(2026, 11, 1), date(2026, 11, 3)))
    assert _rollups(store)[("a", date(2026, 11, 2))]["sms_cost_usd"] == Decimal("8400000.000000")
