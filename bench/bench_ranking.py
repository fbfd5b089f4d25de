"""The root views at scale: one page of the tenants ranking against the bare SQL of that page and its totals.

    python bench/bench_ranking.py --pg URL [--fill --tenants 100000 --days 30] [--requests 40] [--clients 1 16]

Data: bench/gen_data.py's (generated in SQL; --fill replaces the database's data and rolls up every day, else the
data and rollups already there are used, e.g. after `bench_rollup.py --pg URL`). The month is January 2026, over
(every day of it is in the margin).

1. `GET /api/root-admin/usage/tenants?month=2026-01&limit=50` on `usagectl serve` (one worker, a child process)
   at each --clients: p50 of the server's own time (Server-Timing) against the bare run of the same statements
   in this process (psycopg + json.dumps, sequential): the page, the one aggregate of the totals, and the page's
   plan-usage and provider-cost details, which are every figure the endpoint returns. Target 1.5x. Beside it a
   bare Starlette endpoint (bench/bare_starlette.py, a child) running the same SQL and json.dumps, at the same
   clients: the framework's own cost. The server's peak RSS (VmHWM; target under 150 MB).
2. `usagectl tenants --month 2026-01` (the top 50 table) against `psql` running the same page and totals
   statements; `usagectl tenants --format csv` (every tenant, streamed) against `psql \\copy` of the same ranking
   columns, with its peak RSS. Target 1.5x, under 150 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from bench_serve import free_port, load
from common import child_env, machine, median, run_child, verdict
from gen_data import START, bench_config, bench_config_dict, fill_postgres
from usagectl.meters import COST_SOURCES
from usagectl.periods import Window
from usagectl.pricing import book_segments
from usagectl.reports.queries import (
    _COSTS_IN,
    _FAILED_IN,
    _PLAN_USAGE_IN,
    ranking_rows_statement,
    ranking_statements,
    through_yesterday,
)

MONTH = Window.month(2026, 1)
TODAY = date(2026, 3, 1)  # January is over: its margin covers every day
PAGE = 50


def sql_text(stmt: Any, dialect: Any, **params: Any) -> str:
    """A statement as the literal SQL text the database receives (bind values inlined)."""
    if params:
        stmt = stmt.params(**params)
    return str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def statements(url: str, limit: int | None) -> tuple[str, str, list[Any]]:
    """The ranking's page and totals SQL, and the detail statements (to fill with the page's tenant ids)."""
    from usagectl.store.engine import make_engine

    engine = make_engine(url)
    cfg = bench_config()
    done = through_yesterday(MONTH, TODAY)
    page, totals = ranking_statements(cfg, MONTH, done, engine.dialect.name, "cost", limit, 0, "")
    details = [
        (_PLAN_USAGE_IN, {"w_start": seg.start, "w_end": seg.end}) for seg in book_segments(done, cfg.pricing)
    ]
    details.append((_COSTS_IN, {"w_start": done.start, "w_end": done.end}))
    details.append((_FAILED_IN, {"w_start": done.start, "w_end": done.end, "sources": list(COST_SOURCES)}))
    texts = (sql_text(page, engine.dialect), sql_text(totals, engine.dialect))
    dialect = engine.dialect
    engine.dispose()
    return texts[0], texts[1], [(stmt, params, dialect) for stmt, params in details]


def rows_statement(url: str) -> str:
    """The CSV's statement (reports.ranking_rows): every tenant, the CSV's columns, in order."""
    from usagectl.store.engine import make_engine

    engine = make_engine(url)
    done = through_yesterday(MONTH, TODAY)
    text = sql_text(
        ranking_rows_statement(bench_config(), MONTH, done, engine.dialect.name, "cost"), engine.dialect
    )
    engine.dispose()
    return text


def detail_sql(details: list[Any], ids: list[int]) -> list[str]:
    return [sql_text(stmt, dialect, **params, tids=ids) for stmt, params, dialect in details]


def previous_sql(url: str, slugs: list[str]) -> str:
    """The System Usage page's month-over-month column: the month before's estimated cost of the page's tenants
    (reports.estimated_costs' statement)."""
    from usagectl.reports.queries import estimated_costs_statement
    from usagectl.store.engine import make_engine

    engine = make_engine(url)
    text = sql_text(estimated_costs_statement(Window.month(2025, 12), slugs), engine.dialect)
    engine.dispose()
    return text


class BarePage:
    """The same statements with psycopg and json.dumps, in this process: the floor. With `previous`, also the
    System Usage page's month-before statement for the page's tenants."""

    def __init__(
        self, url: str, page: str, totals: str, details: list[Any], *, previous: bool = False
    ) -> None:
        import psycopg

        self.conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
        self.page, self.totals, self.details = page, totals, details
        cur = self.conn.cursor()
        cur.execute(page)
        got = cur.fetchall()
        self.ids = [row[0] for row in got]
        self.detail = detail_sql(details, self.ids)
        if previous:
            self.detail.append(previous_sql(url, [row[1] for row in got]))

    def run(self) -> str:
        cur = self.conn.cursor()
        cur.execute(self.page)
        rows = cur.fetchall()
        cur.execute(self.totals)
        total = cur.fetchall()
        # The details of the page's tenants (the ids are the page's: the SQL text was made for them once).
        extra = []
        for sql in self.detail:
            cur.execute(sql)
            extra.append(cur.fetchall())
        return json.dumps({"tenants": rows, "total": total, "details": extra}, default=str)


def p50_of(fn: Any, n: int) -> float:
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median(times)


def vmhwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_up(base: str) -> None:
    for _ in range(600):
        try:
            httpx.get(f"{base}/healthz", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"{base} did not come up")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def sign_in(base: str, token: str) -> dict[str, str]:
    """A root admin's page session (token mode): the cookies the sign-in form sets."""
    import re

    with httpx.Client(base_url=base, timeout=60) as c:
        form = c.get("/signin")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf, form.text[:300]
        got = c.post("/signin", data={"token": token, "csrf_token": csrf.group(1)})
        assert got.status_code == 303, got.text[:300]
        return dict(c.cookies)


def endpoint(
    url: str, home: Path, cfg_path: Path, requests: int, clients: list[int], timeout: float, parts: list[str]
) -> bool:
    """The ranking endpoint and the System Usage page, each against its bare statements in-process and in a bare
    Starlette endpoint, at each client count."""
    from usagectl.store.engine import open_store
    from usagectl.store.tokens import create_token

    store = open_store(url)
    root = create_token(store, tenant=None)[0]
    store.close()
    page_sql, totals_sql, details = statements(url, PAGE)
    api_path, page_path = "/api/root-admin/usage/tenants", "/admin/system-usage"
    bare = {
        api_path: BarePage(url, page_sql, totals_sql, details),
        page_path: BarePage(url, page_sql, totals_sql, details, previous=True),
    }
    sql_file = home / "statements.json"
    sql_file.write_text(json.dumps({p: [page_sql, totals_sql, *b.detail] for p, b in bare.items()}))
    port, bare_port = free_port(), free_port()
    env = child_env(HOME=str(home), USAGECTL_DATABASE_URL=url, PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    serve = subprocess.Popen(
        [sys.executable, "-m", "usagectl", "-q", "-c", str(cfg_path), "serve", "--port", str(port)],
        env=env, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    starlette = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("bare_starlette.py")), "--url", url, "--sql", str(sql_file),
         "--port", str(bare_port)],
        env=env, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    ok = True
    try:
        base, bare_base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{bare_port}"
        wait_up(base)
        for _ in range(100):
            try:
                httpx.get(f"{bare_base}{api_path}", timeout=timeout)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        month = MONTH.start.strftime("%Y-%m")
        params = {"month": month, "limit": str(PAGE)}
        got = httpx.get(
            f"{base}{api_path}", params=params, headers={"Authorization": f"Bearer {root}"}, timeout=timeout
        )
        assert got.status_code == 200, got.text[:300]
        body = got.json()
        print(
            f"page of {len(body['tenants'])} of {body['tenant_count']:,} tenants, {len(got.content):,} bytes"
        )
        cookies = sign_in(base, root)
        page_params = {"month": month}
        html = httpx.get(f"{base}{page_path}", params=page_params, cookies=cookies, timeout=timeout)
        assert html.status_code == 200 and html.text.count("data-tenant=") == PAGE, html.text[:300]
        print(f"System Usage page: {PAGE} rows, {len(html.content):,} bytes")
        targets = [("ranking endpoint", api_path, params, None)] if "api" in parts else []
        if "page" in parts:
            targets.append(("System Usage page", page_path, page_params, cookies))
        for label, path, query, jar in targets:
            bare_p50 = p50_of(bare[path].run, max(3, requests // 4))
            print(
                f"{label}: bare SQL (page + totals + details) + json.dumps in-process: p50 {bare_p50 * 1000:.0f} ms"
            )
            for n in clients:
                reqs = [(path, query, root)] * max(requests, n)
                rtt, srv, errors, _ = asyncio.run(load(base, reqs, n, None, timeout=timeout, cookies=jar))
                b_rtt, b_srv, b_err, _ = asyncio.run(load(bare_base, reqs, n, None, timeout=timeout))
                print(
                    f"{label}, {n} client(s): usagectl server p50 {median(srv) * 1000:.0f} ms, round trip "
                    f"{median(rtt) * 1000:.0f} ms, errors {errors}; bare Starlette server p50 "
                    f"{median(b_srv) * 1000:.0f} ms, round trip {median(b_rtt) * 1000:.0f} ms, errors {b_err}; "
                    f"{os.getloadavg()[0]:.1f} load"
                )
                ok &= verdict(
                    f"{label}, {n} client(s), p50 server time vs bare SQL", median(srv), bare_p50, 1.5
                )
                verdict(
                    f"{label}, {n} client(s), p50 server time vs bare Starlette",
                    median(srv),
                    median(b_srv),
                    1.5,
                )
                ok &= errors == 0
        rss = vmhwm_mb(serve.pid)
        print(f"usagectl serve peak RSS {rss:.0f} MB (target < 150 MB): {'OK' if rss < 150 else 'MISSED'}")
        ok &= rss < 150
    finally:
        stop(serve)
        stop(starlette)
    return ok


def terminal(url: str, home: Path, cfg_path: Path, repeat: int) -> bool:
    psql = shutil.which("psql")
    if psql is None:
        raise SystemExit("needs the psql client")
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    env = child_env(HOME=str(home), USAGECTL_DATABASE_URL=url, USAGECTL_CONFIG=str(cfg_path))
    page_sql, totals_sql, details = statements(url, PAGE)
    bare = BarePage(url, page_sql, totals_sql, details)
    script = f"{page_sql};\n{totals_sql};\n" + "".join(f"{s};\n" for s in bare.detail)
    month = MONTH.start.strftime("%Y-%m")
    # Untimed: the first command syncs the config's tenants into the database (here: none listed; the generated
    # tenants are of the tenant directory's origin, which the config sync leaves alone).
    run_child(["usagectl", "tenants", "--month", month], env=env)
    ours = [run_child(["usagectl", "tenants", "--month", month], env=env) for _ in range(repeat)]
    base = [run_child([psql, "-X", "-q", plain], stdin=script.encode()) for _ in range(repeat)]
    assert b"more (--limit N, --all, or --format csv)" in ours[0].stdout
    ok = verdict(
        "usagectl tenants (top 50 table) vs psql of the same statements",
        median([r.seconds for r in ours]),
        median([r.seconds for r in base]),
        1.5,
    )
    all_sql = rows_statement(url)
    copy = f"\\copy ({all_sql.replace(chr(10), ' ')}) TO STDOUT WITH CSV HEADER\n"
    with tempfile.TemporaryDirectory() as tmp:
        ours = [
            run_child(
                ["usagectl", "tenants", "--month", month, "--format", "csv"], env=env, stdout_to=f"{tmp}/a"
            )
            for _ in range(repeat)
        ]
        rows = Path(f"{tmp}/a").read_text(encoding="utf-8").count("\n")
        base = [
            run_child([psql, "-X", "-q", plain], stdin=copy.encode(), stdout_to=f"{tmp}/b")
            for _ in range(repeat)
        ]
        bare_rows = Path(f"{tmp}/b").read_text(encoding="utf-8").count("\n")
    print(f"csv: {rows:,} lines (header, tenants, total); psql \\copy {bare_rows:,} lines")
    ok &= verdict(
        "usagectl tenants --format csv (all) vs psql \\copy of the same ranking",
        median([r.seconds for r in ours]),
        median([r.seconds for r in base]),
        1.5,
    )
    rss = max(r.maxrss_mb for r in ours)
    print(
        f"usagectl tenants --format csv peak RSS {rss:.0f} MB (target < 150 MB): {'OK' if rss < 150 else 'MISSED'}"
    )
    return ok and rss < 150


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", metavar="URL", required=True, help="a PostgreSQL database of your own")
    ap.add_argument("--fill", action="store_true", help="replace its data with gen_data's and roll it up")
    ap.add_argument("--tenants", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--requests", type=int, default=40, help="requests per client count")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600, help="the load generator's per-request timeout (s)")
    ap.add_argument(
        "--parts", nargs="+", default=["api", "page", "terminal"], choices=["api", "page", "terminal"],
        help="what to measure: the ranking endpoint, the System Usage page, usagectl tenants",
    )  # fmt: skip
    args = ap.parse_args()
    print(machine())
    if args.fill:
        from usagectl.rollup import run_rollup
        from usagectl.store.engine import open_store

        t0 = time.perf_counter()
        fill_postgres(args.pg, args.tenants, args.days)
        s = open_store(args.pg)
        run_rollup(s, bench_config(), Window(START, START + timedelta(days=args.days)))
        s.close()
        print(f"filled and rolled up in {time.perf_counter() - t0:.0f}s")
    with tempfile.TemporaryDirectory(prefix="usagectl-bench-ranking-") as tmp:
        home = Path(tmp)
        cfg_path = home / "config.toml"
        doc = bench_config_dict()
        doc["serve"] = {"access_log": False}
        cfg_path.write_text(tomli_w.dumps(doc))
        print(f"\n1. the ranking endpoint, a page of {PAGE}, {args.requests} requests per client count")
        ok = True
        if {"api", "page"} & set(args.parts):
            ok &= endpoint(args.pg, home, cfg_path, args.requests, args.clients, args.timeout, args.parts)
        print("\n2. usagectl tenants")
        if "terminal" in args.parts:
            ok &= terminal(args.pg, home, cfg_path, args.repeat)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
