"""Benchmark data: N tenants x D days x 4 sources of raw metrics, in usagectl's own schema.

    python bench/gen_data.py [--tenants 10000] [--days 90] [--pg postgresql://postgres@127.0.0.1:5432/bench]

SQLite: the file is created with `usagectl.store.engine.open_store` (so: the real migrations) and filled with
the raw DBAPI's executemany in big transactions; it is cached under $USAGECTL_BENCH_CACHE (default
/tmp/usagectl-bench), keyed by the parameters, so a rerun is instant (a cached file behind the schema head is
upgraded in place by usagectl's migrations). `rolled_up_db()` adds a
second cached file with the rollups computed by `usagectl.rollup.run_rollup` (for the report and export
benchmarks). PostgreSQL (--pg URL): the schema is upgraded with usagectl's migrations, the bench tables are
emptied and filled with COPY.

Data: sources twilio (SMS, MMS, voice, provider cost), sendgrid (emails), openai (AI tokens, provider cost) and
events (jobs, storage gauge); every tenant has every source every day. One tenant in ten also has per-model AI
rows (two models) in usage_metrics_ai_models. Plans cycle starter / pro / elite. Values are deterministic.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from usagectl.config import Config, parse
from usagectl.store.tables import METRIC_COLUMNS, SCHEMA_HEAD

GEN_VERSION = 2  # bump when the generated data changes
START = date(2026, 1, 1)
SOURCES = ("twilio", "sendgrid", "openai", "events")
PLANS = ("starter", "pro", "elite")
MODELS = ("gpt-4o", "gpt-4o-mini")
AI_MODEL_EVERY = 10  # one tenant in ten has per-model AI rows
NOW = datetime(2025, 12, 1, tzinfo=UTC)  # when the tenants were added

CACHE = Path(os.environ.get("USAGECTL_BENCH_CACHE", "/tmp/usagectl-bench"))

_COLS = ("tenant_id", "date", "source", *METRIC_COLUMNS, "storage_bytes", "provider_cost_usd")


def bench_config(tenants: int = 0) -> Config:
    """The config the benchmarks price with: two price books (v2 from mid-February), plan overrides and
    per-model AI rates, so every part of the rollup statement runs. `tenants` > 0 lists that many tenants."""
    return parse(
        {
            # The data lies months back: sealing by age would turn the nightly benchmark's re-collected day into
            # adjustments. The benchmarks measure the rollup of unsealed days.
            "rollup": {"seal_after_days": 0},
            "pricing": {
                "books": [
                    {
                        "version": "v1",
                        "effective_from": "2025-01-01",
                        "sms": "0.014",
                        "mms": "0.02",
                        "voice_minute": "0.015",
                        "email": "0.0005",
                        "ai_token": "0.000002",
                        "ai_models": {
                            "gpt-4o": {
                                "input": "0.0000025",
                                "output": "0.00001",
                                "cached_input": "0.00000125",
                            },
                            "gpt-4o-mini": {"input": "0.00000015", "output": "0.0000006"},
                        },
                    },
                    {
                        "version": "v2",
                        "effective_from": "2026-02-15",
                        "sms": "0.0125",
                        "mms": "0.02",
                        "voice_minute": "0.014",
                        "email": "0.0004",
                        "ai_token": "0.000002",
                        "ai_models": {"gpt-4o-mini": {"input": "0.00000015", "output": "0.0000006"}},
                    },
                ]
            },
            "plans": {
                "pro": {"overrides": {"sms": "0.012", "email": "0.0004"}, "included": {"sms": 5000}},
                "elite": {"overrides": {"sms": "0.010", "voice_minute": "0.012"}, "included": {"sms": 50000}},
            },
            "tenants": [{"slug": slug(i), "plan": PLANS[(i - 1) % 3]} for i in range(1, tenants + 1)],
        }
    )


def slug(tenant_id: int) -> str:
    return f"t{tenant_id:05d}"


def collected_at(tenant_id: int, day: int) -> datetime:
    """When collect wrote a tenant-day: the next morning from 02:00 UTC, tenants one after another."""
    return datetime.combine(START, datetime.min.time(), UTC) + timedelta(
        days=day + 1, hours=2, microseconds=tenant_id * 250_000
    )


def _metric_rows(tenant_id: int, d: int) -> Iterator[tuple[str, tuple[int, ...], int | None, int | None]]:
    """(source, 10 counts, storage_bytes, provider_cost micro-USD) of one tenant-day."""
    scale = 1 + (tenant_id * 7919) % 97  # tenants differ by two orders of magnitude
    wiggle = 1 + (tenant_id + d * 31) % 13
    sms_out = scale * wiggle * 3
    sms_in = scale * wiggle
    mms = scale * (d % 3)
    voice = scale * (wiggle % 5)
    sent = scale * wiggle * 20
    tin, tout = scale * wiggle * 1500, scale * wiggle * 400
    yield "twilio", (sms_out, sms_in, mms, mms // 2, voice, 0, 0, 0, 0, 0), None, (sms_out + sms_in) * 7_500
    yield "sendgrid", (0, 0, 0, 0, 0, sent, sent - wiggle, 0, 0, 0), None, None
    yield "openai", (0, 0, 0, 0, 0, 0, 0, tin, tout, 0), None, tin * 2 + tout * 8
    yield "events", (0, 0, 0, 0, 0, 0, 0, 0, 0, scale * wiggle * 2), scale * 1_000_000 + d * 4096, None


def _model_rows(tenant_id: int, d: int) -> Iterator[tuple[str, int, int, int]]:
    """(model, tokens in, out, cached in) of one tenant-day: a subset of its openai row."""
    if tenant_id % AI_MODEL_EVERY:
        return
    scale = 1 + (tenant_id * 7919) % 97
    wiggle = 1 + (tenant_id + d * 31) % 13
    tin, tout = scale * wiggle * 1500, scale * wiggle * 400
    # 60% / 30% by model, the rest unattributed.
    yield MODELS[0], tin * 6 // 10, tout * 6 // 10, tin // 10
    yield MODELS[1], tin * 3 // 10, tout * 3 // 10, 0


def _sqlite_ts(dt: datetime) -> str:
    # SQLAlchemy's SQLite DateTime storage format (naive UTC, see store.tables.UTCDateTime).
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def cache_path(tenants: int, days: int, kind: str = "raw") -> Path:
    return CACHE / f"{kind}-t{tenants}-d{days}-g{GEN_VERSION}.db"


def _at_head(path: Path) -> Path:
    """A cached file made before a schema change is upgraded in place with usagectl's migrations."""
    con = sqlite3.connect(path)
    rev = con.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    con.close()
    if rev != SCHEMA_HEAD:
        from usagectl.store.engine import make_engine, upgrade

        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()
    return path


