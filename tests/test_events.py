"""Internal events: record, ingest (dedup, bad lines, --strict, batches) and the events provider."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from usagectl import config as cfgmod
from usagectl.events import (
    EventError,
    _sqlite_time,
    fast_row_parser,
    ingest,
    metric_kinds,
    parse_line,
    parse_time,
)
from usagectl.meters import MetricKind
from usagectl.periods import Window
from usagectl.providers.events import make as make_events
from usagectl.store.engine import Store, open_store
from usagectl.store.tables import usage_events, usage_metrics, usage_rollups_daily
from usagectl.store.tenants import get_tenant, sync_tenants

Cli = Callable[..., Any]


def event(
    eid: str | int,
    *,
    tenant: str = "acme",
    metric: str = "jobs_executed",
    value: Any = 1,
    time: str = "2026-11-24T10:00:00Z",
    source: str = "worker",
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(eid),
        "source": source,
        "subject": tenant,
        "type": metric,
        "time": time,
        "data": {"value": value},
    }


def jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_text(
        "".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines), encoding="utf-8"
    )
    return path


@pytest.fixture
def config(write_config: Callable[..., Path], db_url: str) -> Path:
    return write_config(
        f"""
[database]
url = "{db_url}"

[events]
metrics = {{ api_calls = "counter", seats = "gauge" }}

[[tenants]]
slug = "acme"

