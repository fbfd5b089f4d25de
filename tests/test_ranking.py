"""The tenants ranking is sorted, filtered and paged by the database (reports.queries.tenants_report): every page,
every sort and the totals equal the full ranking's, and the full ranking equals a reference computed here in
Python from the exact report objects (pricing.plan_charge, ProviderCosts), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from conftest import Priced
from priced import OCT, PRO_FEE, PRO_VOICE, STARTER_FEE, micro, seed_rows
from usagectl.periods import Window
from usagectl.records import MetricRow
from usagectl.reports import SORT_KEYS, TenantLine, TenantsReport, tenant_report, tenants_report
from usagectl.reports.queries import ascii_lower
from usagectl.rollup import run_rollup
from usagectl.store.engine import Store
from usagectl.store.metrics import upsert_metric
from usagectl.store.tenants import get_tenant

TODAY = date(2026, 10, 20)  # the margin covers October 1-19; v2 of the price book starts inside that window
TENANTS = 23
# Mixed case and shared names: the name sort folds case and breaks ties by slug. Plans in turn: starter (a fee and
# allowances), pro (a fee, a voice override that needs rounding), elite (neither).
RANKED = tuple(
    (
        f"t{i:02d}",
        ("alpha", "Bravo", "ALPHA", "charlie_%", "Delta")[i % 5] + f" {i % 4}",
        ("starter", "pro", "elite")[i % 3],
    )
    for i in range(TENANTS)
)


def _ranked(priced: Callable[..., Priced]) -> Priced:
    """The shared priced config with the 23 tenants above, never sealing, and their October to TODAY."""
    env = priced(tenants=RANKED, extra="[rollup]\nseal_after_days = 0\n")
    rows = []
    for i in range(TENANTS):
        if i % 7 == 6:
            continue  # no usage at all: zeros, listed while active
        slug = f"t{i:02d}"
        for d in Window(OCT.start, TODAY):
            day = (d - OCT.start).days
            # Two pairs of tenants with identical usage: ties go by slug.
            k = i - i % 2 if i < 4 else i
            sms = 7 * (k % 5 + 1) * (day % 3 + 1) + k
            # On pro at $0.0123457 a minute its days' costs need rounding; none for the tied pairs, whose plans
            # differ.
            voice = k % 4 + day % 2 if i >= 4 else 0
            # t03, t08...: a Twilio day without a cost; t05: no Twilio row on one day. Both incomplete.
            cost = None if i % 5 == 3 and day == 4 else Decimal("0.0075") * sms
            if not (i == 5 and day == 2):
                rows.append(
                    (
                        slug,
                        d,
                        "twilio",
                        MetricRow(sms_outbound_count=sms, voice_minutes=voice, provider_cost_usd=cost),
                    )
                )
            rows.append((slug, d, "sendgrid", MetricRow(emails_sent=100 * (k % 3))))
            if i % 4 == 0:
                ai = MetricRow(
                    ai_tokens_in=1000 * k, ai_tokens_out=10 * k, provider_cost_usd=Decimal("0.002")
                )
                rows.append((slug, d, "openai", ai))
    seed_rows(env.store, rows)
    run_rollup(env.store, env.cfg, Window(OCT.start, TODAY), today=TODAY)
    return env


def _reference_key(sort: str) -> Callable[[TenantLine], Any]:
    """The order the ranking promises, in Python over the exact line objects."""

    def money(line: TenantLine, value: Decimal | None) -> tuple[Any, ...]:
        return (value is None, -(value or Decimal(0)), line.slug)

    if sort == "cost":
        return lambda t: (-t.estimated_cost, t.slug)
    if sort == "plan_charge":
        return lambda t: money(t, t.plan_charge.total if t.plan_charge else None)
    if sort == "margin":
        return lambda t: money(t, t.margin)
    if sort == "name":
        return lambda t: (ascii_lower(t.name), t.slug)
    field = {"sms": "sms", "email": "emails", "voice": "voice_minutes", "ai": "ai_tokens"}[sort]
    return lambda t: (-getattr(t, field), t.slug)


def _check_totals(rep: TenantsReport, lines: tuple[TenantLine, ...]) -> None:
    assert rep.tenant_count == len(lines)
    assert rep.total.sms == sum(t.sms for t in lines)
    assert rep.total.estimated_cost == sum((t.estimated_cost for t in lines), Decimal(0))
    assert rep.plan_charge_total == sum((t.plan_charge.total for t in lines if t.plan_charge), Decimal(0))
    margins = [t.margin for t in lines]
    assert rep.margin_total == (None if None in margins else sum(margins, Decimal(0)))  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("with_cfg", [True, False], ids=["cfg", "no-cfg"])
def test_pages_sorts_and_totals_equal_the_full_ranking(priced: Callable[..., Priced], with_cfg: bool) -> None:
    env = _ranked(priced)
    store, cfg = env.store, env.cfg
    with store.engine.begin() as conn:
        # A tenant that left the config: listed only because it has usage this month.
        from usagectl.store.tables import tenants

        conn.execute(tenants.update().where(tenants.c.slug == "t01").values(active=False))
    plans = cfg if with_cfg else None
    for sort in SORT_KEYS:
        if plans is None and sort in ("plan_charge", "margin"):
            continue
        full = tenants_report(store, OCT, sort=sort, cfg=plans, today=TODAY)
        assert [t.slug for t in full.lines] == [
            t.slug for t in sorted(full.lines, key=_reference_key(sort))
        ], sort
        assert len(full.lines) == TENANTS and full.more == 0
        _check_totals(full, full.lines)
        for offset, limit in ((0, 5), (5, 5), (20, 5), (22, 1), (23, 4), (0, 1000)):
            page = tenants_report(store, OCT, sort=sort, limit=limit, offset=offset, cfg=plans, today=TODAY)
            assert page.lines == full.lines[offset : offset + limit], (sort, offset, limit)
            assert (page.total, page.tenant_count, page.plan_charge_total, page.margin_total) == (
                full.total, full.tenant_count, full.plan_charge_total, full.margin_total,
            )  # fmt: skip
            assert page.more == max(0, TENANTS - offset - limit)
        # The filter: slug or name contains it, ASCII letters in any case; LIKE's % and _ are plain characters.
        for needle in ("alpha", "ALPHA 1", "t1", "_%", "nobody"):
            got = tenants_report(
                store, OCT, sort=sort, limit=3, offset=1, query=needle, cfg=plans, today=TODAY
            )
            folded = ascii_lower(needle)
            matched = tuple(t for t in full.lines if folded in t.slug or folded in ascii_lower(t.name))
            assert got.lines == matched[1:4], (sort, needle)
            assert got.subtotal is not None and got.subtotal.tenant_count == got.matched == len(matched)
            assert got.subtotal.totals.sms == sum(t.sms for t in matched)
            assert got.subtotal.totals.estimated_cost == sum((t.estimated_cost for t in matched), Decimal(0))
            if plans is not None:
                assert got.subtotal.plan_charge == sum(
                    (t.plan_charge.total for t in matched if t.plan_charge), Decimal(0)
                )
                margins = [t.margin for t in matched]
                assert got.subtotal.margin == (
                    None if None in margins or not matched else sum(margins, Decimal(0))  # type: ignore[arg-type]
                )
            assert got.total == full.total and got.tenant_count == TENANTS


def test_the_data_exercises_what_it_should(priced: Callable[..., Priced]) -> None:
    """The fixture above has what the comparison needs: overage across a price-book change, fees, ties,
    complete and incomplete margins, a day's cost that needed rounding, and a tenant with no usage."""
    env = _ranked(priced)
    store, cfg = env.store, env.cfg
    full = tenants_report(store, OCT, cfg=cfg, today=TODAY)
    by = {t.slug: t for t in full.lines}
    assert by["t06"].sms == 0 and by["t06"].plan_charge is not None
    assert by["t00"].estimated_cost == by["t01"].estimated_cost  # a tie
    assert by["t03"].margin is None and by["t05"].margin is None and by["t08"].margin is None
    assert by["t04"].margin is not None and by["t04"].provider_costs.sources == ("openai", "twilio")  # type: ignore[union-attr]
    over = [t for t in full.lines if t.plan_charge and any(line.overage for line in t.plan_charge.lines)]
    assert len(over) > 5
    assert full.margin_total is None
    # t07 (pro) on 2 October: 3 + 1 voice minutes at $0.0123457 = $0.0493828, stored as $0.049383.
    assert micro(4 * PRO_VOICE) == Decimal("0.049383") != 4 * PRO_VOICE
    t07 = tenant_report(store, cfg, "t07", OCT, today=TODAY)
    assert {d.date: d.voice_cost_usd for d in t07.days}[date(2026, 10, 2)] == micro(4 * PRO_VOICE)
    # A month with no usage: the fees alone, and the margins are the fees.
    nov = tenants_report(store, Window.month(2026, 11), cfg=cfg, today=TODAY)
    assert nov.total.sms == 0 and nov.margin_total == nov.plan_charge_total  # no provider cost: a known $0
    assert nov.plan_charge_total == STARTER_FEE * 8 + PRO_FEE * 8  # 8 starter, 8 pro, 7 elite (no fee)
    assert nov.plan_charge_total == sum((t.plan_charge.total for t in nov.lines if t.plan_charge), Decimal(0))