def _fill_sqlite(path: Path, tenants: int, days: int) -> None:
    from usagectl.store.engine import open_store

    open_store(f"sqlite:///{path}").close()  # creates the file through the real migrations
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    ts = _sqlite_ts(NOW)
    dates = [(START + timedelta(days=d)).isoformat() for d in range(days)]
    with con:
        con.executemany(
            "INSERT INTO tenants (id, slug, name, plan_tier, active, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, 1, ?, ?)",
            [(i, slug(i), f"Tenant {i}", PLANS[(i - 1) % 3], ts, ts) for i in range(1, tenants + 1)],
        )
    cols = ", ".join((*_COLS, "created_at", "updated_at"))
    marks = ", ".join("?" * (len(_COLS) + 2))
    sql = f"INSERT INTO usage_metrics ({cols}) VALUES ({marks})"
    model_sql = (
        "INSERT INTO usage_metrics_ai_models (tenant_id, date, source, model, ai_tokens_in, ai_tokens_out, "
        "ai_tokens_cached_in) VALUES (?, ?, 'openai', ?, ?, ?, ?)"
    )
    # Day by day, all tenants each day: the order in which a daily collect writes them.
    for d in range(days):
        batch: list[tuple[Any, ...]] = []
        models: list[tuple[Any, ...]] = []
        day = dates[d]
        for tid in range(1, tenants + 1):
            at = _sqlite_ts(collected_at(tid, d))
            for source, counts, storage, cost in _metric_rows(tid, d):
                batch.append((tid, day, source, *counts, storage, cost, at, at))
            for model, tin, tout, cached in _model_rows(tid, d):
                models.append((tid, day, model, tin, tout, cached))
        with con:
            con.executemany(sql, batch)
            con.executemany(model_sql, models)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def raw_db(tenants: int = 10_000, days: int = 90, *, quiet: bool = False) -> Path:
    """The cached SQLite file with raw metrics only (no rollups). Treat it as read-only: copy it first."""
    path = cache_path(tenants, days)
    if path.exists():
        return _at_head(path)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    t0 = time.perf_counter()
    _fill_sqlite(tmp, tenants, days)
    tmp.rename(path)
    if not quiet:
        print(
            f"generated {path} ({tenants * days * len(SOURCES):,} raw rows) "
            f"in {time.perf_counter() - t0:.1f}s",
            file=sys.stderr,
        )
    return path


