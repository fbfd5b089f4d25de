"""Billed numbers as the providers' specifications define them (issue 16) and answers that must never overwrite
stored usage (issue 11, items 3 and 4): the real collectors over real HTTP against the sandbox, on both backends."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from usagectl.collector import CollectResult, collect
from usagectl.config import Config, SecretRef, TenantConfig, TenantOpenAI, TenantSendGrid, TenantTwilio
from usagectl.periods import Window
from usagectl.providers.registry import HTTP_SOURCES, open_providers
from usagectl.sandbox import ModelUsage, Sandbox, twilio_sid
from usagectl.store.engine import Store
from usagectl.store.tables import collection_runs, tenants, usage_metrics, usage_metrics_ai_models
from usagectl.store.tenants import sync_tenants

D1 = date(2026, 11, 10)
D2 = D1 + timedelta(days=1)
SUB = twilio_sid("AC", "sub-acme")
OWN = twilio_sid("AC", "own-globex")
NUM = "+15005550006"
CUSTOMER = "+14155550100"
UNUSED = SecretRef(env="UNUSED")  # replaced by Sandbox.config for own accounts


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=UTC)


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(synthetic=False, page_size_cap=2) as sandbox:
        yield sandbox


def run(sb: Sandbox, store: Store, tenants_: list[TenantConfig], window: Window) -> CollectResult:
    cfg: Config = sb.config(tenants_, max_retries=1)
    sync_tenants(store, cfg.tenants)
    with open_providers(cfg, store, only=HTTP_SOURCES) as providers:
        # As if run the morning after the window, whatever today's date: provisional days age out by date.
        return collect(store, cfg, providers, window, workers=2, today=window.end)


def days(first: date, n: int) -> Window:
    return Window(first, first + timedelta(days=n))


def rows(store: Store, source: str) -> dict[date, dict[str, Any]]:
    m = usage_metrics.c
    q = select(usage_metrics).where(m.source == source)
    with store.engine.connect() as conn:
        return {r.date: dict(r) for r in conn.execute(q).mappings()}


def runs(store: Store, source: str) -> list[tuple[date, str, str | None]]:
    r = collection_runs.c
    q = select(r.date, r.status, r.error).where(r.source == source).order_by(r.id)
    with store.engine.connect() as conn:
        return [(x.date, x.status, x.error) for x in conn.execute(q)]


SUBACCOUNT = TenantConfig(slug="acme", twilio=TenantTwilio(subaccount_sid=SUB))
NUMBERS = TenantConfig(slug="acme", twilio=TenantTwilio(phone_numbers=[NUM]))


# ---- issue 16.1: SMS billed in segments ---------------------------------------------------------------------


def test_twilio_usage_records_meter_billed_segments_not_messages(sb: Sandbox, store: Store) -> None:
    # 10 SMS of 27 segments, as Twilio reports them: count in messages, usage in segments.
    sb.world.set_usage_record(SUB, D1, "sms-outbound", 10, usage=27, price="0.2133")
    sb.world.set_usage_record(SUB, D1, "sms-inbound", 4, usage=5, price="0.0395")
    sb.world.set_usage_record(SUB, D1, "mms-outbound", 3, price="0.06")
    result = run(sb, store, [SUBACCOUNT], days(D1, 1))
    assert result.exit_code == 0, result.outcomes
    got = rows(store, "twilio")[D1]
    assert (got["sms_outbound_count"], got["sms_inbound_count"], got["mms_outbound_count"]) == (27, 5, 3)
    served = sb.twilio.requests("/Usage/")
    assert served, "collected over HTTP"


def test_twilio_unexpected_usage_unit_fails_that_day_and_keeps_its_row(sb: Sandbox, store: Store) -> None:
    sb.world.set_usage_record(SUB, D1, "sms-outbound", 10, usage=12, price="0.0948")
    sb.world.set_usage_record(SUB, D2, "sms-outbound", 2, usage=2, price="0.0158")
    assert run(sb, store, [SUBACCOUNT], days(D1, 2)).exit_code == 0
    # Twilio starts reporting D1's SMS in a unit we do not know: not a guess, an error for that day only.
    sb.world.set_usage_record(SUB, D1, "sms-outbound", 10, usage=999, price="0.0948", usage_unit="characters")
    sb.world.set_usage_record(SUB, D2, "sms-outbound", 3, usage=4, price="0.0316")
    result = run(sb, store, [SUBACCOUNT], days(D1, 2))
    assert result.exit_code == 3
    assert "characters" in result.outcomes[0].errors[0]
    got = rows(store, "twilio")
    assert got[D1]["sms_outbound_count"] == 12, "the failed day keeps its stored row"
    assert got[D2]["sms_outbound_count"] == 4


# ---- issue 16.2: prices in another currency ------------------------------------------------------------------


def test_twilio_price_in_another_currency_is_unknown_with_the_reason(sb: Sandbox, store: Store) -> None:
    sb.world.set_price_unit(SUB, "jpy")
    sb.world.set_usage_record(SUB, D1, "sms-outbound", 10, usage=10, price="12")
    result = run(sb, store, [SUBACCOUNT], days(D1, 1))
    assert result.exit_code == 0, result.outcomes
    got = rows(store, "twilio")[D1]
    assert got["sms_outbound_count"] == 10
    assert got["provider_cost_usd"] is None, "12 JPY is not $12"
    ((day, status, note),) = runs(store, "twilio")
    assert (day, status) == (D1, "ok") and note is not None and "jpy" in note


def test_twilio_message_and_call_prices_in_another_currency(sb: Sandbox, store: Store) -> None:
    acct = sb.twilio_accounts.master_sid
    sb.world.set_price_unit(acct, "JPY")
    sb.world.add_message(
        acct, from_=NUM, to=CUSTOMER, direction="outbound-api", date_sent=at(D1, 9), price="-1.2"
    )
    sb.world.add_call(
        acct, from_=CUSTOMER, to=NUM, direction="inbound", start_time=at(D1, 10), duration=30, price="-3"
    )
    assert run(sb, store, [NUMBERS], days(D1, 1)).exit_code == 0
    got = rows(store, "twilio")[D1]
    assert (got["sms_outbound_count"], got["voice_minutes"]) == (1, 1)
    assert got["provider_cost_usd"] is None
    assert "JPY" in (runs(store, "twilio")[0][2] or "")


# ---- issue 16.3: the account's whole bill ------------------------------------------------------------------


def test_twilio_provider_cost_is_the_accounts_totalprice_carrier_fees_included(
    sb: Sandbox, store: Store
) -> None:
    sb.world.set_usage_record(SUB, D1, "sms-outbound", 10, usage=12, price="0.0948")
    sb.world.set_usage_record(SUB, D1, "sms-messages-carrierfees", 10, price="0.0300")
    sb.world.set_usage_record(SUB, D1, "calls-outbound", 2, usage=5, price="0.0700")
    result = run(sb, store, [SUBACCOUNT], days(D1, 1))
    assert result.exit_code == 0, result.outcomes
    assert rows(store, "twilio")[D1]["provider_cost_usd"] == Decimal("0.1948")
    note = runs(store, "twilio")[0][2] or ""
    assert "totalprice" in note and "0.1648" in note, "the messaging and voice part is kept beside it"


# ---- issue 16.4: unsent messages --------------------------------------------------------------------------


def test_a_day_with_unsent_messages_is_provisional_and_recollected_past_the_lookback(
    sb: Sandbox, store: Store
) -> None:
    acct = sb.twilio_accounts.master_sid
    sent = sb.world.add_message(
        acct, from_=NUM, to=CUSTOMER, direction="outbound-api", date_sent=at(D1, 9), price="-0.0079"
    )
    queued = sb.world.add_message(
        acct, from_=NUM, to=CUSTOMER, direction="outbound-api", date_sent=at(D1, 9, 5), num_segments=0
    )
    assert sent.num_segments == 1
    assert run(sb, store, [NUMBERS], days(D1, 1)).exit_code == 0
    assert rows(store, "twilio")[D1]["sms_outbound_count"] == 1
    assert runs(store, "twilio")[-1][:2] == (D1, "provisional")

    # The queued message goes out as 2 segments. A run over a later window (D1 lies behind it) picks D1 up again.
    with sb.world._lock:
        i = sb.world._messages.index(queued)
        sb.world._messages[i] = dataclasses.replace(queued, num_segments=2, price=Decimal("-0.0158"))
    later = D1 + timedelta(days=5)
    assert run(sb, store, [NUMBERS], days(later, 1)).exit_code == 0
    assert rows(store, "twilio")[D1]["sms_outbound_count"] == 3
    assert (D1, "ok") in [(d, s) for d, s, _ in runs(store, "twilio")]

    # Final now: the next run leaves D1 alone.
    before = len(sb.twilio.requests(f"DateSent={D1}"))
    assert run(sb, store, [NUMBERS], days(later, 1)).exit_code == 0
    assert len(sb.twilio.requests(f"DateSent={D1}")) == before


# ---- issue 16.5: SIP trunking calls -----------------------------------------------------------------------


def test_sip_trunking_calls_are_metered(sb: Sandbox, store: Store) -> None:
    acct = sb.twilio_accounts.master_sid
    sb.world.add_call(
        acct, from_=NUM, to=CUSTOMER, direction="trunking-terminating", start_time=at(D1, 9), duration=125,
        price="-0.042",
    )  # fmt: skip
    sb.world.add_call(
        acct, from_=CUSTOMER, to=NUM, direction="trunking-originating", start_time=at(D1, 11), duration=60,
        price="-0.0085",
    )  # fmt: skip
    result = run(sb, store, [NUMBERS], days(D1, 1))
    assert result.exit_code == 0, result.outcomes
    got = rows(store, "twilio")[D1]
    assert got["voice_minutes"] == 3 + 1
    assert got["provider_cost_usd"] == Decimal("0.0505")


# ---- issue 16.6 and 11.3: SendGrid paging; an answer missing days -------------------------------------------


SENDGRID = TenantConfig(slug="acme", sendgrid=TenantSendGrid(subuser="acme"))
CATEGORY = TenantConfig(slug="acme", sendgrid=TenantSendGrid(category="c-acme"))


def test_sendgrid_subuser_stats_are_paged_until_every_day_is_present(sb: Sandbox, store: Store) -> None:
    for i in range(5):
        sb.world.set_email_stats("subuser", "acme", D1 + timedelta(days=i), requests=10 + i)
    result = run(sb, store, [SENDGRID], days(D1, 5))  # the sandbox answers 2 days a page
    assert result.exit_code == 0, result.outcomes
    got = rows(store, "sendgrid")
    assert [got[D1 + timedelta(days=i)]["emails_sent"] for i in range(5)] == [10, 11, 12, 13, 14]
    offsets = [dict(s.query).get("offset") for s in sb.sendgrid.requests("/stats")]
    assert offsets == ["0", "2", "4"]


def test_sendgrid_category_stats_are_asked_in_spans_without_paging(sb: Sandbox, store: Store) -> None:
    """/v3/categories/stats defines no limit/offset (issue 21.6): a long window is split into spans of
    CATEGORY_SPAN_DAYS days, each asked once, and every day is still checked present."""
    from usagectl.providers.sendgrid import CATEGORY_SPAN_DAYS

    n = CATEGORY_SPAN_DAYS + 9
    for i in range(n):
        sb.world.set_email_stats("category", "c-acme", D1 - timedelta(days=i), requests=i)
    window = Window(D1 - timedelta(days=n - 1), D1 + timedelta(days=1))
    result = run(sb, store, [CATEGORY], window)
    assert result.exit_code == 0, result.outcomes
    got = rows(store, "sendgrid")
    assert [got[D1 - timedelta(days=i)]["emails_sent"] for i in range(n)] == list(range(n))
    asked = [dict(s.query) for s in sb.sendgrid.requests("/v3/categories/stats")]
    assert [(q["start_date"], q["end_date"]) for q in asked] == [
        (window.start.isoformat(), (window.start + timedelta(days=CATEGORY_SPAN_DAYS - 1)).isoformat()),
        ((window.start + timedelta(days=CATEGORY_SPAN_DAYS)).isoformat(), D1.isoformat()),
    ]
    assert not any("limit" in q or "offset" in q for q in asked)


def test_sendgrid_empty_answer_never_zeroes_stored_usage(sb: Sandbox, store: Store) -> None:
    for i in range(3):
        sb.world.set_email_stats("subuser", "acme", D1 + timedelta(days=i), requests=100 + i)
    assert run(sb, store, [SENDGRID], days(D1, 3)).exit_code == 0
    sb.sendgrid.fault("endless", times=None)  # 200 []
    result = run(sb, store, [SENDGRID], days(D1, 3))
    assert result.exit_code != 0
    assert "no entry for" in result.outcomes[0].errors[0]
    got = rows(store, "sendgrid")
    assert [got[D1 + timedelta(days=i)]["emails_sent"] for i in range(3)] == [100, 101, 102]


def test_openai_answer_missing_a_day_never_overwrites_it(sb: Sandbox, store: Store) -> None:
    t = TenantConfig(slug="acme", openai=TenantOpenAI(project_ids=["proj_a"]))
    for i in range(2):
        sb.world.set_ai_usage("proj_a", D1 + timedelta(days=i), [ModelUsage("gpt-4o-mini", 100, 10)])
        sb.world.set_ai_cost("proj_a", D1 + timedelta(days=i), "0.01")
    assert run(sb, store, [t], days(D1, 2)).exit_code == 0
    sb.openai.fault("endless", match="/usage/completions", times=None)  # has_more forever, no buckets
    result = run(sb, store, [t], days(D1, 2))
    assert result.exit_code != 0
    got = rows(store, "openai")
    assert [got[D1 + timedelta(days=i)]["ai_tokens_in"] for i in range(2)] == [100, 100]


# ---- issue 16.7: OpenAI tokens from every usage endpoint -------------------------------------------------


def test_openai_tokens_include_embeddings_moderations_and_cache_writes(sb: Sandbox, store: Store) -> None:
    t = TenantConfig(slug="acme", openai=TenantOpenAI(project_ids=["proj_a"]))
    sb.world.set_ai_usage(
        "proj_a",
        D1,
        [
            ModelUsage("gpt-4.1", 1000, 500, input_cached_tokens=400, input_cache_write_tokens=100),
            ModelUsage("text-embedding-3-small", 16, 0, endpoint="embeddings"),
            ModelUsage("omni-moderation-latest", 9, 0, endpoint="moderations"),
        ],
    )
    sb.world.set_ai_cost("proj_a", D1, "0.06")
    result = run(sb, store, [t], days(D1, 1))
    assert result.exit_code == 0, result.outcomes
    got = rows(store, "openai")[D1]
    assert (got["ai_tokens_in"], got["ai_tokens_out"]) == (1000 + 16 + 9, 500)
    m = usage_metrics_ai_models.c
    with store.engine.connect() as conn:
        models = {
            r.model: (r.ai_tokens_in, r.ai_tokens_out, r.ai_tokens_cached_in, r.ai_tokens_cache_write_in)
            for r in conn.execute(select(usage_metrics_ai_models).where(m.date == D1))
        }
    assert models == {
        "gpt-4.1": (1000, 500, 400, 100),
        "text-embedding-3-small": (16, 0, 0, 0),
        "omni-moderation-latest": (9, 0, 0, 0),
    }
    assert sb.openai.requests("/usage/embeddings") and sb.openai.requests("/usage/moderations")


# ---- issue 11.4: a failed Costs call -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["500", "401"])
def test_openai_costs_failure_keeps_known_provider_costs(sb: Sandbox, store: Store, kind: str) -> None:
    t = TenantConfig(slug="acme", openai=TenantOpenAI(project_ids=["proj_a"]))
    for i in range(2):
        sb.world.set_ai_usage("proj_a", D1 + timedelta(days=i), [ModelUsage("gpt-4o-mini", 100, 10)])
        sb.world.set_ai_cost("proj_a", D1 + timedelta(days=i), "0.25")
    assert run(sb, store, [t], days(D1, 2)).exit_code == 0
    sb.openai.fault(kind, match="/costs", times=None)
    other = TenantConfig(slug="globex", sendgrid=TenantSendGrid(subuser="globex"))
    result = run(sb, store, [t, other], days(D1, 2))
    assert result.exit_code == 3
    (failed,) = result.failed
    assert failed.source == "openai" and "costs unavailable" in failed.errors[0]
    got = rows(store, "openai")
    assert [got[D1 + timedelta(days=i)]["provider_cost_usd"] for i in range(2)] == [Decimal("0.25")] * 2


def test_schema_has_the_cache_write_column(store: Store) -> None:
    """Migration 0003_provider_accuracy on both backends: the cache-write column, the provisional rows' index."""
    from sqlalchemy import inspect

    indexes = {i["name"] for i in inspect(store.engine).get_indexes("collection_runs")}
    assert "ix_collection_runs_provisional" in indexes
    with store.engine.connect() as conn:
        assert conn.execute(select(usage_metrics_ai_models.c.ai_tokens_cache_write_in)).all() == []
        assert conn.execute(select(tenants.c.id)).all() == []


