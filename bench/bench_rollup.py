"""Rollup at 10,000 tenants: a full recompute, and the nightly run of one day.

    python bench/bench_rollup.py [--tenants 10000] [--days 90] [--repeat 3]

1. Full recompute of every tenant-day (90 days x 10,000 tenants = 900,000 rollup rows from 3.6M raw rows) with
   `usagectl.rollup.run_rollup`, against the bare equivalent: one hand-written `INSERT ... SELECT ... GROUP BY`
   computing the same rows (same costs, same price books), run by the `sqlite3` shell (or, when the shell is not
   installed, by Python's sqlite3 module executing the same SQL text). Each run starts from a fresh copy of the
   generated file; the two results are checked to be identical. Target: at most 1.3x.
2. Nightly rollup: the collector has just rewritten yesterday's raw rows for all 10,000 tenants; the default
   `run_rollup` (yesterday plus every day written since the last rollup) on the fully rolled-up database.
   Target: under 1 second.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from common import SQLITE3_CLI, limit, machine, median, run_child, timed, verdict
from gen_data import START, bench_config, copy_db, raw_db, rolled_up_db
from usagectl.config import PLAN_TIERS, Config
from usagectl.money import PICOS_PER_MICRO, to_picos
from usagectl.periods import Window
from usagectl.pricing import unit_prices
from usagectl.rollup import DATA_COLUMNS, run_rollup
from usagectl.store.engine import open_store

_EARLIEST, _LATEST = "0001-01-01", "9999-12-31"


def bare_rollup_sql(
    cfg: Config, start: date, end: date, dialect: str = "sqlite", *, upsert: bool = False
) -> str:
    """The rollup as one hand-written SQLite statement: what a person would write without usagectl.

    CROSS JOIN only fixes SQLite's join order (it is an inner join): with plain JOINs SQLite puts the 6-row price
    table outermost and inserts the rollup rows in six passes, 20-25% slower; the baseline should be the best
    plain statement, not a slow one. PostgreSQL (dialect="postgresql") needs typed date literals and SUM()s cast
    back to BIGINT (its SUM(bigint) is NUMERIC, whose division is not integer division); its planner needs no
    join order."""
    pg = dialect == "postgresql"

    def d(text: str) -> str:
        return f"DATE '{text}'" if pg else f"'{text}'"

    def total(expr: str) -> str:
        return f"SUM({expr})::bigint" if pg else f"SUM({expr})"

    books = cfg.pricing.books
    prices, models = [], []
    for i, book in enumerate(books):
        p_from = _EARLIEST if i == 0 else book.effective_from.isoformat()
        p_to = books[i + 1].effective_from.isoformat() if i + 1 < len(books) else _LATEST
        for tier in PLAN_TIERS:
            u = unit_prices(book, cfg.plan(tier))
            prices.append(
                f"({d(p_from)}, {d(p_to)}, '{tier}', '{u.version}', {to_picos(u.sms)}, {to_picos(u.mms)}, "
                f"{to_picos(u.voice_minute)}, {to_picos(u.email)}, {to_picos(u.ai_token)})"
            )
        for model, rate in book.ai_models.items():
            cached = rate.cached_input if rate.cached_input is not None else rate.input
            models.append(
                f"({d(p_from)}, {d(p_to)}, '{model}', {to_picos(rate.input)}, {to_picos(rate.output)}, "
                f"{to_picos(cached)})"
            )
    half, per = PICOS_PER_MICRO // 2, PICOS_PER_MICRO

    def cost(picos: str) -> str:
        return f"(({picos}) + {half}) / {per}"

    ai = cost(
        "COALESCE(pr.picos, 0) + (a.ai_in + a.ai_out - COALESCE(pr.tin, 0) - COALESCE(pr.tout, 0)) * p.ai"
    )
    costs = [
        cost("a.sms * p.sms"),
        cost("a.mms * p.mms"),
        cost("a.voice * p.voice"),
        cost("a.email * p.email"),
        ai,
    ]
    win = f"date >= {d(start.isoformat())} AND date < {d(end.isoformat())}"
    head = "" if pg else "PRAGMA foreign_keys=ON;\nPRAGMA synchronous=NORMAL;\n"
    now = "now()" if pg else "strftime('%Y-%m-%d %H:%M:%f000', 'now')"
    join = "JOIN" if pg else "CROSS JOIN"
    # The nightly run rewrites rows that exist: the bare form is the plain upsert (every column replaced).
    on_conflict = (
        "\nON CONFLICT (tenant_id, date) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in (*DATA_COLUMNS, "created_at"))
        if upsert
        else ""
    )
    if upsert and not pg:
        on_conflict = "\nWHERE true" + on_conflict  # SQLite: INSERT ... SELECT ... ON CONFLICT needs a WHERE
    return f"""
{head}BEGIN;
WITH prices(p_from, p_to, tier, version, sms, mms, voice, email, ai) AS (VALUES {", ".join(prices)}),
model_prices(p_from, p_to, model, p_in, p_out, p_cached) AS (VALUES {", ".join(models)}),
agg AS (
  SELECT tenant_id, date,
    {total("sms_outbound_count + sms_inbound_count")} AS sms,
    {total("mms_outbound_count + mms_inbound_count")} AS mms,
    {total("voice_minutes")} AS voice, {total("emails_sent")} AS email, {total("ai_tokens_in")} AS ai_in,
    {total("ai_tokens_out")} AS ai_out, {total("jobs_executed")} AS jobs, MAX(storage_bytes) AS storage,
    {total("provider_cost_usd")} AS provider_cost,
    {total("CASE WHEN source = 'twilio' THEN 1 ELSE 0 END")} AS twilio_collected,
    MAX(CASE WHEN source = 'twilio' THEN provider_cost_usd END) AS twilio_cost,
    {total("CASE WHEN source = 'openai' THEN 1 ELSE 0 END")} AS openai_collected,
    MAX(CASE WHEN source = 'openai' THEN provider_cost_usd END) AS openai_cost
  FROM usage_metrics WHERE {win} GROUP BY tenant_id, date),
