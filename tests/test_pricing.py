from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usagectl.config import Config, ModelPrice, PlanConfig, PriceBook, PricingConfig, UnitOverrides, parse
from usagectl.money import from_micros, to_micros, to_picos
from usagectl.pricing import (
    DayUsage,
    book_for,
    book_segments,
    cost_of_day,
    plan_charge,
    prices_for,
    unit_prices,
)
from usagectl.records import ModelTokens
from usagectl.render.fmt import format_usd

V1 = Config().pricing.books[0]


def test_v1_prices_a_known_day() -> None:
    usage = DayUsage(sms=100, mms=10, voice_minutes=7, emails=1000, ai_tokens_in=12_000, ai_tokens_out=3_000)
    cost = cost_of_day(usage, unit_prices(V1, PlanConfig()))
    assert cost.lines() == {
        "sms": Decimal("1.400000"),
        "mms": Decimal("0.200000"),
        "voice": Decimal("0.105000"),
        "email": Decimal("0.500000"),
        "ai": Decimal("0.030000"),
    }
    assert cost.total == Decimal("2.235000")
    assert cost.pricing_version == "v1"


def test_each_line_rounds_half_up_to_the_micro_dollar() -> None:
    book = V1.model_copy(update={"email": Decimal("0.00000025")})
    assert cost_of_day(DayUsage(emails=2), unit_prices(book, PlanConfig())).email == Decimal("0.000001")
    assert cost_of_day(DayUsage(emails=1), unit_prices(book, PlanConfig())).email == Decimal("0.000000")


def test_effective_dated_books_and_plan_overrides() -> None:
    cfg = parse(
        {
            "pricing": {
                "books": [
                    {
                        "version": "v2",
                        "effective_from": date(2026, 11, 15),
                        "sms": "0.01",
                        "mms": "0.02",
                        "voice_minute": "0.015",
                        "email": "0.0005",
                        "ai_token": "0.000002",
                    },
                    {
                        "version": "v1",
                        "effective_from": date(2026, 1, 1),
                        "sms": "0.014",
                        "mms": "0.02",
                        "voice_minute": "0.015",
                        "email": "0.0005",
                        "ai_token": "0.000002",
                    },
                ]
            },
            "plans": {"elite": {"overrides": {"sms": "0.009"}}},
        }
    )
    assert [b.version for b in cfg.pricing.books] == ["v1", "v2"]  # sorted by date
    assert book_for(date(2026, 11, 14), cfg.pricing).version == "v1"
    assert book_for(date(2026, 11, 15), cfg.pricing).version == "v2"
    assert book_for(date(2025, 6, 1), cfg.pricing).version == "v1"  # before every book: the earliest
    assert prices_for(cfg, "starter", date(2026, 11, 14)).sms == Decimal("0.014")
    assert prices_for(cfg, "starter", date(2026, 11, 20)).sms == Decimal("0.01")
    assert prices_for(cfg, "elite", date(2026, 11, 20)).sms == Decimal("0.009")
    assert prices_for(cfg, "elite", date(2026, 11, 20)).mms == Decimal("0.02")


def test_per_model_ai_prices_apply_to_known_models_only() -> None:
    book = V1.model_copy(
        update={
            "ai_models": {
                "gpt-4o-mini": ModelPrice(
                    input=Decimal("0.00000015"),
                    output=Decimal("0.0000006"),
                    cached_input=Decimal("0.000000075"),
                )
            }
        }
    )
    usage = DayUsage(
        ai_tokens_in=3_000_000,
        ai_tokens_out=1_000_000,
        ai_by_model=(
            ModelTokens("gpt-4o-mini", 2_000_000, 500_000, cached_in=1_000_000),
            ModelTokens("unpriced-model", 500_000, 0),
        ),
    )
    # mini: 1M uncached in * 0.15/M + 1M cached * 0.075/M + 0.5M out * 0.6/M = 0.15 + 0.075 + 0.30
    # rest at ai_token: (1M in + 0.5M out) * 0.000002 = 3.00
    assert cost_of_day(usage, unit_prices(book, PlanConfig())).ai == Decimal("3.525000")
    with pytest.raises(ValueError, match="exceed"):
        cost_of_day(
            DayUsage(ai_by_model=(ModelTokens("gpt-4o-mini", 1, 0),)), unit_prices(book, PlanConfig())
        )


def test_cache_write_tokens_have_their_own_per_model_price() -> None:
    rate = ModelPrice(
        input=Decimal("0.000002"),
        output=Decimal("0.000008"),
        cached_input=Decimal("0.0000005"),
        cache_write_input=Decimal("0.0000025"),
    )
    book = V1.model_copy(update={"ai_models": {"gpt-4.1": rate}})
    # OpenAI's example: 1000 input tokens of which 400 cached and 100 written to the cache, 500 output.
    usage = DayUsage(
        ai_tokens_in=1000,
        ai_tokens_out=500,
        ai_by_model=(ModelTokens("gpt-4.1", 1000, 500, cached_in=400, cache_write_in=100),),
    )
    # 500 x 2/M + 400 x 0.5/M + 100 x 2.5/M + 500 x 8/M = 0.001 + 0.0002 + 0.00025 + 0.004
    assert cost_of_day(usage, unit_prices(book, PlanConfig())).ai == Decimal("0.005450")
    # Without a cache-write rate they are input tokens, as before.
    plain = V1.model_copy(
        update={"ai_models": {"gpt-4.1": rate.model_copy(update={"cache_write_input": None})}}
    )
    assert cost_of_day(usage, unit_prices(plain, PlanConfig())).ai == Decimal("0.005400")