def copy_db(src: Path, dst: Path) -> Path:
    """Copy a (checkpointed) SQLite file, dropping any stale WAL of the destination."""
    for p in (dst, Path(f"{dst}-wal"), Path(f"{dst}-shm")):
        p.unlink(missing_ok=True)
    shutil.copyfile(src, dst)
    return dst


def rolled_up_db(tenants: int = 10_000, days: int = 90, *, quiet: bool = False) -> Path:
    """The raw file plus its rollups (every tenant-day), computed by usagectl; cached like raw_db."""
    path = cache_path(tenants, days, "rolled")
    if path.exists():
        return _at_head(path)
    from usagectl.periods import Window
    from usagectl.rollup import run_rollup
    from usagectl.store.engine import open_store

    tmp = copy_db(raw_db(tenants, days, quiet=quiet), path.with_suffix(".tmp"))
    store = open_store(f"sqlite:///{tmp}")
    run_rollup(store, bench_config(), Window(START, START + timedelta(days=days)))
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    tmp.rename(path)
    return path


def fill_postgres(url: str, tenants: int, days: int) -> None:
    """Upgrade the schema at `url`, empty the bench tables and COPY the same data in."""
    import psycopg

    from usagectl.store.engine import make_engine, upgrade

    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    dates = [START + timedelta(days=d) for d in range(days)]
    with psycopg.connect(plain) as con, con.cursor() as cur:
        cur.execute(
            "TRUNCATE api_tokens, usage_rollups_daily, usage_metrics_ai_models, usage_metrics, usage_events, "
            "collection_runs, tenants RESTART IDENTITY"
        )
        with cur.copy(
            "COPY tenants (id, slug, name, plan_tier, active, created_at, updated_at) FROM STDIN"
        ) as cp:
            for i in range(1, tenants + 1):
                cp.write_row((i, slug(i), f"Tenant {i}", PLANS[(i - 1) % 3], True, NOW, NOW))
        cur.execute("SELECT setval('tenants_id_seq', %s)", (tenants,))
        with cur.copy(
            f"COPY usage_metrics ({', '.join((*_COLS, 'created_at', 'updated_at'))}) FROM STDIN"
        ) as cp:
            for d in range(days):
                for tid in range(1, tenants + 1):
                    at = collected_at(tid, d)
                    for source, counts, storage, cost in _metric_rows(tid, d):
                        cp.write_row((tid, dates[d], source, *counts, storage, cost, at, at))
        with cur.copy(
            "COPY usage_metrics_ai_models (tenant_id, date, source, model, ai_tokens_in, ai_tokens_out, "
            "ai_tokens_cached_in) FROM STDIN"
        ) as cp:
            for d in range(days):
                for tid in range(1, tenants + 1):
                    for model, tin, tout, cached in _model_rows(tid, d):
                        cp.write_row((tid, dates[d], "openai", model, tin, tout, cached))
        cur.execute("ANALYZE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--tenants", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--pg", metavar="URL", help="also fill this PostgreSQL database (its data is replaced)")
    ap.add_argument("--rollups", action="store_true", help="also build the cached rolled-up file")
    args = ap.parse_args()
    t0 = time.perf_counter()
    print(raw_db(args.tenants, args.days))
    print(f"  ({time.perf_counter() - t0:.1f}s)")
    if args.rollups:
        t0 = time.perf_counter()
        print(rolled_up_db(args.tenants, args.days))
        print(f"  ({time.perf_counter() - t0:.1f}s)")
    if args.pg:
        t0 = time.perf_counter()
        fill_postgres(args.pg, args.tenants, args.days)
        print(f"{args.pg}: filled in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
