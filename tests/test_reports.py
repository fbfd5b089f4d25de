from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from conftest import Priced
from priced import EMAIL, FORMULA_TENANTS, OCT, SMS_V1, SMS_V2, V2_FROM, micro, seed
from usagectl.periods import Window
from usagectl.records import MetricRow
from usagectl.reports import EMPTY_MESSAGE, export_rows, tenant_report

ANSI = re.compile(r"\x1b\[")
SECRET = "sk-live-SECRET-value-123"


@pytest.fixture
def env(priced: Callable[..., Priced], monkeypatch: pytest.MonkeyPatch) -> Priced:
    # globex's name is a spreadsheet formula; an OpenAI key in the config must never reach any output.
    monkeypatch.setenv("OPENAI_ADMIN_KEY", SECRET)
    return priced(tenants=FORMULA_TENANTS, extra='\n[providers.openai]\nadmin_key_env = "OPENAI_ADMIN_KEY"\n')


def test_empty_tenant_sees_the_onboarding_message(env: Priced, cli: Callable[..., Any]) -> None:
    env.standard()
    res = cli("report", "--tenant", "quiet", "--month", "2026-10")
    assert res.code == 0
    assert res.out == "Usage metrics will appear here once you begin messaging.\n" == EMPTY_MESSAGE + "\n"
    js = json.loads(cli("report", "--tenant", "quiet", "--month", "2026-10", "--format", "json").out)
    assert js["has_usage"] is False and js["days"] == [] and js["totals"]["estimated_cost_usd"] == "0.000000"


def test_unknown_tenant_is_a_usage_error_pointing_at_tenants(env: Priced, cli: Callable[..., Any]) -> None:
    for args in (("report", "--tenant", "nope"), ("export", "--format", "csv", "--tenant", "nope")):
        res = cli(*args)
        assert res.code == 2
        assert res.out == ""
        assert res.err.strip() == "usagectl: error: unknown tenant 'nope'; `usagectl tenants` lists them"


def test_price_book_change_mid_month(env: Priced, cli: Callable[..., Any]) -> None:
    env.standard()
    js = json.loads(cli("report", "--tenant", "acme", "--month", "2026-10", "--format", "json").out)
    days = {d["date"]: d for d in js["days"]}
    assert len(days) == 31
    last_v1, first_v2 = str(V2_FROM - timedelta(days=1)), str(V2_FROM)
    assert days[last_v1]["pricing_version"] == "v1"
    assert days[last_v1]["sms_cost_usd"] == str(micro(40 * SMS_V1)) == "0.560000"
    assert days[first_v2]["pricing_version"] == "v2"
    assert days[first_v2]["sms_cost_usd"] == str(micro(40 * SMS_V2)) == "0.400000"
    # 15 days at v1 and 16 at v2, each 40 SMS and 100 emails (acme is on starter: no override).
    v1_days, v2_days = (V2_FROM - OCT.start).days, (OCT.end - V2_FROM).days
    assert (v1_days, v2_days) == (15, 16)
    expected = v1_days * micro(40 * SMS_V1) + v2_days * micro(40 * SMS_V2) + 31 * micro(100 * EMAIL)
    assert Decimal(js["totals"]["estimated_cost_usd"]) == expected == Decimal("16.350000")
    assert js["month_to_date"]["estimated_cost_usd"] == js["totals"]["estimated_cost_usd"]
    assert js["totals"]["provider_cost_usd"] == str(31 * Decimal("0.41")) + "0000"
    table = cli("report", "--tenant", "acme", "--month", "2026-10").out
    assert "v1, v2" in table


def test_plan_allowance_over_100_percent(env: Priced, cli: Callable[..., Any]) -> None:
    env.standard()
    js = json.loads(cli("report", "--tenant", "acme", "--month", "2026-10", "--format", "json").out)
    allow = {a["metric"]: a for a in js["allowances"]}
    assert allow["sms"] == {
        "metric": "sms",
        "included": 500,
        "used": 1240,
        "percent_used": "248.0",
        "over": True,
    }
    assert allow["emails"]["percent_used"] == "62.0" and allow["emails"]["over"] is False
    out = cli("report", "--tenant", "acme", "--month", "2026-10").out
    assert re.search(r"SMS\s+1,240\s+500\s+248\.0% over", out)


