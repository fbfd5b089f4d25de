"""The providers' own example responses (tests/fixtures/provider_specs, from their published specifications)
replayed over real HTTP through every provider.

The replay server answers each endpoint with its example, applying only what the real API does with the query and
the examples cannot: Twilio's From/To filter and page number, SendGrid's limit/offset, OpenAI's next page."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from conftest import send_json
from usagectl.config import (
    Config,
    OpenAIProvider,
    ProvidersConfig,
    SecretRef,
    SendGridProvider,
    TenantConfig,
    TenantOpenAI,
    TenantSendGrid,
    TenantTwilio,
    TwilioProvider,
)
from usagectl.periods import Window
from usagectl.providers import openai, sendgrid, twilio
from usagectl.records import MetricRow, ModelTokens, ProviderError

SPECS = Path(__file__).parent / "fixtures" / "provider_specs"
ACCOUNT = "AC" + "a" * 32  # the account SID of Twilio's examples


def spec(name: str) -> Any:
    return json.loads((SPECS / name).read_text(encoding="utf-8"))


class Replay:
    """path -> a function of the query giving the JSON body."""

    def __init__(self) -> None:
        self.routes: dict[str, Any] = {}
        self.seen: list[tuple[str, list[tuple[str, str]]]] = []
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qsl(url.query, keep_blank_values=True)
                replay.seen.append((url.path, query))
                route = next((f for p, f in replay.routes.items() if url.path.endswith(p)), None)
                status, body = (200, route(query)) if route else (404, {"message": "not in the replay"})
                send_json(self, status, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def replay() -> Iterator[Replay]:
    r = Replay()
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


def config(replay: Replay, tmp_path: Path, tenants: list[TenantConfig]) -> Config:
    secret = tmp_path / "secret"
    secret.write_text("not-a-real-secret", encoding="utf-8")
    secret.chmod(0o600)
    ref = SecretRef(file=secret)
    common: dict[str, Any] = {"base_url": replay.url, "max_retries": 0}
    return Config(
        providers=ProvidersConfig(
            twilio=TwilioProvider(account_sid=ACCOUNT, auth_token=ref, **common),
            sendgrid=SendGridProvider(api_key=ref, **common),
            openai=OpenAIProvider(admin_key=ref, **common),
        ),
        tenants=tenants,
    )


def _collect(module: Any, replay: Replay, tmp_path: Path, t: TenantConfig, days: list[date]) -> Any:
    """`module`'s provider for tenant `t` against the replay: collect `days`, then close it."""
    provider = module.make(config(replay, tmp_path, [t]))
    assert provider is not None
    try:
        return provider.collect_days(t, Window.covering(days))
    finally:
        provider.close()


# ---- Twilio ------------------------------------------------------------------------------------------------


def _twilio_list(key: str, full: str, empty: str, sender: str = "from") -> Any:
    def answer(query: list[tuple[str, str]]) -> Any:
        q = dict(query)
        if int(q.get("Page", "0")) > 0:
            return spec(empty)
        body = spec(full)
        for param, field in (("From", "from"), ("To", "to")):
            if param in q:
                body[key] = [r for r in body[key] if r[field] == q[param]]
        return body

    return answer


def test_twilio_usage_records_example_spanning_years_fails_the_listing(
    replay: Replay, tmp_path: Path
) -> None:
    """The example record runs from 2011-08-23 to 2015-09-04 (issue 21.5): never one day's usage."""
    replay.routes["/Usage/Records/Daily.json"] = lambda q: spec("twilio_usage_records_daily.readFull.json")
    t = TenantConfig(slug="acme", twilio=TenantTwilio(subaccount_sid=ACCOUNT))
    day = date(2011, 8, 23)  # the example record's start_date
    with pytest.raises(ProviderError, match=r"spans 2011-08-23\.\.2015-09-04"):
        _collect(twilio, replay, tmp_path, t, [day])
    ((path, query),) = replay.seen
    assert path == f"/2010-04-01/Accounts/{ACCOUNT}/Usage/Records/Daily.json"
    assert ("IncludeSubaccounts", "false") in query and ("StartDate", "2011-08-23") in query


