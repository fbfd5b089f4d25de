"""Event ingest at scale: N events (JSONL) into usage_events with dedup, against a bare sqlite3 baseline.

    python bench/bench_ingest.py [--events 1000000] [--tenants 100] [--pg-url postgresql://...]

Ours: `usagectl.events.ingest` reading a JSONL file (JSON parsing, validation, tenant lookup, time parsing,
INSERT ... ON CONFLICT DO NOTHING in batches of 5,000 per transaction), then the same file again (all duplicates).
Bare: Python's sqlite3 `executemany` of ready-made tuples into the same migrated table (same unique index on
(source, event_id) and the same (tenant_id, occurred_at) index), same pragmas (WAL, synchronous=NORMAL), same
batch size and one commit per batch, ON CONFLICT DO NOTHING. Bare does no parsing at all, so the ratio is the
cost of reading and validating the file. Target: ours >= 0.5x bare.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from usagectl.config import parse
from usagectl.events import BATCH_ROWS, ingest
from usagectl.store.engine import Store, make_engine, open_store, upgrade
from usagectl.store.tenants import sync_tenants

START = datetime(2026, 11, 1, tzinfo=UTC)
METRICS = ("jobs_executed", "storage_bytes")


def write_events(path: Path, n: int, tenants: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            at = START + timedelta(seconds=i * 2)
            f.write(
                json.dumps(
                    {
                        "specversion": "1.0",
                        "id": f"evt-{i:09d}",
                        "source": f"worker-{i % 4}",
                        "subject": f"t{i % tenants:04d}",
                        "type": METRICS[i % 7 == 0],
                        "time": at.isoformat().replace("+00:00", "Z"),
                        "data": {"value": i % 1000},
                    }
                )
                + "\n"
            )


def fresh_store(url: str, tenants: int) -> Store:
    if url.startswith("sqlite:///"):
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(url[10:] + suffix):
                os.remove(url[10:] + suffix)
    e = make_engine(url)
    upgrade(e)
    e.dispose()
    store = open_store(url)
    cfg = parse({"tenants": [{"slug": f"t{i:04d}"} for i in range(tenants)]})
    sync_tenants(store, cfg.tenants)
    return store


def run_ours(url: str, path: Path, tenants: int) -> tuple[float, float]:
    store = fresh_store(url, tenants)
    cfg = parse({"tenants": [{"slug": f"t{i:04d}"} for i in range(tenants)]})
    rates = []
    for expect_new in (True, False):
        t0 = time.perf_counter()
        with path.open("rb") as f:
            r = ingest(store, cfg, f, name=str(path))
        dt = time.perf_counter() - t0
        assert r.rejected == 0 and (r.inserted == r.read if expect_new else r.duplicates == r.read), r
        rates.append(r.read / dt)
        print(
            f"  ours {'first' if expect_new else 'again'}: {r.summary()} in {dt:.2f}s = {r.read / dt:,.0f} rows/s"
        )
    store.close()
    return rates[0], rates[1]


def run_bare(db: Path, n: int, tenants: int) -> float:
    url = f"sqlite:///{db}"
    fresh_store(url, tenants).close()
    # Ready-made rows in exactly the stored form; building them is not timed.
    received = datetime.now(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    rows = [
        (
            1 + i % tenants,
            f"evt-{i:09d}",
            f"worker-{i % 4}",
            METRICS[i % 7 == 0],
            i % 1000,
            (START + timedelta(seconds=i * 2)).replace(tzinfo=None).isoformat(" ", "microseconds"),
            received,
        )
        for i in range(n)
    ]
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    sql = (
        "INSERT INTO usage_events (tenant_id, event_id, source, metric, value, occurred_at, received_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, event_id) DO NOTHING"
    )
    t0 = time.perf_counter()
    for i in range(0, n, BATCH_ROWS):
        conn.executemany(sql, rows[i : i + BATCH_ROWS])
        conn.commit()
    dt = time.perf_counter() - t0
    (count,) = conn.execute("SELECT count(*) FROM usage_events").fetchone()
    assert count == n
    conn.close()
    print(f"  bare sqlite3 executemany: {n:,} rows in {dt:.2f}s = {n / dt:,.0f} rows/s")
    return n / dt


@contextmanager
def pg_schema(base_url: str) -> Iterator[str]:
    """A throw-away schema in the given database, selected through search_path."""
    import psycopg

    name = f"usagectl_bench_{os.getpid()}"
    plain = base_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    sep = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{sep}options={quote(f'-csearch_path={name}')}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--tenants", type=int, default=100)
    ap.add_argument(
        "--pg-url", help="also run ours against this PostgreSQL database (its schema is replaced)"
    )
    ap.add_argument("--dir", default=tempfile.gettempdir())
    args = ap.parse_args()
    work = Path(args.dir)
    path = work / "usagectl-bench-events.jsonl"
    t0 = time.perf_counter()
    write_events(path, args.events, args.tenants)
    size = path.stat().st_size
    print(
        f"{args.events:,} events, {args.tenants} tenants, {size / 1e6:.0f} MB JSONL ({time.perf_counter() - t0:.1f}s to write)"
    )

    print("SQLite:")
    ours, again = run_ours(f"sqlite:///{work / 'usagectl-bench-ours.db'}", path, args.tenants)
    bare = run_bare(work / "usagectl-bench-bare.db", args.events, args.tenants)
    print(
        f"  ratio ours/bare: {ours / bare:.2f}x first ingest, {again / bare:.2f}x re-ingest (target >= 0.5x)"
    )
    if args.pg_url:
        print("PostgreSQL:")
        with pg_schema(args.pg_url) as url:
            run_ours(url, path, args.tenants)
    path.unlink()


if __name__ == "__main__":
    main()