def test_tenants_command_top_50_and_streamed_csv_json(
    priced: Callable[..., Priced], cli: Callable[..., Any]
) -> None:
    import csv
    import io
    import json

    from usagectl.render.json import tenants_dict

    many = 57
    env = priced(tenants=[(f"c{i:02d}", f"c{i:02d}", "starter") for i in range(many)])
    store, cfg = env.store, env.cfg
    for i in range(many):
        env.seed(f"c{i:02d}", [date(2026, 10, 3)], MetricRow(sms_outbound_count=i + 1))
    run_rollup(store, cfg, OCT, today=TODAY)
    table = cli("tenants", "--month", "2026-10", "--sort", "sms")
    assert table.code == 0
    assert "c56" in table.out and "c06" not in table.out  # the top 50 by SMS: c56 down to c07
    assert table.out.rstrip().endswith("and 7 more (--limit N, --all, or --format csv)")
    assert "c00" in cli("tenants", "--month", "2026-10", "--all").out
    assert "more (" not in cli("tenants", "--month", "2026-10", "--all").out
    few = cli("tenants", "--month", "2026-10", "--sort", "sms", "-n", "3").out
    assert "c54" in few and "c53" not in few and "and 54 more" in few
    # csv and json: every tenant, streamed, the same figures as the in-memory report.
    rows = list(csv.reader(io.StringIO(cli("tenants", "--month", "2026-10", "-f", "csv").out)))
    assert len(rows) == 1 + many + 1 and rows[-1][1] == "TOTAL" and rows[-1][5] == str(sum(range(many + 1)))
    bad = cli("tenants", "--month", "2026-10", "-f", "csv", "--sort", "bogus")
    assert bad.code == 2 and bad.out == ""  # refused before a line is written
    got = json.loads(cli("tenants", "--month", "2026-10", "-f", "json").out)
    full = tenants_dict(tenants_report(store, OCT, cfg=cfg))  # today, as the command has it
    assert len(got["tenants"]) == many
    for doc in (got, full):
        doc.pop("generated_at")
    assert got == full
    # Streaming keeps a batch, not the ranking: the lines come in order, 10 at a time here.
    rep = tenants_report(store, OCT, sort="sms", cfg=cfg, today=TODAY, stream=True, batch=10)
    assert rep.lines == () and rep.more == 0
    assert [t.slug for t in rep.iter_lines()] == [f"c{i:02d}" for i in reversed(range(many))]