def _usage_records(*records: dict[str, Any]) -> Any:
    """The example listing with its record replaced by `records` (each the example record with overrides)."""
    body = spec("twilio_usage_records_daily.readFull.json")
    (example,) = body["usage_records"]
    body["usage_records"] = [{**example, **r} for r in records]
    return body


def _collect_records(replay: Replay, tmp_path: Path, body: Any, day: date) -> Any:
    replay.routes["/Usage/Records/Daily.json"] = lambda q: body
    t = TenantConfig(slug="acme", twilio=TenantTwilio(subaccount_sid=ACCOUNT))
    return _collect(twilio, replay, tmp_path, t, [day])[day]


DAY = date(2026, 11, 20)
ONE_DAY = {"start_date": DAY.isoformat(), "end_date": DAY.isoformat(), "price": "0", "price_unit": "usd"}


def test_twilio_sms_usage_in_messages_is_counted_and_noted(replay: Replay, tmp_path: Path) -> None:
    """The spec: usage_unit "such as ... `messages` for SMS" (issue 21.1); segments stay accepted."""
    body = _usage_records(
        {**ONE_DAY, "category": "sms-outbound", "count": "7", "count_unit": "messages",
         "usage": "7", "usage_unit": "messages"},
        {**ONE_DAY, "category": "sms-inbound", "count": "2", "count_unit": "messages",
         "usage": "3", "usage_unit": "segments"},
    )  # fmt: skip
    got = _collect_records(replay, tmp_path, body, DAY)
    assert isinstance(got, MetricRow), got
    assert (got.sms_outbound_count, got.sms_inbound_count) == (7, 3)
    assert got.note is not None and "SMS counted in messages and segments" in got.note


def test_twilio_usage_in_an_unknown_unit_fails_the_day(replay: Replay, tmp_path: Path) -> None:
    body = _usage_records(
        {**ONE_DAY, "category": "sms-outbound", "count": "7", "usage": "7", "usage_unit": "characters"}
    )
    got = _collect_records(replay, tmp_path, body, DAY)
    assert isinstance(got, ProviderError) and "'characters'" in str(got)


def test_twilio_usage_record_of_two_days_fails_the_listing(replay: Replay, tmp_path: Path) -> None:
    body = _usage_records(
        {**ONE_DAY, "category": "sms-outbound", "count": "9", "usage": "9", "usage_unit": "segments",
         "end_date": (DAY + timedelta(days=1)).isoformat()},
    )  # fmt: skip
    with pytest.raises(ProviderError, match="not one day"):
        _collect_records(replay, tmp_path, body, DAY)


def test_twilio_usage_record_without_usage_fails_its_day(replay: Replay, tmp_path: Path) -> None:
    body = _usage_records({**ONE_DAY, "category": "calls-outbound", "usage": None, "usage_unit": "minutes"})
    got = _collect_records(replay, tmp_path, body, DAY)
    assert isinstance(got, ProviderError) and "calls-outbound usage" in str(got)


def test_twilio_messages_and_calls_examples(replay: Replay, tmp_path: Path) -> None:
    replay.routes["/Messages.json"] = _twilio_list(
        "messages", "twilio_messages.readFullPage1.json", "twilio_messages.readEmptySentdateEquals.json"
    )
    replay.routes["/Calls.json"] = _twilio_list(
        "calls", "twilio_calls.readFullPage1.json", "twilio_calls.readEmptyDatesLess.json"
    )
    # The sender of the example's messages, and the number its JPY-priced inbound call rang.
    t = TenantConfig(slug="acme", twilio=TenantTwilio(phone_numbers=["+12019235161", "+13051913580"]))
    may24, oct18 = date(2019, 5, 24), date(2019, 10, 18)
    got = _collect(twilio, replay, tmp_path, t, [may24, oct18])
    # One outbound SMS of 1 segment at $0.0075; the inbound MMS was sent *from* our number by the other side.
    assert got[may24] == MetricRow(sms_outbound_count=1, provider_cost_usd=Decimal("0.00750"))
    # The inbound call of 3 s is one billed minute; its price is in JPY: cost unknown, with the reason.
    day = got[oct18]
    assert isinstance(day, MetricRow) and day.voice_minutes == 1 and day.provider_cost_usd is None
    assert day.note is not None and "JPY" in day.note
    pages = [dict(q).get("Page") for p, q in replay.seen if p.endswith("/Calls.json")]
    assert "1" in pages, "the example's next_page_uri was followed"


