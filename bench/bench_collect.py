"""Collect at scale: N tenants x 3 providers against the sandbox with per-request latency.

    python bench/bench_collect.py [--tenants 1000] [--latency 0.05] [--workers 64] [--every-429 40]
        [--max-concurrency N] [--platform-rate 50] [--twilio-limit 100] [--days 3] [--bare] [--parallel-days N]

`--days` is the window collected (default: one night, yesterday plus the default lookback); the requests of each
provider are also given per 1,000 tenants. `--bare` then sends the same GET requests again from a bare httpx loop
(a client per thread, as many threads per provider as its cap) that decodes each body with `.json()` and does
nothing else with it, and compares the CPU per request of the two. The collector's figure is everything it does
for those requests: the HTTP stack, exact-decimal JSON, attributing and metering every record, the database
writes; a batched request carries many tenants' records, so this ratio is per request, not per tenant-day.

The sandbox runs in a child process (its own GIL, as a remote API would be); the real collector runs here, writing
to a temporary SQLite file. Meanwhile the simulated platform sends SMS on the same Twilio account at a steady rate
(`--platform-rate` per second, at most 8 in flight), and the sandbox's Twilio account rejects requests past
`--twilio-limit` in flight (429, error 20429), as Twilio does past 100 by default. Figures: wall time vs the summed
request time (server-side: arrival to response), the ratio, whether every 429 was honoured (no retry of the same
request before its Retry-After), the peak of the collector's concurrent requests per provider (server-side), the
platform's rejected sends (goal: 0) and how far each provider's cap backed off. `--max-concurrency` sets every
provider's `max_concurrency` (default: each provider's own default). The phone-number tenants' listing of the
platform account's Messages and Calls is timed apart (first request's arrival to last answer, server-side);
`--parallel-days 1` lists the night's days one after the other as before issue 24's follow-up.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
import tomllib
from collections import defaultdict
from datetime import date, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

RETRY_AFTER = 1.0
PLATFORM_SENDERS = 8


def bench_tenants(n: int) -> list[Any]:
    from usagectl.sandbox import tenants_of_every_mode

    # SendGrid by subuser only, as the figures in docs/performance.md were measured.
    return list(tenants_of_every_mode(n, sendgrid_categories=False))


def serve(
    conn: Connection,
    tenants: int,
    latency: float,
    every_429: int,
    overrides: dict[str, Any],
    platform_rate: float,
    twilio_limit: int,
) -> None:
    """Child process: run the sandbox and the platform's sending, hand back the config, then the request log and
    the platform's figures when told to stop."""
    from usagectl.sandbox import Sandbox

    with Sandbox(seed=5, latency=latency, twilio_concurrency_limit=twilio_limit) as sb:
        for server in sb.servers:
            if every_429:
                # Faults apply to GETs only: the platform's sends meet the account limit alone.
                server.fault("429", times=None, every=every_429, retry_after=RETRY_AFTER)
        conn.send(sb.toml(sb.config(bench_tenants(tenants), max_retries=6, **overrides)))
        platform = sb.platform(rate=platform_rate, senders=PLATFORM_SENDERS) if platform_rate else None
        if platform:
            platform.start()
        while conn.recv() == "log":  # until "stop"
            conn.send(
                [
                    (
                        s.provider,
                        s.method,
                        s.path,
                        s.query,
                        s.status,
                        s.at,
                        s.duration,
                        s.authorization,
                        srv.url,
                    )
                    for srv in sb.servers
                    for s in srv.seen
                ]
            )
        if platform:
            platform.stop()
        seen = [
            (s.provider, s.method, s.path, s.query, s.status, s.at, s.duration, s.authorization, srv.url)
            for srv in sb.servers
            for s in srv.seen
        ]
        conn.send(
            (
                seen,
                (platform.sent, platform.rejected, platform.failed) if platform else (0, 0, 0),
                sb.twilio.peak_in_flight,
            )
        )