def _plan_changes(store: Store) -> None:
    """t07 moves from pro to elite on 15 October (prorated), t10 from pro to starter on 3 November (October is
    on pro, though its plan now is starter): both figures the ranking's SQL cannot price from the plan now."""
    from usagectl.store.directory import record_plan

    with store.engine.begin() as conn:
        record_plan(conn, get_tenant(conn, "t07").id, "elite", date(2026, 10, 15), "test")  # type: ignore[union-attr]
        record_plan(conn, get_tenant(conn, "t10").id, "starter", date(2026, 11, 3), "test")  # type: ignore[union-attr]


def test_a_plan_change_is_priced_exactly_in_the_ranking(priced: Callable[..., Priced]) -> None:
    """The ranking's plan charge, its order by plan charge and margin and its totals are the exact prorated
    figures for a tenant whose plan changes in the month or after it."""
    env = _ranked(priced)
    store, cfg = env.store, env.cfg
    _plan_changes(store)
    full = tenants_report(store, OCT, cfg=cfg, today=TODAY)
    by = {t.slug: t for t in full.lines}
    assert by["t07"].plan_charge is not None and len(by["t07"].plan_charge.parts) == 2
    assert by["t10"].plan_charge is not None and by["t10"].plan_charge.plan_tier == "pro"
    _check_totals(full, full.lines)
    for sort in ("plan_charge", "margin"):
        ranked = tenants_report(store, OCT, sort=sort, cfg=cfg, today=TODAY)
        assert [t.slug for t in ranked.lines] == [
            t.slug for t in sorted(full.lines, key=_reference_key(sort))
        ]
        for offset in (0, 5, 10):
            page = tenants_report(store, OCT, sort=sort, limit=5, offset=offset, cfg=cfg, today=TODAY)
            assert page.lines == ranked.lines[offset : offset + 5]
            assert page.plan_charge_total == full.plan_charge_total