OURS, THEIRS = "+12019235161", "+18182008801"  # the example message's sender and recipient
SENT = "Fri, 20 Nov 2026 17:44:50 +0000"  # on DAY


def _message(sid: str, **overrides: Any) -> dict[str, Any]:
    """The example's outbound SMS ($0.0075, 1 segment) sent on DAY, with a sid and overrides."""
    (example, _) = spec("twilio_messages.readFullPage1.json")["messages"]
    return {**example, "sid": sid + "0" * (34 - len(sid)), "date_sent": SENT, **overrides}


def _call(sid: str, **overrides: Any) -> dict[str, Any]:
    """The example's completed outbound call (4 s, $0.200) placed from our number on DAY, with overrides."""
    (example, _) = spec("twilio_calls.readFullPage1.json")["calls"]
    return {**example, "sid": sid + "0" * (34 - len(sid)), "from": OURS, "start_time": SENT, **overrides}


def _numbers_day(replay: Replay, tmp_path: Path, messages: list[Any], calls: list[Any]) -> Any:
    def listing(key: str, items: list[Any]) -> Any:
        def answer(query: list[tuple[str, str]]) -> Any:
            q = dict(query)
            body = spec("twilio_messages.readEmptySentdateEquals.json")
            body.pop("messages", None)
            body[key] = [
                r for r in items if all(r[f] == q[p] for p, f in (("From", "from"), ("To", "to")) if p in q)
            ]
            return body

        return answer

    replay.routes["/Messages.json"] = listing("messages", messages)
    replay.routes["/Calls.json"] = listing("calls", calls)
    t = TenantConfig(slug="acme", twilio=TenantTwilio(phone_numbers=[OURS]))
    return _collect(twilio, replay, tmp_path, t, [DAY])[DAY]


def test_twilio_failed_and_canceled_messages_are_not_counted(replay: Replay, tmp_path: Path) -> None:
    """Twilio bills neither (issue 21.2); `undelivered` is billed."""
    got = _numbers_day(
        replay,
        tmp_path,
        [
            _message("SM1"),
            _message("SM2", status="failed", price=None, error_code=30008),
            _message("SM3", status="canceled", price=None),
            _message("SM4", status="undelivered"),
        ],
        [],
    )
    assert got == MetricRow(sms_outbound_count=2, provider_cost_usd=Decimal("0.01500"))


def test_twilio_a_queued_message_makes_the_day_provisional(replay: Replay, tmp_path: Path) -> None:
    got = _numbers_day(replay, tmp_path, [_message("SM1"), _message("SM2", status="queued", price=None)], [])
    assert isinstance(got, MetricRow) and not got.final
    assert got.sms_outbound_count == 1 and got.provider_cost_usd is None
    assert got.note is not None and "1 message(s) queued or sending" in got.note


def test_twilio_an_mm_sid_is_an_mms_whatever_num_media_says(replay: Replay, tmp_path: Path) -> None:
    """The spec marks an MMS by its sid prefix (issue 21.4); num_media > 0 still counts too."""
    got = _numbers_day(
        replay,
        tmp_path,
        [_message("MM1", num_media="0"), _message("SM2", num_media="2"), _message("SM3")],
        [],
    )
    assert isinstance(got, MetricRow)
    assert (got.mms_outbound_count, got.sms_outbound_count) == (2, 1)