[[tenants]]
slug = "globex"
"""
    )


@pytest.fixture
def db(config: Path, db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    sync_tenants(store, cfgmod.load(config).tenants)
    yield store
    store.close()


def count_events(store: Store, **where: Any) -> int:
    q = select(func.count()).select_from(usage_events)
    for k, v in where.items():
        q = q.where(usage_events.c[k] == v)
    with store.engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


# --- parsing -------------------------------------------------------------------------------------------------


def test_parse_time_needs_an_offset_and_converts_to_utc() -> None:
    assert parse_time("2026-11-24T01:30:00+02:00") == datetime(2026, 11, 23, 23, 30, tzinfo=UTC)
    assert parse_time("2026-11-24t10:00:00.5z") == datetime(2026, 11, 24, 10, 0, 0, 500000, tzinfo=UTC)
    with pytest.raises(EventError, match="no UTC offset"):
        parse_time("2026-11-24T10:00:00")
    with pytest.raises(EventError, match="not an RFC 3339"):
        parse_time("yesterday")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{", "invalid JSON"),
        ("[1]", "not a JSON object"),
        (json.dumps({k: v for k, v in event(1).items() if k != "id"}), "missing 'id'"),
        (json.dumps(event(1, metric="bogus")), "unknown metric 'bogus'"),
        (json.dumps(event(1, value=1.5)), "not an integer"),
        (json.dumps(event(1, value=True)), "not an integer"),
        (json.dumps(event(1, value="3")), "not an integer"),
        (json.dumps(event(1, value=-1)), "negative"),
        (json.dumps(event(1, value=2**63)), "too large"),
        (json.dumps({**event(1), "data": {}}), "missing data.value"),
        (json.dumps(event(1, time="2026-11-24 10:00")), "no UTC offset"),
        (json.dumps({**event(1), "id": "x" * 201}), "longer than 200"),
    ],
)
def test_parse_line_reasons(line: str, reason: str) -> None:
    with pytest.raises(EventError, match=reason):
        parse_line(line, {"jobs_executed": "counter"})


# --- ingest --------------------------------------------------------------------------------------------------


def test_ingesting_the_same_events_twice_counts_them_once(
    cli: Cli, config: Path, db: Store, tmp_path: Path
) -> None:
    events = [
        event(i, tenant=("acme", "globex")[i % 2], time=f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:00:00Z")
        for i in range(10_000)
    ]
    path = jsonl(tmp_path / "events.jsonl", events)
    first = cli("-c", str(config), "ingest", str(path))
    assert first.code == 0, first.err
    assert "read 10,000, inserted 10,000, duplicates 0, rejected 0" in first.err
    second = cli("-c", str(config), "ingest", str(path))
    assert second.code == 0, second.err
    assert "read 10,000, inserted 0, duplicates 10,000, rejected 0" in second.err
    assert count_events(db) == 10_000
    assert count_events(db, tenant_id=get_tenant(db.engine.connect(), "acme").id) == 5_000  # type: ignore[union-attr]
    # Same id from another source is another event; a repeat inside one file is a duplicate.
    more = jsonl(tmp_path / "more.jsonl", [event(1, source="other"), event(2, source="other")] * 2)
    r = cli("-c", str(config), "ingest", str(more))
    assert "inserted 2, duplicates 2" in r.err
    assert count_events(db) == 10_002


def test_bad_lines_are_reported_and_the_rest_written(
    cli: Cli, config: Path, db: Store, tmp_path: Path
) -> None:
    path = jsonl(
        tmp_path / "mixed.jsonl",
        [
            event("a"),
            "not json",
            event("b", tenant="nobody"),
            "",  # blank lines are skipped, not errors
            event("c", metric="mystery"),
            event("d", metric="api_calls", value=7),  # declared in [events]
            event("e", value=-3),
            event("f", metric="storage_bytes", value=10, time="2026-11-24T10:00:00+02:00"),
        ],
    )
    r = cli("-c", str(config), "ingest", str(path))
    assert r.code == 3
    lines = r.err.splitlines()
    assert f"{path}:2: invalid JSON: Expecting value (column 1)" in lines
    assert f"{path}:3: unknown tenant 'nobody'" in lines
    assert any(ln.startswith(f"{path}:5: unknown metric 'mystery'") for ln in lines)
    assert f"{path}:7: value -3 is negative" in lines
    assert not any(f"{path}:{n}:" in r.err for n in (1, 4, 6, 8))
    assert "read 7, inserted 3, duplicates 0, rejected 4" in r.err
    assert lines[-1] == f"usagectl: error: {path}: 4 lines rejected; the other lines were written"
    assert count_events(db) == 3
    assert count_events(db, metric="api_calls") == 1


def test_strict_writes_nothing_when_a_line_is_bad(cli: Cli, config: Path, db: Store, tmp_path: Path) -> None:
    good = [event(i) for i in range(30)]
    path = jsonl(tmp_path / "strict.jsonl", [*good[:20], event("bad", value="x"), *good[20:], "{"])
    r = cli("-c", str(config), "ingest", "--strict", str(path))
    assert r.code == 2
    assert f"{path}:21: value 'x' is not an integer" in r.err
    assert f"{path}:32: invalid JSON" in r.err
    assert "nothing was written (--strict)" in r.err.splitlines()[-1]
    assert count_events(db) == 0
    ok = jsonl(tmp_path / "ok.jsonl", good)
    assert cli("-c", str(config), "ingest", "--strict", str(ok)).code == 0
    assert count_events(db) == 30


def test_strict_is_one_transaction_across_batches(config: Path, db: Store) -> None:
    cfg = cfgmod.load(config)
    lines = [json.dumps(event(i)) for i in range(250)] + ["oops"]
    result = ingest(db, cfg, lines, name="x", strict=True, batch_rows=100)
    assert (result.rejected, result.committed) == (1, False)
    assert count_events(db) == 0


def test_a_crash_mid_file_leaves_whole_batches_only(config: Path, db: Store) -> None:
    cfg = cfgmod.load(config)

    def lines() -> Iterator[str]:
        for i in range(250):
            yield json.dumps(event(i))
        raise OSError("disk gone")

    with pytest.raises(OSError):
        ingest(db, cfg, lines(), name="x", batch_rows=100)
    assert count_events(db) == 200
    # Re-running the whole file afterwards fills in the rest.
    again = ingest(db, cfg, [json.dumps(event(i)) for i in range(250)], name="x", batch_rows=100)
    assert (again.inserted, again.duplicates) == (50, 200)


def test_ingest_from_stdin_and_quiet(
    cli: Cli, config: Path, db: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import sys

    data = "".join(json.dumps(event(i)) + "\n" for i in range(3)).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    r = cli("-q", "-c", str(config), "ingest", "-")
    assert (r.code, r.out, r.err) == (0, "", "")
    assert count_events(db) == 3


def test_ingest_missing_file(cli: Cli, config: Path, db: Store, tmp_path: Path) -> None:
    r = cli("-c", str(config), "ingest", str(tmp_path / "nope.jsonl"))
    assert r.code == 2
    assert r.err.strip().splitlines() == [
        f"usagectl: error: {tmp_path / 'nope.jsonl'}: cannot read: No such file or directory"
    ]


# --- record --------------------------------------------------------------------------------------------------


def test_record_writes_one_event_and_dedups_on_id(cli: Cli, config: Path, db: Store) -> None:
    r = cli("-c", str(config), "record", "--tenant", "acme", "jobs_executed", "4")
    assert r.code == 0, r.err
    assert "recorded jobs_executed=4 for acme" in r.err
    assert count_events(db, source="usagectl-record") == 1
    args = ("-c", str(config), "record", "-t", "acme", "storage_bytes", "1_000", "--id", "s1")
    assert cli(*args, "--at", "2026-11-24T10:00:00+02:00").code == 0
    again = cli(*args, "--at", "2026-11-24T10:00:00+02:00")
    assert again.code == 0 and "already recorded" in again.err
    with db.engine.connect() as conn:
        row = conn.execute(select(usage_events).where(usage_events.c.event_id == "s1")).one()
    assert (row.value, row.occurred_at) == (1000, datetime(2026, 11, 24, 8, 0, tzinfo=UTC))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--tenant", "nobody", "jobs_executed", "1"), "unknown tenant 'nobody'"),
        (("--tenant", "acme", "jobs_run", "1"), "unknown metric 'jobs_run'"),
        (("--tenant", "acme", "jobs_executed", "1.5"), "value '1.5' is not an integer"),
        (("--tenant", "acme", "--", "jobs_executed", "-2"), "value -2 is negative"),
        (("--tenant", "acme", "jobs_executed", "1", "--at", "2026-11-24"), "no UTC offset"),
        (("--tenant", "acme", "jobs_executed", "1", "--at", "20250310T100000Z"), "not an RFC 3339 timestamp"),
        # An argument that is not UTF-8 on the command line reaches Python as a lone surrogate.
        (("--tenant", "acme", "--id", "a\udcff", "jobs_executed", "1"), "--id contains a lone surrogate"),
    ],
)
def test_record_errors_are_one_line_exit_2(
    cli: Cli, config: Path, db: Store, args: tuple[str, ...], message: str
) -> None:
    r = cli("-c", str(config), "record", *args)
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("usagectl: error: ") and message in lines[0]
    assert count_events(db) == 0


# --- the events provider, and through collect + rollup -----------------------------------------------------------


BOUNDARY = [
    event("j1", value=2, time="2026-11-24T00:00:00Z"),
    event("j2", value=3, time="2026-11-24T23:59:59Z"),
    event("j3", value=5, time="2026-11-25T00:00:00Z"),
    # 01:30+02:00 is 23:30Z of the day before
    event("j4", value=7, time="2026-11-25T01:30:00+02:00"),
    event("s1", metric="storage_bytes", value=100, time="2026-11-24T12:00:00Z"),
    event("s2", metric="storage_bytes", value=200, time="2026-11-24T23:59:59Z"),
    event("s3", metric="storage_bytes", value=300, time="2026-11-25T00:00:00Z"),
    # last of the 24th by time, although it arrives earlier in the file than s2 would suggest: 23:59:59.5Z
    event("s0", metric="storage_bytes", value=250, time="2026-11-25T01:59:59.5+02:00"),
    # a tie on time on the 25th: the larger event id wins
    event("s5", metric="storage_bytes", value=500, time="2026-11-25T06:00:00Z"),
    event("s4", metric="storage_bytes", value=400, time="2026-11-25T06:00:00Z"),
    event("x1", metric="api_calls", value=1000, time="2026-11-24T12:00:00Z"),
    event("g1", tenant="globex", value=11, time="2026-11-24T12:00:00Z"),
]


def test_provider_counter_sums_and_last_gauge_per_utc_day(config: Path, db: Store) -> None:
    cfg = cfgmod.load(config)
    result = ingest(db, cfg, [json.dumps(e) for e in BOUNDARY], name="b")
    assert (result.inserted, result.rejected) == (len(BOUNDARY), 0)
    provider = make_events(cfg, db)
    acme = cfg.tenants[0]
    assert provider.applies_to(acme) and provider.applies_to(cfg.tenants[1])
    days = [date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 25)]
    rows = provider.collect_days(acme, Window.covering(days))
    assert [(rows[d].jobs_executed, rows[d].storage_bytes) for d in days] == [
        (0, None),
        (2 + 3 + 7, 250),
        (5, 500),
    ]
    for d in days:
        assert provider.collect_days(acme, Window.covering([d]))[d] == rows[d]
    assert provider.collect_days(cfg.tenants[1], Window.covering([days[1]]))[days[1]].jobs_executed == 11


def test_collect_events_then_rollup(cli: Cli, config: Path, db: Store, tmp_path: Path) -> None:
    path = jsonl(tmp_path / "b.jsonl", BOUNDARY)
    assert cli("-c", str(config), "ingest", str(path)).code == 0
    r = cli(
        "-c", str(config), "collect", "--provider", "events", "--since", "2026-11-24", "--until", "2026-11-25"
    )
    assert r.code == 0, r.err
    r = cli("-c", str(config), "rollup", "--since", "2026-11-24", "--until", "2026-11-25")
    assert r.code == 0, r.err
    with db.engine.connect() as conn:
        ids = {t: get_tenant(conn, t).id for t in ("acme", "globex")}  # type: ignore[union-attr]
        got = {
            (row.tenant_id, row.date): (row.jobs_executed, row.storage_bytes)
            for row in conn.execute(select(usage_rollups_daily))
        }
    assert got == {
        (ids["acme"], date(2026, 11, 24)): (12, 250),
        (ids["acme"], date(2026, 11, 25)): (5, 500),
        (ids["globex"], date(2026, 11, 24)): (11, None),
        (ids["globex"], date(2026, 11, 25)): (0, None),
    }


@st.composite
def event_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(0, 25))
    out = []
    for i in range(n):
        # Times on a coarse grid around two UTC midnights, in assorted offsets, so ties and boundaries are common.
        minute = draw(st.integers(-3, 3)) * 30 + draw(st.sampled_from([0, 24 * 60, 48 * 60]))
        offset = draw(st.sampled_from([0, 120, -330, 60 * 14]))
        local = datetime(2026, 11, 24, tzinfo=UTC) + timedelta(minutes=minute + offset)
        sign = "+" if offset >= 0 else "-"
        stamp = local.replace(tzinfo=None).isoformat() + (
            "Z" if offset == 0 else f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
        )
        out.append(
            event(
                f"e{draw(st.integers(0, 40)):02d}-{i}",
                tenant=draw(st.sampled_from(["acme", "globex"])),
                metric=draw(st.sampled_from(["jobs_executed", "storage_bytes", "api_calls"])),
                value=draw(st.integers(0, 10**12)),
                time=stamp,
            )
        )
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=event_sets())
def test_provider_matches_a_plain_model(config: Path, db: Store, events: list[dict[str, Any]]) -> None:
    with db.engine.begin() as conn:
        conn.execute(delete(usage_events))
    cfg = cfgmod.load(config)
    assert ingest(db, cfg, [json.dumps(e) for e in events], name="h").rejected == 0
    days = [date(2026, 11, 23) + timedelta(days=i) for i in range(5)]
    provider = make_events(cfg, db)
    for tenant in cfg.tenants:
        mine = [e for e in events if e["subject"] == tenant.slug]
        expected = {}
        for d in days:
            today = [e for e in mine if parse_time(e["time"]).date() == d]
            jobs = sum(e["data"]["value"] for e in today if e["type"] == "jobs_executed")
            gauges = [e for e in today if e["type"] == "storage_bytes"]
            last = max(gauges, key=lambda e: (parse_time(e["time"]), e["id"]), default=None)
            expected[d] = (jobs, None if last is None else last["data"]["value"])
        rows = provider.collect_days(tenant, Window.covering(days))
        assert {d: (r.jobs_executed, r.storage_bytes) for d, r in rows.items()} == expected


def test_tenants_that_never_sent_events_get_no_events_rows(cli: Cli, config: Path, db: Store) -> None:
    assert (
        cli(
            "-c",
            str(config),
            "record",
            "--tenant",
            "acme",
            "jobs_executed",
            "2",
            "--at",
            "2026-11-24T10:00:00Z",
        ).code
        == 0
    )
    r = cli(
        "-c", str(config), "collect", "--provider", "events", "--since", "2026-11-23", "--until", "2026-11-24"
    )
    assert r.code == 0, r.err
    with db.engine.connect() as conn:
        got = {(row.tenant_id, row.date, row.jobs_executed) for row in conn.execute(select(usage_metrics))}
        acme = get_tenant(conn, "acme").id  # type: ignore[union-attr]
    # acme: a zero row for its quiet day and its count for the other; globex (no events ever): nothing.
    assert got == {(acme, date(2026, 11, 23), 0), (acme, date(2026, 11, 24), 2)}


# --- a bad line never costs a good line (issue 11.2) ---------------------------------------------------------

# Each line is bad in its own way, with the reason it must be reported with. Written raw: several are not what
# json.dumps would produce (lone surrogates, NUL, deep nesting).
BAD_LINES: list[tuple[str, str]] = [
    (json.dumps(event("t1", time="0001-01-01T00:00:00+01:00")), "out of range once converted to UTC"),
    (json.dumps(event("t2", time="9999-12-31T23:59:59-01:00")), "out of range once converted to UTC"),
    (json.dumps(event("t3", time="20250310T100000Z")), "not an RFC 3339 timestamp"),
    (json.dumps(event("t4", time="2026-W48-2T10:00:00Z")), "not an RFC 3339 timestamp"),
    (json.dumps(event("b\ud800")), "'id' contains a lone surrogate"),
    (json.dumps(event("s1", source="w\udfff")), "'source' contains a lone surrogate"),
    (json.dumps(event("nul\u0000")), "'id' contains a NUL character"),
    (json.dumps(event("s2", source="a\u0000b")), "'source' contains a NUL character"),
    (json.dumps(event("s3", tenant="ac\u0000me")), "'subject' contains a NUL character"),
    (
        '{"id": "v1", "source": "w", "subject": "acme", "type": "jobs_executed", "time": "2026-11-24T10:00:00Z",'
        ' "data": {"value": ' + "9" * 5_000 + "}}",
        "a number longer than",
    ),
    (json.dumps(event("v2", value=2**63)), "value is too large"),
    ("[" * 200_000, "nested too deeply"),
    ('{"id": ' + "[" * 200_000, "nested too deeply"),
]


@pytest.mark.parametrize("strict", [False, True], ids=["default", "strict"])
def test_every_bad_line_is_reported_and_every_good_line_stored(
    cli: Cli, config: Path, db: Store, tmp_path: Path, strict: bool
) -> None:
    lines: list[str] = []
    bad_at: dict[int, str] = {}
    for i, (bad, reason) in enumerate(BAD_LINES):
        lines.append(json.dumps(event(f"good-{i}", time="2026-11-24T10:00:00+01:00")))
        lines.append(bad)
        bad_at[len(lines)] = reason
    lines.append(json.dumps(event("last")))
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(f"{ln}\n" for ln in lines), encoding="utf-8", errors="surrogatepass")
    args = ["-c", str(config), "ingest", *(["--strict"] if strict else []), str(path)]
    r = cli(*args)
    reported = {int(ln.split(":")[1]): ln for ln in r.err.splitlines() if ln.startswith(f"{path}:")}
    assert sorted(reported) == sorted(bad_at), r.err
    for n, reason in bad_at.items():
        assert reason in reported[n]
        assert len(reported[n]) < 200  # one short line, even for a 200,000-character input
    if strict:
        assert r.code == 2
        assert count_events(db) == 0
    else:
        assert r.code == 3, r.err
        assert count_events(db) == len(BAD_LINES) + 1
        # Rerunning reads past every bad line again and finds the good ones already stored.
        again = cli(*args)
        assert again.code == 3 and f"duplicates {len(BAD_LINES) + 1:,}" in again.err


def _good_line() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    # Any Unicode text but lone surrogates and NUL; json.dumps escapes the non-ASCII ones as \uXXXX.
    text = st.text(
        st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=12
    )
    offset = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
        lambda m: "Z" if m == 0 else f"{'+' if m > 0 else '-'}{abs(m) // 60:02d}:{abs(m) % 60:02d}"
    )
    when = st.tuples(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)), offset).map(
        lambda t: t[0].replace(microsecond=0).isoformat() + t[1]
    )
    return st.builds(
        lambda eid, value, t, metric: event(eid, value=value, time=t, metric=metric),
        text,
        st.integers(0, 2**63 - 1),
        when,
        st.sampled_from(["jobs_executed", "storage_bytes", "api_calls", "seats"]),
    ).map(lambda e: (json.dumps(e), e))


def _bad_line() -> st.SearchStrategy[str]:
    corpus = st.sampled_from([line for line, _ in BAD_LINES])
    not_an_object = st.text(max_size=30).filter(lambda t: t.strip() and not t.lstrip().startswith("{"))
    bad_value = st.one_of(
        st.integers(max_value=-1), st.integers(min_value=2**63), st.floats(), st.text(max_size=5), st.none()
    ).map(lambda v: json.dumps(event("x", value=v)))
    bad_time = (
        st.text(max_size=25)
        .filter(lambda t: not t[:4].isdigit())
        .map(lambda t: json.dumps(event("x", time=t)))
    )
    bad_id = st.tuples(
        st.text(max_size=5), st.sampled_from(["\x00", "\ud800", "\udc00"]), st.text(max_size=5)
    ).map(lambda p: json.dumps(event(p[0] + p[1] + p[2])))
    return st.one_of(corpus, not_an_object, bad_value, bad_time, bad_id)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_bad_lines_never_cost_a_good_line(config: Path, db: Store, data: st.DataObject) -> None:
    """Generated bad lines interleaved with generated good ones, in small batches: every bad line is reported at
    its line number, every good line is stored exactly as the slow parser reads it (fast path and parser agree)."""
    cfg = cfgmod.load(config)
    source = f"fuzz-{uuid.uuid4().hex}"
    items = data.draw(st.lists(st.one_of(_good_line(), _bad_line()), min_size=1, max_size=30))
    lines: list[str] = []
    good: dict[str, dict[str, Any]] = {}
    bad: set[int] = set()
    for item in items:
        if isinstance(item, tuple):
            _line, e = item
            e = {**e, "source": source}
            if e["id"] in good:
                continue
            good[e["id"]] = e
            lines.append(json.dumps(e))
        else:
            lines.append(item)
            bad.add(len(lines))
    rejected: list[int] = []
    result = ingest(db, cfg, lines, name="f", batch_rows=4, on_reject=lambda err: rejected.append(err.line))
    assert sorted(rejected) == sorted(bad)
    assert result.inserted == len(good)
    with db.engine.connect() as conn:
        stored = {
            r.event_id: r for r in conn.execute(select(usage_events).where(usage_events.c.source == source))
        }
    assert set(stored) == set(good)
    for eid, e in good.items():
        want = parse_line(json.dumps(e), metric_kinds(cfg))
        assert (stored[eid].metric, stored[eid].value, stored[eid].occurred_at) == (
            want.metric,
            want.value,
            want.occurred_at,
        )


def _near_miss() -> st.SearchStrategy[str]:
    """A good line with one character deleted or inserted: just past one of the fast path's checks, or not."""

    def edit(line: str, at: int, char: str) -> str:
        i = at % (len(line) + 1)
        return line[:i] + char + line[i + (0 if char else 1) :]

    chars = st.one_of(st.just(""), st.characters(), st.sampled_from(list('"\\{}[]:,.-+0Zzt \t\x00')))
    return st.builds(edit, _good_line().map(lambda t: t[0]), st.integers(min_value=0), chars)


