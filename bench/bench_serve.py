"""`usagectl serve` over real HTTP against the bare cost of the same figures.

    python bench/bench_serve.py [--tenants 10000] [--days 90] [--clients 32] [--requests 1500]
                                [--root-requests 64]                                [--soak-clients 64] [--soak-seconds 30] [--workers 1] [--pg URL [--pg-reuse]]

1. /api/admin/usage/summary and /daily (tenant tokens, random tenants) and /api/root-admin/usage/tenants (a
   month of every tenant) with --clients concurrent clients: p50 of the server's own time (its Server-Timing
   header: from request to response head, in the app) and of the client round trip, and requests per second.
   Baselines for /summary and /daily: the very statements the endpoint runs for each tenant (`captured` from
   reports.tenant_report: tenant, days, totals, plan periods and usage behind the plan charge, provider costs,
   failed collections, adjustments, provisional days) through the `sqlite3` module (psycopg with --pg) plus
   `json.dumps`, in this one process; with --pg also a bare Starlette endpoint (bare_starlette.py, a child)
   running the same statements, so the framework's own cost is visible. Targets: p50 server time at most 3x
   the in-process bare cost, at most 1.5x the bare Starlette endpoint's; /tenants at most 1.5x its bare query.
   --tenant-only stops after /summary and /daily.
2. Soak: --soak-clients clients for --soak-seconds seconds over all three endpoints: 0 errors, p99 at most 10x
   p50 (client round trip).

The server is a child `python -m usagectl serve` on a free loopback port; the load generator is asyncio+httpx in
this process (it shares the machine's CPUs with the server: on a small machine it is part of what is measured
by the round trip, not by the server time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

from common import child_env, machine, median
from gen_data import copy_db, fill_postgres, rolled_up_db, slug

MONTH = ("2026-01-01", "2026-02-01")
DAILY = ("2026-01-01", "2026-01-30")

TENANTS_SQL = (
    "SELECT t.slug, t.name, t.plan_tier, t.active, m.sms, m.emails, m.voice, m.ai, m.cost, m.pc FROM tenants t "
    "LEFT JOIN (SELECT tenant_id, SUM(sms_total) sms, SUM(email_total) emails, SUM(voice_total_minutes) voice, "
    "SUM(ai_total_tokens) ai, SUM(estimated_cost_usd) cost, SUM(provider_cost_usd) pc FROM usage_rollups_daily "
    "WHERE date >= {p} AND date < {p} GROUP BY tenant_id) m ON m.tenant_id = t.id"
)
ALL_TOTALS_SQL = (
    "SELECT COALESCE(SUM(sms_total),0), COALESCE(SUM(email_total),0), COALESCE(SUM(estimated_cost_usd),0), "
    "SUM(provider_cost_usd) FROM usage_rollups_daily WHERE date >= {p} AND date < {p}"
)
CONFIG = """
[plans.pro]
included = { sms = 5000 }
[plans.elite]
included = { sms = 50000 }
[serve]
access_log = false
"""


class Bare:
    """The same figures with hand-written SQL and json.dumps: the floor the server is compared with."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite"):
            self.conn: Any = sqlite3.connect(url.split("///", 1)[1])
            self.p = "?"
        else:
            import psycopg

            self.conn = psycopg.connect(
                url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
            )
            self.p = "%s"

    def q(self, sql: str, *args: Any) -> list[Any]:
        cur = self.conn.cursor()
        cur.execute(sql.format(p=self.p), args)
        return list(cur.fetchall())

    def run(self, statements: list[tuple[str, Any]]) -> str:
        """The endpoint's own statements (`captured`), as its DBAPI received them, and json.dumps of the rows."""
        cur = self.conn.cursor()
        results = []
        for sql, params in statements:
            cur.execute(sql, params)
            results.append(cur.fetchall())
        return json.dumps(results, default=str)

    def tenants(self) -> str:
        rows = self.q(TENANTS_SQL, *MONTH)
        rows.sort(key=lambda r: (-(r[8] or 0), r[0]))
        total = self.q(ALL_TOTALS_SQL, *MONTH)[0]
        lines = [[str(v) for v in r] for r in rows[:100]]
        return json.dumps({"tenants": lines, "count": len(rows), "total": [str(v) for v in total]})