def test_month_to_date_projection_is_labelled_an_estimate(env: Priced, cli: Callable[..., Any]) -> None:
    env.standard()
    store, cfg = env.store, env.cfg
    rep = tenant_report(store, cfg, "acme", OCT, today=date(2026, 10, 11))
    mtd = rep.month_to_date
    assert mtd.as_of == date(2026, 10, 10) and not mtd.complete
    assert mtd.cost == 10 * (micro(40 * SMS_V1) + micro(100 * EMAIL)) == Decimal("6.10")  # all at v1
    assert mtd.projected_cost == (mtd.cost * 31 / 10).quantize(Decimal("0.000001"))
    from usagectl.render.table import render_tenant_report

    buf = io.StringIO()
    render_tenant_report(rep, buf, width=80)
    assert "Month-end projection (estimate)" in buf.getvalue()


def _lines_ok(text: str, width: int = 80) -> None:
    assert not ANSI.search(text), "escape codes in output"
    too_long = [line for line in text.splitlines() if len(line) > width]
    assert not too_long, too_long


def test_plain_output_in_80_columns_without_tty(
    env: Priced, cli: Callable[..., Any], monkeypatch: Any
) -> None:
    env.standard()
    monkeypatch.setenv("COLUMNS", "80")
    commands = [
        ("report", "--tenant", "acme", "--days", "45"),
        ("report", "--tenant", "acme", "--month", "2026-10"),
        ("report", "--tenant", "globex", "--month", "2026-10"),
        ("tenants", "--month", "2026-10"),
    ]
    for args in commands:
        res = cli(*args)
        assert res.code == 0 and res.err == ""  # no progress lines, no diagnostics
        _lines_ok(res.out)
    out = cli("report", "--tenant", "acme", "--month", "2026-10").out
    assert "Estimated cost per day" in out and "┤" in out  # the chart is there, as plain text


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_color_on_a_terminal_means_no_escape_codes(
    env: Priced, cli: Callable[..., Any], monkeypatch: Any
) -> None:
    from usagectl.render.table import render_tenant_report, render_tenants
    from usagectl.reports import tenants_report

    env.standard()
    store, cfg = env.store, env.cfg
    rep = tenant_report(store, cfg, "acme", OCT)
    tty = FakeTTY()
    render_tenant_report(rep, tty, width=80)
    assert ANSI.search(tty.getvalue())  # a terminal gets colour...

    monkeypatch.setenv("NO_COLOR", "1")
    for render, report in ((render_tenant_report, rep), (render_tenants, tenants_report(store, OCT))):
        tty = FakeTTY()
        render(report, tty, width=80)  # type: ignore[operator]
        _lines_ok(tty.getvalue())  # ...but not with NO_COLOR


def test_report_and_export_of_one_tenant_never_show_another(env: Priced, cli: Callable[..., Any]) -> None:
    env.standard()
    outputs = [
        cli("report", "--tenant", "acme", "--month", "2026-10", "--format", f).out
        for f in ("table", "json", "csv")
    ]
    outputs += [
        cli("export", "--format", f, "--tenant", "acme", "--month", "2026-10").out for f in ("csv", "json")
    ]
    for out in outputs:
        assert out
        for needle in ("globex", "HYPERLINK", "987654", "987,654", "55555", "55,555"):
            assert needle not in out
        assert SECRET not in out


def test_csv_escapes_formula_cells_and_money_is_exact(env: Priced, cli: Callable[..., Any]) -> None:
    env.standard()
    out = cli("export", "--format", "csv", "--month", "2026-10").out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 62
    globex = [r for r in rows if r["tenant"] == "globex"]
    assert globex[0]["tenant_name"] == '\'=HYPERLINK("http://evil")'
    assert all(not r["tenant_name"].startswith(("=", "+", "-", "@")) for r in rows)
    acme = [r for r in rows if r["tenant"] == "acme"]
    assert (
        acme[0]["provider_cost_usd"] == "0.410000" and globex[0]["provider_cost_usd"] == ""
    )  # unknown, not 0
    assert sum(Decimal(r["estimated_cost_usd"]) for r in rows) == Decimal(
        json.loads(cli("tenants", "--month", "2026-10", "--format", "json").out)["total"][
            "estimated_cost_usd"
        ]
    )
    assert SECRET not in out
    assert "'=" in cli("tenants", "--month", "2026-10", "--format", "csv").out