def peak_concurrency(intervals: list[tuple[float, float]]) -> int:
    """Most intervals (start, duration) open at one instant."""
    events = sorted([(a, 1) for a, _ in intervals] + [(a + d, -1) for a, d in intervals])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def parent_seen(parent: Connection) -> list[Any]:
    """The sandbox's request log so far (the child answers "log" requests while it runs)."""
    parent.send("log")
    log: list[Any] = parent.recv()
    return [s for s in log if s[1] == "GET"]


def bare_loop(
    gets: list[tuple[str, str, Any, str | None, str]], caps: dict[str, int]
) -> tuple[float, float, int]:
    """The same GETs from plain httpx clients, one per thread, `caps[provider]` threads per provider at once: the
    baseline of the collector's CPU per request. (CPU seconds, wall seconds, requests)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    local = threading.local()

    def one(req: tuple[str, str, Any, str | None, str]) -> None:
        url, path, query, auth, _provider = req
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=30)
        # A client that uses an answer at least decodes it: every body is parsed as JSON (stdlib, floats), as
        # the least any caller does; the collector parses with exact decimals and then meters and writes.
        client.get(url + path, params=list(query), headers={"Authorization": auth} if auth else None).json()

    by_provider: dict[str, list[Any]] = defaultdict(list)
    for g in gets:
        by_provider[g[4]].append(g)
    started, cpu = time.perf_counter(), time.process_time()
    pools = [ThreadPoolExecutor(max_workers=caps.get(p, 5)) for p in by_provider]
    futures = [
        pool.submit(one, g) for pool, reqs in zip(pools, by_provider.values(), strict=True) for g in reqs
    ]
    for f in futures:
        f.result()
    for pool in pools:
        pool.shutdown()
    return time.process_time() - cpu, time.perf_counter() - started, len(gets)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenants", type=int, default=1000)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--workers", type=int, default=64)
    ap.add_argument(
        "--every-429", type=int, default=40, help="a 429 on every n-th request per provider (0: none)"
    )
    ap.add_argument(
        "--max-concurrency", type=int, default=0, help="every provider's max_concurrency (0: the defaults)"
    )
    ap.add_argument(
        "--platform-rate", type=float, default=50, help="the platform's SMS sends per second (0: none)"
    )
    ap.add_argument("--twilio-limit", type=int, default=100, help="the Twilio account's concurrency limit")
    ap.add_argument("--days", type=int, default=0, help="days collected (0: one night, 1 + lookback_days)")
    ap.add_argument("--bare", action="store_true", help="replay the requests from a bare httpx loop (CPU)")
    ap.add_argument(
        "--parallel-days", type=int, default=0, help="Twilio number-listing days side by side (0: default)"
    )
    args = ap.parse_args()
    overrides = {"max_concurrency": args.max_concurrency} if args.max_concurrency else {}

    from usagectl.collector import collect, default_window
    from usagectl.config import parse
    from usagectl.periods import Window
    from usagectl.providers.registry import HTTP_SOURCES, open_providers
    from usagectl.store.engine import open_store
    from usagectl.store.tenants import sync_tenants

    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(
        target=serve,
        args=(
            child,
            args.tenants,
            args.latency,
            args.every_429,
            overrides,
            args.platform_rate,
            args.twilio_limit,
        ),
        daemon=True,
    )
    proc.start()
    cfg = parse(tomllib.loads(parent.recv()), "sandbox config")
    today = date.today()
    window = (
        Window(today - timedelta(days=args.days), today) if args.days else default_window(cfg, today=today)
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'usage.db'}")
        sync_tenants(store, cfg.tenants)
        with open_providers(cfg, store, only=HTTP_SOURCES) as providers:
            for p in providers:
                if args.parallel_days and hasattr(p, "parallel_days"):
                    p.parallel_days = args.parallel_days
            started = time.perf_counter()
            cpu_started = time.process_time()
            result = collect(store, cfg, providers, window, workers=args.workers)
            collect_cpu = time.process_time() - cpu_started
            wall = time.perf_counter() - started
        store.close()
    caps = {r.provider: r.max_concurrency for r in result.concurrency}
    # The collector's requests (GET), logged before any bare-loop replay; the platform's POSTs are counted apart.
    snapshot = parent_seen(parent)
    bare: tuple[float, float, int] | None = None
    if args.bare:
        bare = bare_loop(
            [(url, path, q, auth, p) for p, _m, path, q, _s, _a, _d, auth, url in snapshot], caps
        )
    parent.send("stop")
    _all_seen, (sent, rejected, send_failed), account_peak = parent.recv()
    seen = [(p, path, q, status, at, d) for p, _m, path, q, status, at, d, _auth, _url in snapshot]
    proc.join(10)
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_client, cpu_server = me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime

    summed = sum(s[5] for s in seen)
    by_provider: dict[str, int] = defaultdict(int)
    for s in seen:
        by_provider[s[0]] += 1
    # Every 429 honoured: the same request (provider, path, query) is not sent again before Retry-After.
    last_429: dict[tuple[Any, ...], float] = {}
    too_soon = 0
    n429 = 0
    gaps = []
    for provider, path, query, status, at, _d in sorted(seen, key=lambda s: s[4]):
        key = (provider, path, tuple(query))
        if key in last_429:
            gap = at - last_429.pop(key)
            gaps.append(gap)
            if gap < RETRY_AFTER - 0.01:
                too_soon += 1
        if status == 429:
            n429 += 1
            last_429[key] = at
    failed = len(result.failed)
    print(
        f"window {window.label()} ({window.days} days), "
        f"tenants x providers: {args.tenants} x 3, workers {args.workers}, latency {args.latency * 1000:.0f} ms, "
        f"max_concurrency {', '.join(f'{k} {v}' for k, v in sorted(caps.items()))}"
    )
    peaks = {
        name: peak_concurrency([(s[4], s[5]) for s in seen if s[0] == name]) for name in sorted(by_provider)
    }
    print(f"peak concurrent requests (collector): {', '.join(f'{k} {v}' for k, v in peaks.items())}")
    print(
        f"platform: {sent + rejected + send_failed} sends at {args.platform_rate:g}/s, rejected (429) {rejected}, "
        f"other failures {send_failed}; Twilio account limit {args.twilio_limit}, peak in flight {account_peak}"
    )
    for r in result.concurrency:
        print(f"  {r.describe()}")
    listing = [
        s
        for s in seen
        if s[1].endswith(("/Messages.json", "/Calls.json")) and not any(k in ("From", "To") for k, _ in s[2])
    ]
    if listing:
        span = max(s[4] + s[5] for s in listing) - min(s[4] for s in listing)
        print(f"phone-number listing of the platform account: {len(listing)} requests over {span:.1f}s")
    print(f"requests: {len(seen)} ({', '.join(f'{k} {v}' for k, v in sorted(by_provider.items()))})")
    per_k = 1000 / args.tenants
    print(
        f"requests per 1,000 tenants for the window: {len(seen) * per_k:.0f} ("
        + ", ".join(f"{k} {v * per_k:.0f}" for k, v in sorted(by_provider.items()))
        + ")"
    )
    print(
        f"collector CPU during collect: {collect_cpu:.2f}s, {collect_cpu / len(seen) * 1000:.2f} ms per request"
    )
    if bare is not None:
        bare_cpu, bare_wall, bare_n = bare
        print(
            f"bare httpx loop, same {bare_n} requests at the same caps: CPU {bare_cpu:.2f}s, "
            f"{bare_cpu / bare_n * 1000:.2f} ms per request, wall {bare_wall:.1f}s; collector/bare CPU per request "
            f"= {(collect_cpu / len(seen)) / (bare_cpu / bare_n):.2f}x"
        )
    print(
        f"429s: {n429}, retried too soon: {too_soon}, min retry gap {min(gaps, default=0):.2f}s"
        + (f", median {statistics.median(gaps):.2f}s" if gaps else "")
    )
    print(f"CPU: collector {cpu_client:.1f}s, sandbox {cpu_server:.1f}s")
    print(f"tasks failed: {failed} of {len(result.outcomes)}; rows written: {len(result.written)}")
    print(f"summed request time: {summed:.1f}s; wall: {wall:.1f}s; ratio wall/summed = 1/{summed / wall:.1f}")
    return 0 if not failed and not too_soon and not rejected else 1


if __name__ == "__main__":
    sys.exit(main())