priced AS (
  SELECT mm.tenant_id, mm.date, {total("mm.ai_tokens_in")} AS tin, {total("mm.ai_tokens_out")} AS tout,
    {total("(mm.ai_tokens_in - mm.ai_tokens_cached_in) * mp.p_in + mm.ai_tokens_cached_in * mp.p_cached + mm.ai_tokens_out * mp.p_out")} AS picos
  FROM usage_metrics_ai_models mm
  JOIN model_prices mp ON mp.model = mm.model AND mm.date >= mp.p_from AND mm.date < mp.p_to
  WHERE mm.{win} GROUP BY mm.tenant_id, mm.date)
INSERT INTO usage_rollups_daily (tenant_id, date, sms_total, mms_total, voice_total_minutes, email_total,
  ai_total_tokens, ai_tokens_in, ai_tokens_out, jobs_executed, storage_bytes, sms_cost_usd, mms_cost_usd,
  voice_cost_usd, email_cost_usd, ai_cost_usd, estimated_cost_usd, provider_cost_usd, pricing_version,
  plan_tier, created_at, twilio_collected, twilio_reported_cost_usd, openai_collected, openai_reported_cost_usd)
SELECT a.tenant_id, a.date, a.sms, a.mms, a.voice, a.email, a.ai_in + a.ai_out, a.ai_in, a.ai_out, a.jobs,
  a.storage, {", ".join(costs)}, {" + ".join(costs)}, a.provider_cost, p.version, t.plan_tier,
  {now}, a.twilio_collected, a.twilio_cost, a.openai_collected, a.openai_cost
FROM agg a
{join} tenants t ON t.id = a.tenant_id
{join} prices p ON p.tier = t.plan_tier AND a.date >= p.p_from AND a.date < p.p_to
LEFT JOIN priced pr ON pr.tenant_id = a.tenant_id AND pr.date = a.date{on_conflict};
COMMIT;
"""


def run_bare(db: Path, sql: str) -> tuple[float, float]:
    if SQLITE3_CLI:
        r = run_child([SQLITE3_CLI, str(db)], stdin=sql.encode())
        return r.seconds, r.cpu

    def go() -> None:
        con = sqlite3.connect(db, isolation_level=None)
        con.executescript(sql)
        con.close()

    return timed(go)  # same process: CPU includes nothing else


def run_usagectl(db: Path, cfg: Config, window: Window) -> tuple[float, float]:
    def go() -> None:
        store = open_store(f"sqlite:///{db}")
        run_rollup(store, cfg, window)
        store.close()

    return timed(go)


_COMPARE = """
SELECT COUNT(*) FROM (
  SELECT * FROM (SELECT {cols} FROM usage_rollups_daily EXCEPT SELECT {cols} FROM other.usage_rollups_daily)
  UNION ALL
  SELECT * FROM (SELECT {cols} FROM other.usage_rollups_daily EXCEPT SELECT {cols} FROM usage_rollups_daily))