def test_money_conversions_are_exact() -> None:
    assert to_micros(Decimal("1.234567")) == 1_234_567
    assert from_micros(1_234_567) == Decimal("1.234567")
    assert to_picos(Decimal("0.000002")) == 2_000_000
    with pytest.raises(ValueError):
        to_micros(Decimal("0.0000001"))
    assert format_usd(None) == "unknown"
    assert format_usd(Decimal("0")) == "$0.00"
    assert format_usd(Decimal("0.001")) == "<$0.01"
    assert format_usd(Decimal("1234.005")) == "$1,234.01"


counts = st.integers(min_value=0, max_value=5_000_000)
prices = st.decimals(min_value=0, max_value=Decimal("0.5"), places=8, allow_nan=False, allow_infinity=False)


@st.composite
def day_usage(draw: st.DrawFn) -> DayUsage:
    return DayUsage(
        sms=draw(counts),
        mms=draw(counts),
        voice_minutes=draw(counts),
        emails=draw(counts),
        ai_tokens_in=draw(counts),
        ai_tokens_out=draw(counts),
    )


@settings(max_examples=200, deadline=None)
@given(
    usage=st.lists(day_usage(), min_size=28, max_size=31),
    change_day=st.integers(min_value=0, max_value=30),
    p1=st.tuples(prices, prices, prices, prices, prices),
    p2=st.tuples(prices, prices, prices, prices, prices),
    sms_override=st.one_of(st.none(), prices),
)
def test_month_cost_equals_sum_of_daily_costs(
    usage: list[DayUsage],
    change_day: int,
    p1: tuple[Decimal, ...],
    p2: tuple[Decimal, ...],
    sms_override: Decimal | None,
) -> None:
    start = date(2026, 1, 1)
    books = [
        PriceBook(
            version="a",
            effective_from=start,
            sms=p1[0],
            mms=p1[1],
            voice_minute=p1[2],
            email=p1[3],
            ai_token=p1[4],
        ),
        PriceBook(
            version="b",
            effective_from=start + timedelta(days=change_day + 1),
            sms=p2[0],
            mms=p2[1],
            voice_minute=p2[2],
            email=p2[3],
            ai_token=p2[4],
        ),
    ]
    pricing = PricingConfig(books=books)
    plan = PlanConfig(overrides=UnitOverrides(sms=sms_override))
    daily = [
        cost_of_day(u, unit_prices(book_for(start + timedelta(days=i), pricing), plan))
        for i, u in enumerate(usage)
    ]
    month_total = sum((c.total for c in daily), Decimal(0))
    # Every line is whole micro-dollars and the day's total is exactly the sum of its lines.
    for c in daily:
        assert all(v == v.quantize(Decimal("0.000001")) for v in c.lines().values())
        assert c.total == sum(c.lines().values(), Decimal(0))
    # Every stored figure is whole micro-dollars, so the integer sums in SQL agree with Decimal sums here.
    assert sum(to_micros(c.total) for c in daily) == to_micros(month_total)
    # And each day's cost is the exact price rounded once: never further than half a micro-dollar per line.
    for i, (u, c) in enumerate(zip(usage, daily, strict=True)):
        p = unit_prices(book_for(start + timedelta(days=i), pricing), plan)
        exact = (
            u.sms * p.sms
            + u.mms * p.mms
            + u.voice_minutes * p.voice_minute
            + u.emails * p.email
            + (u.ai_tokens * p.ai_token)
        )
        assert abs(c.total - exact) <= Decimal("0.0000025")


def test_plan_charge_uses_the_allowance_in_date_order_and_rounds_each_line_once() -> None:
    from usagectl.config import Allowances
    from usagectl.periods import Window

    cheap = unit_prices(V1.model_copy(update={"sms": Decimal("0.0000015")}), PlanConfig())
    dear = unit_prices(V1.model_copy(update={"sms": Decimal("0.0000025")}), PlanConfig())
    plan = PlanConfig(monthly_fee=Decimal("9.99"), included=Allowances(sms=3))
    # 4 SMS on the cheap piece (3 included, 1 over), then 3 on the dear one: 1 x 0.0000015 + 3 x 0.0000025 =
    # 0.000009 exact; rounding per piece would give 0.000002 + 0.000008 = 0.000010.
    charge = plan_charge("pro", plan, [(cheap, {"sms": 4}), (dear, {"sms": 3, "email": 2})])
    sms = next(line for line in charge.lines if line.meter == "sms")
    assert (sms.used, sms.included, sms.overage, sms.amount) == (7, 3, 4, Decimal("0.000009"))
    email = next(line for line in charge.lines if line.meter == "email")
    assert (email.included, email.overage, email.amount) == (0, 2, Decimal("0.001000"))  # none included
    assert charge.fee == Decimal("9.990000")
    assert charge.total == Decimal("9.99") + Decimal("0.000009") + Decimal("0.001")
    books = PricingConfig(
        books=[V1, V1.model_copy(update={"version": "v2", "effective_from": date(2026, 10, 16)})]
    )
    assert book_segments(Window.month(2026, 10), books) == [
        Window(date(2026, 10, 1), date(2026, 10, 16)),
        Window(date(2026, 10, 16), date(2026, 11, 1)),
    ]
    assert book_segments(Window.month(2026, 11), books) == [Window.month(2026, 11)]
