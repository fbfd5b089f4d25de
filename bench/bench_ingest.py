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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Rate:
    """Rows per second of wall-clock time and of this process's CPU time (less disturbed by other load)."""

    wall: float
    cpu: float

    def __str__(self) -> str:
        return f"{self.wall:,.0f} rows/s wall, {self.cpu:,.0f} rows/s CPU"


def timed(rows: int, t0: float, c0: float) -> Rate:
    return Rate(rows / (time.perf_counter() - t0), rows / (time.process_time() - c0))


def run_ours(url: str, path: Path, tenants: int) -> tuple[Rate, Rate]:
    store = fresh_store(url, tenants)
    cfg = parse({"tenants": [{"slug": f"t{i:04d}"} for i in range(tenants)]})
    rates = []
    for expect_new in (True, False):
        t0, c0 = time.perf_counter(), time.process_time()
        with path.open("rb") as f:
            r = ingest(store, cfg, f, name=str(path))
        rate = timed(r.read, t0, c0)
        assert r.rejected == 0 and (r.inserted == r.read if expect_new else r.duplicates == r.read), r
        rates.append(rate)
        print(f"  ours {'first' if expect_new else 'again'}: {r.summary()}: {rate}", flush=True)
    store.close()
    return rates[0], rates[1]


def run_bare(db: Path, n: int, tenants: int) -> Rate:
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
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, n, BATCH_ROWS):
        conn.executemany(sql, rows[i : i + BATCH_ROWS])
        conn.commit()
    rate = timed(n, t0, c0)
    (count,) = conn.execute("SELECT count(*) FROM usage_events").fetchone()
    assert count == n
    conn.close()
    print(f"  bare sqlite3 executemany: {n:,} rows: {rate}", flush=True)
    return rate


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
    ap.add_argument(
        "--repeat", type=int, default=2, help="SQLite runs, alternating ours and bare; best is kept"
    )
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
    # Alternate the runs and keep each one's best, so load from other processes skews the ratio less.
    runs = []
    for _ in range(args.repeat):
        first, again = run_ours(f"sqlite:///{work / 'usagectl-bench-ours.db'}", path, args.tenants)
        runs.append((first, again, run_bare(work / "usagectl-bench-bare.db", args.events, args.tenants)))
    ours, again, bare = (Rate(max(r[i].wall for r in runs), max(r[i].cpu for r in runs)) for i in range(3))
    print(f"best of {args.repeat}: ours {ours}; ours re-ingest {again}; bare {bare}")
    print(
        f"ratio ours/bare: first ingest {ours.wall / bare.wall:.2f}x wall, {ours.cpu / bare.cpu:.2f}x CPU; "
        f"re-ingest {again.wall / bare.wall:.2f}x wall (target >= 0.5x)"
    )
    if args.pg_url:
        print("PostgreSQL:")
        with pg_schema(args.pg_url) as url:
            run_ours(url, path, args.tenants)
    path.unlink()


if __name__ == "__main__":
    main()