def test_twilio_a_ringing_call_makes_the_day_provisional(replay: Replay, tmp_path: Path) -> None:
    """`duration` "is empty for busy, failed, unanswered, or ongoing calls" (issue 21.3)."""
    got = _numbers_day(
        replay,
        tmp_path,
        [],
        [
            _call("CA1"),
            _call("CA2", status="ringing", duration=None, price=None, end_time=None),
            _call("CA3", status="busy", duration=None, price=None, end_time=None),
        ],
    )
    assert isinstance(got, MetricRow) and not got.final
    assert got.voice_minutes == 1 and got.provider_cost_usd is None
    assert got.note is not None and "1 call(s) not over yet" in got.note


def test_twilio_calls_over_without_a_duration_are_final(replay: Replay, tmp_path: Path) -> None:
    got = _numbers_day(
        replay,
        tmp_path,
        [],
        [_call("CA1"), *(_call(f"CA{i}", status=s, duration=None, price=None)
                         for i, s in enumerate(("busy", "failed", "no-answer", "canceled"), 2))],
    )  # fmt: skip
    assert got == MetricRow(voice_minutes=1, provider_cost_usd=Decimal("0.200"))


@pytest.mark.parametrize(
    ("messages", "calls", "why"),
    [
        ([_message("SM1", num_segments=None)], [], "num_segments of SM1"),
        ([_message("SM1", num_media=None)], [], "num_media of SM1"),
        ([_message("SM1", status="delivered-ish")], [], "unknown status"),
        ([], [_call("CA1", duration=None)], "duration of CA1"),
        ([], [_call("CA1", status="hung")], "unknown status"),
    ],
    ids=["no-segments", "no-media", "message-status", "no-duration", "call-status"],
)
def test_twilio_a_missing_or_unknown_field_fails_the_day(
    replay: Replay, tmp_path: Path, messages: list[Any], calls: list[Any], why: str
) -> None:
    """A missing field is an error for that day, never a 1 or a 0 (issue 23.4, checked on Twilio)."""
    got = _numbers_day(replay, tmp_path, messages, calls)
    assert isinstance(got, ProviderError) and why in str(got), got


# ---- SendGrid ----------------------------------------------------------------------------------------------


def _sendgrid(name: str) -> Any:
    def answer(query: list[tuple[str, str]]) -> Any:
        q = dict(query)
        offset, limit = int(q.get("offset", "0")), int(q.get("limit", "500"))
        return spec(name)[offset : offset + limit]

    return answer


def test_sendgrid_subuser_stats_example(replay: Replay, tmp_path: Path) -> None:
    replay.routes["/v3/subusers/stats"] = _sendgrid("sendgrid_subusers_stats.json")
    t = TenantConfig(slug="matt", sendgrid=TenantSendGrid(subuser="Matt_subuser"))
    days = [date(2015, 10, d) for d in range(1, 11)]
    got = _collect(sendgrid, replay, tmp_path, t, days)
    assert got == dict.fromkeys(days, MetricRow())
    (_, query) = replay.seen[0]
    assert ("subusers", "Matt_subuser") in query and ("aggregated_by", "day") in query
    assert ("limit", str(sendgrid.PAGE_LIMIT)) in query and ("offset", "0") in query


def test_sendgrid_category_example_missing_a_day_is_an_error_for_it(replay: Replay, tmp_path: Path) -> None:
    # The example holds 2015-10-01 and 2015-11-01 (monthly entries): asked daily, 2015-10-02 is absent.
    replay.routes["/v3/categories/stats"] = _sendgrid("sendgrid_categories_stats.json")
    t = TenantConfig(slug="docs", sendgrid=TenantSendGrid(category="docs"))
    first, second = date(2015, 10, 1), date(2015, 10, 2)
    got = _collect(sendgrid, replay, tmp_path, t, [first, second])
    assert got[first] == MetricRow()
    assert isinstance(got[second], ProviderError) and "no entry for 2015-10-02" in str(got[second])