"""


def same_rollups(a: Path, b: Path) -> tuple[int, int]:
    """(rows in a, rows that differ between a and b), every column but id and created_at."""
    con = sqlite3.connect(a)
    cols = [
        r[1]
        for r in con.execute("PRAGMA table_info(usage_rollups_daily)")
        if r[1] not in ("id", "created_at")
    ]
    con.execute("ATTACH ? AS other", (str(b),))
    n = con.execute("SELECT COUNT(*) FROM usage_rollups_daily").fetchone()[0]
    diff = con.execute(_COMPARE.format(cols=", ".join(cols))).fetchone()[0]
    con.close()
    return n, diff


def nightly(tenants: int, days: int, work: Path, cfg: Config) -> tuple[float, float]:
    """Rewrite yesterday's raw rows (as collect does), then the default rollup run; returns its seconds."""
    db = copy_db(rolled_up_db(tenants, days), work / "nightly.db")
    yesterday = START + timedelta(days=days - 1)
    con = sqlite3.connect(db)
    with con:
        # Collect replaces a row with its new figures and a new updated_at.
        con.execute(
            "UPDATE usage_metrics SET sms_outbound_count = sms_outbound_count + 1, "
            "updated_at = strftime('%Y-%m-%d %H:%M:%f000', 'now') WHERE date = ?",
            (yesterday.isoformat(),),
        )
    con.close()
    store = open_store(f"sqlite:///{db}")
    wall_cpu = timed(lambda: run_rollup(store, cfg, today=yesterday + timedelta(days=1)))
    r = run_rollup(store, cfg, today=yesterday + timedelta(days=1))  # and a re-run: nothing left to do
    store.close()
    assert r.changed == 0, r
    return wall_cpu


