"""Sharing the provider accounts with the platform: per-provider concurrency caps, adaptive back-off, GET only.

The sandbox holds Twilio's account-wide concurrency limit (429, error 20429, past N requests in flight) and counts
requests in flight server-side, so the caps are checked where the provider would see them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from usagectl.collector import CollectResult, collect
from usagectl.config import Config, TenantConfig, TenantTwilio
from usagectl.http import ConcurrencyLimit, Http, Policy
from usagectl.periods import Window
from usagectl.providers.registry import HTTP_SOURCES, open_providers
from usagectl.records import ProviderError
from usagectl.sandbox import Sandbox, tenants_of_every_mode, twilio_sid
from usagectl.store.engine import Store
from usagectl.store.tenants import sync_tenants

D1 = date(2026, 11, 20)
T0 = datetime(2026, 11, 21, 0, 5, 7, tzinfo=UTC)


def run(
    sb: Sandbox, store: Store, tenants_: list[TenantConfig], *, workers: int, **overrides: Any
) -> CollectResult:
    cfg: Config = sb.config(tenants_, **overrides)
    sync_tenants(store, cfg.tenants)
    with open_providers(cfg, store, only=HTTP_SOURCES) as providers:
        return collect(store, cfg, providers, Window.day(D1), workers=workers)


# ---- the adaptive cap on its own ----------------------------------------------------------------------------


def test_cap_halves_once_per_429_burst_and_grows_back_slowly() -> None:
    limit = ConcurrencyLimit("twilio", 8, now=lambda: T0)
    tickets = [limit.acquire() for _ in range(8)]
    assert limit.in_flight == 8
    limit.release(tickets[0], 429)
    assert limit.cap == 4
    # The others were in flight before the cap was halved: the same burst, not a new one.
    limit.release(tickets[1], 429)
    assert limit.cap == 4
    for t in tickets[2:]:
        limit.release(t, 200)
    assert limit.cap == 5  # +1/cap each: six successes from 4 cross 5
    t = limit.acquire()
    limit.release(t, 429)  # a new burst halves again
    assert limit.cap == 2
    for _ in range(200):
        limit.release(limit.acquire(), 200)
    assert limit.cap == 8  # back up, never above the configured cap
    report = limit.report()
    assert (report.throttled, report.busy, report.lowest, report.final) == (2, 0, 2, 8)
    assert report.first_at == T0
    assert report.describe() == (
        "twilio: backed off 2x after HTTP 429 from 00:05:07 UTC: concurrent requests capped at 2 at the lowest "
        "(configured 8, 8 at the end)"
    )


def test_busy_account_header_leaves_the_platform_half_of_what_is_left() -> None:
    limit = ConcurrencyLimit("twilio", 10, account_limit=100)
    ours = [limit.acquire() for _ in range(3)]  # the 1st, 2nd and 3rd of ours in flight
    # 23 in flight on the account when the first arrived, 1 of them ours: 78 are left, we may take 39 > 10.
    limit.release(ours[0], 200, busy=23)
    assert limit.cap == 10
    # 92 with the second, 2 of them ours: others use 90, 10 are left, we take at most 5.
    limit.release(ours[1], 200, busy=92)
    assert limit.cap == 5
    # The account is full: one request at a time, never none.
    limit.release(ours[2], 200, busy=150)
    assert limit.cap == 1
    report = limit.report()
    assert (report.busy, report.throttled, report.lowest) == (2, 0, 1)
    assert "for an account busy with other traffic" in report.describe()
    # Without a known account limit the header means nothing.
    plain = ConcurrencyLimit("x", 4)
    plain.release(plain.acquire(), 200, busy=1000)
    assert plain.cap == 4 and not plain.report().backed_off


def test_acquire_waits_for_a_free_slot() -> None:
    limit = ConcurrencyLimit("sendgrid", 2)
    first, _second = limit.acquire(), limit.acquire()
    got = threading.Event()

    def third() -> None:
        limit.release(limit.acquire(), 200)
        got.set()

    thread = threading.Thread(target=third)
    thread.start()
    assert not got.wait(0.2)  # blocked while two are in flight
    limit.release(first, 200)
    assert got.wait(10)
    thread.join()


class _CountingCondition(threading.Condition):
    """A Condition that counts the wake-ups of its waiters."""

    def __init__(self) -> None:
        super().__init__()
        self.wakeups = 0
        self.waiting = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting += 1
        try:
            return super().wait(timeout)
        finally:
            self.waiting -= 1
            self.wakeups += 1


def test_a_freed_slot_wakes_one_waiter_not_all() -> None:
    """Issue 24: release used notify_all, waking every waiting worker for one slot."""
    limit = ConcurrencyLimit("openai", 1)
    cond = _CountingCondition()
    limit._cond = cond
    held = limit.acquire()
    got: list[Any] = []
    threads = [threading.Thread(target=lambda: got.append(limit.acquire())) for _ in range(6)]
    for t in threads:
        t.start()
    while True:  # until all six wait (no timing: the count of waiters)
        with cond:
            if cond.waiting == 6:
                break
        threading.Event().wait(0.01)
    limit.release(held, 200)
    while True:
        with cond:
            if got:
                break
        threading.Event().wait(0.01)
    with cond:
        assert cond.wakeups == 1 and cond.waiting == 5
    for _ in range(6):  # pass the slot on: each release lets exactly one waiter through
        while True:
            with cond:
                if got:
                    ticket = got.pop()
                    break
            threading.Event().wait(0.01)
        limit.release(ticket, 200)
    for t in threads:
        t.join()
    assert cond.wakeups == 6  # each waiter woke once, for its own slot


# ---- against the sandbox ------------------------------------------------------------------------------------


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(seed=11, latency=0.01) as sandbox:
        yield sandbox


def test_max_concurrency_caps_every_provider_whatever_the_workers(sb: Sandbox, store: Store) -> None:
    # Twilio goes through the twilio SDK: the cap must hold on that path too.
    result = run(sb, store, tenants_of_every_mode(30), workers=16, max_concurrency=3)
    assert not result.failed
    for server in sb.servers:
        assert 1 <= server.peak_in_flight <= 3, server.name
    assert {r.provider: r.max_concurrency for r in result.concurrency} == {
        "twilio": 3,
        "sendgrid": 3,
        "openai": 3,
    }
    assert all(r.peak_in_flight <= 3 for r in result.concurrency)


def test_defaults_documented_per_provider() -> None:
    from usagectl.config import OpenAIProvider, SendGridProvider, TwilioProvider

    assert TwilioProvider().max_concurrency == 10
    assert TwilioProvider().account_concurrency_limit == 100
    assert SendGridProvider().max_concurrency == 5
    assert OpenAIProvider().max_concurrency == 5
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert "## Sharing the provider accounts" in readme
    for needle in ("max_concurrency", "account_concurrency_limit", "Twilio-Concurrent-Requests"):
        assert needle in readme


def test_a_429_halves_the_cap_and_the_result_says_so(sb: Sandbox, store: Store) -> None:
    sb.twilio.fault("429", match="Usage", times=1, retry_after=None)
    ts = [t for t in tenants_of_every_mode(6) if t.twilio and t.twilio.mode == "subaccount"]
    result = run(sb, store, ts, workers=4)
    assert not result.failed
    [twilio] = [r for r in result.backoffs]
    assert (twilio.provider, twilio.throttled, twilio.max_concurrency, twilio.lowest) == ("twilio", 1, 10, 5)


def test_twilio_concurrent_requests_header_lowers_the_cap(sb: Sandbox, store: Store) -> None:
    # An account whose limit is 2: with the header on every answer, half of it is left for the platform.
    ts = [t for t in tenants_of_every_mode(6) if t.twilio and t.twilio.mode == "subaccount"]
    cfg = sb.config(ts)
    twilio = cfg.providers.twilio
    assert twilio is not None
    cfg = cfg.model_copy(
        update={
            "providers": cfg.providers.model_copy(
                update={"twilio": twilio.model_copy(update={"account_concurrency_limit": 2})}
            )
        }
    )
    sync_tenants(store, cfg.tenants)
    with open_providers(cfg, store, only=["twilio"]) as providers:
        result = collect(store, cfg, providers, Window.day(D1), workers=4)
    assert not result.failed
    [report] = result.backoffs
    assert report.busy >= 1 and report.lowest == 1 and report.throttled == 0


# ---- read-only by construction ------------------------------------------------------------------------------


def test_collect_of_every_attribution_mode_sends_only_get(sb: Sandbox, store: Store) -> None:
    result = run(sb, store, tenants_of_every_mode(6), workers=4)
    assert not result.failed
    modes = {(t.twilio.mode if t.twilio else None) for t in tenants_of_every_mode(6)}
    assert modes == {"subaccount", "own", "numbers"}
    seen = [s for server in sb.servers for s in server.requests()]
    assert {s.provider for s in seen} == {"twilio", "sendgrid", "openai"}
    assert {s.method for s in seen} == {"GET"}
    # Every attribution mode's endpoints were read (and nothing else was sent to them).
    ends = {
        (s.provider, s.path.rsplit("/", 2)[-2] if s.provider == "sendgrid" else s.path.rsplit("/", 1)[-1])
        for s in seen
    }
    assert ends == {
        ("twilio", "Daily.json"),  # subaccount and own account
        ("twilio", "Messages.json"),  # phone numbers
        ("twilio", "Calls.json"),
        ("sendgrid", "subusers"),
        ("sendgrid", "categories"),
        ("openai", "completions"),
        ("openai", "embeddings"),
        ("openai", "moderations"),
        ("openai", "costs"),
    }


def test_the_sandbox_would_see_a_write(sb: Sandbox) -> None:
    # What makes the test above able to fail: another method reaches the log (and is refused).
    r = httpx.delete(f"{sb.sendgrid.url}/v3/subusers/acme")
    assert r.status_code == 405
    assert [(s.method, s.status) for s in sb.sendgrid.requests()] == [("DELETE", 405)]


def test_the_http_layer_refuses_any_method_but_get(sb: Sandbox) -> None:
    http = Http("sendgrid", sb.sendgrid.url, Policy())
    try:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            with pytest.raises(ProviderError, match=f"refusing to send {method} /v3/subusers"):
                http.send(method, "/v3/subusers")
    finally:
        http.close()
    assert sb.sendgrid.requests() == []


def test_the_twilio_sdk_cannot_send_through_our_client(sb: Sandbox, store: Store) -> None:
    from usagectl.providers.twilio import make

    cfg = sb.config([TenantConfig(slug="a", twilio=TenantTwilio(subaccount_sid=twilio_sid("AC", "a")))])
    provider = make(cfg)
    assert provider is not None
    master = sb.twilio_accounts.master_sid
    client = provider._client(master, sb.twilio_accounts.master_token, master)
    try:
        with pytest.raises(ProviderError, match="refusing to send POST"):
            client.messages.create(to="+15005550006", from_="+15005550001", body="hi")
    finally:
        provider.close()
    assert sb.twilio.requests() == []


# ---- the platform's own traffic -----------------------------------------------------------------------------


def platform_run(
    store: Store, *, limit: int, workers: int, tenants: int = 200, latency: float = 0.1, **overrides: Any
) -> tuple[CollectResult, int, int, int]:
    with Sandbox(seed=7, latency=0.01, twilio_concurrency_limit=limit) as sb:
        # Twilio answers slowly enough that 64 workers would really be 64 requests in flight, not a CPU queue.
        sb.twilio.latency = latency
        # At most 8 sends in flight: with the default cap of 10 the account's 20 is never exceeded.
        with sb.platform(rate=60, senders=8) as platform:
            result = run(sb, store, tenants_of_every_mode(tenants), workers=workers, **overrides)
        return result, platform.sent, platform.rejected, sb.twilio.peak_in_flight


@pytest.mark.slow
def test_collect_at_default_caps_never_crowds_out_the_platform(store: Store) -> None:
    # 64 workers (what the README used to advise) and the default caps: the platform keeps its sends.
    result, sent, rejected, peak = platform_run(store, limit=20, workers=64)
    assert rejected == 0
    assert sent > 0
    assert not result.failed
    assert len(result.outcomes) == 600 and len(result.written) == 600
    assert peak <= 20


def test_with_the_cap_raised_the_account_fills_up_and_the_collect_backs_off(store: Store) -> None:
    # The counterpart: the cap, not the workers, keeps the platform's room. Raised to 64, the collect fills the
    # account to its limit (the platform's sends then fail: bench_collect.py counts them; their number depends on
    # timing, so it is not asserted here) and the AIMD back-off halves the cap on the 429s.
    # Slower answers keep the requests in flight even on a loaded host (the collector is CPU-bound otherwise).
    result, _sent, _rejected, peak = platform_run(
        store, limit=20, workers=64, tenants=60, latency=0.3, max_concurrency=64, max_retries=8
    )
    assert peak > 20  # requests arrived past the account's limit (and were answered 429)
    assert not result.failed  # every 429 of ours was retried
    [twilio] = [r for r in result.backoffs if r.provider == "twilio"]
    assert twilio.throttled >= 1 and twilio.lowest <= 32


def test_collect_summary_reports_the_back_off(
    sb: Sandbox, tmp_path: Path, db_url: str, cli: Callable[..., Any]
) -> None:
    sb.twilio.fault("429", match="Usage", times=1, retry_after=None)
    ts = [t for t in tenants_of_every_mode(3) if t.twilio and t.twilio.mode == "subaccount"]
    path = tmp_path / "usagectl.toml"
    path.write_text(sb.toml(sb.config(ts), db_url), encoding="utf-8")
    r = cli("--config", str(path), "collect", "--date", D1.isoformat(), "--provider", "twilio")
    assert r.code == 0, r.err
    assert "twilio: backed off 1x after HTTP 429" in r.err
    assert "capped at 5 at the lowest (configured 10" in r.err
    quiet = cli("--config", str(path), "-q", "collect", "--date", D1.isoformat(), "--provider", "twilio")
    assert quiet.code == 0 and quiet.err == ""


def test_bad_max_concurrency_is_a_config_error(tmp_path: Path, cli: Callable[..., Any]) -> None:
    path = tmp_path / "usagectl.toml"
    path.write_text("[providers.twilio]\nmax_concurrency = 0\n", encoding="utf-8")
    r = cli("--config", str(path), "config", "check")
    assert r.code == 2
    assert "max_concurrency" in r.err and "Traceback" not in r.err


def test_sandbox_account_limit_answers_20429_and_counts_in_flight() -> None:
    with Sandbox(twilio_concurrency_limit=1) as sb:
        a = sb.twilio_accounts
        url = f"{sb.twilio.url}/2010-04-01/Accounts/{a.master_sid}.json"
        sb.twilio.fault("hang", delay=2.0)
        slow = threading.Thread(
            target=httpx.get, args=(url,), kwargs={"auth": (a.master_sid, a.master_token)}
        )
        slow.start()
        for _ in range(500):  # until the slow request is being served
            if sb.twilio.in_flight == 1:
                break
            threading.Event().wait(0.01)
        assert sb.twilio.in_flight == 1
        second = httpx.get(url, auth=(a.master_sid, a.master_token))
        slow.join()
        assert second.status_code == 429
        assert second.json()["code"] == 20429
        assert second.headers["Twilio-Concurrent-Requests"] == "2"
        alone = httpx.get(url, auth=(a.master_sid, a.master_token))
        assert alone.status_code == 200 and alone.headers["Twilio-Concurrent-Requests"] == "1"
        # The platform's sends are POSTs to Messages.json, accepted as queued.
        with sb.platform(rate=20, senders=1) as platform:
            for _ in range(1000):
                if platform.attempted >= 3:
                    break
                threading.Event().wait(0.01)
        assert platform.sent >= 3 and platform.rejected == 0 and platform.failed == 0
        assert {s.method for s in sb.twilio.requests("Messages.json")} == {"POST"}