def test_sendgrid_category_request_carries_only_its_defined_parameters(
    replay: Replay, tmp_path: Path
) -> None:
    """tsg_stats_v3 defines no limit/offset on /v3/categories/stats (issue 21.6)."""
    replay.routes["/v3/categories/stats"] = _sendgrid("sendgrid_categories_stats.json")
    t = TenantConfig(slug="docs", sendgrid=TenantSendGrid(category="docs"))
    _collect(sendgrid, replay, tmp_path, t, [date(2015, 10, 1)])
    ((_, query),) = replay.seen
    assert {k for k, _ in query} == {"categories", "start_date", "end_date", "aggregated_by"}


def _sendgrid_with_neighbours(name: str) -> Any:
    """The example, each day also carrying another subuser's and another category's entry with traffic."""

    def answer(query: list[tuple[str, str]]) -> Any:
        body = _sendgrid(name)(query)
        for entry in body:
            (own,) = [s for s in entry["stats"] if s["name"] in ("Matt_subuser", "docs")]
            metrics = {**own["metrics"], "requests": 40, "delivered": 39}
            entry["stats"] = [
                {"type": "subuser", "name": "Other_subuser", "metrics": metrics},
                {"type": "category", "name": "Matt_subuser", "metrics": metrics},
                {"type": "category", "name": "other-category", "metrics": metrics},
                {"type": "subuser", "name": "docs", "metrics": metrics},
                *entry["stats"],
            ]
        return body

    return answer


@pytest.mark.parametrize(
    ("tenant", "path", "example", "day"),
    [
        (TenantSendGrid(subuser="Matt_subuser"), "/v3/subusers/stats", "sendgrid_subusers_stats.json",
         date(2015, 10, 1)),
        (TenantSendGrid(category="docs"), "/v3/categories/stats", "sendgrid_categories_stats.json",
         date(2015, 10, 1)),
    ],
    ids=["subuser", "category"],
)  # fmt: skip
def test_sendgrid_counts_only_the_tenants_own_entry(
    replay: Replay, tmp_path: Path, tenant: TenantSendGrid, path: str, example: str, day: date
) -> None:
    """Another subuser's or category's entry (even one named like ours, of the other kind) is never the
    tenant's email (issue 21.9)."""
    replay.routes[path] = _sendgrid_with_neighbours(example)
    t = TenantConfig(slug="t", sendgrid=tenant)
    got = _collect(sendgrid, replay, tmp_path, t, [day])
    assert got == {day: MetricRow()}


@pytest.mark.parametrize("key", ["requests", "delivered"])
def test_sendgrid_metrics_without_a_count_fail_the_day(replay: Replay, tmp_path: Path, key: str) -> None:
    """Every metric is a required integer: a missing one is a malformed answer for that day, never a 0
    (issue 23.4); the other days of the answer are good."""
    days = [date(2015, 10, d) for d in range(1, 4)]

    def answer(query: list[tuple[str, str]]) -> Any:
        body = _sendgrid("sendgrid_subusers_stats.json")(query)
        for entry in body:
            entry["stats"][0]["metrics"]["requests"] = 5
        del body[1]["stats"][0]["metrics"][key]
        return body

    replay.routes["/v3/subusers/stats"] = answer
    t = TenantConfig(slug="matt", sendgrid=TenantSendGrid(subuser="Matt_subuser"))
    got = _collect(sendgrid, replay, tmp_path, t, days)
    assert got[days[0]] == got[days[2]] == MetricRow(emails_sent=5)
    assert isinstance(got[days[1]], ProviderError) and "lack requests/delivered" in str(got[days[1]])