def test_csv_export_bulk_path_writes_exactly_what_the_day_rows_give(
    env: Priced, cli: Callable[..., Any]
) -> None:
    from dataclasses import replace

    from usagectl.money import from_micros
    from usagectl.render.csv import micros_text, write_export_csv

    env.standard()
    store = env.store
    fast, slow = io.StringIO(), io.StringIO()
    assert write_export_csv(export_rows(store, OCT), fast) == 62
    assert write_export_csv(replace(export_rows(store, OCT), raw_rows=None), slow) == 62
    assert fast.getvalue() == slow.getvalue()
    for micros in (0, 1, 999_999, 1_000_000, 410_000, 12_345_678_901_234, -1, -2_500_000):
        assert micros_text(micros) == str(from_micros(micros))


def test_tenants_ranking_zeros_sort_limit_and_total(env: Priced, cli: Callable[..., Any]) -> None:
    env.standard()
    js = json.loads(cli("tenants", "--month", "2026-10", "--format", "json").out)
    assert [t["tenant"] for t in js["tenants"]] == ["globex", "acme", "quiet"]  # by cost, highest first
    quiet = js["tenants"][2]
    assert quiet["sms_total"] == 0 and quiet["estimated_cost_usd"] == "0.000000"
    assert quiet["provider_cost_usd"] is None
    js = json.loads(cli("tenants", "--month", "2026-10", "--sort", "name", "--format", "json").out)
    assert [t["tenant"] for t in js["tenants"]] == ["globex", "acme", "quiet"]  # "=HYPERLINK" sorts first
    js = json.loads(
        cli("tenants", "--month", "2026-10", "--sort", "email", "--limit", "1", "--format", "json").out
    )
    assert [t["tenant"] for t in js["tenants"]] == ["acme"]
    assert js["tenant_count"] == 3 and js["total"]["sms_total"] == 31 * (40 + 987_654)
    table = cli("tenants", "--month", "2026-10", "--limit", "2").out
    assert "top 2 of 3" in table and "total (3)" in table
    assert cli("tenants", "--sort", "bogus").code == 2


def test_tenants_with_no_usage_at_all(env: Priced, cli: Callable[..., Any]) -> None:
    res = cli("tenants", "--month", "2026-10", "--format", "csv")
    assert res.code == 0
    rows = list(csv.DictReader(io.StringIO(res.out)))
    assert [r["tenant"] for r in rows] == ["acme", "globex", "quiet", "TOTAL"]
    assert {r["estimated_cost_usd"] for r in rows} == {"0.000000"}


def test_export_streams_many_rows(env: Priced, cli: Callable[..., Any], tmp_path: Path) -> None:
    store = env.store
    days = Window(date(2026, 1, 1), date(2026, 1, 1) + timedelta(days=400))
    for slug in ("acme", "globex", "quiet"):
        seed(store, slug, days, MetricRow(sms_outbound_count=1, emails_sent=2))
    assert cli("-q", "rollup", "--since", "2026-01-01", "--until", "2027-02-04").code == 0
    window = Window(date(2026, 1, 1), date(2027, 2, 5))
    rows = export_rows(store, window).rows
    assert isinstance(rows, Iterator)  # a generator: nothing is fetched until it is consumed
    first = next(rows)
    assert first.date == date(2026, 1, 1)
    rows.close()  # type: ignore[attr-defined]

    out = tmp_path / "all.json"
    res = cli("export", "--format", "json", "--since", "2026-01-01", "--until", "2027-02-04", "-o", str(out))
    assert res.code == 0 and res.out == "" and "wrote 1200 rows" in res.err
    data = json.loads(out.read_text())
    assert len(data["rows"]) == 1200
    assert [r["date"] for r in data["rows"][:3]] == ["2026-01-01"] * 3
    res = cli("export", "--format", "csv", "--since", "2026-01-01", "--until", "2027-02-04")
    assert len(res.out.splitlines()) == 1201


