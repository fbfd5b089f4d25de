"""Batched provider calls (issue 24): one request set answers for many tenants, each tenant's rows come back apart,
and a batch that fails is split so that one bad tenant fails only its own days. Counted on the sandbox's request
log, over real HTTP, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from usagectl.collector import CollectResult, collect
from usagectl.config import Config, TenantConfig, TenantOpenAI, TenantSendGrid
from usagectl.periods import Window
from usagectl.providers import openai, sendgrid
from usagectl.providers.registry import HTTP_SOURCES, open_providers
from usagectl.sandbox import ModelUsage, Sandbox, tenants_of_every_mode
from usagectl.store.engine import Store
from usagectl.store.tables import tenants, usage_metrics
from usagectl.store.tenants import sync_tenants

D1 = date(2026, 11, 20)
WINDOW = Window(D1, D1 + timedelta(days=3))


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(synthetic=False) as sandbox:
        yield sandbox


def run(sb: Sandbox, store: Store, tenants_: list[TenantConfig], **overrides: Any) -> CollectResult:
    cfg: Config = sb.config(tenants_, **({"max_retries": 0} | overrides))
    sync_tenants(store, cfg.tenants)
    with open_providers(cfg, store, only=HTTP_SOURCES) as providers:
        return collect(store, cfg, providers, WINDOW, workers=4, today=WINDOW.end)


def stored(store: Store, source: str, column: str) -> dict[tuple[str, date], Any]:
    m = usage_metrics.c
    q = (
        select(tenants.c.slug, m.date, m[column])
        .join(tenants, tenants.c.id == m.tenant_id)
        .where(m.source == source)
    )
    with store.engine.connect() as conn:
        return {(r[0], r[1]): r[2] for r in conn.execute(q)}


def ai_tenants(n: int, projects: int = 1) -> list[TenantConfig]:
    return [
        TenantConfig(
            slug=f"t{i:03d}",
            openai=TenantOpenAI(project_ids=[f"proj_{i:03d}_{j}" for j in range(projects)]),
        )
        for i in range(n)
    ]


def test_openai_asks_once_per_endpoint_for_many_projects(sb: Sandbox, store: Store) -> None:
    ts = ai_tenants(30, projects=2)
    for i, t in enumerate(ts):
        for j, project in enumerate(t.openai.project_ids):  # type: ignore[union-attr]
            sb.world.set_ai_usage(project, D1, [ModelUsage("gpt-4o-mini", 100 * i + j, i)])
            sb.world.set_ai_cost(project, D1, "0.01")
    result = run(sb, store, ts)
    assert result.exit_code == 0, result.failed
    # 60 projects, at most 100 a request: one request per endpoint (3 usage + costs) for the whole night.
    assert len(sb.openai.seen) == 4
    got = stored(store, "openai", "ai_tokens_in")
    assert {slug: got[(slug, D1)] for slug in ("t000", "t007", "t029")} == {
        "t000": 0 + 1, "t007": 700 + 701, "t029": 2900 + 2901,
    }  # fmt: skip
    assert got[("t007", D1 + timedelta(days=1))] == 0
    assert stored(store, "openai", "provider_cost_usd")[("t007", D1)] == Decimal("0.02")


def test_openai_batches_hold_at_most_the_documented_number_of_projects(sb: Sandbox, store: Store) -> None:
    n = openai.MAX_PROJECTS_PER_REQUEST
    ts = ai_tenants(n // 2 + 1, projects=2)  # n + 2 projects: two batches
    result = run(sb, store, ts)
    assert result.exit_code == 0, result.failed
    sizes = [len([v for k, v in s.query if k == "project_ids"]) for s in sb.openai.requests("/costs")]
    assert sorted(sizes) == [2, n]


def test_openai_one_bad_project_fails_only_its_tenant(sb: Sandbox, store: Store) -> None:
    ts = ai_tenants(8)
    ts[5] = TenantConfig(slug="bad", openai=TenantOpenAI(project_ids=["proj_bad"]))
    for t in ts:
        for project in t.openai.project_ids:  # type: ignore[union-attr]
            sb.world.set_ai_usage(project, D1, [ModelUsage("gpt-4o-mini", 7, 1)])
    sb.openai.fault("401", match="proj_bad", times=None)  # the API refuses any request naming it
    result = run(sb, store, ts)
    assert result.exit_code == 3
    assert [o.tenant for o in result.failed] == ["bad"] and "HTTP 401" in result.failed[0].errors[0]
    got = stored(store, "openai", "ai_tokens_in")
    assert {slug for slug, _ in got} == {t.slug for t in ts} - {"bad"}
    assert all(got[(t.slug, D1)] == 7 for t in ts if t.slug != "bad")
    # 8 tenants, halved until the bad one is alone: the good halves answer in one request set each.
    assert len(sb.openai.seen) <= 4 * 2 * 3 + 1


def test_a_provider_down_for_the_whole_batch_is_not_split_to_single_tenants(
    sb: Sandbox, store: Store
) -> None:
    """A persistent 5xx says nothing about the tenants: once both halves of the failed batch fail with the same
    server error, the batch's tenants fail their days (stored rows kept) instead of being split down to single
    tenants, which cost 2n - 1 request sets against a provider that is down (31 for 16 tenants)."""
    ts = [
        TenantConfig(
            slug=f"t{i:02d}",
            openai=TenantOpenAI(project_ids=[f"proj_{i:02d}"]),
            sendgrid=TenantSendGrid(subuser=f"sub{i}"),
        )
        for i in range(16)
    ]
    for i in range(16):
        sb.world.set_ai_usage(f"proj_{i:02d}", D1, [ModelUsage("gpt-4o-mini", 7, 1)])
    assert run(sb, store, ts).exit_code == 0
    before = stored(store, "openai", "ai_tokens_in")
    assert len(before) == 16 * 3 and before[("t03", D1)] == 7
    sb.openai.seen.clear()
    sb.world.set_ai_usage(
        "proj_03", D1, [ModelUsage("gpt-4o-mini", 99, 1)]
    )  # not to be seen: the API is down
    sb.openai.fault("500", times=None)
    result = run(sb, store, ts)
    assert result.exit_code == 3  # SendGrid's days were written
    assert sorted(o.tenant for o in result.failed) == [t.slug for t in ts]
    assert all(o.source == "openai" and "HTTP 500" in o.errors[0] for o in result.failed)
    # The batch, then its two halves: one request each (the first endpoint fails, max_retries 0).
    assert len(sb.openai.seen) == 3
    assert stored(store, "openai", "ai_tokens_in") == before


def test_a_server_error_of_one_half_only_is_split_further(sb: Sandbox, store: Store) -> None:
    """A 5xx that only requests naming one project get (the provider chokes on that project) singles out its
    tenant: the half that answers is written, the failing half is split on until the tenant is alone."""
    ts = ai_tenants(8)
    for t in ts:
        for project in t.openai.project_ids:  # type: ignore[union-attr]
            sb.world.set_ai_usage(project, D1, [ModelUsage("gpt-4o-mini", 7, 1)])
    sb.openai.fault("500", match="proj_005", times=None)
    result = run(sb, store, ts)
    assert result.exit_code == 3
    assert [o.tenant for o in result.failed] == ["t005"] and "HTTP 500" in result.failed[0].errors[0]
    got = stored(store, "openai", "ai_tokens_in")
    assert {slug for slug, _ in got} == {t.slug for t in ts} - {"t005"}


def test_sendgrid_asks_ten_names_a_request(sb: Sandbox, store: Store) -> None:
    subs = [TenantConfig(slug=f"s{i:02d}", sendgrid=TenantSendGrid(subuser=f"sub{i}")) for i in range(25)]
    cats = [TenantConfig(slug=f"c{i:02d}", sendgrid=TenantSendGrid(category=f"cat{i}")) for i in range(12)]
    for i in range(25):
        sb.world.set_email_stats("subuser", f"sub{i}", D1, requests=i)
    for i in range(12):
        sb.world.set_email_stats("category", f"cat{i}", D1, requests=100 + i)
    result = run(sb, store, [*subs, *cats])
    assert result.exit_code == 0, result.failed
    names = [[v for k, v in s.query if k in ("subusers", "categories")] for s in sb.sendgrid.seen]
    assert sorted(len(n) for n in names) == [2, 5, 10, 10, 10]
    assert max(len(n) for n in names) <= sendgrid.MAX_NAMES_PER_REQUEST
    got = stored(store, "sendgrid", "emails_sent")
    assert got[("s13", D1)] == 13 and got[("c07", D1)] == 107 and got[("s13", D1 + timedelta(days=1))] == 0
    assert len(got) == (25 + 12) * 3


# ---- Twilio phone numbers: the account's day listed once, or each number filtered --------------------------


def _twilio_cfg(sb: Sandbox, tenants_: list[TenantConfig], listing: str) -> Config:
    cfg = sb.config(tenants_, max_retries=0)
    assert cfg.providers.twilio is not None
    twilio = cfg.providers.twilio.model_copy(update={"numbers_listing": listing})
    return cfg.model_copy(update={"providers": cfg.providers.model_copy(update={"twilio": twilio})})


def _numbers_night(sb: Sandbox, store: Store, tenants_: list[TenantConfig], listing: str) -> tuple[Any, int]:
    cfg = _twilio_cfg(sb, tenants_, listing)
    sync_tenants(store, cfg.tenants)
    before = len(sb.twilio.seen)
    with open_providers(cfg, store, only=("twilio",)) as providers:
        result = collect(store, cfg, providers, WINDOW, workers=4, dry_run=True, today=WINDOW.end)
    assert result.exit_code == 0, result.failed
    rows = [(w.tenant, w.day, w.row) for w in result.written]
    return rows, len(sb.twilio.seen) - before


def test_twilio_account_listing_and_per_number_filters_give_identical_rows(store: Store) -> None:
    from datetime import UTC, datetime

    from usagectl.config import TenantTwilio

    a1, a2, b1 = "+15005550100", "+15005550101", "+15005550200"  # scripted: tenants a and b
    noise = "+15005559999"  # on the platform account, nobody's
    with Sandbox(seed=5) as sb:
        sb.world.in_flight_day = WINDOW.last  # a message sending and a call ringing: provisional either way
        master = sb.twilio_accounts.master_sid
        w = sb.world
        midnight = datetime(D1.year, D1.month, D1.day, tzinfo=UTC)
        w.add_message(master, from_=a1, to=b1, direction="outbound-api", date_sent=midnight, price="-0.0079")
        w.add_message(master, from_=a1, to=b1, direction="inbound", date_sent=midnight, price="-0.0079")
        last = midnight + timedelta(hours=23, minutes=59, seconds=59)
        w.add_message(master, from_=b1, to="+14155550100", direction="outbound-api", date_sent=last,
                      num_segments=3, price="-0.0237")  # fmt: skip
        w.add_message(master, from_=noise, to=a2, direction="outbound-api", date_sent=last, price="-0.0079")
        w.add_message(master, from_="+14155550100", to=a2, direction="inbound", date_sent=last, num_media=1,
                      price="-0.01")  # fmt: skip
        w.add_message(master, from_=noise, to="+14155550101", direction="outbound-api", date_sent=midnight)
        w.add_message(master, from_=a1, to="+14155550100", direction="outbound-api", date_sent=last,
                      status="failed")  # fmt: skip
        w.add_call(master, from_=b1, to=a1, direction="outbound-dial", start_time=midnight, duration=61,
                   price="-0.028")  # fmt: skip
        w.add_call(master, from_=b1, to=a1, direction="inbound", start_time=midnight, duration=61,
                   price="-0.017")  # fmt: skip
        w.add_call(
            master, from_=noise, to=b1, direction="inbound", start_time=last, duration=5, price="-0.0085"
        )
        synthetic = [
            TenantConfig(
                slug=f"n{i}", twilio=TenantTwilio(phone_numbers=[f"+1500555{i:04d}", f"+1500556{i:04d}"])
            )
            for i in range(6)
        ]
        ts = [
            TenantConfig(slug="a", twilio=TenantTwilio(phone_numbers=[a1, a2])),
            TenantConfig(slug="b", twilio=TenantTwilio(phone_numbers=[b1])),
            *synthetic,
        ]
        by_number, asked_by_number = _numbers_night(sb, store, ts, "number")
        by_account, asked_by_account = _numbers_night(sb, store, ts, "account")
        automatic, asked_auto = _numbers_night(sb, store, ts, "auto")
    assert by_account == by_number == automatic
    got = {(slug, day): row for slug, day, row in by_account}
    a, b = got[("a", D1)], got[("b", D1)]
    assert (a.sms_outbound_count, a.sms_inbound_count, a.mms_inbound_count, a.voice_minutes) == (1, 0, 1, 2)
    assert (b.sms_outbound_count, b.sms_inbound_count, b.voice_minutes) == (3, 1, 2 + 1)
    assert not got[("n0", WINDOW.last)].final
    # Per number: From= and To= on messages and calls, 4 requests a number a day (15 numbers, 3 days).
    assert asked_by_number == 4 * 15 * 3
    # The account's day in one page of messages and one of calls: 2 requests a day, whatever the numbers.
    assert asked_by_account == asked_auto == 2 * 3


def test_twilio_auto_listing_falls_back_to_the_numbers_when_the_account_is_busier(store: Store) -> None:
    """One number on an account whose day takes many pages: the per-number filters cost less, and "auto" stops
    listing the account after as many pages as they would cost."""
    from usagectl.config import TenantTwilio

    ts = [TenantConfig(slug="solo", twilio=TenantTwilio(phone_numbers=["+15005550300"]))]
    with Sandbox(seed=9, page_size_cap=3) as sb:
        for i in range(40):  # the platform's own traffic on another number: 14 pages of 3 a day
            sb.world.add_message(
                sb.twilio_accounts.master_sid, from_="+15005550999", to="+14155550100",
                direction="outbound-api", date_sent=datetime.combine(D1, time(12), UTC) + timedelta(seconds=i),
            )  # fmt: skip
        by_number, asked_by_number = _numbers_night(sb, store, ts, "number")
        automatic, asked_auto = _numbers_night(sb, store, ts, "auto")
    assert automatic == by_number
    # Per day and list, at most 2 pages of the account before giving up (the per-number cost of one number).
    assert asked_auto <= asked_by_number + 2 * 2 * 3


def _overlapping(seen: list[Any]) -> int:
    """The most requests of `seen` in flight at one instant (server side)."""
    events = sorted([(s.at, 1) for s in seen] + [(s.at + s.duration, -1) for s in seen])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


@pytest.mark.parametrize("listing", ["account", "number"])
def test_twilio_days_of_a_night_are_listed_side_by_side_with_identical_rows(
    store: Store, listing: str
) -> None:
    """The phone-number listing of each day is a chain of pages; the night's days are listed in parallel (not one
    chain after the other) and give the same rows as one day at a time."""
    from usagectl.config import TenantTwilio

    ts = [
        TenantConfig(slug=f"n{i}", twilio=TenantTwilio(phone_numbers=[f"+1500555{i:04d}"])) for i in range(4)
    ]
    with Sandbox(seed=5, latency=0.05) as sb:
        cfg = _twilio_cfg(sb, ts, listing)
        sync_tenants(store, cfg.tenants)
        results = {}
        for parallel in (1, None):
            sb.twilio.seen.clear()
            with open_providers(cfg, store, only=("twilio",)) as providers:
                (twilio,) = providers
                twilio.parallel_days = parallel  # type: ignore[attr-defined]
                result = collect(store, cfg, providers, WINDOW, workers=4, dry_run=True, today=WINDOW.end)
            assert result.exit_code == 0, result.failed
            results[parallel] = ([(w.tenant, w.day, w.row) for w in result.written], list(sb.twilio.seen))
    (serial, serial_seen), (side_by_side, parallel_seen) = results[1], results[None]
    assert side_by_side == serial and len(serial) == 4 * WINDOW.days
    assert any(row.sms_outbound_count or row.voice_minutes for _, _, row in serial)  # traffic to attribute
    assert sorted((s.path, s.query) for s in parallel_seen) == sorted((s.path, s.query) for s in serial_seen)
    assert _overlapping(serial_seen) == 1
    assert _overlapping(parallel_seen) >= 2


def test_twilio_a_failed_account_listing_is_not_split(sb: Sandbox, store: Store) -> None:
    """The account's day does not depend on which tenants asked: a 500 fails every phone-number tenant's days at
    once instead of being asked again for each half of the batch."""
    from usagectl.config import TenantTwilio

    ts = [
        TenantConfig(slug=f"n{i}", twilio=TenantTwilio(phone_numbers=[f"+1500555{i:04d}"])) for i in range(8)
    ]
    sb.twilio.fault("500", match="Messages.json", times=None)
    result = run(sb, store, ts)
    assert result.exit_code == 1 and len(result.failed) == 8
    assert all("HTTP 500" in o.errors[0] for o in result.failed)
    # max_retries 0: at most one request a day (the night's days are listed side by side), no split.
    assert 1 <= len(sb.twilio.requests("Messages.json")) <= WINDOW.days


def test_batches_are_formed_without_comparing_tenants(
    sb: Sandbox, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forming the batches is linear in the tenants: a list-membership test (`t not in numbers`) compared every
    tenant with every other (pydantic's __eq__), quadratic, the collector's CPU growing per tenant-day."""
    cfg = sb.config(tenants_of_every_mode(30))
    sync_tenants(store, cfg.tenants)
    compared = 0
    plain_eq = TenantConfig.__eq__

    def counting_eq(self: TenantConfig, other: object) -> bool:
        nonlocal compared
        compared += 1
        return plain_eq(self, other)

    monkeypatch.setattr(TenantConfig, "__eq__", counting_eq)
    with open_providers(cfg, store, only=("twilio", "sendgrid")) as providers:
        formed = {p.source: p.batches([t for t in cfg.tenants if p.applies_to(t)]) for p in providers}
    assert compared == 0
    numbers = [t.slug for t in cfg.tenants if t.twilio is not None and t.twilio.mode == "numbers"]
    others = [[t.slug] for t in cfg.tenants if t.twilio is not None and t.twilio.mode != "numbers"]
    assert [[t.slug for t in b] for b in formed["twilio"]] == [numbers, *others]
    subs = [t.slug for t in cfg.tenants if t.sendgrid is not None and t.sendgrid.subuser is not None]
    cats = [t.slug for t in cfg.tenants if t.sendgrid is not None and t.sendgrid.subuser is None]
    assert [[t.slug for t in b] for b in formed["sendgrid"]] == [subs[:10], subs[10:], cats[:10], cats[10:]]
