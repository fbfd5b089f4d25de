"""Rollup and export at scale: N tenants x D days x 3 sources of raw metrics.

    python bench/bench_rollup_export.py [--tenants 500] [--days 90] [--url sqlite:////tmp/bench.db]

Prints the time of the rollup (one INSERT ... SELECT), of a re-run (nothing changes), of the tenants ranking
for a month, and of a full CSV export to /dev/null, then the Python heap peak of a second export under
tracemalloc (constant memory: it should not grow with the row count).
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
from datetime import date, timedelta

from sqlalchemy import insert

from usagectl.config import TenantConfig, parse
from usagectl.periods import Window
from usagectl.render.csv import write_export_csv
from usagectl.reports import export_rows, tenants_report
from usagectl.rollup import run_rollup
from usagectl.store.engine import make_engine, open_store, upgrade
from usagectl.store.tables import usage_metrics, utcnow
from usagectl.store.tenants import sync_tenants

START = date(2026, 1, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tenants", type=int, default=500)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--url", default="sqlite:////tmp/usagectl-bench.db")
    args = ap.parse_args()
    if args.url.startswith("sqlite:////") and os.path.exists(args.url[10:]):
        os.remove(args.url[10:])
    e = make_engine(args.url)
    upgrade(e)
    e.dispose()
    store = open_store(args.url)
    slugs = [f"t{i:05d}" for i in range(args.tenants)]
    cfg = parse(
        {"tenants": [{"slug": s, "plan": ("starter", "pro", "elite")[i % 3]} for i, s in enumerate(slugs)]}
    )
    sync_tenants(store, [TenantConfig(slug=s) for s in slugs])
    sync_tenants(store, cfg.tenants)
    now = utcnow()
    t0 = time.perf_counter()
    with store.engine.begin() as conn:
        batch = []
        for tid in range(1, args.tenants + 1):
            for d in range(args.days):
                day = START + timedelta(days=d)
                for source in ("twilio", "sendgrid", "openai"):
                    batch.append(
                        {"tenant_id": tid, "date": day, "source": source, "sms_outbound_count": tid + d,
                         "emails_sent": 3 * d, "ai_tokens_in": 1000 * tid, "voice_minutes": d % 7,
                         "created_at": now, "updated_at": now}
                    )  # fmt: skip
                if len(batch) >= 20_000:
                    conn.execute(insert(usage_metrics), batch)
                    batch = []
        if batch:
            conn.execute(insert(usage_metrics), batch)
    rows = args.tenants * args.days
    print(
        f"{store.dialect}: {rows * 3:,} raw rows, {rows:,} tenant-days (load {time.perf_counter() - t0:.1f}s)"
    )
    window = Window(START, START + timedelta(days=args.days))

    t0 = time.perf_counter()
    r = run_rollup(store, cfg, window)
    print(f"rollup:          {time.perf_counter() - t0:6.2f}s  ({r.changed:,} rows written)")
    t0 = time.perf_counter()
    r = run_rollup(store, cfg, window)
    print(f"rollup re-run:   {time.perf_counter() - t0:6.2f}s  ({r.changed:,} rows changed)")
    t0 = time.perf_counter()
    rep = tenants_report(store, Window.month(2026, 1))
    print(f"tenants report:  {time.perf_counter() - t0:6.2f}s  ({rep.tenant_count} tenants)")
    t0 = time.perf_counter()
    with open(os.devnull, "w") as f:
        n = write_export_csv(export_rows(store, window), f)
    print(f"export csv:      {time.perf_counter() - t0:6.2f}s  ({n:,} rows)")
    tracemalloc.start()
    with open(os.devnull, "w") as f:
        write_export_csv(export_rows(store, window), f)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"export heap peak: {peak / 1e6:.1f} MB")
    store.close()


if __name__ == "__main__":
    main()