@pytest.mark.parametrize("with_cfg", [True, False], ids=["cfg", "no-cfg"])
def test_the_streamed_csv_is_the_csv_of_the_exact_report_objects(
    priced: Callable[..., Priced], with_cfg: bool
) -> None:
    """`usagectl tenants --format csv` writes every tenant from the ranking's rows (ranking_rows,
    write_ranking_csv): byte for byte the CSV that the exact PlanCharge/ProviderCosts objects of every tenant
    give (write_tenants_csv over the full report), for every sort: negative and unknown margins, a plan change,
    a tenant without usage, text cells neutralised."""
    import io

    from usagectl.render.csv import write_ranking_csv, write_tenants_csv
    from usagectl.reports import ranking_rows
    from usagectl.store.tables import tenants

    env = _ranked(priced)
    store, cfg = env.store, env.cfg
    _plan_changes(store)
    with store.engine.begin() as conn:
        # t04 (complete provider costs): a day whose reported cost exceeds its plan charge, a negative margin.
        t04 = get_tenant(conn, "t04").id  # type: ignore[union-attr]
        upsert_metric(
            conn, t04, OCT.start, "twilio", MetricRow(sms_outbound_count=5, provider_cost_usd=Decimal("500"))
        )
    run_rollup(store, cfg, Window(OCT.start, TODAY), today=TODAY)
    with store.engine.begin() as conn:
        # Names a spreadsheet would run, or with a line break (an older database could hold them).
        conn.execute(tenants.update().where(tenants.c.slug == "t02").values(name="=HYPERLINK(1)"))
        conn.execute(tenants.update().where(tenants.c.slug == "t09").values(name="two\nlines\x1b[2J"))
        conn.execute(tenants.update().where(tenants.c.slug == "t01").values(active=False))
    plans = cfg if with_cfg else None
    margins = set()
    for sort in SORT_KEYS:
        if plans is None and sort in ("plan_charge", "margin"):
            continue
        reference = io.StringIO()
        full = tenants_report(store, OCT, sort=sort, cfg=plans, today=TODAY)
        write_tenants_csv(full, reference)
        margins |= {t.margin is None for t in full.lines} | {
            bool(t.margin and t.margin < 0) for t in full.lines
        }
        got = io.StringIO()
        rows = ranking_rows(store, OCT, sort=sort, cfg=plans, today=TODAY, batch=4)
        assert write_ranking_csv(OCT, rows, got, priced=plans is not None) == TENANTS
        assert got.getvalue() == reference.getvalue(), sort
        # The System Usage page's CSV with a filter: the matching tenants, the total over all.
        needle = io.StringIO()
        rows = ranking_rows(store, OCT, sort=sort, cfg=plans, today=TODAY)
        assert write_ranking_csv(OCT, rows, needle, priced=plans is not None, needle="alpha") > 0
        lines = needle.getvalue().splitlines()
        ref_lines = reference.getvalue().splitlines()
        assert lines[0] == ref_lines[0] and lines[-1] == ref_lines[-1]
        assert lines[1:-1] == [line for line in ref_lines[1:-1] if "alpha" in line.lower()]
    text = reference.getvalue()
    assert "'=HYPERLINK(1)" in text and "two lines" in text and "\x1b" not in text
    if with_cfg:
        assert margins == {True, False}  # unknown and known margins
        assert ",-" in text  # a negative margin
