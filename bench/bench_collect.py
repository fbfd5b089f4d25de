"""Collect at scale: N tenants x 3 providers against the sandbox with per-request latency.

    python bench/bench_collect.py [--tenants 1000] [--latency 0.05] [--workers 64] [--every-429 40]

The sandbox runs in a child process (its own GIL, as a remote API would be); the real collector runs here, writing
to a temporary SQLite file. Figures: wall time vs the summed request time (server-side: arrival to response), the
ratio (target <= 1/16), and whether every 429 was honoured (no retry of the same request before its Retry-After).
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


def bench_tenants(n: int) -> list[Any]:
    from usagectl.config import SecretRef, TenantConfig, TenantOpenAI, TenantSendGrid, TenantTwilio
    from usagectl.sandbox import twilio_sid

    out = []
    for i in range(n):
        slug = f"t{i:05d}"
        mode = i % 3
        if mode == 0:
            tw = TenantTwilio(subaccount_sid=twilio_sid("AC", slug))
        elif mode == 1:
            tw = TenantTwilio(account_sid=twilio_sid("AC", "own" + slug), auth_token=SecretRef(env="UNUSED"))
        else:
            tw = TenantTwilio(phone_numbers=[f"+1500{i:07d}"])
        out.append(
            TenantConfig(
                slug=slug,
                plan=("starter", "pro", "elite")[i % 3],
                twilio=tw,
                sendgrid=TenantSendGrid(subuser=slug),
                openai=TenantOpenAI(project_ids=[f"proj_{slug}"]),
            )
        )
    return out


def serve(conn: Connection, tenants: int, latency: float, every_429: int) -> None:
    """Child process: run the sandbox, hand back the config, then the request log when told to stop."""
    from usagectl.sandbox import Sandbox

    with Sandbox(seed=5, latency=latency) as sb:
        for server in sb.servers:
            if every_429:
                server.fault("429", times=None, every=every_429, retry_after=RETRY_AFTER)
        conn.send(sb.toml(sb.config(bench_tenants(tenants), max_retries=6)))
        conn.recv()  # "stop"
        seen = [
            (s.provider, s.path, s.query, s.status, s.at, s.duration) for srv in sb.servers for s in srv.seen
        ]
        conn.send(seen)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenants", type=int, default=1000)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--workers", type=int, default=64)
    ap.add_argument(
        "--every-429", type=int, default=40, help="a 429 on every n-th request per provider (0: none)"
    )
    args = ap.parse_args()

    from usagectl.collector import collect
    from usagectl.config import parse
    from usagectl.periods import Window
    from usagectl.providers.registry import HTTP_SOURCES, build_providers
    from usagectl.store.engine import open_store
    from usagectl.store.tenants import sync_tenants

    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(
        target=serve, args=(child, args.tenants, args.latency, args.every_429), daemon=True
    )
    proc.start()
    cfg = parse(tomllib.loads(parent.recv()), "sandbox config")
    day = date.today() - timedelta(days=1)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'usage.db'}")
        sync_tenants(store, cfg.tenants)
        providers = build_providers(cfg, store, only=HTTP_SOURCES)
        started = time.perf_counter()
        result = collect(store, cfg, providers, Window.day(day), workers=args.workers)
        wall = time.perf_counter() - started
        for p in providers:
            p.close()
        store.close()
    parent.send("stop")
    seen = parent.recv()
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
        f"tenants x providers: {args.tenants} x 3, workers {args.workers}, latency {args.latency * 1000:.0f} ms"
    )
    print(f"requests: {len(seen)} ({', '.join(f'{k} {v}' for k, v in sorted(by_provider.items()))})")
    print(
        f"429s: {n429}, retried too soon: {too_soon}, min retry gap {min(gaps, default=0):.2f}s"
        + (f", median {statistics.median(gaps):.2f}s" if gaps else "")
    )
    print(f"CPU: collector {cpu_client:.1f}s, sandbox {cpu_server:.1f}s")
    print(f"tasks failed: {failed} of {len(result.outcomes)}; rows written: {len(result.written)}")
    print(
        f"summed request time: {summed:.1f}s; wall: {wall:.1f}s; ratio wall/summed = 1/{summed / wall:.1f} "
        f"(target <= 1/16: {'met' if wall * 16 <= summed else 'MISSED'})"
    )
    return 0 if not failed and not too_soon else 1


if __name__ == "__main__":
    sys.exit(main())
