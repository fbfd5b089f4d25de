"""`usagectl directory sync` at scale: N tenants from a SQL source, first run and unchanged second run, against the
bare SELECT of the same rows.

    python bench/bench_directory.py [--tenants 100000] [--runs 3] [--pg-url postgresql://.../bench_i19_store]
        [--platform-url postgresql://.../bench_i19_platform]

The platform is its own SQLite file (one table, a row per tenant: slug, name, plan, a phone number, a SendGrid
subuser and an OpenAI project). Bare: a fresh engine on it running the same query and fetching every row
(`.all()`), what any reader of the platform pays. Ours: `usagectl.directory.sync_directory` with kind "sql" and
that query: reading, validating each row, diffing against the directory tables and writing. First run: into an
empty database (each run a fresh one: N tenants, N plan periods, 3N mappings). Second run: the same source again,
unchanged. Targets: first <= 3x bare, unchanged <= 1.5x bare, and the unchanged run writes 0 rows. With --pg-url
the usagectl database is that PostgreSQL database (its tables are dropped and migrated per first run; use your own
bench database, never `test`). With --platform-url the platform's table is in that PostgreSQL database instead
(created there, dropped at the end), and the bare SELECT and the sync both read it over the network.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
from datetime import date
from pathlib import Path

from sqlalchemy import create_engine, text

from common import machine, median, timed, verdict
from usagectl.config import parse
from usagectl.directory import sync_directory
from usagectl.store.engine import Store, make_engine, open_store, upgrade

QUERY = "SELECT slug, name, plan, phone_numbers, sendgrid_subuser, openai_project_ids FROM tenants"
DAY1 = date(2026, 11, 1)
DAY2 = date(2026, 11, 2)


def make_platform(path: Path, n: int) -> None:
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE tenants (slug TEXT PRIMARY KEY, name TEXT, plan TEXT, phone_numbers TEXT, "
        "sendgrid_subuser TEXT, openai_project_ids TEXT)"
    )
    plans = ("starter", "pro", "elite")
    con.executemany(
        "INSERT INTO tenants VALUES (?, ?, ?, ?, ?, ?)",
        (
            (f"t{i:06d}", f"Tenant {i}", plans[i % 3], f"+1500{i:07d}", f"sub{i:06d}", f"proj_{i:06d}")
            for i in range(n)
        ),
    )
    con.commit()
    con.close()


def make_pg_platform(url: str, n: int) -> None:
    engine = create_engine(url)
    plans = ("starter", "pro", "elite")
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS tenants"))
        conn.execute(
            text(
                "CREATE TABLE tenants (slug TEXT PRIMARY KEY, name TEXT, plan TEXT, phone_numbers TEXT, "
                "sendgrid_subuser TEXT, openai_project_ids TEXT)"
            )
        )
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        with cur.copy("COPY tenants FROM STDIN") as copy:  # type: ignore[attr-defined]
            for i in range(n):
                copy.write_row(
                    (
                        f"t{i:06d}",
                        f"Tenant {i}",
                        plans[i % 3],
                        f"+1500{i:07d}",
                        f"sub{i:06d}",
                        f"proj_{i:06d}",
                    )
                )
        conn.execute(text("ANALYZE tenants"))
    engine.dispose()


def drop_pg_platform(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS tenants"))
    engine.dispose()


def bare(source_url: str) -> int:
    engine = create_engine(source_url)
    try:
        with engine.connect() as conn:
            return len(conn.execute(text(QUERY)).all())
    finally:
        engine.dispose()


def bare_driver(source_url: str) -> int:
    """The same SELECT through the driver's own cursor (plain tuples, no SQLAlchemy Row): the cheapest read."""
    engine = create_engine(source_url)
    try:
        with engine.connect() as conn:
            cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            cur.execute(QUERY)
            n = 0
            while batch := cur.fetchmany(5000):
                n += len(batch)
            cur.close()
            return n
    finally:
        engine.dispose()


def fresh_store(folder: Path, pg_url: str | None, i: int) -> Store:
    if pg_url is None:
        return open_store(f"sqlite:///{folder / f'usage-{i}.db'}")
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(engine)
    engine.dispose()
    return open_store(pg_url)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenants", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pg-url", default=None)
    ap.add_argument("--platform-url", default=None, help="the platform's table in this PostgreSQL database")
    args = ap.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory(prefix="bench-directory-") as tmp:
        folder = Path(tmp)
        if args.platform_url:
            source_url = args.platform_url
            make_pg_platform(source_url, args.tenants)
        else:
            platform = folder / "platform.db"
            make_platform(platform, args.tenants)
            source_url = f"sqlite:///{platform}"
        cfg = parse({"directory": {"kind": "sql", "url": source_url, "query": QUERY}})
        bare(source_url)  # warm the page cache
        base, first, second, base_cpu, first_cpu, second_cpu = [], [], [], [], [], []
        raw, raw_cpu = [], []
        written_second: list[int] = []
        for i in range(args.runs):
            wall, cpu = timed(lambda: bare(source_url))
            base.append(wall)
            base_cpu.append(cpu)
            wall, cpu = timed(lambda: bare_driver(source_url))
            raw.append(wall)
            raw_cpu.append(cpu)
            store = fresh_store(folder, args.pg_url, i)
            try:
                wall, cpu = timed(lambda s=store: sync_directory(s, cfg, today=DAY1))  # type: ignore[misc]
                first.append(wall)
                first_cpu.append(cpu)
                wall, cpu = timed(
                    lambda s=store: written_second.append(  # type: ignore[misc]
                        sync_directory(s, cfg, today=DAY2).diff.rows_written
                    )
                )
                second.append(wall)
                second_cpu.append(cpu)
            finally:
                store.close()
        backend = "PostgreSQL" if args.pg_url else "SQLite"
        source = "PostgreSQL" if args.platform_url else "SQLite"
        if args.platform_url:
            drop_pg_platform(args.platform_url)
        print(
            f"{args.tenants:,} tenants, SQL source on {source}, usagectl database on {backend}, {args.runs} runs"
        )
        ok = verdict(
            "first sync vs bare SELECT",
            median(first),
            median(base),
            3.0,
            cpu=(median(first_cpu), median(base_cpu)),
        )
        ok &= verdict(
            "unchanged sync vs bare SELECT",
            median(second),
            median(base),
            1.5,
            cpu=(median(second_cpu), median(base_cpu)),
        )
        print(
            f"bare SELECT through the driver's cursor (no Row objects): {median(raw):.3f}s, CPU "
            f"{median(raw_cpu):.3f}s; unchanged sync vs it: {median(second) / median(raw):.2f}x wall, "
            f"{median(second_cpu) / median(raw_cpu):.2f}x CPU; first sync vs it: "
            f"{median(first_cpu) / median(raw_cpu):.1f}x CPU"
        )
        zero = all(w == 0 for w in written_second)
        print(f"rows written by the unchanged syncs: {written_second} ({'OK' if zero else 'MISSED'})")
        return 0 if ok and zero else 1


if __name__ == "__main__":
    raise SystemExit(main())
