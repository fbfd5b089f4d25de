"""Internal usage events: parsing, validation and deduplicated, batched ingestion into `usage_events`.

An event is CloudEvents-like JSON, one per line:

    {"id": "evt-1", "source": "billing-worker", "subject": "acme", "type": "jobs_executed",
     "time": "2026-11-24T10:00:00Z", "data": {"value": 3}}

`subject` is the tenant slug, `type` the metric, `data.value` a non-negative integer. (source, id) is unique:
an event seen before is skipped, so re-ingesting a file changes nothing. Metrics are counters (summed per UTC
day) or gauges (the day's last reading by `time`, ties broken by event id); `jobs_executed` and `storage_bytes`
are built in, others can be declared in `[events] metrics`.

Ingestion is streamed in batches, each its own transaction (a crash leaves whole batches only; re-running the
file fills in the rest), or, with `strict`, in one transaction that is rolled back if any line is bad.
"""

from __future__ import annotations

import functools
import json
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.dialects import postgresql, sqlite

from usagectl.config import Config
from usagectl.errors import ConfigError, EventError, InputError, did_you_mean
from usagectl.meters import BUILTIN_EVENT_METRICS as BUILTIN_METRICS
from usagectl.meters import MAX_METRIC_CHARS, MetricKind
from usagectl.periods import RFC3339, SHOWN_CHARS, parse_time, show_value
from usagectl.store.engine import Store
from usagectl.store.tables import usage_events, utcnow
from usagectl.store.tenants import tenant_ids

RECORD_SOURCE = "usagectl-record"
BATCH_ROWS = 5_000
MAX_VALUE = 2**63 - 1  # BIGINT
MAX_ID_CHARS = 200  # usage_events.event_id / .source

# Columns in the order of the positional rows the writers take.
_COLUMNS = ("tenant_id", "event_id", "source", "metric", "value", "occurred_at", "received_at")
_UNIQUE_KEY = itemgetter(2, 1)  # (source, event_id) of a positional row


@dataclass(frozen=True)
class Event:
    event_id: str
    source: str
    tenant: str
    metric: str
    value: int
    occurred_at: datetime  # aware, UTC


@dataclass(frozen=True)
class LineError:
    name: str  # the file name, or "-" for stdin
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.name}:{self.line}: {self.reason}"


@dataclass
class IngestResult:
    read: int = 0  # non-blank lines
    inserted: int = 0
    duplicates: int = 0
    rejected: int = 0
    committed: bool = True  # False: strict mode rolled everything back

    def summary(self) -> str:
        text = (
            f"read {self.read:,}, inserted {self.inserted:,}, duplicates {self.duplicates:,}, "
            f"rejected {self.rejected:,}"
        )
        return text if self.committed else f"{text}; nothing written (--strict)"


def metric_kinds(cfg: Config) -> dict[str, MetricKind]:
    """The accepted metrics: the built-ins plus the config's [events] metrics."""
    kinds = dict(BUILTIN_METRICS)
    for name, kind in cfg.events.metrics.items():
        builtin = BUILTIN_METRICS.get(name)
        if builtin is not None and builtin != kind:
            raise ConfigError(f"[events] metrics: {name} is a built-in {builtin}, it cannot be a {kind}")
        if not name or len(name) > MAX_METRIC_CHARS:
            raise ConfigError(
                f"[events] metrics: metric name {name!r} must be 1-{MAX_METRIC_CHARS} characters"
            )
        kinds[name] = kind
    return kinds


def _string(obj: Mapping[str, Any], key: str, limit: int) -> str:
    value = obj.get(key)
    if value is None:
        raise EventError(f"missing {key!r}")
    if not isinstance(value, str) or not value:
        raise EventError(f"{key!r} must be a non-empty string")
    if len(value) > limit:
        raise EventError(f"{key!r} is longer than {limit} characters")
    check_text(repr(key), value)
    return value


def check_text(label: str, value: str) -> None:
    """Text every backend can store."""
    if "\x00" in value:
        # PostgreSQL text cannot hold it; refused on SQLite too so both backends take the same lines.
        raise EventError(f"{label} contains a NUL character (\\u0000)")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise EventError(f"{label} contains a lone surrogate (like \\ud800), not Unicode text") from None