# Snapshots of the machine-readable schemas: a change here is a breaking change for finance tooling and must
# bump SCHEMA_VERSION and docs/export.md.
EXPORT_CSV_HEADER = (
    "date,tenant,tenant_name,plan_tier,pricing_version,sms_total,mms_total,voice_total_minutes,email_total,"
    "ai_tokens_in,ai_tokens_out,ai_total_tokens,jobs_executed,storage_bytes,sms_cost_usd,mms_cost_usd,"
    "voice_cost_usd,email_cost_usd,ai_cost_usd,estimated_cost_usd,provider_cost_usd"
)
TENANTS_CSV_HEADER = (
    "month,tenant,tenant_name,plan_tier,active,sms_total,email_total,voice_total_minutes,ai_total_tokens,"
    "estimated_cost_usd,provider_cost_usd,plan_charge_usd,margin_usd"
)
ENVELOPE = ["schema_version", "kind", "currency", "window", "generated_at"]
TOTALS = [
    "sms_total", "mms_total", "voice_total_minutes", "email_total", "ai_total_tokens", "jobs_executed",
    "sms_cost_usd", "mms_cost_usd", "voice_cost_usd", "email_cost_usd", "ai_cost_usd", "estimated_cost_usd",
    "provider_cost_usd",
]  # fmt: skip


def test_schema_snapshots(env: Priced, cli: Callable[..., Any]) -> None:
    env.standard()
    for args in (("export", "--format", "csv"), ("report", "--tenant", "acme", "--format", "csv")):
        assert cli(*args, "--month", "2026-10").out.splitlines()[0] == EXPORT_CSV_HEADER
    assert cli("tenants", "--month", "2026-10", "--format", "csv").out.splitlines()[0] == TENANTS_CSV_HEADER

    rep = json.loads(cli("report", "--tenant", "acme", "--month", "2026-10", "--format", "json").out)
    assert list(rep) == [
        *ENVELOPE, "tenant", "has_usage", "totals", "month_to_date", "allowances", "plan_charge", "provider_costs",
        "margin_usd", "adjustments", "provisional_days", "days",
    ]  # fmt: skip
    assert list(rep["plan_charge"]) == [
        "plan_tier",
        "monthly_fee_usd",
        "overage",
        "overage_usd",
        "plan_charge_usd",
        "summary",
        "parts",
    ]
    assert list(rep["plan_charge"]["overage"]) == [
        "sms_total", "mms_total", "voice_total_minutes", "email_total", "ai_total_tokens",
    ]  # fmt: skip
    assert list(rep["adjustments"]) == ["posted", "estimated_cost_usd", "estimated_cost_with_adjustments_usd"]
    assert rep["schema_version"] == 1 and rep["currency"] == "USD"
    assert rep["window"] == {"start": "2026-10-01", "end": "2026-10-31", "days": 31}
    assert list(rep["tenant"]) == ["slug", "name", "plan_tier"]
    assert list(rep["totals"]) == TOTALS
    assert list(rep["month_to_date"]) == [
        "month", "as_of", "estimated_cost_usd", "projected_month_cost_usd", "projection_is_estimate",
        "days_elapsed", "projection_shown", "projected_plan_charge_usd",
    ]  # fmt: skip
    assert list(rep["allowances"][0]) == ["metric", "included", "used", "percent_used", "over"]
    assert ",".join(rep["days"][0]) == EXPORT_CSV_HEADER

    ten = json.loads(cli("tenants", "--month", "2026-10", "--format", "json").out)
    assert list(ten) == [*ENVELOPE, "month", "sort", "tenant_count", "tenants", "total"]
    assert ",".join(list(ten["tenants"][0])[:-2]) == TENANTS_CSV_HEADER.replace("month,", "")
    assert list(ten["tenants"][0])[-2:] == ["plan_charge", "provider_costs"]
    assert list(ten["total"]) == [*TOTALS, "plan_charge_usd", "margin_usd"]

    exp = json.loads(cli("export", "--format", "json", "--month", "2026-10").out)
    assert list(exp) == [*ENVELOPE, "tenant", "plan_charges", "rows", "adjustments"]
    assert [(c["month"], c["tenant"]) for c in exp["plan_charges"]] == [
        ("2026-10", "acme"), ("2026-10", "globex"), ("2026-10", "quiet"),
    ]  # fmt: skip
    assert ",".join(exp["rows"][0]) == EXPORT_CSV_HEADER
    # Money is a decimal string, counts are integers, unknown is null.
    row = exp["rows"][0]
    assert isinstance(row["estimated_cost_usd"], str) and isinstance(row["sms_total"], int)
    assert row["storage_bytes"] is None