def captured(url: str, cfg_path: Path, slugs: list[str], window: Any) -> dict[str, list[tuple[str, Any]]]:
    """slug -> the SQL statements `/summary` or `/daily` runs for that tenant over `window` (reports.tenant_report,
    as web.api._report calls it), with their parameters as the DBAPI receives them: the tenant, its days and
    totals, the month to date, the plan periods and plan usage behind the plan charge, the provider costs and
    failed collections behind the margin, the adjustments and the provisional days. Every figure the endpoint
    returns comes from these rows. Captured on the second call (what the server caches after one request is not
    in them)."""
    from sqlalchemy import event

    from usagectl import config as cfgmod
    from usagectl.reports import tenant_report
    from usagectl.store.engine import open_store

    cfg = cfgmod.load(cfg_path)
    store = open_store(url)
    out: dict[str, list[tuple[str, Any]]] = {}
    got: list[tuple[str, Any]] = []

    def grab(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        got.append((statement, parameters))

    try:
        for s in slugs:
            tenant_report(store, cfg, s, window)
            event.listen(store.engine, "before_cursor_execute", grab)
            tenant_report(store, cfg, s, window)
            event.remove(store.engine, "before_cursor_execute", grab)
            out[s], got = got, []
    finally:
        store.close()
    return out


def literal_sql(url: str, statements: list[tuple[str, Any]]) -> list[str]:
    """PostgreSQL: each captured statement with its parameters inlined (for bare_starlette.py's JSON file)."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        cur = psycopg.ClientCursor(conn)
        return [cur.mogrify(sql, params) for sql, params in statements]


def verdict(name: str, figure: float, baseline: float, target: float) -> bool:
    """common.verdict in milliseconds (these figures are far below a second)."""
    ratio = figure / baseline
    ok = ratio <= target
    print(
        f"{name}: {figure * 1000:.2f} ms vs {baseline * 1000:.2f} ms  ratio {ratio:.2f}x  "
        f"(target <= {target}x: {'OK' if ok else 'MISSED'})"
    )
    return ok


def bare_p50(fn: Callable[[], object], n: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median(times)


def _cycling(fn: Callable[[str], object], picks: list[str]) -> Callable[[], object]:
    it = iter(range(10**9))
    return lambda: fn(picks[next(it) % len(picks)])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def load(
    base: str,
    requests: list[tuple[str, dict[str, str], str]],
    clients: int,
    seconds: float | None,
    *,
    timeout: float = 60,
    cookies: dict[str, str] | None = None,
) -> tuple[list[float], list[float], int, float]:
    """Run `requests` (url, params, token) with `clients` concurrent clients; with `seconds`, cycle through them
    for that long. Returns client round trips, server times (s), errors, wall seconds. `timeout`: per request;
    `cookies`: sent with each (a page's session)."""
    rtt: list[float] = []
    server: list[float] = []
    errors = 0
    queue = iter(range(10**12))
    stop_at = time.perf_counter() + seconds if seconds else None
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits, cookies=cookies) as c:

        async def worker() -> None:
            nonlocal errors
            while True:
                i = next(queue)
                if stop_at is None and i >= len(requests):
                    return
                if stop_at is not None and time.perf_counter() >= stop_at:
                    return
                url, params, token = requests[i % len(requests)]
                t0 = time.perf_counter()
                try:
                    r = await c.get(url, params=params, headers={"Authorization": f"Bearer {token}"})
                    ok = r.status_code == 200
                    if not ok:
                        print(f"  error: {r.status_code} {r.text[:200]}", file=sys.stderr)
                except httpx.HTTPError as exc:
                    print(f"  error: {type(exc).__name__}: {exc}", file=sys.stderr)
                    ok = False
                    r = None
                rtt.append(time.perf_counter() - t0)
                if not ok or r is None:
                    errors += 1
                    continue
                server.append(float(r.headers["server-timing"].split("dur=")[1]) / 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - t0
    return rtt, server, errors, wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tenants", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=1500, help="requests per endpoint in part 1")
    ap.add_argument("--root-requests", type=int, default=64, help="requests to /tenants in part 1")
    ap.add_argument("--soak-clients", type=int, default=64)
    ap.add_argument("--soak-seconds", type=float, default=30)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument(
        "--pg", metavar="URL", help="run on this PostgreSQL database instead (its data is replaced)"
    )
    ap.add_argument(
        "--pg-reuse", action="store_true", help="with --pg: keep the data a previous run left there"
    )
    ap.add_argument(
        "--tenant-only", action="store_true", help="only /summary and /daily (not /tenants, no soak)"
    )
    args = ap.parse_args()
    if args.days < 31:
        raise SystemExit("--days must be at least 31 (January 2026 is queried)")
    print(machine())
    ok = True
    with tempfile.TemporaryDirectory(prefix="usagectl-bench-serve-") as tmp:
        home = Path(tmp)
        if args.pg:
            from gen_data import START, bench_config
            from usagectl.periods import Window
            from usagectl.rollup import run_rollup
            from usagectl.store.engine import open_store

            if not args.pg_reuse:
                fill_postgres(args.pg, args.tenants, args.days)
                s = open_store(args.pg)
                run_rollup(s, bench_config(), Window(START, START + timedelta(days=args.days)))
                s.close()
            url = args.pg
        else:
            url = f"sqlite:///{copy_db(rolled_up_db(args.tenants, args.days), home / 'bench.db')}"
        from usagectl.store.engine import open_store
        from usagectl.store.tokens import create_token

        store = open_store(url)
        rng = random.Random(9)
        picks = [slug(rng.randint(1, args.tenants)) for _ in range(64)]
        tokens = {s: create_token(store, tenant=s)[0] for s in set(picks)}
        root = create_token(store, tenant=None)[0]
        store.close()
        cfg = home / "serve.toml"
        cfg.write_text(CONFIG)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = child_env(
            HOME=str(home), USAGECTL_DATABASE_URL=url, PYTHONPATH=os.environ.get("PYTHONPATH", "")
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "usagectl", "-q", "-c", str(cfg), "serve", "--port", str(port),
             "--workers", str(args.workers)],
            env=env, stderr=subprocess.PIPE,
        )  # fmt: skip
        starlette: subprocess.Popen[bytes] | None = None
        try:
            for _ in range(600):
                try:
                    httpx.get(f"{base}/healthz", timeout=2)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            bare = Bare(url)
            print(
                f"\n1. {args.clients} concurrent clients, {args.requests} requests per endpoint, "
                f"{args.tenants:,} tenants x {args.days} days, {args.workers} worker(s), "
                f"{'PostgreSQL' if args.pg else 'SQLite'}"
            )
            from usagectl.periods import Window as W

            windows = {
                "/summary": W.month(2026, 1),
                "/daily": W(date.fromisoformat(DAILY[0]), date.fromisoformat(DAILY[1]) + timedelta(days=1)),
            }
            sqls = {name: captured(url, cfg, sorted(set(picks)), w) for name, w in windows.items()}
            for name, per in sqls.items():
                print(f"{name}: {len(next(iter(per.values())))} statements per request (captured)")
            bare_base = ""
            if args.pg:
                # The bare Starlette twin: the same statements per tenant, json.dumps of the rows.
                sql_file = home / "statements.json"
                sql_file.write_text(
                    json.dumps(
                        {
                            f"{name}/{s}": literal_sql(url, st)
                            for name, per in sqls.items()
                            for s, st in per.items()
                        }
                    )
                )
                bare_port = free_port()
                bare_base = f"http://127.0.0.1:{bare_port}"
                starlette = subprocess.Popen(
                    [sys.executable, str(Path(__file__).with_name("bare_starlette.py")), "--url", url, "--sql",
                     str(sql_file), "--port", str(bare_port)],
                    env=env, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                for _ in range(300):
                    try:
                        httpx.get(f"{bare_base}/healthz", timeout=2)
                        break
                    except httpx.TransportError:
                        time.sleep(0.1)
            cases = [
                ("/summary", "/api/admin/usage/summary", {"month": MONTH[0][:7]}, 3.0),
                ("/daily", "/api/admin/usage/daily", {"from": DAILY[0], "to": DAILY[1]}, 3.0),
            ]
            for name, path, params, target in cases:
                per = sqls[name]
                reqs = [(path, params, tokens[picks[i % len(picks)]]) for i in range(args.requests)]
                asyncio.run(load(base, reqs[:50], 4, None))  # warm-up
                rtt, srv, errors, wall = asyncio.run(load(base, reqs, args.clients, None))
                base_p50 = bare_p50(_cycling(lambda s, per=per: bare.run(per[s]), picks), 300)
                print(
                    f"{name}: {len(rtt) / wall:.0f} req/s, client p50 {median(rtt) * 1000:.1f} ms, "
                    f"errors {errors}; bare (the same statements + json.dumps, in-process) p50 "
                    f"{base_p50 * 1000:.2f} ms; load {os.getloadavg()[0]:.1f}"
                )
                ok &= (
                    verdict(f"{name} p50 server time vs bare", median(srv), base_p50, target) and errors == 0
                )
                # One client: no queueing behind the other clients, the cost of one request alone.
                _, srv1, _, _ = asyncio.run(load(base, reqs[:100], 1, None))
                verdict(f"{name}, 1 client, p50 server time vs bare", median(srv1), base_p50, target)
                if starlette is not None:
                    b_reqs = [(f"{name}/{picks[i % len(picks)]}", {}, "none") for i in range(args.requests)]
                    asyncio.run(load(bare_base, b_reqs[:50], 4, None))  # warm-up
                    _, b_srv, b_err, _ = asyncio.run(load(bare_base, b_reqs, args.clients, None))
                    _, b_srv1, _, _ = asyncio.run(load(bare_base, b_reqs[:100], 1, None))
                    print(f"{name}: bare Starlette p50 {median(b_srv) * 1000:.2f} ms, errors {b_err}")
                    ok &= verdict(
                        f"{name}, {args.clients} clients, p50 server time vs bare Starlette",
                        median(srv), median(b_srv), 1.5,
                    )  # fmt: skip
                    ok &= verdict(
                        f"{name}, 1 client, p50 server time vs bare Starlette",
                        median(srv1),
                        median(b_srv1),
                        1.5,
                    )
            if args.tenant_only:
                raise SystemExit(0 if ok else 1)
            reqs = [("/api/root-admin/usage/tenants", {"month": MONTH[0][:7]}, root)] * args.root_requests
            rtt, srv, errors, wall = asyncio.run(load(base, reqs, args.clients, None))
            base_p50 = bare_p50(bare.tenants, 15)
            print(
                f"/tenants: {len(rtt) / wall:.1f} req/s, client p50 {median(rtt) * 1000:.0f} ms, errors {errors}; "
                f"bare p50 {base_p50 * 1000:.0f} ms"
            )
            ok &= verdict("/tenants p50 server time vs bare", median(srv), base_p50, 1.5) and errors == 0
            # One client: no queueing, the cost of one request alone.
            _, srv1, _, _ = asyncio.run(load(base, reqs[:10], 1, None))
            verdict("/tenants, 1 client, p50 server time vs bare", median(srv1), base_p50, 1.5)

            print(
                f"\n2. soak: {args.soak_clients} clients for {args.soak_seconds:.0f} s over the three endpoints"
            )
            mix = [
                *[("/api/admin/usage/summary", {"month": MONTH[0][:7]}, tokens[s]) for s in picks],
                *[("/api/admin/usage/daily", {"from": DAILY[0], "to": DAILY[1]}, tokens[s]) for s in picks],
                ("/api/root-admin/usage/tenants", {"month": MONTH[0][:7], "limit": "50"}, root),
            ]
            rng.shuffle(mix)
            rtt, srv, errors, wall = asyncio.run(load(base, mix, args.soak_clients, args.soak_seconds))
            p50, p99 = pct(rtt, 0.5), pct(rtt, 0.99)
            print(
                f"soak: {len(rtt):,} requests, {len(rtt) / wall:.0f} req/s, errors {errors}, "
                f"client p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
            )
            ok &= verdict("soak p99 vs p50 (client round trip)", p99, p50, 10.0) and errors == 0
        finally:
            if starlette is not None:
                starlette.send_signal(signal.SIGINT)
                starlette.wait(timeout=30)
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