# ---- issue 16.8: the README's provider table says what the code does -------------------------------------


def _readme_row(attribution: str) -> str:
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    (row,) = [line for line in readme.splitlines() if line.startswith(f"| Twilio | {attribution}")]
    return row


def test_readme_twilio_rows_match_the_requests_sent(store: Store) -> None:
    own = TenantConfig(slug="globex", twilio=TenantTwilio(account_sid=OWN, auth_token=UNUSED))
    with Sandbox(synthetic=False) as sandbox:
        sandbox.world.set_usage_record(OWN, D1, "sms-outbound", 3, usage=4, price="0.03")
        assert run(sandbox, store, [own, SUBACCOUNT], days(D1, 3)).exit_code == 0
        listings = {s.path: dict(s.query) for s in sandbox.twilio.requests("/Usage/Records/Daily.json")}
    assert len(listings) == 2, "one listing of every category per account for the whole window"
    assert all("Category" not in q for q in listings.values())
    assert listings[f"/2010-04-01/Accounts/{OWN}/Usage/Records/Daily.json"]["IncludeSubaccounts"] == "true"
    assert listings[f"/2010-04-01/Accounts/{SUB}/Usage/Records/Daily.json"]["IncludeSubaccounts"] == "false"
    own_row, sub_row = _readme_row("`account_sid`"), _readme_row("`subaccount_sid`")
    assert "IncludeSubaccounts=true" in own_row and "IncludeSubaccounts=false" in sub_row
    for row in (own_row, sub_row):
        assert "per category" not in row and "one listing of every category" in row