def test_sendgrid_answer_without_counts_keeps_the_stored_row_and_exits_3(
    replay: Replay, tmp_path: Path, store: Any
) -> None:
    """Through the collector: the stored day stays as it was, the run exits 3 (issue 23.4)."""
    from sqlalchemy import select

    from usagectl.collector import collect
    from usagectl.store.metrics import upsert_metric
    from usagectl.store.tables import usage_metrics
    from usagectl.store.tenants import get_tenant, sync_tenants

    day = date(2015, 10, 1)

    def answer(query: list[tuple[str, str]]) -> Any:
        body = _sendgrid("sendgrid_subusers_stats.json")(query)
        body[0]["stats"][0]["metrics"] = {}  # Oct 1 without its counts; Oct 2 as published
        return body

    replay.routes["/v3/subusers/stats"] = answer
    t = TenantConfig(slug="matt", sendgrid=TenantSendGrid(subuser="Matt_subuser"))
    cfg = config(replay, tmp_path, [t])
    sync_tenants(store, cfg.tenants)
    with store.engine.begin() as conn:
        tid = get_tenant(conn, "matt").id
        upsert_metric(conn, tid, day, "sendgrid", MetricRow(emails_sent=120, emails_delivered=118))
    provider = sendgrid.make(cfg)
    assert provider is not None
    try:
        window = Window.covering([day, day + timedelta(days=1)])
        result = collect(store, cfg, [provider], window, today=window.end)
    finally:
        provider.close()
    assert result.exit_code == 3, result.outcomes  # some days written, some failed
    assert "lack requests/delivered" in result.outcomes[0].errors[0]
    m = usage_metrics.c
    with store.engine.connect() as conn:
        stored = dict(conn.execute(select(m.date, m.emails_sent)).all())
    assert stored == {day: 120, day + timedelta(days=1): 0}


# ---- OpenAI ------------------------------------------------------------------------------------------------

NOV1, NOV2 = date(2024, 11, 1), date(2024, 11, 2)  # the examples' bucket, and a day they lack
LAST_PAGE = {"object": "page", "data": [], "has_more": False, "next_page": None}


def _openai(name: str, project: str | None = None, model: str | None = None) -> Any:
    def answer(query: list[tuple[str, str]]) -> Any:
        if dict(query).get("page"):
            return LAST_PAGE  # the completions example says has_more; its next page is the last
        body = copy.deepcopy(spec(name))
        if project is not None:  # as the API fills them when grouped by project_id and model
            for bucket in body["data"]:
                for r in bucket["results"]:
                    r["project_id"] = project
                    if "model" in r:
                        r["model"] = model or r["model"]
        return body

    return answer


def _openai_routes(replay: Replay, project: str | None = None) -> None:
    replay.routes["/usage/completions"] = _openai("openai_usage_completions.json", project, "gpt-4o")
    replay.routes["/usage/embeddings"] = _openai(
        "openai_usage_embeddings.json", project, "text-embedding-3-small"
    )
    replay.routes["/usage/moderations"] = _openai(
        "openai_usage_moderations.json", project, "omni-moderation-latest"
    )
    replay.routes["/organization/costs"] = _openai("openai_costs.json", project)


def test_openai_examples_ungrouped_are_nobodys(replay: Replay, tmp_path: Path) -> None:
    """As published, the results carry no project: none of it is the tenant's (isolation)."""
    _openai_routes(replay)
    t = TenantConfig(slug="acme", openai=TenantOpenAI(project_ids=["proj_acme"]))
    got = _collect(openai, replay, tmp_path, t, [NOV1])
    assert got == {NOV1: MetricRow(provider_cost_usd=Decimal(0))}
    paths = {p for p, _ in replay.seen}
    assert paths == {
        "/v1/organization/usage/completions",
        "/v1/organization/usage/embeddings",
        "/v1/organization/usage/moderations",
        "/v1/organization/costs",
    }


