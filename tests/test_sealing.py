"""Sealed days and adjustments (`usagectl seal`, sealing by age in rollup) and repricing (`usagectl reprice`):
a sealed month's figures never move, a later change is posted as an adjustment in the month it is posted in, and
`reprice --dry-run` writes nothing."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from conftest import Priced
from priced import EMAIL as EMAIL_PRICE
from priced import SMS_V1, SMS_V2, micro, priced_toml
from usagectl import config as cfgmod
from usagectl.periods import Window, utc_today
from usagectl.records import MetricRow
from usagectl.render.json import tenant_report_dict, tenant_summary_dict
from usagectl.reports import tenant_report
from usagectl.reprice import reprice
from usagectl.rollup import run_rollup, seal, sealed_through
from usagectl.store.engine import Store
from usagectl.store.metrics import upsert_metric
from usagectl.store.tables import metadata, usage_adjustments, usage_rollups_daily, utcnow
from usagectl.store.tenants import get_tenant

OCT = Window.month(2026, 10)
NOV_2 = date(2026, 11, 2)
SMS, EMAIL = SMS_V1, EMAIL_PRICE  # book v1's: every day here is priced by it until a test edits the books
# Both on elite (no plan section), so each unit is at the book's price.
TENANTS = (("acme", "Acme", "elite"), ("globex", "Globex", "elite"))


# docs/export.md, Adjustments.
ADJUSTMENTS_CSV_HEADER = (
    "posted_at,date,tenant,tenant_name,reason,pricing_version,sms_total,mms_total,voice_total_minutes,"
    "email_total,ai_tokens_in,ai_tokens_out,ai_total_tokens,jobs_executed,storage_bytes,sms_cost_usd,"
    "mms_cost_usd,voice_cost_usd,email_cost_usd,ai_cost_usd,estimated_cost_usd"
)


def config_file(write_config: Callable[..., Path], *, v2: date | None = None, seal: int = 35) -> Path:
    """The shared priced config with sealing after `seal` days, written beside the test's own (edited.toml):
    v1 only by default; `v2`, when book v2 (SMS at $0.010) starts, is how a test edits the books."""
    extra = f"[rollup]\nseal_after_days = {seal}\n"
    return write_config(priced_toml(v2=v2, tenants=TENANTS, extra=extra), "edited.toml")


def config(write_config: Callable[..., Path], *, v2: date | None = None, seal: int = 35) -> cfgmod.Config:
    return cfgmod.load(config_file(write_config, v2=v2, seal=seal))


@dataclass
class Env:
    store: Store
    cfg: cfgmod.Config
    url: str
    write_config: Callable[..., Path]

    def collect(self, slug: str, day: date, sms: int, emails: int = 0) -> None:
        with self.store.engine.begin() as conn:
            tid = get_tenant(conn, slug).id  # type: ignore[union-attr]
            upsert_metric(conn, tid, day, "twilio", MetricRow(sms_outbound_count=sms, emails_sent=emails))

    def adjustments(self) -> list[dict[str, Any]]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(usage_adjustments).order_by(usage_adjustments.c.id)).all()
        return [dict(r._mapping) for r in rows]

    def rollup_row(self, slug: str, day: date) -> dict[str, Any]:
        with self.store.engine.connect() as conn:
            tid = get_tenant(conn, slug).id  # type: ignore[union-attr]
            r = conn.execute(
                select(usage_rollups_daily).where(
                    usage_rollups_daily.c.tenant_id == tid, usage_rollups_daily.c.date == day
                )
            ).one()
        return dict(r._mapping)


@pytest.fixture
def env(priced: Callable[..., Priced], write_config: Callable[..., Path]) -> Env:
    base = priced(v2=None, tenants=TENANTS, extra="[rollup]\nseal_after_days = 35\n")
    return Env(base.store, base.cfg, base.url, write_config)


def _closed_october(env: Env) -> None:
    """acme: 100 SMS on Oct 10 and 50 SMS + 1000 emails on Oct 20; globex: 10 SMS on Oct 20; rolled up on Nov 2
    and October sealed by hand."""
    env.collect("acme", date(2026, 10, 10), 100)
    env.collect("acme", date(2026, 10, 20), 50, emails=1000)
    env.collect("globex", date(2026, 10, 20), 10)
    run_rollup(env.store, env.cfg, OCT, today=NOV_2)
    result = seal(env.store, date(2026, 10, 31), today=NOV_2)
    assert result.moved and result.sealed_through == date(2026, 10, 31) and result.pending == 0


def _this_month() -> Window:
    today = utc_today()
    return Window.month(today.year, today.month)


def test_sealed_month_unchanged_after_recollect_and_adjustment_shown_where_posted(
    env: Env, cli: Callable[..., Any]
) -> None:
    _closed_october(env)
    october_cost = 150 * SMS + 1000 * EMAIL + 10 * SMS
    before = tenant_report_dict(tenant_report(env.store, env.cfg, "acme", OCT, today=NOV_2))
    assert Decimal(before["totals"]["estimated_cost_usd"]) == 150 * SMS + 1000 * EMAIL
    sealed_row = env.rollup_row("acme", date(2026, 10, 20))

    # A late re-collect changes a sealed day: 80 SMS instead of 50, 900 emails instead of 1000.
    env.collect("acme", date(2026, 10, 20), 80, emails=900)
    result = run_rollup(env.store, env.cfg, today=date(2026, 11, 5))
    assert result.adjusted == 1 and result.changed == 0

    # The sealed rollup row and October's figures are exactly as finance saw them.
    assert env.rollup_row("acme", date(2026, 10, 20)) == sealed_row
    after = tenant_report_dict(tenant_report(env.store, env.cfg, "acme", OCT, today=NOV_2))
    assert after["totals"] == before["totals"]
    assert after["adjustments"]["posted"] == []
    with env.store.engine.connect() as conn:
        total = conn.execute(select(func.sum(usage_rollups_daily.c.estimated_cost_usd))).scalar_one()
    assert total == october_cost

    # The adjustment: the meter deltas and the cost delta, reason, posted now.
    (adj,) = env.adjustments()
    assert adj["date"] == date(2026, 10, 20) and adj["reason"] == "late-data"
    assert adj["sms_total"] == 30 and adj["email_total"] == -100 and adj["ai_total_tokens"] == 0
    assert adj["sms_cost_usd"] == 30 * SMS and adj["email_cost_usd"] == -100 * EMAIL
    late = 30 * SMS - 100 * EMAIL
    assert adj["estimated_cost_usd"] == late == Decimal("0.37")
    posted = adj["posted_at"]
    month = Window.month(posted.year, posted.month)
    assert month == _this_month() and date(2026, 10, 20) not in month

    # Shown in the month it was posted in: report JSON, API summary, export JSON and CSV.
    rep = tenant_report(env.store, env.cfg, "acme", month)
    shown = tenant_report_dict(rep)["adjustments"]
    assert [(a["date"], a["reason"], a["sms_total"], a["estimated_cost_usd"]) for a in shown["posted"]] == [
        ("2026-10-20", "late-data", 30, "0.370000")
    ]
    assert shown["estimated_cost_usd"] == "0.370000"
    assert Decimal(shown["estimated_cost_with_adjustments_usd"]) == rep.totals.estimated_cost + late
    assert tenant_summary_dict(rep)["adjustments"] == shown
    assert tenant_report(env.store, env.cfg, "globex", month).adjustments == ()

    out = cli(
        "export", "--format", "json", "--since", month.start.isoformat(), "--until", month.last.isoformat()
    )
    assert out.code == 0, out.err
    exported = json.loads(out.out)
    assert [(a["tenant"], a["date"], a["email_total"]) for a in exported["adjustments"]] == [
        ("acme", "2026-10-20", -100)
    ]
    october_export = json.loads(cli("export", "--format", "json", "--month", "2026-10").out)
    assert october_export["adjustments"] == []
    assert sum(Decimal(r["estimated_cost_usd"]) for r in october_export["rows"]) == october_cost

    out = cli("export", "--format", "csv", "--month", month.start.strftime("%Y-%m"), "--adjustments")
    assert out.code == 0, out.err
    assert out.out.splitlines()[0] == ADJUSTMENTS_CSV_HEADER
    (row,) = list(csv.DictReader(io.StringIO(out.out)))
    assert row["tenant"] == "acme" and row["reason"] == "late-data" and row["sms_total"] == "30"
    assert row["estimated_cost_usd"] == "0.370000" and row["email_cost_usd"] == str(-100 * EMAIL) + "00"
    days_csv = cli("export", "--format", "csv", "--month", month.start.strftime("%Y-%m"))
    assert "1 adjustment for sealed days posted in this window" in days_csv.err

    # Rerunning the rollup (default and over the sealed month) posts nothing a second time.
    assert run_rollup(env.store, env.cfg, today=date(2026, 11, 5)).adjusted == 0
    assert run_rollup(env.store, env.cfg, OCT, today=date(2026, 11, 5)).adjusted == 0
    assert len(env.adjustments()) == 1

    # A further change posts only the new difference.
    env.collect("acme", date(2026, 10, 20), 70, emails=900)
    assert run_rollup(env.store, env.cfg, OCT, today=date(2026, 11, 6)).adjusted == 1
    assert [a["sms_total"] for a in env.adjustments()] == [30, -10]
    assert env.rollup_row("acme", date(2026, 10, 20)) == sealed_row


def test_late_data_for_a_sealed_day_without_a_rollup_is_an_adjustment(env: Env) -> None:
    _closed_october(env)
    env.collect("globex", date(2026, 10, 3), 7)
    assert run_rollup(env.store, env.cfg, today=date(2026, 11, 5)).adjusted == 1
    (adj,) = env.adjustments()
    assert adj["sms_total"] == 7 and adj["estimated_cost_usd"] == 7 * SMS
    with env.store.engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(usage_rollups_daily)).scalar_one()
    assert rows == 3  # no rollup row was written for the sealed day


def test_adjustment_is_posted_at_the_real_time_when_a_backfill_stamps_its_rows_earlier(env: Env) -> None:
    _closed_october(env)
    # Nov 1 collected but not rolled up: an explicit October run stamps its rows before that write, so that Nov 1
    # stays pending; the adjustment it posts must still carry the time it was posted (its month shows it).
    env.collect("acme", date(2026, 11, 1), 1)
    env.collect("acme", date(2026, 10, 20), 51, emails=1000)
    started = utcnow()
    assert run_rollup(env.store, env.cfg, OCT, today=date(2026, 11, 5)).adjusted == 1
    (adj,) = env.adjustments()
    assert adj["posted_at"] >= started
    assert date(2026, 11, 1) in run_rollup(env.store, env.cfg, today=date(2026, 11, 5)).days


def test_rollup_seals_by_age_after_rolling_up(env: Env, write_config: Callable[..., Path]) -> None:
    env.collect("acme", date(2026, 9, 1), 5)
    env.collect("acme", date(2026, 10, 20), 5)
    # A first rollup rolls up every collected day, old ones included, then seals those 35 days old.
    result = run_rollup(env.store, env.cfg, today=date(2026, 11, 5))
    assert result.changed == 2 and result.adjusted == 0
    assert result.sealed_through == date(2026, 10, 1)
    env.collect("acme", date(2026, 9, 1), 6)
    env.collect("acme", date(2026, 10, 20), 6)
    result = run_rollup(env.store, env.cfg, today=date(2026, 11, 6))
    assert result.changed == 1 and result.adjusted == 1
    assert env.rollup_row("acme", date(2026, 10, 20))["sms_total"] == 6
    assert env.rollup_row("acme", date(2026, 9, 1))["sms_total"] == 5

    # seal_after_days = 0: rollup never seals, and a hand seal never moves backwards.
    off = config(write_config, seal=0)
    run_rollup(env.store, off, today=date(2027, 6, 1))
    with env.store.engine.connect() as conn:
        assert sealed_through(conn) == date(2026, 10, 2)
    assert not seal(env.store, date(2026, 9, 30), today=date(2026, 11, 6)).moved


def _snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    with store.engine.connect() as conn:
        return {
            t.name: sorted(conn.execute(select(t)).all(), key=repr)
            for t in metadata.sorted_tables
            if t.name != "alembic_version"
        }


def test_reprice_dry_run_writes_nothing(
    env: Env, cli: Callable[..., Any], write_config: Callable[..., Path]
) -> None:
    _closed_october(env)
    env.collect("acme", date(2026, 11, 1), 20)
    run_rollup(env.store, env.cfg, Window(date(2026, 11, 1), NOV_2), today=NOV_2)
    # The books are edited: a book v2 from 1 October reprices every day's SMS from $0.014 to $0.010.
    edited = config(write_config, v2=OCT.start)
    before = _snapshot(env.store)
    sqlite_file = Path(env.url.removeprefix("sqlite:///")) if env.url.startswith("sqlite") else None
    raw = sqlite_file.read_bytes() if sqlite_file else b""

    report = reprice(
        env.store, edited, Window(OCT.start, NOV_2), dry_run=True, today=NOV_2 + timedelta(days=1)
    )
    lines = {line.slug: line for line in report.lines}
    assert lines["acme"].old_cost == 170 * SMS + 1000 * EMAIL
    assert lines["acme"].new_cost == 170 * SMS_V2 + 1000 * EMAIL
    assert lines["acme"].difference == 170 * (SMS_V2 - SMS) == Decimal("-0.68")
    assert lines["globex"].old_cost == 10 * SMS and lines["globex"].new_cost == 10 * SMS_V2
    assert report.dry_run and report.adjusted == report.changed == 0

    out = cli(
        "-c",
        str(config_file(write_config, v2=OCT.start)),
        "reprice",
        "--since",
        "2026-10-01",
        "--until",
        "2026-11-01",
        "--dry-run",
    )
    assert out.code == 0, out.err
    assert "acme" in out.out and "$-0.680000" in out.out and "dry run" in out.err

    assert _snapshot(env.store) == before
    if sqlite_file:
        assert sqlite_file.read_bytes() == raw


def test_reprice_updates_unsealed_days_and_adjusts_sealed_ones(
    env: Env, write_config: Callable[..., Path]
) -> None:
    _closed_october(env)
    env.collect("acme", date(2026, 11, 1), 20)
    env.collect("globex", date(2026, 11, 1), 3)
    run_rollup(env.store, env.cfg, Window(date(2026, 11, 1), NOV_2), today=NOV_2)
    sealed_row = env.rollup_row("acme", date(2026, 10, 10))
    globex_nov = env.rollup_row("globex", date(2026, 11, 1))

    # A new book from Nov 1 leaves October alone (effective-dated) and reprices November.
    with_v2 = config(write_config, v2=date(2026, 11, 1))
    window = Window(OCT.start, NOV_2)
    report = reprice(env.store, with_v2, window, tenant="acme", today=date(2026, 11, 3))
    assert report.adjusted == 0 and report.changed == 1 and report.tenant_days == 1
    assert env.rollup_row("globex", date(2026, 11, 1)) == globex_nov  # --tenant acme
    nov = env.rollup_row("acme", date(2026, 11, 1))
    assert nov["pricing_version"] == "v2" and nov["sms_cost_usd"] == 20 * SMS_V2
    assert env.adjustments() == []

    # Moving v2 back to 1 October reprices the sealed days by adjustments; their rollup rows stay.
    edited = config(write_config, v2=OCT.start)
    report = reprice(env.store, edited, window, tenant="acme", today=date(2026, 11, 3))
    assert report.adjusted == 2 and report.changed == 0
    assert env.rollup_row("acme", date(2026, 10, 10)) == sealed_row
    adjs = env.adjustments()
    assert {a["date"]: a["sms_cost_usd"] for a in adjs} == {
        date(2026, 10, 10): 100 * (SMS_V2 - SMS),
        date(2026, 10, 20): 50 * (SMS_V2 - SMS),
    }
    assert all(
        a["reason"] == "reprice" and a["sms_total"] == 0 and a["pricing_version"] == "v2" for a in adjs
    )
    # --tenant: globex's sealed day is not touched.
    assert all(a["tenant_id"] == adjs[0]["tenant_id"] for a in adjs)

    # Repricing again posts nothing more; the dry run now shows no difference.
    assert reprice(env.store, edited, window, tenant="acme", today=date(2026, 11, 3)).adjusted == 0
    again = reprice(env.store, edited, window, dry_run=True, today=date(2026, 11, 3))
    acme = next(line for line in again.lines if line.slug == "acme")
    assert acme.difference == 0 and acme.old_cost == 150 * SMS_V2 + 1000 * EMAIL + 20 * SMS_V2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("seal", "--until", "2026-13-01"), "--until: '2026-13-01' is not a date"),
        (("seal", "--until", "today"), "is not over yet"),
        (("seal", "--until", "2999-01-01"), "is not over yet"),
        (("reprice", "--since", "2026-10-05", "--until", "2026-10-01"), "is before --since"),
        (("reprice", "--since", "x", "--until", "2026-10-01"), "--since: 'x' is not a date"),
        (("reprice", "--since", "2026-10-01", "--until", "2026-10-02", "-t", "acm"), "did you mean 'acme'"),
        (("reprice", "--since", "today", "--until", "today"), "is not over yet"),
    ],
)
def test_seal_and_reprice_errors_exit_2_with_one_line(
    env: Env, cli: Callable[..., Any], args: tuple[str, ...], message: str
) -> None:
    out = cli(*args)
    assert out.code == 2
    assert message in out.err and out.err.count("\n") == 1, out.err
    assert out.out == ""


def test_seal_cli_seals_and_says_so(env: Env, cli: Callable[..., Any]) -> None:
    _closed_october(env)
    env.collect("acme", date(2026, 11, 1), 1)
    out = cli("seal", "--until", "2026-11-01")
    assert out.code == 0
    assert "sealed every day through 2026-11-01" in out.err and "1 sealed day collected" in out.err
    out = cli("seal", "--until", "2026-10-15")
    assert out.code == 0 and "already sealed through 2026-11-01" in out.err


def test_api_summary_shows_the_adjustment_in_the_month_it_was_posted(env: Env) -> None:
    from fastapi.testclient import TestClient

    from usagectl.store.tokens import create_token
    from usagectl.web.app import ServeSettings, create_app

    _closed_october(env)
    env.collect("acme", date(2026, 10, 10), 90)
    run_rollup(env.store, env.cfg, today=date(2026, 11, 5))
    token, _ = create_token(env.store, tenant="acme")
    month = _this_month()
    with TestClient(create_app(ServeSettings(env.cfg, store=env.store, access_log=False))) as client:
        headers = {"Authorization": f"Bearer {token}"}

        def summary(m: str) -> Any:
            r = client.get("/api/admin/usage/summary", params={"month": m}, headers=headers)
            assert r.status_code == 200, r.text
            return r.json()

        october = summary("2026-10")
        posted = summary(month.start.strftime("%Y-%m"))
    # 150 SMS + 1000 emails, as sealed
    assert october["cost"]["estimated_cost_usd"] == str(micro(150 * SMS + 1000 * EMAIL)) == "2.600000"
    assert october["adjustments"]["posted"] == []
    (adj,) = posted["adjustments"]["posted"]
    assert adj["date"] == "2026-10-10" and adj["sms_total"] == -10
    assert adj["sms_cost_usd"] == str(micro(-10 * SMS)) == "-0.140000"
    assert posted["adjustments"]["estimated_cost_usd"] == "-0.140000"


def test_concurrent_rollups_post_one_adjustment(env: Env) -> None:
    import threading

    _closed_october(env)
    env.collect("acme", date(2026, 10, 20), 60, emails=1000)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_rollup(env.store, env.cfg, OCT, today=date(2026, 11, 5), lock_wait=60)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [a["sms_total"] for a in env.adjustments()] == [10]


def _stored_costs(store: Store) -> dict[str, Decimal]:
    """Each tenant's cost over every day, as reports see it: rollups plus adjustments."""
    from usagectl.store.tables import tenants

    out: dict[str, Decimal] = {}
    with store.engine.connect() as conn:
        for table in (usage_rollups_daily, usage_adjustments):
            q = select(tenants.c.slug, table.c.estimated_cost_usd).join(
                tenants, tenants.c.id == table.c.tenant_id
            )
            for slug, cost in conn.execute(q):
                out[slug] = out.get(slug, Decimal(0)) + cost
    return out