def parse_value(value: Any) -> int:
    # Exact integers only: a JSON float (1.0, 1e3) may already have lost digits.
    if isinstance(value, bool) or not isinstance(value, int):
        shown = repr(value)
        if len(shown) > SHOWN_CHARS:
            shown = f"{shown[:SHOWN_CHARS]}..."
        raise EventError(f"value {shown} is not an integer")
    if value < 0:
        raise EventError(f"value {value} is negative")
    if value > MAX_VALUE:
        raise EventError(f"value is too large (more than 2^63-1 = {MAX_VALUE})")
    return value


def check_metric(metric: str, metrics: Mapping[str, MetricKind]) -> None:
    if metric not in metrics:
        raise EventError(
            f"unknown metric {metric!r} (known: {', '.join(sorted(metrics))}; declare others in [events] metrics)"
        )


def parse_event(obj: Any, metrics: Mapping[str, MetricKind]) -> Event:
    """Validate one decoded JSON event."""
    if not isinstance(obj, dict):
        raise EventError("not a JSON object")
    event_id = _string(obj, "id", MAX_ID_CHARS)
    source = _string(obj, "source", MAX_ID_CHARS)
    tenant = _string(obj, "subject", 63)
    metric = _string(obj, "type", MAX_METRIC_CHARS)
    check_metric(metric, metrics)
    if "time" not in obj:
        raise EventError("missing 'time'")
    occurred = parse_time(obj["time"])
    data = obj.get("data")
    if not isinstance(data, dict) or "value" not in data:
        raise EventError("missing data.value")
    return Event(event_id, source, tenant, metric, parse_value(data["value"]), occurred)