@settings(max_examples=400, deadline=None)
@given(
    line=st.one_of(_good_line().map(lambda t: t[0]), _bad_line(), _near_miss(), st.text(max_size=40)),
    on_sqlite=st.booleans(),
    as_bytes=st.booleans(),
)
def test_fast_path_agrees_with_the_parser_on_every_line(line: str, on_sqlite: bool, as_bytes: bool) -> None:
    """Whatever line the fast path of ingest turns into a row, the slow parser (`parse_line`) reads the same
    event from it; a line the fast path refuses is left to the slow parser alone."""
    metrics: dict[str, MetricKind] = {
        "jobs_executed": "counter",
        "storage_bytes": "gauge",
        "api_calls": "counter",
        "seats": "gauge",
    }
    ids = {"acme": 1, "globex": 2}
    to_db: Callable[[datetime], Any] = _sqlite_time if on_sqlite else (lambda dt: dt)
    fast = fast_row_parser(ids, metrics, to_db=to_db, on_sqlite=on_sqlite)
    # Not vacuous: the common canonical line takes the fast path.
    assert fast(json.dumps(event("e1", value=3)))[:5] == (1, "e1", "worker", "jobs_executed", 3)
    raw: str | bytes = line.encode("utf-8", "surrogatepass") if as_bytes else line
    try:
        row = fast(raw)
    except Exception:
        return
    parsed = parse_line(raw, metrics)
    assert row == (
        ids[parsed.tenant],
        parsed.event_id,
        parsed.source,
        parsed.metric,
        parsed.value,
        to_db(parsed.occurred_at),
    )


