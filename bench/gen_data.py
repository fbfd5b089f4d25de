"""Benchmark data: N tenants x D days x 4 sources of raw metrics, in usagectl's own schema.

    python bench/gen_data.py [--tenants 10000] [--days 90] [--pg postgresql://postgres@127.0.0.1:5432/bench]

Both backends generate the rows in SQL (`_generate_sql`: INSERT ... SELECT over generated series, no Python loop
per row), so 100,000 tenants x 30 days is minutes, not an hour:

    python bench/gen_data.py --tenants 100000 --days 30 --pg postgresql://postgres@127.0.0.1:5432/bench

SQLite: the file is created with `usagectl.store.engine.open_store` (so: the real migrations); it is cached under $USAGECTL_BENCH_CACHE (default
/tmp/usagectl-bench), keyed by the parameters, so a rerun is instant (a cached file behind the schema head is
upgraded in place by usagectl's migrations). `rolled_up_db()` adds a
second cached file with the rollups computed by `usagectl.rollup.run_rollup` (for the report and export
benchmarks). PostgreSQL (--pg URL): the schema is upgraded with usagectl's migrations, every table holding
tenants' data is emptied (TRUNCATE ... CASCADE) and generated again.

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
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from usagectl.config import Config, parse
from usagectl.store.tables import METRIC_COLUMNS, SCHEMA_HEAD

GEN_VERSION = 3  # bump when the generated data changes
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
    return parse(bench_config_dict(tenants))


def bench_config_dict(tenants: int = 0) -> dict[str, Any]:
    """`bench_config` as the TOML document it parses (a child `usagectl` reads the same config)."""
    return {
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


def slug(tenant_id: int) -> str:
    return f"t{tenant_id:05d}"


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
    with con:
        for statement in _generate_sql(tenants, days, "sqlite"):
            con.execute(statement)
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


def _generate_sql(tenants: int, days: int, dialect: str) -> list[str]:
    """The bench data as INSERT ... SELECT statements: the database generates the rows itself, no Python loop
    per row. Rows go in day by day, all tenants each day (the order in which a daily collect writes them); a
    tenant-day's data is collected the next morning from 02:00 UTC, tenants a quarter second apart.

    Per tenant-day, with scale = 1 + (tenant * 7919) % 97 (tenants differ by two orders of magnitude) and
    wiggle = 1 + (tenant + day * 31) % 13: twilio 3 x scale x wiggle SMS out, scale x wiggle in, scale x (day % 3)
    MMS out (half as many in), scale x (wiggle % 5) voice minutes, a cost of $0.0075 per SMS; sendgrid 20 x
    scale x wiggle emails; openai 1500 and 400 x scale x wiggle tokens in and out at 2 and 8 micro-USD each;
    events 2 x scale x wiggle jobs and a storage gauge. One tenant in ten has per-model rows: 60% gpt-4o (a tenth
    of its input cached), 30% gpt-4o-mini, the rest unattributed."""
    pg = dialect == "postgresql"
    if pg:
        days_cte = f"days(d) AS (SELECT generate_series(0, {days - 1}))"
        ids_cte = f"ids(tid) AS (SELECT generate_series(1, {tenants}))"
        day = f"DATE '{START.isoformat()}' + d"
        at = (
            f"TIMESTAMPTZ '{START.isoformat()} 00:00:00+00' + (d + 1) * INTERVAL '1 day' + INTERVAL '2 hours' "
            "+ tid * INTERVAL '250 milliseconds'"
        )
        slug_expr, now, active = (
            "'t' || repeat('0', greatest(0, 5 - length(tid::text))) || tid",
            f"TIMESTAMPTZ '{NOW.isoformat()}'",
            "true",
        )
        head = "WITH"
    else:
        days_cte = f"days(d) AS (SELECT 0 UNION ALL SELECT d + 1 FROM days WHERE d + 1 < {days})"
        ids_cte = f"ids(tid) AS (SELECT 1 UNION ALL SELECT tid + 1 FROM ids WHERE tid + 1 <= {tenants})"
        day = f"date('{START.isoformat()}', '+' || d || ' days')"
        # SQLAlchemy's SQLite DateTime text (naive UTC, microseconds): %f gives milliseconds, tid/4 s needs no more.
        at = (
            f"strftime('%Y-%m-%d %H:%M:%f', '{START.isoformat()}', '+' || (d + 1) || ' days', "
            "'+' || (7200 + tid * 0.25) || ' seconds') || '000'"
        )
        slug_expr, now, active = "printf('t%05d', tid)", f"'{_sqlite_ts(NOW)}'", "1"
        head = "WITH RECURSIVE"
    base = (
        f"{head} {days_cte}, {ids_cte}, "
        "src(k, source) AS (VALUES (0, 'twilio'), (1, 'sendgrid'), (2, 'openai'), (3, 'events')), "
        "b AS (SELECT d, tid, 1 + (tid * 7919) % 97 AS scale, 1 + (tid + d * 31) % 13 AS wiggle FROM days, ids)"
    )

    def when(k: int, expr: str, other: str = "0") -> str:
        return f"CASE k WHEN {k} THEN {expr} ELSE {other} END"

    counts = [
        when(0, "scale * wiggle * 3"),  # sms out
        when(0, "scale * wiggle"),  # sms in
        when(0, "scale * (d % 3)"),  # mms out
        when(0, "scale * (d % 3) / 2"),  # mms in
        when(0, "scale * (wiggle % 5)"),  # voice
        when(1, "scale * wiggle * 20"),  # emails sent
        when(1, "scale * wiggle * 20 - wiggle"),  # delivered
        when(2, "scale * wiggle * 1500"),  # ai in
        when(2, "scale * wiggle * 400"),  # ai out
        when(3, "scale * wiggle * 2"),  # jobs
        when(3, "scale * 1000000 + d * 4096", "NULL"),  # storage
        "CASE k WHEN 0 THEN scale * wiggle * 4 * 7500 "
        "WHEN 2 THEN scale * wiggle * 1500 * 2 + scale * wiggle * 400 * 8 ELSE NULL END",  # provider cost
    ]
    metrics = (
        f"INSERT INTO usage_metrics ({', '.join((*_COLS, 'created_at', 'updated_at'))}) "
        f"{base} SELECT tid, {day}, source, {', '.join(counts)}, {at}, {at} FROM b, src ORDER BY d, tid, k"
    )
    # (model, share of tokens in and out, cached in): 60% / 30% by model, the rest unattributed.
    models = (
        "INSERT INTO usage_metrics_ai_models (tenant_id, date, source, model, ai_tokens_in, ai_tokens_out, "
        f"ai_tokens_cached_in) {base}, "
        f"m(j, model, share, cached) AS (VALUES (0, '{MODELS[0]}', 6, 1), (1, '{MODELS[1]}', 3, 0)) "
        f"SELECT tid, {day}, 'openai', model, scale * wiggle * 1500 * share / 10, scale * wiggle * 400 * share / 10, "
        f"scale * wiggle * 1500 * cached / 10 FROM b, m WHERE tid % {AI_MODEL_EVERY} = 0 ORDER BY d, tid, j"
    )
    plans = " ".join(f"WHEN {i} THEN '{p}'" for i, p in enumerate(PLANS))
    people = (
        # Origin "directory": a platform of this size keeps its tenants in the tenant directory, not in the TOML's
        # [[tenants]], so the config sync every command runs reads none of them.
        "INSERT INTO tenants (id, slug, name, plan_tier, active, origin, created_at, updated_at) "
        f"{head} {ids_cte} "
        f"SELECT tid, {slug_expr}, 'Tenant ' || tid, CASE (tid - 1) % 3 {plans} END, {active}, 'directory', "
        f"{now}, {now} "
        "FROM ids"
    )
    return [people, metrics, models]


def fill_postgres(url: str, tenants: int, days: int) -> None:
    """Upgrade the schema at `url`, empty every table that holds tenants' data and generate the same data in SQL."""
    import psycopg

    from usagectl.store.engine import make_engine, upgrade

    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain) as con, con.cursor() as cur:
        # CASCADE: alerts, usage_adjustments and every later table that references tenants are emptied too.
        cur.execute(
            "TRUNCATE tenants, usage_metrics, usage_events, collection_runs, seals RESTART IDENTITY CASCADE"
        )
        for statement in _generate_sql(tenants, days, "postgresql"):
            cur.execute(statement)  # type: ignore[arg-type]
        cur.execute("SELECT setval('tenants_id_seq', %s)", (tenants,))
    with psycopg.connect(plain, autocommit=True) as con:
        con.execute("VACUUM ANALYZE")


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