def parse_line(line: str | bytes, metrics: Mapping[str, MetricKind]) -> Event:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise EventError(f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    except UnicodeDecodeError:
        raise EventError("not UTF-8 text") from None
    except RecursionError:
        raise EventError("invalid JSON: nested too deeply") from None
    except ValueError:
        # The only other ValueError json raises: an integer past sys.get_int_max_str_digits().
        raise EventError(
            f"invalid JSON: a number longer than {sys.get_int_max_str_digits():,} digits"
        ) from None
    return parse_event(obj, metrics)


# --- writers -----------------------------------------------------------------------------------------------


# PostgreSQL array types of _COLUMNS, for the one-statement-per-batch unnest() insert.
_PG_ARRAYS = ("integer[]", "text[]", "text[]", "text[]", "bigint[]", "timestamptz[]", "timestamptz[]")


def _insert_sql(store: Store, *, returning: bool = False) -> str:
    return _dialect_insert_sql(store.dialect, returning)


@functools.cache  # compiled once per process: POST /api/events runs it per request
def _dialect_insert_sql(dialect_name: str, returning: bool) -> str:
    """INSERT ... ON CONFLICT (source, event_id) DO NOTHING, compiled by SQLAlchemy's dialect insert so the SQL
    matches the table definition, with positional parameters in _COLUMNS order.

    SQLite: one row of parameters per event (executemany). PostgreSQL: one parameter per column holding the whole
    batch as an array, INSERT ... SELECT FROM unnest(...): one statement per batch instead of one per row; with
    `returning`, it returns the (source, event_id) of each new row (SQLite's per-row rowcount says as much)."""
    conflict = {"index_elements": ["source", "event_id"]}
    if dialect_name == "sqlite":
        stmt: Any = sqlite.insert(usage_events).values({c: None for c in _COLUMNS})
        compiled = stmt.on_conflict_do_nothing(**conflict).compile(dialect=sqlite.dialect(paramstyle="qmark"))
    else:
        arrays = ", ".join(f"CAST(:{c} AS {t})" for c, t in zip(_COLUMNS, _PG_ARRAYS, strict=True))
        rows = text(f"SELECT * FROM unnest({arrays})").columns(*(usage_events.c[c] for c in _COLUMNS))
        stmt = postgresql.insert(usage_events).from_select(list(_COLUMNS), rows)
        dialect = postgresql.dialect(paramstyle="format")  # type: ignore[no-untyped-call]
        stmt = stmt.on_conflict_do_nothing(**conflict)
        if returning:
            # Which rows were new: POST /api/events answers per event.
            stmt = stmt.returning(usage_events.c.source, usage_events.c.event_id)
        compiled = stmt.compile(dialect=dialect)
    order = tuple(compiled.positiontup or ())
    if order != _COLUMNS:
        raise AssertionError(f"unexpected parameter order {order}")
    sql = str(compiled)
    # psycopg: send the arrays in binary (%b), which skips quoting every string of the batch as array text.
    return sql if dialect_name == "sqlite" else sql.replace("%s", "%b")


def _sqlite_time(dt: datetime) -> str:
    # Exactly what SQLAlchemy's SQLite DateTime stores for a naive UTC datetime (see store.tables.UTCDateTime),
    # so range comparisons in SQL and reads through the table work unchanged.
    return dt.replace(tzinfo=None).isoformat(" ", "microseconds")


def _time_param(store: Store) -> Callable[[datetime], Any]:
    return _sqlite_time if store.dialect == "sqlite" else (lambda dt: dt)


def _write_batch(conn: Connection, sql: str, rows: list[tuple[Any, ...]]) -> int:
    """Insert positional rows through the raw DBAPI cursor (inside the caller's SQLAlchemy transaction);
    returns how many were new."""
    if not rows:
        return 0
    cursor = conn.connection.cursor()
    try:
        if conn.dialect.name == "sqlite":
            cursor.executemany(sql, rows)
        else:
            cursor.execute(sql, [list(column) for column in zip(*rows, strict=True)])
        count = cursor.rowcount
    finally:
        cursor.close()
    if count is None or count < 0:
        raise RuntimeError("the database driver did not report how many events were inserted")
    return int(count)


# --- ingest --------------------------------------------------------------------------------------------------


#: (tenant id, event id, source, metric, value, occurred_at as the database takes it)
Row = tuple[int, str, str, str, int, Any]


def fast_row_parser(
    ids: Mapping[str, int],
    metrics: Mapping[str, MetricKind],
    *,
    to_db: Callable[[datetime], Any],
    on_sqlite: bool,
) -> Callable[[str | bytes], Row]:
    """The fast path of ingest: one well-formed line straight to its row, or an exception (any) when the line is
    unusual in any way, and `parse_line` must read it and say why. Whatever it returns, `parse_line` reads the
    same from the line (tests/test_events.py checks this on generated input)."""
    scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
    fromisoformat = datetime.fromisoformat
    builtins_only = metrics.keys() == BUILTIN_METRICS.keys()

    def fast_row(line: str | bytes) -> Row:
        if isinstance(line, bytes):
            doc = line.decode()
        else:
            doc = line
            doc.encode()  # a str may hold a lone surrogate, which no database takes
        # The C scanner directly: json.loads adds two regex matches and three calls per line.
        obj, end = scan(doc, 0)
        if end != len(doc) and doc[end:].strip():
            raise ValueError
        data = obj["data"]
        value = data["value"]
        metric = obj["type"]
        event_id = obj["id"]
        source = obj["source"]
        text = obj["time"]
        occurred = fromisoformat(text)
        tenant_id = ids[obj["subject"]]
        canonical = (
            len(text) == 20
            and text[19] == "Z"
            and text[4] == "-"
            and text[7] == "-"
            and text[10] == "T"
            and text[13] == ":"
            and text[16] == ":"
        )
        if not (
            type(value) is int
            and 0 <= value <= MAX_VALUE
            and type(event_id) is str
            and 0 < len(event_id) <= MAX_ID_CHARS
            and type(source) is str
            and 0 < len(source) <= MAX_ID_CHARS
            and (metric in BUILTIN_METRICS if builtins_only else metric in metrics)
            and occurred.tzinfo is not None
            # A \u escape may decode to NUL or a lone surrogate: parse_event says which.
            and "\\u" not in doc
            and (canonical or RFC3339(text) is not None)
        ):
            raise ValueError
        if on_sqlite and canonical:
            # The canonical YYYY-MM-DDTHH:MM:SSZ: its stored form by slicing (formatting a datetime costs more
            # than parsing it).
            at = f"{text[:10]} {text[11:19]}.000000"
        else:
            # astimezone may overflow (year 0 or 10000 in UTC): the slow path names it.
            at = to_db(occurred if occurred.tzinfo is UTC else occurred.astimezone(UTC))
        return tenant_id, event_id, source, metric, value, at

    return fast_row


def ingest_lines(
    store: Store,
    lines: Iterable[str | bytes],
    *,
    name: str,
    metrics: Mapping[str, MetricKind],
    strict: bool = False,
    batch_rows: int = BATCH_ROWS,
    on_reject: Callable[[LineError], None] | None = None,
) -> IngestResult:
    """Validate and insert newline-delimited JSON events.

    Default: every valid line is written, in batches of `batch_rows` per transaction; bad lines are passed to
    `on_reject` and counted. `strict`: one transaction for the whole input, rolled back (nothing written) if any
    line is bad; every bad line is still reported.
    """
    result = IngestResult()
    sql = _insert_sql(store)
    to_db = _time_param(store)
    received = to_db(utcnow())

    def reject(line_no: int, reason: str) -> None:
        result.rejected += 1
        if on_reject is not None:
            on_reject(LineError(name, line_no, reason))

    with store.engine.connect() as conn:
        ids = tenant_ids(conn, include_inactive=False)
        conn.rollback()
        fast_row = fast_row_parser(ids, metrics, to_db=to_db, on_sqlite=store.dialect == "sqlite")
        batch: list[tuple[Any, ...]] = []
        batch_lines: list[int] = []  # the line number of each row of `batch`
        trans = conn.begin()
        refused = _refusals(conn)

        def flush() -> None:
            nonlocal trans, batch, batch_lines
            try:
                _flush(conn, sql, batch, result, strict=strict)
            except refused as exc:
                # A row the checks above let through and the database refuses: find it, report its line, and
                # keep every other line of the batch.
                trans.rollback()
                _one_by_one(conn, sql, batch, batch_lines, result, strict=strict, reject=reject, error=exc)
                trans = conn.begin()
            batch, batch_lines = [], []

        try:
            for line_no, line in enumerate(lines, start=1):
                result.read += 1
                # The fast path covers the common well-formed line; anything unusual goes through parse_line
                # for the exact reason.
                try:
                    tenant_id, event_id, source, metric, value, at = fast_row(line)
                except Exception:
                    if not line.strip():
                        result.read -= 1  # blank lines are skipped
                        continue
                    try:
                        event = parse_line(line, metrics)
                        pk = ids.get(event.tenant)
                        if pk is None:
                            raise EventError(f"unknown tenant {show_value(event.tenant)}") from None
                    except EventError as exc:
                        reject(line_no, str(exc))
                        continue
                    tenant_id, event_id, source, metric, value = (
                        pk,
                        event.event_id,
                        event.source,
                        event.metric,
                        event.value,
                    )
                    at = to_db(event.occurred_at)
                if strict and result.rejected:
                    continue  # keep reading to report every bad line; nothing will be written
                batch.append((tenant_id, event_id, source, metric, value, at, received))
                batch_lines.append(line_no)
                if len(batch) >= batch_rows:
                    flush()
                    if not strict:
                        trans.commit()
                        trans = conn.begin()
            if batch and not (strict and result.rejected):
                flush()
            if strict and result.rejected:
                trans.rollback()
                result.inserted = result.duplicates = 0
                result.committed = False
                return result
            trans.commit()
        except BaseException:
            if trans.is_active:
                trans.rollback()
            raise
    return result


# PostgreSQL: a --strict run holds every batch's index entries until its one commit, so ordering within a batch
# cannot keep it from deadlocking with another run; it takes this lock exclusively, the batches of other runs
# take it shared (they do not block each other). Transaction-scoped: released by commit or rollback.
_PG_INGEST_LOCK = "SELECT pg_advisory_xact_lock{}(7414, hashtext(coalesce(current_schema(), '')))"


def _flush(
    conn: Connection, sql: str, batch: list[tuple[Any, ...]], result: IngestResult, *, strict: bool
) -> None:
    if conn.dialect.name != "sqlite" and batch:
        conn.exec_driver_sql(_PG_INGEST_LOCK.format("" if strict else "_shared"))
        # In the order of the (source, event_id) unique index: two runs inserting overlapping events take the
        # index entries in the same order, so on PostgreSQL one waits for the other instead of both deadlocking.
        # (SQLite has one writer at a time; there is nothing to order.)
        batch = sorted(batch, key=_UNIQUE_KEY)  # a copy: the caller's stays in line order
    new = _write_batch(conn, sql, batch)
    result.inserted += new
    result.duplicates += len(batch) - new


def _refusals(conn: Connection) -> tuple[type[Exception], ...]:
    """The driver's errors for a row the database refuses (PEP 249), as opposed to a failed connection."""
    dbapi = conn.dialect.loaded_dbapi
    return (dbapi.IntegrityError, dbapi.DataError)


def _one_by_one(
    conn: Connection,
    sql: str,
    batch: list[tuple[Any, ...]],
    batch_lines: list[int],
    result: IngestResult,
    *,
    strict: bool,
    reject: Callable[[int, str], None],
    error: Exception,
) -> None:
    """Insert a refused batch's rows one at a time, each in its own transaction, reporting the refused ones.
    With `strict` this only finds them (nothing is kept); if no row is refused alone, the batch's error stands."""
    found = False
    for row, line_no in zip(batch, batch_lines, strict=True):
        trans = conn.begin()
        try:
            new = _flush_one(conn, sql, row, strict=strict)
        except _refusals(conn) as exc:
            trans.rollback()
            found = True
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()
            reject(line_no, f"the database refused it: {reason[0] if reason else type(exc).__name__}")
            continue
        if strict:
            trans.rollback()
        else:
            trans.commit()
            result.inserted += new
            result.duplicates += 1 - new
    if not found:
        raise error


def _flush_one(conn: Connection, sql: str, row: tuple[Any, ...], *, strict: bool) -> int:
    if conn.dialect.name != "sqlite":
        conn.exec_driver_sql(_PG_INGEST_LOCK.format("" if strict else "_shared"))
    return _write_batch(conn, sql, [row])


def ingest(
    store: Store,
    cfg: Config,
    lines: Iterable[str | bytes],
    *,
    name: str,
    strict: bool = False,
    batch_rows: int = BATCH_ROWS,
    on_reject: Callable[[LineError], None] | None = None,
) -> IngestResult:
    return ingest_lines(
        store,
        lines,
        name=name,
        metrics=metric_kinds(cfg),
        strict=strict,
        batch_rows=batch_rows,
        on_reject=on_reject,
    )


# --- POST /api/events ------------------------------------------------------------------------------------------


ACCEPTED, DUPLICATE, REJECTED = "accepted", "duplicate", "rejected"


@dataclass
class StoredEvents:
    """A request's answer, per event in order: accepted (stored now), duplicate (its (source, id) was stored
    before, by this or an earlier request, or earlier in this one) or rejected (with the reason)."""

    statuses: list[str]
    reasons: dict[int, str]  # index -> why, for each rejected event

    def count(self, status: str) -> int:
        return self.statuses.count(status)


def store_events(
    store: Store, metrics: Mapping[str, MetricKind], items: Sequence[Any], *, lines: bool
) -> StoredEvents:
    """Validate and store one request's events, answering for each. `items` are NDJSON lines (`lines`, read like
    `ingest` reads a file: the same fast path and `parse_line`) or the decoded elements of a JSON array (read by
    `parse_event`). The same checks, tenants and (source, id) deduplication as `ingest`; every valid event is
    stored in one transaction, so a retried request stores nothing twice and a failed one stores nothing."""
    to_db = _time_param(store)
    received = to_db(utcnow())
    statuses = [DUPLICATE] * len(items)
    reasons: dict[int, str] = {}
    rows: list[tuple[Any, ...]] = []
    row_index: list[int] = []
    first_of: set[tuple[str, str]] = set()
    with store.engine.connect() as conn:
        ids = tenant_ids(conn, include_inactive=False)
        conn.rollback()
    fast_row = fast_row_parser(ids, metrics, to_db=to_db, on_sqlite=store.dialect == "sqlite")
    for index, item in enumerate(items):
        try:
            if not lines:
                raise ValueError  # a decoded object: parse_event below
            row: Row = fast_row(item)
        except Exception:
            try:
                event = parse_line(item, metrics) if lines else parse_event(item, metrics)
                pk = ids.get(event.tenant)
                if pk is None:
                    raise EventError(f"unknown tenant {show_value(event.tenant)}") from None
            except EventError as exc:
                statuses[index] = REJECTED
                reasons[index] = str(exc)
                continue
            row = (pk, event.event_id, event.source, event.metric, event.value, to_db(event.occurred_at))
        key = (row[2], row[1])
        if key in first_of:
            # The same event twice in one request: stored once, like the same line twice in an ingested file.
            continue
        first_of.add(key)
        rows.append((*row, received))
        row_index.append(index)
    for index, new in zip(row_index, _insert_new(store, rows), strict=True):
        if isinstance(new, str):
            statuses[index] = REJECTED
            reasons[index] = new
        elif new:
            statuses[index] = ACCEPTED
    return StoredEvents(statuses, reasons)


def _insert_new(store: Store, rows: list[tuple[Any, ...]]) -> list[bool | str]:
    """Insert rows (ON CONFLICT DO NOTHING) in one transaction; for each row, True when new, False when stored
    before. If the database refuses a row the checks let through, each row goes alone and a refused one gets the
    reason instead."""
    if not rows:
        return []
    sql = _insert_sql(store, returning=True)
    with store.engine.connect() as conn:
        refused = _refusals(conn)
        try:
            try:
                with conn.begin():
                    return list(_insert_returning(conn, sql, rows, whole=True))
            except _SomeStoredBefore:
                # Rolled back; one transaction again, row by row, to say which were new.
                with conn.begin():
                    return list(_insert_returning(conn, sql, rows, whole=False))
        except refused:
            pass
        found: list[bool | str] = []
        for row in rows:
            try:
                with conn.begin():
                    found += _insert_returning(conn, sql, [row], whole=False)
            except refused as exc:
                reason = str(getattr(exc, "orig", exc)).strip().splitlines()
                found.append(f"the database refused it: {reason[0] if reason else type(exc).__name__}")
    return found


class _SomeStoredBefore(Exception):
    """SQLite: the whole-batch insert stored fewer rows than it was given."""


def _insert_returning(conn: Connection, sql: str, rows: list[tuple[Any, ...]], *, whole: bool) -> list[bool]:
    """Per row: True if this insert stored it."""
    cursor = conn.connection.cursor()
    try:
        if conn.dialect.name == "sqlite":
            if whole:
                # The usual request is all new events: one executemany, and every row counted in is one of ours.
                # Otherwise (a retry, a duplicate) the caller rolls back and asks row by row.
                cursor.executemany(sql, rows)
                if cursor.rowcount != len(rows):
                    raise _SomeStoredBefore
                return [True] * len(rows)
            new = []
            for row in rows:
                cursor.execute(sql, row)
                new.append(cursor.rowcount == 1)
            return new
        # Same lock and row order as an ingest batch (see _flush): no deadlock with a concurrent ingest.
        cursor.execute(_PG_INGEST_LOCK.format("_shared"))
        ordered = sorted(rows, key=_UNIQUE_KEY)
        cursor.execute(sql, [list(column) for column in zip(*ordered, strict=True)])
        inserted = {(source, event_id) for source, event_id in cursor.fetchall()}
        return [(row[2], row[1]) in inserted for row in rows]
    finally:
        cursor.close()


# --- record --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    event: Event
    inserted: bool  # False: an event with this (source, id) was already stored


def record(
    store: Store,
    cfg: Config,
    *,
    tenant: str,
    metric: str,
    value: str | int,
    event_id: str | None = None,
    at: str | None = None,
) -> Recorded:
    """Write one event (source "usagectl-record"). Bad input raises InputError with a one-line reason."""
    metrics = metric_kinds(cfg)
    try:
        check_metric(metric, metrics)
        if isinstance(value, str):
            try:
                number: Any = int(value.strip())
            except ValueError:
                raise EventError(f"value {value!r} is not an integer") from None
        else:
            number = value
        if isinstance(number, int) and number < 0:
            raise EventError(f"value {number} is negative; VALUE must be a non-negative integer")
        number = parse_value(number)
        occurred = parse_time(at) if at is not None else utcnow()
        if event_id is not None:
            if not 0 < len(event_id) <= MAX_ID_CHARS:
                raise EventError(f"--id must be 1-{MAX_ID_CHARS} characters")
            check_text("--id", event_id)
    except EventError as exc:
        raise InputError(str(exc)) from None
    event = Event(event_id or str(uuid.uuid4()), RECORD_SOURCE, tenant, metric, number, occurred)
    sql = _insert_sql(store)
    to_db = _time_param(store)
    with store.engine.begin() as conn:
        pk = tenant_ids(conn, include_inactive=False).get(tenant)
        if pk is None:
            known = tenant_ids(conn, include_inactive=False)
            raise InputError(
                f"unknown tenant {tenant!r}{did_you_mean(tenant, known)}; `usagectl tenants` or "
                "`usagectl config show` lists them"
            )
        row = (pk, event.event_id, event.source, metric, number, to_db(occurred), to_db(utcnow()))
        inserted = _write_batch(conn, sql, [row]) == 1
    return Recorded(event, inserted)
