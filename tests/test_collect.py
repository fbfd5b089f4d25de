"""Collect end to end: the real collectors over real HTTP against the sandbox providers, on both backends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from usagectl.collector import CollectResult, collect
from usagectl.config import Config, SecretRef, TenantConfig, TenantOpenAI, TenantSendGrid, TenantTwilio
from usagectl.errors import LockBusyError
from usagectl.periods import Window
from usagectl.providers.registry import HTTP_SOURCES, open_providers
from usagectl.sandbox import ModelUsage, Sandbox, twilio_sid
from usagectl.store.engine import Store
from usagectl.store.locks import job_lock
from usagectl.store.tables import collection_runs, tenants, usage_metrics, usage_metrics_ai_models
from usagectl.store.tenants import sync_tenants

D1 = date(2026, 11, 20)
D2 = date(2026, 11, 21)
SUB = twilio_sid("AC", "sub-acme")
OWN = twilio_sid("AC", "own-globex")
NUM = "+15005550006"
OTHER = "+15005550099"  # another tenant's number on the platform account
CUSTOMER = "+14155550100"
UNUSED = SecretRef(env="UNUSED")


def at(day: date, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=UTC)


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(synthetic=False, page_size_cap=2) as sandbox:
        yield sandbox


def tenant(slug: str, **kw: Any) -> TenantConfig:
    return TenantConfig(slug=slug, **kw)


def run(
    sb: Sandbox, store: Store, tenants_: list[TenantConfig], window: Window, **overrides: Any
) -> CollectResult:
    cfg: Config = sb.config(tenants_, **({"max_retries": 2} | overrides))
    sync_tenants(store, cfg.tenants)
    with open_providers(cfg, store, only=HTTP_SOURCES) as providers:
        return collect(store, cfg, providers, window, workers=4)


def rows(store: Store, source: str | None = None) -> dict[tuple[str, date, str], dict[str, Any]]:
    m = usage_metrics.c
    q = select(tenants.c.slug, usage_metrics).join(tenants, tenants.c.id == m.tenant_id)
    if source:
        q = q.where(m.source == source)
    with store.engine.connect() as conn:
        out = {}
        for r in conn.execute(q).mappings():
            d = dict(r)
            out[(d["slug"], d["date"], d["source"])] = {
                k: v for k, v in d.items() if k not in ("id", "created_at", "updated_at", "slug", "tenant_id")
            }
        return out


# ---- Twilio -----------------------------------------------------------------------------------------------


def test_twilio_subaccount_usage_records(sb: Sandbox, store: Store) -> None:
    w = sb.world
    w.set_usage_record(SUB, D1, "sms-outbound", 120, price="0.94800")
    w.set_usage_record(SUB, D1, "sms-inbound", 30, price="0.23700")
    w.set_usage_record(SUB, D1, "mms-outbound", 4, price="0.08")
    w.set_usage_record(SUB, D1, "mms-inbound", 1, price="0.01")
    w.set_usage_record(SUB, D1, "calls-outbound", 9, usage=41, price="0.574")
    w.set_usage_record(SUB, D1, "calls-inbound", 3, usage=7, price="0.0595")
    w.set_usage_record(SUB, D2, "sms-outbound", 5, price="0.0395")
    # The platform account's own traffic must never land on the subaccount's tenant.
    w.set_usage_record(sb.twilio_accounts.master_sid, D1, "sms-outbound", 99999, price="1")
    t = tenant("acme", twilio=TenantTwilio(subaccount_sid=SUB))
    result = run(sb, store, [t], Window(D1, D2 + timedelta(days=1)))
    assert result.exit_code == 0, result.outcomes
    got = rows(store)
    d1 = got[("acme", D1, "twilio")]
    assert (d1["sms_outbound_count"], d1["sms_inbound_count"]) == (120, 30)
    assert (d1["mms_outbound_count"], d1["mms_inbound_count"]) == (4, 1)
    assert d1["voice_minutes"] == 48
    assert d1["provider_cost_usd"] == Decimal("1.9085")
    d2 = got[("acme", D2, "twilio")]
    assert d2["sms_outbound_count"] == 5 and d2["voice_minutes"] == 0
    seen = sb.twilio.requests("/Usage/Records/Daily.json")
    assert seen and all(s.path == f"/2010-04-01/Accounts/{SUB}/Usage/Records/Daily.json" for s in seen)
    assert all(dict(s.query).get("IncludeSubaccounts") == "false" for s in seen)
    # Basic auth with the platform account's credentials (the subaccount has none of its own here).
    assert all(s.authorization and s.authorization.startswith("Basic ") for s in seen)


def _numbers_traffic(sb: Sandbox) -> None:
    w = sb.world
    acct = sb.twilio_accounts.master_sid
    # Seven outbound SMS on D1 (4 pages of 2), a multi-segment one, and traffic either side of midnight UTC.
    for i in range(6):
        w.add_message(
            acct, from_=NUM, to=CUSTOMER, direction="outbound-api", date_sent=at(D1, 9, i), price="-0.0079"
        )
    w.add_message(
        acct, from_=NUM, to=CUSTOMER, direction="outbound-reply", date_sent=at(D1, 23, 59, 59),
        num_segments=3, price="-0.0237",
    )  # fmt: skip
    w.add_message(
        acct, from_=NUM, to=CUSTOMER, direction="outbound-api", date_sent=at(D1, 0, 0, 0), price="-0.0079"
    )
    w.add_message(
        acct, from_=NUM, to=CUSTOMER, direction="outbound-api", date_sent=at(D2, 0, 0, 0), price="-0.0079"
    )
    w.add_message(
        acct, from_=NUM, to=CUSTOMER, direction="outbound-api", date_sent=at(D1, 0, 0, 0) - timedelta(seconds=1),
        price="-0.0079",
    )  # fmt: skip
    # MMS: one outbound with media, one inbound with media; one inbound SMS.
    w.add_message(
        acct,
        from_=NUM,
        to=CUSTOMER,
        direction="outbound-api",
        date_sent=at(D1, 12),
        num_media=2,
        price="-0.02",
    )
    w.add_message(
        acct, from_=CUSTOMER, to=NUM, direction="inbound", date_sent=at(D1, 12, 5), num_media=1, price="-0.01"
    )
    w.add_message(
        acct,
        from_=CUSTOMER,
        to=NUM,
        direction="inbound",
        date_sent=at(D1, 13),
        num_segments=2,
        price="-0.0158",
    )
    # Another tenant's number on the same account: never ours.
    w.add_message(
        acct, from_=OTHER, to=CUSTOMER, direction="outbound-api", date_sent=at(D1, 10), price="-0.0079"
    )
    # Calls: per-call round-up to started minutes.
    for seconds, direction, frm, to in (
        (61, "outbound-api", NUM, CUSTOMER),  # 2
        (60, "outbound-dial", NUM, CUSTOMER),  # 1
        (1, "inbound", CUSTOMER, NUM),  # 1
        (0, "outbound-api", NUM, CUSTOMER),  # 0 (not answered)
        (600, "outbound-api", OTHER, CUSTOMER),  # another tenant's
    ):
        w.add_call(
            acct,
            from_=frm,
            to=to,
            direction=direction,
            start_time=at(D1, 15),
            duration=seconds,
            price="-0.014",
        )


def test_twilio_phone_numbers_messages_and_calls(sb: Sandbox, store: Store) -> None:
    _numbers_traffic(sb)
    t = tenant("initech", twilio=TenantTwilio(phone_numbers=[NUM]))
    result = run(sb, store, [t], Window.day(D1))
    assert result.exit_code == 0, result.outcomes
    r = rows(store)[("initech", D1, "twilio")]
    # 6 single + 1 three-segment (23:59:59) + 1 at 00:00:00; not the 23:59:59 of the day before, nor D2's midnight.
    assert r["sms_outbound_count"] == 6 + 3 + 1
    assert r["sms_inbound_count"] == 2  # segments
    assert (r["mms_outbound_count"], r["mms_inbound_count"]) == (1, 1)
    assert r["voice_minutes"] == 2 + 1 + 1 + 0
    assert (
        r["provider_cost_usd"]
        == Decimal("0.0079") * 7
        + Decimal("0.0237")
        + Decimal("0.02")
        + Decimal("0.01")
        + Decimal("0.0158")
        + Decimal("0.014") * 4
    )
    pages = [s for s in sb.twilio.requests("/Messages.json") if dict(s.query).get("From") == NUM]
    assert len(pages) >= 4, "7+ outbound messages at 2 per page must take at least 4 pages"
    assert all(dict(s.query).get("DateSent") == D1.isoformat() for s in pages)


def test_twilio_unpriced_message_makes_provider_cost_unknown(sb: Sandbox, store: Store) -> None:
    acct = sb.twilio_accounts.master_sid
    sb.world.add_message(
        acct, from_=NUM, to=CUSTOMER, direction="outbound-api", date_sent=at(D1, 8), price="-0.0079"
    )
    sb.world.add_message(
        acct, from_=NUM, to=CUSTOMER, direction="outbound-api", date_sent=at(D1, 9), price=None
    )
    result = run(sb, store, [tenant("initech", twilio=TenantTwilio(phone_numbers=[NUM]))], Window.day(D1))
    assert result.exit_code == 0
    r = rows(store)[("initech", D1, "twilio")]
    assert r["sms_outbound_count"] == 2 and r["provider_cost_usd"] is None


def test_twilio_own_credentials_and_401_without_the_secret(sb: Sandbox, store: Store) -> None:
    sb.world.set_usage_record(OWN, D1, "sms-outbound", 7, price="0.0553")
    good = tenant("globex", twilio=TenantTwilio(account_sid=OWN, auth_token=UNUSED))
    result = run(sb, store, [good], Window.day(D1))
    assert result.exit_code == 0
    assert rows(store)[("globex", D1, "twilio")]["sms_outbound_count"] == 7
    seen = sb.twilio.requests(f"/Accounts/{OWN}/")
    assert seen and all(dict(s.query).get("IncludeSubaccounts") == "true" for s in seen)

    # The same tenant with a wrong token: 401, not retried, and the token never shows.
    cfg = sb.config([good], max_retries=3)
    assert (
        cfg.tenants[0].twilio and cfg.tenants[0].twilio.auth_token and cfg.tenants[0].twilio.auth_token.file
    )
    token_file = cfg.tenants[0].twilio.auth_token.file
    token_file.write_text("wrong-token-" + "x" * 20)
    before = len(sb.twilio.seen)
    with open_providers(cfg, store, only=["twilio"]) as providers:
        failed = collect(store, cfg, providers, Window.day(D1))
    assert failed.exit_code == 1
    (outcome,) = failed.outcomes
    message = " ".join(outcome.errors)
    assert "401" in message and "Authenticate" in message
    assert "wrong-token" not in message
    assert len(sb.twilio.seen) - before == 1, "a 401 must not be retried"
    assert rows(store)[("globex", D1, "twilio")]["sms_outbound_count"] == 7, "a failed run keeps the old row"


def test_twilio_check_names_a_tenants_unreadable_token_and_still_checks_the_other_accounts(
    sb: Sandbox,
) -> None:
    from usagectl.providers import twilio
    from usagectl.sandbox import demo_tenants

    cfg = sb.config(demo_tenants())
    globex = cfg.tenants[1].twilio
    assert globex is not None and globex.auth_token is not None and globex.auth_token.file is not None
    globex.auth_token.file.unlink()
    results = {r.name: r for r in twilio.check(cfg)}
    failed = results["twilio (tenant globex)"]
    assert not failed.ok and "tenants[1].twilio.auth_token: cannot read secret file" in failed.detail
    platform = [r for name, r in results.items() if name.startswith("twilio (platform account")]
    assert len(platform) == 1 and platform[0].ok


# ---- SendGrid and OpenAI ----------------------------------------------------------------------------------


def test_sendgrid_subuser_and_category(sb: Sandbox, store: Store) -> None:
    w = sb.world
    w.set_email_stats("subuser", "acme", D1, requests=120, delivered=117)
    w.set_email_stats("subuser", "acme", D2, requests=0)
    w.set_email_stats("category", "tenant-initech", D1, requests=40, delivered=40)
    w.set_email_stats("subuser", "initech", D1, requests=5555)  # not how initech is attributed
    ts = [
        tenant("acme", sendgrid=TenantSendGrid(subuser="acme")),
        tenant("initech", sendgrid=TenantSendGrid(category="tenant-initech")),
    ]
    result = run(sb, store, ts, Window(D1, D2 + timedelta(days=1)))
    assert result.exit_code == 0, result.outcomes
    got = rows(store, "sendgrid")
    assert (
        got[("acme", D1, "sendgrid")]["emails_sent"],
        got[("acme", D1, "sendgrid")]["emails_delivered"],
    ) == (
        120,
        117,
    )
    assert got[("acme", D2, "sendgrid")]["emails_sent"] == 0
    assert got[("initech", D1, "sendgrid")]["emails_sent"] == 40
    assert got[("initech", D1, "sendgrid")]["provider_cost_usd"] is None
    paths = {s.path for s in sb.sendgrid.seen}
    assert paths == {"/v3/subusers/stats", "/v3/categories/stats"}
    assert all(s.authorization == f"Bearer {sb.sendgrid_key}" for s in sb.sendgrid.seen)


def test_openai_projects_models_pages_and_exact_costs(sb: Sandbox, store: Store) -> None:
    w = sb.world
    days = [D1 + timedelta(days=i) for i in range(3)]
    for i, d in enumerate(days):
        w.set_ai_usage(
            "proj_a",
            d,
            [ModelUsage("gpt-4o-mini", 1000 + i, 300, 200), ModelUsage("gpt-4.1", 50, 20, 0)],
        )
        w.set_ai_usage("proj_b", d, [ModelUsage("gpt-4o-mini", 7, 3, 0)])
        w.set_ai_usage("proj_other", d, [ModelUsage("gpt-4o-mini", 10**9, 10**9, 0)])
    w.set_ai_cost(
        "proj_a", days[0], Decimal("0.100000000000000005551")
    )  # a JSON number, more digits than float
    w.set_ai_cost("proj_b", days[0], "0.0200004")  # a JSON string, rounds half-up to 0.020000
    w.set_ai_cost("proj_a", days[1], "0.0000005")  # exactly half a micro-dollar: rounds up
    t = tenant("acme", openai=TenantOpenAI(project_ids=["proj_a", "proj_b"]))
    result = run(sb, store, [t], Window(days[0], days[-1] + timedelta(days=1)))
    assert result.exit_code == 0, result.outcomes
    got = rows(store, "openai")
    r0 = got[("acme", days[0], "openai")]
    assert (r0["ai_tokens_in"], r0["ai_tokens_out"]) == (1000 + 50 + 7, 300 + 20 + 3)
    assert r0["provider_cost_usd"] == Decimal("0.120000")
    assert got[("acme", days[1], "openai")]["provider_cost_usd"] == Decimal("0.000001")
    assert got[("acme", days[2], "openai")]["provider_cost_usd"] is None, (
        "usage without a cost line is unknown"
    )
    assert got[("acme", days[2], "openai")]["ai_tokens_in"] == 1002 + 50 + 7
    with store.engine.connect() as conn:
        m = usage_metrics_ai_models.c
        models = {
            (r.date, r.model): (r.ai_tokens_in, r.ai_tokens_out, r.ai_tokens_cached_in)
            for r in conn.execute(select(usage_metrics_ai_models).where(m.date == days[0]))
        }
    assert models == {(days[0], "gpt-4o-mini"): (1007, 303, 200), (days[0], "gpt-4.1"): (50, 20, 0)}
    usage_pages = sb.openai.requests("/usage/completions")
    assert len(usage_pages) == 2, "3 daily buckets at 2 per page"
    q = usage_pages[0].query
    assert ("project_ids", "proj_a") in q and ("group_by", "model") in q and ("bucket_width", "1d") in q


# ---- the collect contract ---------------------------------------------------------------------------------


def _everyone() -> list[TenantConfig]:
    return [
        tenant(
            "acme",
            plan="pro",
            twilio=TenantTwilio(subaccount_sid=SUB),
            sendgrid=TenantSendGrid(subuser="acme"),
            openai=TenantOpenAI(project_ids=["proj_acme"]),
        ),
        tenant(
            "initech", twilio=TenantTwilio(phone_numbers=[NUM]), sendgrid=TenantSendGrid(category="c-initech")
        ),
    ]


def test_collecting_twice_gives_identical_rows_and_late_updates_replace(store: Store) -> None:
    window = Window(D1, D2 + timedelta(days=1))
    with Sandbox(seed=7) as sandbox:  # synthetic usage for every tenant and day
        first = run(sandbox, store, _everyone(), window)
        once = rows(store)
        second = run(sandbox, store, _everyone(), window)
        assert first.exit_code == second.exit_code == 0
        assert rows(store) == once
        assert len(once) == 2 * 2 + 2 * 2 + 2  # twilio+sendgrid for both, openai for acme, per day
        # Twilio finalises late: the provider now reports more for D1, and a re-collection replaces the row.
        sandbox.world.set_usage_record(SUB, D1, "sms-outbound", 3)
        run(sandbox, store, _everyone(), Window.day(D1))
    after = rows(store)
    assert after[("acme", D1, "twilio")]["sms_outbound_count"] == 3
    assert after[("acme", D2, "twilio")] == once[("acme", D2, "twilio")]
    with store.engine.connect() as conn:
        count = len(conn.execute(select(usage_metrics.c.id)).all())
    assert count == len(once)


def test_429_with_retry_after_is_honoured_then_succeeds(sb: Sandbox, store: Store) -> None:
    sb.world.set_email_stats("subuser", "acme", D1, requests=3)
    sb.sendgrid.fault("429", retry_after=1)
    result = run(sb, store, [tenant("acme", sendgrid=TenantSendGrid(subuser="acme"))], Window.day(D1))
    assert result.exit_code == 0
    statuses = [s.status for s in sb.sendgrid.seen]
    assert statuses == [429, 200]
    gap = sb.sendgrid.seen[1].at - sb.sendgrid.seen[0].at
    assert gap >= 0.95, f"retried after {gap:.2f}s, before X-RateLimit-Reset"
    assert rows(store)[("acme", D1, "sendgrid")]["emails_sent"] == 3


def test_openai_retry_after_header(sb: Sandbox, store: Store) -> None:
    sb.world.set_ai_usage("proj_a", D1, [ModelUsage("gpt-4o-mini", 5, 1)])
    sb.openai.fault("429", retry_after=1, match="usage/completions")
    result = run(sb, store, [tenant("a", openai=TenantOpenAI(project_ids=["proj_a"]))], Window.day(D1))
    assert result.exit_code == 0
    hits = sb.openai.requests("/usage/completions")
    assert [h.status for h in hits] == [429, 200] and hits[1].at - hits[0].at >= 0.95


def test_repeated_500_fails_that_tenant_only(sb: Sandbox, store: Store) -> None:
    sb.world.set_email_stats("subuser", "acme", D1, requests=3)
    sb.world.set_email_stats("subuser", "globex", D1, requests=4)
    sb.sendgrid.fault("500", match="subusers=globex", times=None)
    ts = [tenant(s, sendgrid=TenantSendGrid(subuser=s)) for s in ("acme", "globex")]
    result = run(sb, store, ts, Window.day(D1), max_retries=2)
    assert result.exit_code == 3
    (failed,) = result.failed
    assert failed.tenant == "globex" and "HTTP 500" in failed.errors[0]
    # One request for both (issue 24), failed after 1 + 2 tries; the batch split: acme alone once, globex alone
    # 1 + 2 times.
    asked = [tuple(v for k, v in s.query if k == "subusers") for s in sb.sendgrid.seen]
    assert asked == [("acme", "globex")] * 3 + [("acme",)] + [("globex",)] * 3
    got = rows(store)
    assert ("acme", D1, "sendgrid") in got and ("globex", D1, "sendgrid") not in got
    with store.engine.connect() as conn:
        runs = {
            r.status
            for r in conn.execute(select(collection_runs).where(collection_runs.c.source == "sendgrid"))
        }
    assert runs == {"ok", "failed"}


def test_malformed_json_writes_nothing_for_that_tenant_day(sb: Sandbox, store: Store) -> None:
    sb.world.set_ai_usage("proj_a", D1, [ModelUsage("gpt-4o-mini", 5, 1)])
    t = tenant("a", openai=TenantOpenAI(project_ids=["proj_a"]))
    assert run(sb, store, [t], Window.day(D1)).exit_code == 0
    before = rows(store)
    sb.world.set_ai_usage("proj_a", D1, [ModelUsage("gpt-4o-mini", 500, 100)])
    sb.openai.fault("malformed", match="usage/completions")
    result = run(sb, store, [t], Window.day(D1))
    assert result.exit_code == 1
    assert "malformed JSON" in result.failed[0].errors[0]
    assert rows(store) == before


def test_endless_pagination_is_an_error_not_a_hang(sb: Sandbox, store: Store) -> None:
    sb.openai.fault("endless", times=None)
    t = tenant("a", openai=TenantOpenAI(project_ids=["proj_a"]))
    result = run(sb, store, [t], Window.day(D1))
    assert result.exit_code == 1
    assert "pagination did not end" in result.failed[0].errors[0]


def test_second_overlapping_run_waits_then_gives_up(sb: Sandbox, store: Store) -> None:
    cfg = sb.config([tenant("acme", sendgrid=TenantSendGrid(subuser="acme"))])
    sync_tenants(store, cfg.tenants)
    with open_providers(cfg, store, only=["sendgrid"]) as providers, job_lock(store, wait=1):
        started = time.monotonic()
        with pytest.raises(LockBusyError, match="another"):
            collect(store, cfg, providers, Window.day(D1), lock_wait=0.5)
        assert time.monotonic() - started >= 0.45
    assert rows(store) == {}


def test_rate_limit_spaces_requests_across_workers(sb: Sandbox, store: Store) -> None:
    # 60 subusers, 10 a request (issue 24): six requests.
    ts = [tenant(f"t{i}", sendgrid=TenantSendGrid(subuser=f"t{i}")) for i in range(60)]
    result = run(sb, store, ts, Window.day(D1), rate_limit=10)  # 10 requests/s shared by 4 workers
    assert result.exit_code == 0
    arrivals = sorted(s.at for s in sb.sendgrid.seen)
    # Starts are 0.1 s apart at the client (0.5 s for six); a connection set-up can delay one arrival. Without the
    # limit the four workers' requests arrive within milliseconds.
    assert len(arrivals) == 6 and arrivals[-1] - arrivals[0] >= 0.35, arrivals


def test_server_wait_reads_retry_after_seconds_dates_and_reset() -> None:
    from email.utils import format_datetime

    from usagectl.http import server_wait

    now = 1_800_000_000.0
    assert server_wait(429, {"retry-after": "3"}, now) == 3.0
    when = format_datetime(datetime.fromtimestamp(now + 7, UTC), usegmt=True)
    assert server_wait(503, {"retry-after": when}, now) == pytest.approx(7.0)
    assert server_wait(429, {"x-ratelimit-reset": str(int(now) + 5)}, now) == 5.0
    # SendGrid sends X-RateLimit-Reset on every response: it is a wait only on a 429.
    assert server_wait(500, {"x-ratelimit-reset": str(int(now) + 60)}, now) is None
    assert server_wait(429, {}, now) is None


def test_twilio_platform_api_key_acts_for_its_parent_account(sb: Sandbox, store: Store) -> None:
    """An API key (SK...) authenticates; the resources stay under parent_account_sid's subaccounts."""
    key_sid, key_secret = twilio_sid("SK", "ops-key"), "api-key-secret-value"
    sb.twilio_accounts.api_keys[key_sid] = key_secret
    sb.world.set_usage_record(SUB, D1, "sms-outbound", 11, price="0.0869")
    cfg = sb.config([tenant("acme", twilio=TenantTwilio(subaccount_sid=SUB))])
    assert cfg.providers.twilio is not None
    twilio = cfg.providers.twilio.model_copy(
        update={
            "account_sid": key_sid,
            "parent_account_sid": sb.twilio_accounts.master_sid,
            "auth_token": sb.secret_file("api-key", key_secret),
        }
    )
    cfg = cfg.model_copy(update={"providers": cfg.providers.model_copy(update={"twilio": twilio})})
    sync_tenants(store, cfg.tenants)
    with open_providers(cfg, store, only=["twilio"]) as providers:
        result = collect(store, cfg, providers, Window.day(D1))
    assert result.exit_code == 0, result.outcomes
    assert rows(store)[("acme", D1, "twilio")]["sms_outbound_count"] == 11
    seen = sb.twilio.requests("/Usage/")
    assert seen and all(s.path.startswith(f"/2010-04-01/Accounts/{SUB}/") for s in seen)


def test_a_row_the_database_refuses_costs_only_its_own_day(sb: Sandbox, store: Store) -> None:
    sb.world.set_email_stats("subuser", "acme", D1, requests=2**64)  # beyond BIGINT on both backends
    sb.world.set_email_stats("subuser", "acme", D2, requests=9)
    result = run(
        sb,
        store,
        [tenant("acme", sendgrid=TenantSendGrid(subuser="acme"))],
        Window(D1, D2 + timedelta(days=1)),
    )
    assert result.exit_code == 3
    (outcome,) = result.outcomes
    assert (outcome.days_ok, outcome.days_failed) == (1, 1)
    assert f"writing {D1}" in outcome.errors[0]
    assert set(rows(store)) == {("acme", D2, "sendgrid")}
    with store.engine.connect() as conn:
        runs = {(r.date, r.status) for r in conn.execute(select(collection_runs))}
    assert runs == {(D1, "failed"), (D2, "ok")}