def postgres(url: str, tenants: int, days: int, repeat: int, cfg: Config, window: Window) -> bool:
    """The same two benchmarks on PostgreSQL (its data is replaced); the bare statement runs in `psql`."""
    import shutil

    import psycopg

    from gen_data import fill_postgres

    psql = shutil.which("psql")
    if psql is None:
        raise SystemExit("--pg needs the psql client")
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    t0 = time.perf_counter()
    fill_postgres(url, tenants, days)
    print(f"\nPostgreSQL {plain}: filled in {time.perf_counter() - t0:.1f}s")

    def sql(*statements: str) -> None:
        with psycopg.connect(plain, autocommit=True) as con:
            for st in statements:
                con.execute(st)

    script = bare_rollup_sql(cfg, window.start, window.end, "postgresql")
    ours, bare = [], []
    for i in range(repeat):
        sql("TRUNCATE usage_rollups_daily", "VACUUM ANALYZE usage_rollups_daily")
        bare.append(run_child([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", plain], stdin=script.encode()))
        if i == repeat - 1:
            sql(
                "DROP TABLE IF EXISTS bench_bare",
                "CREATE TABLE bench_bare AS SELECT * FROM usage_rollups_daily",
            )
        sql("TRUNCATE usage_rollups_daily", "VACUUM ANALYZE usage_rollups_daily")
        ours.append(run_usagectl_url(url, cfg, window))
    cols = ", ".join(c for c in DATA_COLUMNS_ALL)
    with psycopg.connect(plain) as con:
        diff = con.execute(
            f"SELECT COUNT(*) FROM ((SELECT {cols} FROM usage_rollups_daily EXCEPT SELECT {cols} FROM bench_bare) "
            f"UNION ALL (SELECT {cols} FROM bench_bare EXCEPT SELECT {cols} FROM usage_rollups_daily)) d"
        ).fetchone()
        n = con.execute("SELECT COUNT(*) FROM usage_rollups_daily").fetchone()
    sql("DROP TABLE bench_bare")
    print(f"results: {n[0] if n else 0:,} rollup rows, {diff[0] if diff else '?'} differing rows")
    print(
        f"  runs (wall s): usagectl {_list(ours, 0)}; bare (psql) {', '.join(f'{r.seconds:.2f}' for r in bare)}"
    )
    ok = verdict(
        "PostgreSQL full recompute (median)",
        median([x[0] for x in ours]),
        median([r.seconds for r in bare]),
        1.3,
    )
    ok &= bool(diff) and diff[0] == 0
    ok &= nightly_pg(url, cfg, window, repeat)
    return ok


def nightly_pg(url: str, cfg: Config, window: Window, repeat: int) -> bool:
    """The nightly run on PostgreSQL: collect has rewritten yesterday's raw rows for every tenant; the default
    `run_rollup` against the bare upsert of that day (the same rows, every column, in `psql`), alternately."""
    import shutil

    import psycopg

    psql = shutil.which("psql")
    assert psql is not None
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    yesterday = window.end - timedelta(days=1)
    script = bare_rollup_sql(cfg, yesterday, window.end, "postgresql", upsert=True)

    def rewrite() -> None:
        with psycopg.connect(plain, autocommit=True) as con:
            con.execute(
                "UPDATE usage_metrics SET sms_outbound_count = sms_outbound_count + 1, updated_at = now() "
                f"WHERE date = DATE '{yesterday.isoformat()}'"
            )
            con.execute("VACUUM ANALYZE usage_metrics, usage_rollups_daily")

    night, bare = [], []
    for _ in range(repeat):
        rewrite()
        bare.append(
            run_child([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", plain], stdin=script.encode()).seconds
        )
        rewrite()
        store = open_store(url)
        night.append(timed(lambda s=store: run_rollup(s, cfg, today=yesterday + timedelta(days=1))))
        store.close()
    print(
        f"  nightly runs (wall s): usagectl {_list(night, 0, 3)}; bare upsert (psql) {', '.join(f'{b:.3f}' for b in bare)}"
    )
    return verdict(
        "PostgreSQL nightly rollup of one day (median)", median([x[0] for x in night]), median(bare), 1.3
    )


def run_usagectl_url(url: str, cfg: Config, window: Window) -> tuple[float, float]:
    def go() -> None:
        store = open_store(url)
        run_rollup(store, cfg, window)
        store.close()

    return timed(go)


DATA_COLUMNS_ALL = ("tenant_id", "date", *DATA_COLUMNS)


def _list(runs: list[tuple[float, float]], i: int, digits: int = 2) -> str:
    return ", ".join(f"{r[i]:.{digits}f}" for r in runs)


def sqlite_runs(tenants: int, days: int, repeat: int, cfg: Config, window: Window, src: Path) -> bool:
    sql = bare_rollup_sql(cfg, window.start, window.end)
    how = "sqlite3 shell" if SQLITE3_CLI else "python sqlite3 module (no sqlite3 shell installed)"
    with tempfile.TemporaryDirectory(prefix="usagectl-bench-") as tmp:
        work = Path(tmp)
        ours, bare = [], []
        for _ in range(repeat):
            bare.append(run_bare(copy_db(src, work / "bare.db"), sql))
            ours.append(run_usagectl(copy_db(src, work / "ours.db"), cfg, window))
        n, diff = same_rollups(work / "ours.db", work / "bare.db")
        print(f"results: {n:,} rollup rows, {diff} differing rows between usagectl and the bare SQL")
        print(f"  runs (wall s): usagectl {_list(ours, 0)}; bare ({how}) {_list(bare, 0)}")
        print(f"  runs (CPU s):  usagectl {_list(ours, 1)}; bare {_list(bare, 1)}")
        ok = verdict(
            "full recompute (median)",
            median([x[0] for x in ours]),
            median([x[0] for x in bare]),
            1.3,
            cpu=(median([x[1] for x in ours]), median([x[1] for x in bare])),
        )
        ok &= diff == 0
        night = [nightly(tenants, days, work, cfg) for _ in range(repeat)]
        print(f"  nightly runs (wall s): {_list(night, 0, 3)}; CPU s: {_list(night, 1, 3)}")
        ok &= limit(
            f"nightly rollup of one day, {tenants:,} tenants (median)",
            median([x[0] for x in night]),
            1.0,
        )
    return ok


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tenants", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pg", metavar="URL", help="also on this PostgreSQL database (its data is replaced)")
    ap.add_argument("--pg-only", action="store_true", help="skip the SQLite runs")
    ap.add_argument(
        "--pg-nightly",
        action="store_true",
        help="with --pg: only the nightly run, on the data and rollups a previous run (or gen_data) left there",
    )
    args = ap.parse_args()
    cfg = bench_config()
    window = Window(START, START + timedelta(days=args.days))
    print(machine())
    print(
        f"data: {args.tenants:,} tenants x {args.days} days x 4 sources = "
        f"{args.tenants * args.days * 4:,} raw rows -> {args.tenants * args.days:,} rollup rows"
    )
    ok = True
    if not args.pg_only and not args.pg_nightly:
        ok &= sqlite_runs(args.tenants, args.days, args.repeat, cfg, window, raw_db(args.tenants, args.days))
    if args.pg and args.pg_nightly:
        ok &= nightly_pg(args.pg, cfg, window, args.repeat)
    elif args.pg:
        ok &= postgres(args.pg, args.tenants, args.days, args.repeat, cfg, window)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