def test_a_reprice_that_waited_for_the_lock_prints_what_it_wrote(
    env: Env, cli: Callable[..., Any], write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 23 item 6: of two concurrent reprices, the one that got the lock second printed the difference it
    had computed before waiting (+$0.38) while writing nothing. Here the other run takes the lock and finishes
    just as this one asks for it (no timing: the lock itself is wrapped)."""
    import usagectl.rollup as rollup_mod

    _closed_october(env)
    env.collect("acme", date(2026, 11, 1), 20)
    run_rollup(env.store, env.cfg, Window(date(2026, 11, 1), NOV_2), today=NOV_2)
    edited = config(write_config, v2=OCT.start)
    edited_path = config_file(write_config, v2=OCT.start)
    window = Window(OCT.start, date(2026, 11, 2))  # Oct 1 .. Nov 1, as --since/--until below
    before = _stored_costs(env.store)

    real_lock = rollup_mod.job_lock
    other: list[Any] = []

    @contextmanager
    def another_run_first(store: Store, *args: Any, **kwargs: Any) -> Iterator[None]:
        if not other:
            other.append(None)
            other[0] = reprice(env.store, edited, window, today=utc_today())
        with real_lock(store, *args, **kwargs):
            yield

    monkeypatch.setattr(rollup_mod, "job_lock", another_run_first)
    out = cli("-c", str(edited_path), "reprice", "--since", "2026-10-01", "--until", "2026-11-01")
    assert out.code == 0, out.err
    after = _stored_costs(env.store)

    # The run that went first printed exactly what it changed (acme's sealed October days by 170 SMS x -$0.004,
    # globex's by 10 x -$0.004, as adjustments; acme's unsealed Nov 1 rewritten).
    first = {line.slug: line.difference for line in other[0].lines}
    assert first == {"acme": 170 * (SMS_V2 - SMS), "globex": 10 * (SMS_V2 - SMS)}
    assert first == {"acme": Decimal("-0.68"), "globex": Decimal("-0.04")}
    assert {slug: after[slug] - before[slug] for slug in before} == first
    assert other[0].changed == 1 and other[0].adjusted == 3
    # The one that waited found nothing left to change, wrote nothing, and says so.
    rows = {
        line.split()[0]: line for line in out.out.splitlines() if line.split()[:1] in (["acme"], ["globex"])
    }
    assert set(rows) == {"acme", "globex"}, out.out
    assert all(row.split()[-1] == "$0.000000" for row in rows.values()), out.out  # zero has no sign
    assert "$-0.68" not in out.out and "$-0.04" not in out.out
    assert "(0 rows changed), 0 adjustments posted" in out.err
