"""The providers' own example responses (tests/fixtures/provider_specs, from their published specifications)
replayed over real HTTP through every provider.

The replay server answers each endpoint with its example, applying only what the real API does with the query and
the examples cannot: Twilio's From/To filter and page number, SendGrid's limit/offset, OpenAI's next page."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

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
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

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


def test_twilio_usage_records_example(replay: Replay, tmp_path: Path) -> None:
    replay.routes["/Usage/Records/Daily.json"] = lambda q: spec("twilio_usage_records_daily.readFull.json")
    t = TenantConfig(slug="acme", twilio=TenantTwilio(subaccount_sid=ACCOUNT))
    provider = twilio.make(config(replay, tmp_path, [t]))
    assert provider is not None
    try:
        day = date(2011, 8, 23)  # the example record's start_date
        got = provider.collect_days(t, Window.covering([day]))
    finally:
        provider.close()
    # Short-code inbound SMS is not a category we meter; nothing was billed and Twilio lists no totalprice.
    assert got == {day: MetricRow(provider_cost_usd=Decimal(0))}
    ((path, query),) = replay.seen
    assert path == f"/2010-04-01/Accounts/{ACCOUNT}/Usage/Records/Daily.json"
    assert ("IncludeSubaccounts", "false") in query and ("StartDate", "2011-08-23") in query


def test_twilio_messages_and_calls_examples(replay: Replay, tmp_path: Path) -> None:
    replay.routes["/Messages.json"] = _twilio_list(
        "messages", "twilio_messages.readFullPage1.json", "twilio_messages.readEmptySentdateEquals.json"
    )
    replay.routes["/Calls.json"] = _twilio_list(
        "calls", "twilio_calls.readFullPage1.json", "twilio_calls.readEmptyDatesLess.json"
    )
    # The sender of the example's messages, and the number its JPY-priced inbound call rang.
    t = TenantConfig(slug="acme", twilio=TenantTwilio(phone_numbers=["+12019235161", "+13051913580"]))
    provider = twilio.make(config(replay, tmp_path, [t]))
    assert provider is not None
    may24, oct18 = date(2019, 5, 24), date(2019, 10, 18)
    try:
        got = provider.collect_days(t, Window.covering([may24, oct18]))
    finally:
        provider.close()
    # One outbound SMS of 1 segment at $0.0075; the inbound MMS was sent *from* our number by the other side.
    assert got[may24] == MetricRow(sms_outbound_count=1, provider_cost_usd=Decimal("0.00750"))
    # The inbound call of 3 s is one billed minute; its price is in JPY: cost unknown, with the reason.
    day = got[oct18]
    assert isinstance(day, MetricRow) and day.voice_minutes == 1 and day.provider_cost_usd is None
    assert day.note is not None and "JPY" in day.note
    pages = [dict(q).get("Page") for p, q in replay.seen if p.endswith("/Calls.json")]
    assert "1" in pages, "the example's next_page_uri was followed"


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
    provider = sendgrid.make(config(replay, tmp_path, [t]))
    assert provider is not None
    days = [date(2015, 10, d) for d in range(1, 11)]
    try:
        got = provider.collect_days(t, Window.covering(days))
    finally:
        provider.close()
    assert got == dict.fromkeys(days, MetricRow())
    (_, query) = replay.seen[0]
    assert ("subusers", "Matt_subuser") in query and ("aggregated_by", "day") in query
    assert ("limit", str(sendgrid.PAGE_LIMIT)) in query and ("offset", "0") in query


def test_sendgrid_category_example_missing_a_day_is_an_error_for_it(replay: Replay, tmp_path: Path) -> None:
    # The example holds 2015-10-01 and 2015-11-01 (monthly entries): asked daily, 2015-10-02 is absent.
    replay.routes["/v3/categories/stats"] = _sendgrid("sendgrid_categories_stats.json")
    t = TenantConfig(slug="docs", sendgrid=TenantSendGrid(category="docs"))
    provider = sendgrid.make(config(replay, tmp_path, [t]))
    assert provider is not None
    first, second = date(2015, 10, 1), date(2015, 10, 2)
    try:
        got = provider.collect_days(t, Window.covering([first, second]))
    finally:
        provider.close()
    assert got[first] == MetricRow()
    assert isinstance(got[second], ProviderError) and "no entry for 2015-10-02" in str(got[second])


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
    provider = openai.make(config(replay, tmp_path, [t]))
    assert provider is not None
    try:
        got = provider.collect_days(t, Window.covering([NOV1]))
    finally:
        provider.close()
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
    provider = openai.make(config(replay, tmp_path, [t]))
    assert provider is not None
    try:
        got = provider.collect_days(t, Window.covering([NOV1, NOV2]))
    finally:
        provider.close()
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
    provider = openai.make(config(replay, tmp_path, [t]))
    assert provider is not None
    try:
        day = provider.collect_days(t, Window.covering([NOV1]))[NOV1]
    finally:
        provider.close()
    assert isinstance(day, MetricRow) and day.ai_tokens_in == 1032
    assert day.provider_cost_usd is None and day.note is not None and "'eur'" in day.note