def _refuse_event_id(store: Store, event_id: str) -> None:
    """Fault injection: make the database itself refuse one event, past every check ingest makes."""
    with store.engine.begin() as conn:
        if store.dialect == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON usage_events "
                f"WHEN NEW.event_id = '{event_id}' BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END"
            )
        else:
            conn.exec_driver_sql(
                f"ALTER TABLE usage_events ADD CONSTRAINT refuse CHECK (event_id <> '{event_id}')"
            )


@pytest.mark.parametrize("strict", [False, True], ids=["default", "strict"])
def test_a_row_the_database_refuses_costs_only_its_own_line(config: Path, db: Store, strict: bool) -> None:
    _refuse_event_id(db, "e7")
    lines = [json.dumps(event(f"e{i}")) for i in range(12)]
    rejected: list[str] = []
    result = ingest(
        db,
        cfgmod.load(config),
        lines,
        name="f",
        strict=strict,
        batch_rows=5,
        on_reject=lambda e: rejected.append(str(e)),
    )
    assert len(rejected) == 1 and rejected[0].startswith("f:8: the database refused it: ")
    assert result.rejected == 1
    if strict:
        assert (result.committed, count_events(db)) == (False, 0)
    else:
        assert (result.inserted, count_events(db)) == (11, 11)