def test_report_queries_use_indexes(env: Priced, cli: Callable[..., Any]) -> None:
    """One tenant over a range and all tenants for a month are index searches, not scans (SQLite plan)."""
    store = env.store
    if store.dialect != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's; PostgreSQL picks seq scans on tiny tables anyway")
    from sqlalchemy import event

    plans: list[str] = []

    def explain(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        if "usage_rollups_daily" in statement and statement.lstrip().upper().startswith("SELECT"):
            rows = cursor.connection.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
            plans.append("\n".join(str(r[-1]) for r in rows))

    env.standard()
    from usagectl.reports import tenants_report

    cfg = env.cfg
    event.listen(store.engine, "before_cursor_execute", explain)
    try:
        tenant_report(store, cfg, "acme", OCT)
        tenants_report(store, OCT)
        list(export_rows(store, OCT).rows)
        list(export_rows(store, OCT, "acme").rows)
    finally:
        event.remove(store.engine, "before_cursor_execute", explain)
    assert len(plans) >= 6
    for plan in plans:
        assert "SCAN usage_rollups_daily" not in plan, plan


def test_last_n_days_end_at_the_last_complete_utc_day() -> None:
    """Issue 12 item 2: `--days N` and the default report window end yesterday, never on today's empty day."""
    from usagectl.periods import Window, resolve_window

    today = date(2026, 11, 25)
    assert Window.last_days(30, today).label() == "2026-10-26 .. 2026-11-24"
    assert resolve_window(days=1, today=today).label() == "2026-11-24 .. 2026-11-24"


def test_chart_draws_a_missing_day_as_a_gap_not_zero() -> None:
    from usagectl.render.chart import line_chart

    def zero_row(values: list[float | None]) -> str:
        chart = line_chart([f"d{i}" for i in range(len(values))], values, width=60)
        return next(line for line in chart.splitlines() if re.match(r"\s*0\.0+┤", line))

    assert "•" in zero_row([5.0, 5.0, 0.0, 5.0, 5.0])
    assert "•" not in zero_row([5.0, 5.0, None, 5.0, 5.0])


# A name from before the config refused control characters: a tenant since removed from the config keeps it.
LEGACY_NAME = "Legacy\rCo\x1b[2J\x1b]0;owned\x07\u202e"


def test_control_characters_in_a_stored_name_never_split_csv_rows_or_reach_the_terminal(
    env: Priced, cli: Callable[..., Any]
) -> None:
    from usagectl.store.tables import tenants, utcnow

    store = env.store
    now = utcnow()
    with store.engine.begin() as conn:
        conn.execute(
            tenants.insert().values(
                slug="legacy",
                name=LEGACY_NAME,
                plan_tier="starter",
                active=False,
                created_at=now,
                updated_at=now,
            )
        )
    seed(store, "legacy", OCT, MetricRow(sms_outbound_count=3))
    env.standard()

    export = cli("export", "--format", "csv", "--month", "2026-10")
    assert export.code == 0, export.err
    records = list(csv.reader(io.StringIO(export.out)))
    assert len(records) == 1 + 3 * 31  # the header, then one row per tenant-day with usage (quiet has none)
    assert {len(r) for r in records} == {len(records[0])}
    col = records[0].index("tenant_name")
    assert {r[col] for r in records[1:] if r[1] == "legacy"} == {"Legacy Co[2J]0;owned"}

    listing = cli("tenants", "--month", "2026-10", "--format", "csv")
    records = list(csv.reader(io.StringIO(listing.out)))
    tenant_count = json.loads(cli("tenants", "--month", "2026-10", "--format", "json").out)["tenant_count"]
    assert tenant_count == 4
    assert len(records) == 1 + tenant_count + 1  # header, tenants, TOTAL
    assert [r[1] for r in records[1:]].count("legacy") == 1

    for args in (("report", "--tenant", "legacy", "--month", "2026-10"), ("tenants", "--month", "2026-10")):
        shown = cli(*args)
        assert shown.code == 0, shown.err
        assert not any(c in shown.out for c in "\x1b\r\x07\u202e"), repr(shown.out[:300])
