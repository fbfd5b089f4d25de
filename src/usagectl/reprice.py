"""`usagectl reprice`: recompute a window's costs with the price books and plans as they are now.

A day is priced with the book in effect on that day (books are effective-dated), so only an edited book, an edited
plan or a tenant's changed plan moves a cost. Unsealed days are rewritten by the rollup itself; a sealed day keeps
its rollup row and gets an adjustment (reason "reprice") for the difference. The figures come from the raw
metrics, as a rollup's do: a sealed day re-collected since it was sealed moves by its usage too.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from sqlalchemy import BigInteger, Connection, cast, func, select

from usagectl.config import Config
from usagectl.errors import InputError, did_you_mean
from usagectl.money import from_micros
from usagectl.periods import Window, utc_today
from usagectl.reports.objects import RepriceLine, RepriceReport
from usagectl.rollup import in_days, rollup_select, run_rollup
from usagectl.store.engine import Store
from usagectl.store.tables import tenants, usage_adjustments, usage_rollups_daily, utcnow
from usagectl.store.tenants import get_tenant, tenant_ids

REASON = "reprice"


def _preview(
    conn: Connection, cfg: Config, window: Window, tenant_id: int | None, dialect: str
) -> list[RepriceLine]:
    windows = [window]
    r, adj = usage_rollups_daily.c, usage_adjustments.c
    old: dict[tuple[int, date], int] = defaultdict(int)
    q = select(r.tenant_id, r.date, cast(r.estimated_cost_usd, BigInteger)).where(in_days(r.date, windows))
    if tenant_id is not None:
        q = q.where(r.tenant_id == tenant_id)
    for tid, day, micros in conn.execute(q):
        old[(tid, day)] += int(micros)
    q = (
        select(adj.tenant_id, adj.date, cast(func.sum(cast(adj.estimated_cost_usd, BigInteger)), BigInteger))
        .where(in_days(adj.date, windows))
        .group_by(adj.tenant_id, adj.date)
    )
    if tenant_id is not None:
        q = q.where(adj.tenant_id == tenant_id)
    for tid, day, micros in conn.execute(q):
        old[(tid, day)] += int(micros)
    new = dict(old)
    _, body = rollup_select(cfg, windows, utcnow(), dialect, tenant_id)
    for row in conn.execute(body).mappings():
        new[(row["tenant_id"], row["date"])] = int(row["estimated_cost_usd"])
    per_old: dict[int, int] = defaultdict(int)
    per_new: dict[int, int] = defaultdict(int)
    for key in new:
        per_old[key[0]] += old.get(key, 0)
        per_new[key[0]] += new[key]
    names = {
        tid: (slug, name)
        for tid, slug, name in conn.execute(select(tenants.c.id, tenants.c.slug, tenants.c.name))
    }
    lines = [
        RepriceLine(names[tid][0], names[tid][1], from_micros(per_old[tid]), from_micros(per_new[tid]))
        for tid in per_new
    ]
    return sorted(lines, key=lambda line: line.slug)


def reprice(
    store: Store,
    cfg: Config,
    window: Window,
    *,
    tenant: str | None = None,
    dry_run: bool = False,
    today: date | None = None,
    lock_wait: float = 10.0,
) -> RepriceReport:
    """Reprice `window` (optionally one tenant). A dry run only reads: no lock row, no rollup, no adjustment."""
    today = today or utc_today()
    if window.start >= today:
        raise InputError(
            f"--since: {window.start} is not over yet (UTC today is {today}); nothing to reprice"
        )
    with store.engine.connect() as conn:
        tenant_id: int | None = None
        if tenant is not None:
            row = get_tenant(conn, tenant)
            if row is None:
                known = tenant_ids(conn)
                raise InputError(
                    f"unknown tenant {tenant!r}{did_you_mean(tenant, known)}; `usagectl tenants` lists them"
                )
            tenant_id = row.id
        if dry_run:
            lines = tuple(_preview(conn, cfg, window, tenant_id, store.dialect))
            return RepriceReport(window=window, dry_run=True, lines=lines)
    # The old and new costs are read under the jobs lock, in the transaction that writes the new ones: a run
    # that waited for another reprice (or a rollup) prints what it changes, not what the other one already did.
    previewed: list[RepriceLine] = []

    def preview(locked: Connection) -> None:
        previewed.extend(_preview(locked, cfg, window, tenant_id, store.dialect))

    result = run_rollup(
        store,
        cfg,
        window,
        today=today,
        lock_wait=lock_wait,
        tenant_id=tenant_id,
        reason=REASON,
        seal_by_age=False,
        before=preview,
    )
    return RepriceReport(
        window=window,
        dry_run=False,
        lines=tuple(previewed),
        tenant_days=result.tenant_days,
        changed=result.changed,
        adjusted=result.adjusted,
    )
