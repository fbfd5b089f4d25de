"""Collect at scale: N tenants x 3 providers against the sandbox with per-request latency.

    python bench/bench_collect.py [--tenants 1000] [--latency 0.05] [--workers 64] [--every-429 40]
        [--max-concurrency N] [--platform-rate 50] [--twilio-limit 100]

The sandbox runs in a child process (its own GIL, as a remote API would be); the real collector runs here, writing
to a temporary SQLite file. Meanwhile the simulated platform sends SMS on the same Twilio account at a steady rate
(`--platform-rate` per second, at most 8 in flight), and the sandbox's Twilio account rejects requests past
`--twilio-limit` in flight (429, error 20429), as Twilio does past 100 by default. Figures: wall time vs the summed
request time (server-side: arrival to response), the ratio, whether every 429 was honoured (no retry of the same
request before its Retry-After), the peak of the collector's concurrent requests per provider (server-side), the
platform's rejected sends (goal: 0) and how far each provider's cap backed off. `--max-concurrency` sets every
provider's `max_concurrency` (default: each provider's own default).
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
        conn.recv()  # "stop"
        if platform:
            platform.stop()
        seen = [
            (s.provider, s.method, s.path, s.query, s.status, s.at, s.duration)
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
    args = ap.parse_args()
    overrides = {"max_concurrency": args.max_concurrency} if args.max_concurrency else {}

    from usagectl.collector import collect
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
    day = date.today() - timedelta(days=1)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'usage.db'}")
        sync_tenants(store, cfg.tenants)
        with open_providers(cfg, store, only=HTTP_SOURCES) as providers:
            started = time.perf_counter()
            result = collect(store, cfg, providers, Window.day(day), workers=args.workers)
            wall = time.perf_counter() - started
        store.close()
    parent.send("stop")
    all_seen, (sent, rejected, send_failed), account_peak = parent.recv()
    # The collector's requests (GET); the platform's POSTs are counted apart.
    seen = [(p, path, q, status, at, d) for p, method, path, q, status, at, d in all_seen if method == "GET"]
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
    caps = {r.provider: r.max_concurrency for r in result.concurrency}
    print(
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
    print(f"requests: {len(seen)} ({', '.join(f'{k} {v}' for k, v in sorted(by_provider.items()))})")
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
