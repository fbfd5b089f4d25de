"""Push and now (issue 22): POST /api/events against `usagectl ingest`, and the hourly `collect --today` against the
nightly collect.

    python bench/bench_today.py [--events 200000] [--batch 1000] [--clients 4] [--pg URL]
        [--tenants 1000] [--latency 0.05] [--skip-events] [--skip-collect]

1. Events: N CloudEvents-like events (100 tenants) go into a fresh database twice, in the same run, alternating:
   - baseline: `usagectl.events.ingest` of the same events as a JSONL file (what `usagectl ingest FILE` runs);
   - ours: a real `usagectl serve` process (1 worker), `--clients` threads each POSTing NDJSON batches of
     `--batch` events to /api/events with an ingest token (httpx, keep-alive), until every event is sent.
   Figure: events per second of wall time, ours / baseline (goal: >= 0.5x). Every event must come back accepted.
2. Collect: the sandbox (a child process, `--latency` per request) with `--tenants` tenants x 3 providers; the
   nightly collect (yesterday + the default 2 lookback days) then two hourly `collect --today` runs (the day in
   progress) after it. Figures: requests (counted in the sandbox's log) and wall time per run, and their ratios.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path

import httpx

from bench_collect import bench_tenants
from bench_ingest import fresh_store, pg_schema, write_events
from common import child_env, machine

TENANTS = 100


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_text(tenants: int) -> str:
    lines = [
        "[serve]",
        "access_log = false",
        "events_max_per_request = 10000",
        "[rollup]",
        "seal_after_days = 0",
    ]
    for i in range(tenants):
        lines += ["[[tenants]]", f'slug = "t{i:04d}"']
    return "\n".join(lines) + "\n"


def run_ingest(url: str, path: Path, n: int) -> float:
    from usagectl.config import parse
    from usagectl.events import ingest

    store = fresh_store(url, TENANTS)
    cfg = parse({"tenants": [{"slug": f"t{i:04d}"} for i in range(TENANTS)]})
    t0 = time.perf_counter()
    with path.open("rb") as f:
        r = ingest(store, cfg, f, name=str(path))
    seconds = time.perf_counter() - t0
    store.close()
    assert r.inserted == n and r.rejected == 0, r.summary()
    rate = n / seconds
    print(
        f"  usagectl ingest (file):        {n:,} events in {seconds:.2f}s: {rate:,.0f} events/s", flush=True
    )
    return rate


def run_api(url: str, path: Path, n: int, batch: int, clients: int, home: Path) -> float:
    from usagectl.store.tokens import create_token

    store = fresh_store(url, TENANTS)
    token, _ = create_token(store, tenant=None, ingest=True, name="bench")
    store.close()
    cfg = home / "serve.toml"
    cfg.write_text(config_text(TENANTS))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = child_env(HOME=str(home), USAGECTL_DATABASE_URL=url, PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "usagectl", "-q", "-c", str(cfg), "serve", "--port", str(port)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            try:
                httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        lines = path.read_bytes().splitlines(keepends=True)
        bodies = [b"".join(lines[i : i + batch]) for i in range(0, len(lines), batch)]
        todo = list(reversed(bodies))
        lock = threading.Lock()
        accepted = [0]
        errors: list[str] = []

        def client() -> None:
            with httpx.Client(base_url=base, timeout=120, headers={"Authorization": f"Bearer {token}"}) as c:
                while True:
                    with lock:
                        if not todo:
                            return
                        body = todo.pop()
                    r = c.post("/api/events", content=body, headers={"Content-Type": "application/x-ndjson"})
                    if r.status_code != 200:
                        errors.append(f"{r.status_code} {r.text[:200]}")
                        return
                    with lock:
                        accepted[0] += r.json()["accepted"]

        threads = [threading.Thread(target=client) for _ in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(30)
    assert not errors and accepted[0] == n, (errors[:3], accepted[0])
    rate = n / seconds
    print(
        f"  POST /api/events ({clients} clients, {batch:,}/request): {n:,} events in {seconds:.2f}s: "
        f"{rate:,.0f} events/s",
        flush=True,
    )
    return rate


def events_part(args: argparse.Namespace, home: Path) -> None:
    path = home / "events.jsonl"
    write_events(path, args.events, TENANTS)
    sqlite_url = f"sqlite:///{home / 'events.db'}"
    print(f"\n1. {args.events:,} events, {TENANTS} tenants, {'PostgreSQL' if args.pg else 'SQLite'}")
    ingest_rates, api_rates = [], []
    for _ in range(args.repeat):
        # A fresh database (or PostgreSQL schema) for every run.
        if args.pg:
            with pg_schema(args.pg) as url:
                ingest_rates.append(run_ingest(url, path, args.events))
            with pg_schema(args.pg) as url:
                api_rates.append(run_api(url, path, args.events, args.batch, args.clients, home))
        else:
            ingest_rates.append(run_ingest(sqlite_url, path, args.events))
            api_rates.append(run_api(sqlite_url, path, args.events, args.batch, args.clients, home))
    best_ingest, best_api = max(ingest_rates), max(api_rates)
    ratio = best_api / best_ingest
    print(
        f"  best of {args.repeat}: ingest {best_ingest:,.0f}/s, API {best_api:,.0f}/s: "
        f"API / ingest = {ratio:.2f}x (goal >= 0.5x: {'met' if ratio >= 0.5 else 'MISSED'})"
    )


def sandbox(conn: Connection, tenants: int, latency: float) -> None:
    """Child process: the sandbox providers; answers "count" with the GET requests seen so far."""
    from usagectl.sandbox import Sandbox

    with Sandbox(seed=5, latency=latency) as sb:
        conn.send(sb.toml(sb.config(bench_tenants(tenants), max_retries=6)))
        while (cmd := conn.recv()) != "stop":
            assert cmd == "count"
            conn.send(sum(1 for srv in sb.servers for s in srv.seen if s.method == "GET"))


def collect_part(args: argparse.Namespace, home: Path) -> None:
    from usagectl.collector import collect, default_window
    from usagectl.config import parse
    from usagectl.periods import Window
    from usagectl.providers.registry import HTTP_SOURCES, open_providers
    from usagectl.store.engine import open_store
    from usagectl.store.tenants import sync_tenants

    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(
        target=sandbox, args=(child, args.tenants, args.latency), daemon=True
    )
    proc.start()
    cfg = parse(tomllib.loads(parent.recv()), "sandbox config")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    today = now.date()
    print(
        f"\n2. collect: {args.tenants:,} tenants x 3 providers, sandbox latency {args.latency * 1000:.0f} ms, "
        f"{cfg.collect.workers} workers, SQLite"
    )
    store = open_store(f"sqlite:///{home / 'collect.db'}")
    sync_tenants(store, cfg.tenants)
    figures = {}
    with open_providers(cfg, store, only=HTTP_SOURCES) as providers:
        runs = [
            ("nightly (yesterday + 2 lookback days)", default_window(cfg, today=today), None),
            ("hourly collect --today", Window.day(today), now),
            ("hourly collect --today, next hour", Window.day(today), now + timedelta(hours=1)),
        ]
        for name, window, at in runs:
            parent.send("count")
            before = parent.recv()
            t0 = time.perf_counter()
            result = collect(store, cfg, providers, window, today=today, now=at)
            wall = time.perf_counter() - t0
            parent.send("count")
            requests = parent.recv() - before
            assert not result.failed, [o.errors for o in result.failed][:3]
            figures[name] = (requests, wall)
            print(
                f"  {name}: {requests:,} requests, {wall:.1f}s wall, {len(result.written):,} rows", flush=True
            )
    store.close()
    parent.send("stop")
    proc.join(10)
    (n_req, n_wall), (h_req, h_wall) = figures[runs[0][0]], figures[runs[1][0]]
    print(
        f"  hourly / nightly: requests {h_req / n_req:.2f}x, wall {h_wall / n_wall:.2f}x; 24 hourly runs a day: "
        f"{24 * h_req:,} requests ({24 * h_req / n_req:.1f}x the nightly run's)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2, help="alternating runs of each; the best is kept")
    ap.add_argument(
        "--pg", metavar="URL", help="part 1 on this PostgreSQL database (its tables are replaced)"
    )
    ap.add_argument("--tenants", type=int, default=1000)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--skip-events", action="store_true")
    ap.add_argument("--skip-collect", action="store_true")
    args = ap.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory(prefix="usagectl-bench-today-") as tmp:
        home = Path(tmp)
        if not args.skip_events:
            events_part(args, home)
        if not args.skip_collect:
            collect_part(args, home)
    return 0


if __name__ == "__main__":
    sys.exit(main())