def test_openai_examples_grouped_by_project(replay: Replay, tmp_path: Path) -> None:
    _openai_routes(replay, "proj_acme")
    t = TenantConfig(slug="acme", openai=TenantOpenAI(project_ids=["proj_acme"]))
    got = _collect(openai, replay, tmp_path, t, [NOV1, NOV2])
    assert got[NOV1] == MetricRow(
        ai_tokens_in=1000 + 16 + 16,
        ai_tokens_out=500,
        provider_cost_usd=Decimal("0.06"),
        ai_models=(
            ModelTokens("gpt-4o", 1000, 500, cached_in=400, cache_write_in=100),
            ModelTokens("omni-moderation-latest", 16, 0),
            ModelTokens("text-embedding-3-small", 16, 0),
        ),
    )
    # No bucket for Nov 2 in any answer: an error for that day, never a day of zeros.
    assert isinstance(got[NOV2], ProviderError) and "no bucket for 2024-11-02" in str(got[NOV2])


def test_openai_cost_in_another_currency_is_unknown(replay: Replay, tmp_path: Path) -> None:
    _openai_routes(replay, "proj_acme")
    euros = _openai("openai_costs.json", "proj_acme")
    replay.routes["/organization/costs"] = lambda q: {
        **(body := euros(q)),
        "data": [
            {**b, "results": [{**r, "amount": {**r["amount"], "currency": "eur"}} for r in b["results"]]}
            for b in body["data"]
        ],
    }
    t = TenantConfig(slug="acme", openai=TenantOpenAI(project_ids=["proj_acme"]))
    day = _collect(openai, replay, tmp_path, t, [NOV1])[NOV1]
    assert isinstance(day, MetricRow) and day.ai_tokens_in == 1032
    assert day.provider_cost_usd is None and day.note is not None and "'eur'" in day.note


def _costs_without(field: str) -> Any:
    costs = _openai("openai_costs.json", "proj_acme")

    def answer(query: list[tuple[str, str]]) -> Any:
        body = costs(query)
        for b in body["data"]:
            for r in b["results"]:
                if field == "amount":
                    del r["amount"]
                else:
                    del r["amount"][field]
        return body

    return answer


@pytest.mark.parametrize(
    ("field", "why"),
    [("currency", "without a currency"), ("value", "without an amount"), ("amount", "without an amount")],
)
def test_openai_cost_without_currency_or_amount_is_unknown(
    replay: Replay, tmp_path: Path, field: str, why: str
) -> None:
    """`amount` and its `currency` are optional in CostsResult (issue 21.7): never taken as USD or $0."""
    _openai_routes(replay, "proj_acme")
    replay.routes["/organization/costs"] = _costs_without(field)
    t = TenantConfig(slug="acme", openai=TenantOpenAI(project_ids=["proj_acme"]))
    day = _collect(openai, replay, tmp_path, t, [NOV1])[NOV1]
    assert isinstance(day, MetricRow) and day.ai_tokens_in == 1032
    assert day.provider_cost_usd is None and day.note is not None and why in day.note


@pytest.mark.parametrize(
    ("route", "example", "field"),
    [
        ("/usage/completions", "openai_usage_completions.json", "input_tokens"),
        ("/usage/completions", "openai_usage_completions.json", "output_tokens"),
        ("/usage/embeddings", "openai_usage_embeddings.json", "input_tokens"),
    ],
)
def test_openai_result_without_its_tokens_fails_the_day(
    replay: Replay, tmp_path: Path, route: str, example: str, field: str
) -> None:
    """input_tokens (and a completion's output_tokens) are required: missing is an error, never 0 (issue 23.4,
    checked on OpenAI)."""
    _openai_routes(replay, "proj_acme")
    usage = _openai(example, "proj_acme", "m")

    def answer(query: list[tuple[str, str]]) -> Any:
        body = usage(query)
        for b in body["data"]:
            for r in b["results"]:
                r.pop(field, None)
        return body

    replay.routes[route] = answer
    t = TenantConfig(slug="acme", openai=TenantOpenAI(project_ids=["proj_acme"]))
    day = _collect(openai, replay, tmp_path, t, [NOV1])[NOV1]
    assert isinstance(day, ProviderError) and f"no {field}" in str(day)
