"""Runs providers over tenants x days and writes raw metrics, idempotently.

Each (tenant, provider) pair is one task on a bounded thread pool, or, for a provider that answers for several
tenants at once (`providers.base.BatchProvider`), each batch of tenants it forms. A task fetches its window (in one
range where the provider can) and writes its tenants' days in one transaction (a batch's tenants together), each
with its `collection_runs` row, so a failure or a kill leaves every tenant-day either as it was or fully replaced.
A batch whose request fails is split in halves and each half asked again, down to single tenants, so one bad
tenant fails only its own days; but when both halves fail with the same server error (5xx, no answer) the
provider is down for all of them, and the batch's tenants fail without further requests. One failing tenant or
provider never stops the others; the result says which failed and the CLI turns that into exit code 3.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import exists, insert, select

from usagectl.config import Config, TenantConfig
from usagectl.errors import EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL
from usagectl.http import BackoffReport, Http
from usagectl.periods import Window, utc_today
from usagectl.providers.base import BatchProvider, Provider, is_batched
from usagectl.records import DayResult, MetricRow, ProviderError
from usagectl.store.directory import Attribution
from usagectl.store.engine import Store
from usagectl.store.locks import job_lock
from usagectl.store.metrics import MetricWrite, upsert_metrics
from usagectl.store.tables import collection_runs, utcnow
from usagectl.store.tenants import tenant_ids

MAX_ERROR_CHARS = 500
# A day stored as provisional (a provider said part of it was still in flight) is re-collected by every run until
# a run stores it final, however far behind the lookback window it lies, up to this age: past it a provider that
# still calls the day unfinished is not going to change it.
PROVISIONAL_MAX_AGE_DAYS = 31
OK, PROVISIONAL, FAILED = "ok", "provisional", "failed"
_LOG_RUN = insert(collection_runs)  # one statement object, executed with parameters (cheaper per tenant-day)


def with_directory(store: Store, cfg: Config, window: Window) -> Config:
    """`cfg` with the directory's tenants (`usagectl directory sync`) beside its [[tenants]]: what collect runs
    over. A slug is never in both (a config error at sync)."""
    from usagectl.store.directory import directory_tenants

    with store.engine.connect() as conn:
        found = directory_tenants(conn, window.start, window.end)
    if not found:
        return cfg
    return cfg.model_copy(update={"tenants": [*cfg.tenants, *found]})


def default_window(cfg: Config, lookback: int | None = None, today: date | None = None) -> Window:
    """Yesterday (UTC) plus `lookback` days before it: providers finalise usage late."""
    days_back = cfg.collect.lookback_days if lookback is None else lookback
    end = today or utc_today()  # exclusive: today is still in progress
    return Window(end - timedelta(days=1 + days_back), end)


@dataclass(frozen=True)
class Written:
    tenant: str
    source: str
    day: date
    row: MetricRow


@dataclass
class TaskOutcome:
    """One tenant x provider over the window."""

    tenant: str
    source: str
    days_ok: int = 0
    days_failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.days_failed == 0


@dataclass
class CollectResult:
    run_id: str
    window: Window
    dry_run: bool
    outcomes: list[TaskOutcome]
    written: list[Written]  # what was (or, in a dry run, would have been) written
    # Each HTTP provider's concurrency cap over the run: whether, when and how far it backed off.
    concurrency: list[BackoffReport] = field(default_factory=list)

    @property
    def backoffs(self) -> list[BackoffReport]:
        return [r for r in self.concurrency if r.backed_off]

    @property
    def failed(self) -> list[TaskOutcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def exit_code(self) -> int:
        if not self.failed:
            return EXIT_OK
        if all(o.days_ok == 0 for o in self.outcomes):
            return EXIT_FAILURE  # nothing could run
        return EXIT_PARTIAL


Progress = Callable[[str, str], None]  # called with (tenant, source) as each task ends


def _short(message: str) -> str:
    text = " ".join(message.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


class _Writer:
    """Serialises SQLite writers in this process (SQLite has one writer at a time anyway; doing it here avoids
    busy-waits and lock-upgrade failures between our own threads). PostgreSQL writes run concurrently."""

    def __init__(self, store: Store, run_id: str, today: date, now: datetime | None = None) -> None:
        self.store = store
        self.run_id = run_id
        self.today = (
            today  # a day from this one on is in progress: stored provisional, as of the task's start
        )
        self.now = now  # the as-of time of those rows (tests); None: when the task asked the provider
        self._lock = threading.Lock() if store.dialect == "sqlite" else None

    def _begin(self) -> Any:
        return self.store.engine.begin()

    def _guard(self) -> Any:
        return self._lock if self._lock is not None else nullcontext()

    def _log_line(self, tenant_id: int, source: str, day: date, started: datetime, **values: Any) -> Any:
        return {
            "run_id": self.run_id,
            "tenant_id": tenant_id,
            "source": source,
            "date": day,
            "started_at": started,
            "finished_at": utcnow(),
            "rows_written": 0,
            "error": None,
            **values,
        }

    def commit(
        self,
        tenant_id: int,
        source: str,
        started: datetime,
        rows: Sequence[tuple[date, MetricRow]],
        failures: Sequence[tuple[date, str]] = (),
    ) -> None:
        """One transaction for a task's days: each metric row with its "ok" log line (the log never claims a
        write that did not happen), and the failed days' log lines. Every tenant-day in it is replaced whole or
        not at all; one transaction per task rather than per day keeps SQLite's single writer free for the
        other workers (the nightly window is three days)."""
        self.commit_many(source, started, [(tenant_id, rows, failures)])

    def commit_many(
        self,
        source: str,
        started: datetime,
        tenants: Sequence[tuple[int, Sequence[tuple[date, MetricRow]], Sequence[tuple[date, str]]]],
    ) -> None:
        """`commit` for the tenants of one batch (tenant id, rows, failed days) in one transaction, each statement
        executed once with every tenant-day's parameters."""
        writes: list[MetricWrite] = []
        logs: list[Any] = []
        for tenant_id, rows, failures in tenants:
            for day, row in rows:
                in_progress = day >= self.today
                as_of = (self.now or started) if in_progress else None
                writes.append((tenant_id, day, source, row, as_of))
                note = row.note
                if in_progress:
                    shown = f"day in progress, as of {as_of:%H:%M} UTC"
                    note = f"{shown}; {note}" if note else shown
                logs.append(
                    self._log_line(
                        tenant_id,
                        source,
                        day,
                        started,
                        status=OK if row.final and not in_progress else PROVISIONAL,
                        rows_written=1 + len(row.ai_models),
                        error=_short(note) if note else None,
                    )
                )
            for day, message in failures:
                logs.append(
                    self._log_line(tenant_id, source, day, started, status=FAILED, error=_short(message))
                )
        if not logs:
            return
        with self._guard(), self._begin() as conn:
            upsert_metrics(conn, writes)
            conn.execute(_LOG_RUN, logs)


def _fetch(provider: Provider, tenant: TenantConfig, days: Sequence[date]) -> Mapping[date, DayResult]:
    # One call over the span of the wanted days (the window plus any provisional days before it), as one
    # ranged request per source; the days in between that nobody asked for are dropped by the caller.
    return provider.collect_days(tenant, Window.covering(days))


def provisional_days(
    store: Store, window: Window, today: date | None = None
) -> dict[tuple[int, str], set[date]]:
    """(tenant id, source) -> the days before `window` whose stored row is provisional: the latest run that wrote
    the day (status ok or provisional; a failed run wrote nothing) called it provisional."""
    oldest = (today or utc_today()) - timedelta(days=PROVISIONAL_MAX_AGE_DAYS)
    if oldest >= window.start:
        return {}
    r = collection_runs.c
    later = collection_runs.alias("later")
    # Provisional rows are few and have a partial index of their own; a later write of the same tenant-day (found
    # through the (tenant_id, date) index) supersedes them.
    query = select(r.tenant_id, r.source, r.date).where(
        r.status == PROVISIONAL,
        r.date >= oldest,
        r.date < window.start,
        ~exists().where(
            later.c.tenant_id == r.tenant_id,
            later.c.date == r.date,
            later.c.source == r.source,
            later.c.status.in_((OK, PROVISIONAL)),
            later.c.id > r.id,
        ),
    )
    out: dict[tuple[int, str], set[date]] = {}
    with store.engine.connect() as conn:
        for row in conn.execute(query):
            out.setdefault((row.tenant_id, row.source), set()).add(row.date)
    return out


def _run_task(
    provider: Provider,
    tenant: TenantConfig,
    tenant_id: int,
    days: Sequence[date],
    writer: _Writer | None,
    written: list[Written],
    written_lock: threading.Lock,
) -> TaskOutcome:
    started = utcnow()
    try:
        rows = _fetch(provider, tenant, days)
    except ProviderError as exc:
        rows = {}
        fetch_error: str | None = str(exc)
    except Exception as exc:  # a provider bug must not take the other tenants down
        rows = {}
        fetch_error = f"{type(exc).__name__}: {exc}"
    else:
        fetch_error = None
    return _record(
        provider, tenant, tenant_id, days, rows, fetch_error, started, writer, written, written_lock
    )


def _run_batch(
    provider: Provider,
    batch: Sequence[TenantConfig],
    ids: Mapping[str, int],
    days: Sequence[date],
    writer: _Writer | None,
    written: list[Written],
    written_lock: threading.Lock,
    failed: Exception | None = None,
) -> list[TaskOutcome]:
    """One request set for the batch (unless `failed` says how it already failed); if it fails as a whole, it is
    split (`_split`) so that a tenant the provider refuses (a 401 for one project id) fails only its own days."""
    if len(batch) == 1 or not is_batched(provider):
        return [_run_task(provider, t, ids[t.slug], days, writer, written, written_lock) for t in batch]
    if failed is None:
        started = utcnow()
        try:
            answers = provider.collect_batch(batch, Window.covering(days))
        except Exception as exc:
            failed = exc
        else:
            return _write_batch(provider, batch, ids, days, answers, started, writer, written, written_lock)
    return _split(provider, batch, ids, days, failed, writer, written, written_lock)


def _server_side(exc: BaseException) -> str | None:
    return exc.server_side if isinstance(exc, ProviderError) else None


def _split(
    provider: BatchProvider,
    batch: Sequence[TenantConfig],
    ids: Mapping[str, int],
    days: Sequence[date],
    failed: Exception,
    writer: _Writer | None,
    written: list[Written],
    written_lock: threading.Lock,
) -> list[TaskOutcome]:
    """A batch that failed as a whole: each half is asked again, down to single tenants, while the answers can
    single out a tenant (a 4xx naming a project, a malformed or missing day). A server error (a 5xx, no answer)
    says nothing about the tenants: when both halves fail with the same one as well, the provider is down for
    all of them, and splitting further would only multiply requests to it; every tenant of the batch fails its
    days (their stored rows stay as they are)."""
    half = len(batch) // 2
    parts = [batch[:half], batch[half:]]
    args = (ids, days, writer, written, written_lock)
    if _server_side(failed) is None:
        return [*_run_batch(provider, parts[0], *args), *_run_batch(provider, parts[1], *args)]
    asked = [_ask(provider, part, days) for part in parts]
    errors = [error for _started, _answers, error in asked]
    if errors[0] is not None and errors[1] is not None:
        kind = _server_side(errors[0])
        if kind is not None and kind == _server_side(errors[1]):
            return [
                _record(provider, t, ids[t.slug], days, {}, _message(error or failed), started, writer, written,
                        written_lock)
                for part, (started, _answers, error) in zip(parts, asked, strict=True)
                for t in part
            ]  # fmt: skip
    out: list[TaskOutcome] = []
    for part, (started, answers, error) in zip(parts, asked, strict=True):
        if error is None:
            out.extend(
                _write_batch(provider, part, ids, days, answers, started, writer, written, written_lock)
            )
        elif len(part) == 1:
            t = part[0]
            out.append(
                _record(provider, t, ids[t.slug], days, {}, _message(error), started, writer, written,
                        written_lock)
            )  # fmt: skip
        else:
            out.extend(_run_batch(provider, part, *args, failed=error))
    return out


def _ask(
    provider: BatchProvider, part: Sequence[TenantConfig], days: Sequence[date]
) -> tuple[datetime, Mapping[str, Mapping[date, DayResult]], Exception | None]:
    """One request set for `part` (a single tenant as `collect_days` asks it): when it started, the answers per
    tenant, or how it failed as a whole."""
    started = utcnow()
    try:
        if len(part) == 1:
            return started, {part[0].slug: _fetch(provider, part[0], days)}, None
        return started, provider.collect_batch(part, Window.covering(days)), None
    except Exception as exc:
        return started, {}, exc


def _message(exc: BaseException) -> str:
    # A provider bug (anything but ProviderError) is shown with its type: it must not take the other tenants down.
    return str(exc) if isinstance(exc, ProviderError) else f"{type(exc).__name__}: {exc}"


def _write_batch(
    provider: Provider,
    batch: Sequence[TenantConfig],
    ids: Mapping[str, int],
    days: Sequence[date],
    answers: Mapping[str, Mapping[date, DayResult]],
    started: datetime,
    writer: _Writer | None,
    written: list[Written],
    written_lock: threading.Lock,
) -> list[TaskOutcome]:
    sorted_days = [_sort_days(provider, t, days, answers.get(t.slug, {}), None) for t in batch]
    if writer:
        try:
            # The batch's tenants in one transaction (each tenant-day still replaced whole or not at all).
            writer.commit_many(
                provider.source,
                started,
                [(ids[t.slug], good, bad) for t, (_o, good, bad) in zip(batch, sorted_days, strict=True)],
            )
        except Exception:
            # One row the database refuses must not cost the others: each tenant on its own.
            sorted_days = [
                (outcome, _write_alone(writer, provider, ids[t.slug], started, outcome, good, bad), bad)
                for t, (outcome, good, bad) in zip(batch, sorted_days, strict=True)
            ]
    return [
        _done(provider, t, outcome, good, bad, written, written_lock)
        for t, (outcome, good, bad) in zip(batch, sorted_days, strict=True)
    ]


def _sort_days(
    provider: Provider,
    tenant: TenantConfig,
    days: Sequence[date],
    rows: Mapping[date, DayResult],
    fetch_error: str | None,
) -> tuple[TaskOutcome, list[tuple[date, MetricRow]], list[tuple[date, str]]]:
    """The tenant's answered days and failed days (with why), and its outcome so far."""
    outcome = TaskOutcome(tenant.slug, provider.source)
    failures: list[tuple[date, str]] = []
    good: list[tuple[date, MetricRow]] = []
    for d in days:
        got = rows.get(d)
        if isinstance(got, MetricRow):
            good.append((d, got))
            continue
        message = (
            str(got) if got is not None else fetch_error or f"{provider.source} returned no data for {d}"
        )
        failures.append((d, message))
        if _short(message) not in outcome.errors:
            outcome.errors.append(_short(message))
    return outcome, good, failures


def _write_alone(
    writer: _Writer,
    provider: Provider,
    tenant_id: int,
    started: datetime,
    outcome: TaskOutcome,
    good: list[tuple[date, MetricRow]],
    failures: list[tuple[date, str]],
) -> list[tuple[date, MetricRow]]:
    """Write one tenant's days in one transaction; the days kept. If the database refuses it, each day alone (a
    refused day becomes a failed one, in `failures` and the outcome's errors)."""
    try:
        writer.commit(tenant_id, provider.source, started, good, failures)
        return good
    except Exception:
        kept = []
        for d, row in good:
            try:
                writer.commit(tenant_id, provider.source, started, [(d, row)])
                kept.append((d, row))
            except Exception as exc:
                outcome.errors.append(_short(f"writing {d}: {type(exc).__name__}: {exc}"))
                failures.append((d, f"write failed: {type(exc).__name__}"))
        writer.commit(tenant_id, provider.source, started, [], failures)
        return kept


def _done(
    provider: Provider,
    tenant: TenantConfig,
    outcome: TaskOutcome,
    good: list[tuple[date, MetricRow]],
    failures: list[tuple[date, str]],
    written: list[Written],
    written_lock: threading.Lock,
) -> TaskOutcome:
    outcome.days_ok = len(good)
    outcome.days_failed = len(failures)
    with written_lock:
        written.extend(Written(tenant.slug, provider.source, d, row) for d, row in good)
    return outcome


def _record(
    provider: Provider,
    tenant: TenantConfig,
    tenant_id: int,
    days: Sequence[date],
    rows: Mapping[date, DayResult],
    fetch_error: str | None,
    started: datetime,
    writer: _Writer | None,
    written: list[Written],
    written_lock: threading.Lock,
) -> TaskOutcome:
    """Write one tenant's answered days (and log its failed ones) in one transaction."""
    outcome, good, failures = _sort_days(provider, tenant, days, rows, fetch_error)
    if writer:
        good = _write_alone(writer, provider, tenant_id, started, outcome, good, failures)
    return _done(provider, tenant, outcome, good, failures, written, written_lock)


def _tasks(
    providers: Sequence[Provider],
    selected: Sequence[TenantConfig],
    days_of: Callable[[Provider, TenantConfig], list[date]],
) -> list[tuple[Provider, list[TenantConfig], list[date]]]:
    """(provider, tenants, days) per task: one tenant each, or the batches a batching provider forms from the
    tenants that need the same days."""
    out: list[tuple[Provider, list[TenantConfig], list[date]]] = []
    for p in providers:
        mine = [t for t in selected if p.applies_to(t)]
        if not is_batched(p):
            out.extend((p, [t], days_of(p, t)) for t in mine)
            continue
        by_days: dict[tuple[date, ...], list[TenantConfig]] = {}
        for t in mine:
            by_days.setdefault(tuple(days_of(p, t)), []).append(t)
        for wanted, group in by_days.items():
            out.extend((p, list(batch), list(wanted)) for batch in p.batches(group))
    return out


def collect(
    store: Store,
    cfg: Config,
    providers: Sequence[Provider],
    window: Window,
    *,
    tenants: Sequence[TenantConfig] | None = None,
    dry_run: bool = False,
    workers: int | None = None,
    lock_wait: float = 10.0,
    progress: Progress | None = None,
    on_start: Callable[[int], None] | None = None,
    today: date | None = None,
    now: datetime | None = None,
) -> CollectResult:
    """Collect every (tenant, provider) pair over the window, plus the days before it still stored as
    provisional (up to PROVISIONAL_MAX_AGE_DAYS before `today`, UTC by default). `tenants` defaults to every
    configured tenant.

    A day from `today` on is in progress (`collect --today`): its rows are stored provisional, as of `now`
    (default: when each task asked its provider), and the first collect of it after it ends stores it final."""
    if today is None and now is not None:
        today = now.date()
    selected = list(cfg.tenants if tenants is None else tenants)
    with store.engine.connect() as conn:
        ids = tenant_ids(conn)
        # Who held which number on which day: the one lookup every number-attributed provider asks.
        attribution = Attribution.load(conn)
    for p in providers:
        if hasattr(p, "attribution"):
            p.attribution = attribution
    behind = provisional_days(store, window, today)
    days = list(window)
    pairs = [(p, t) for t in selected for p in providers if p.applies_to(t)]
    tasks = _tasks(
        providers, selected, lambda p, t: sorted(behind.get((ids[t.slug], p.source), set())) + days
    )
    run_id = str(uuid.uuid4())
    written: list[Written] = []
    written_lock = threading.Lock()
    outcomes: list[TaskOutcome] = []
    if on_start:
        on_start(len(pairs))

    def run_all(writer: _Writer | None) -> None:
        with ThreadPoolExecutor(
            max_workers=workers or cfg.collect.workers, thread_name_prefix="collect"
        ) as pool:
            futures = [
                pool.submit(_run_batch, p, batch, ids, wanted, writer, written, written_lock)
                for p, batch, wanted in tasks
            ]
            for fut in as_completed(futures):
                for outcome in fut.result():
                    outcomes.append(outcome)
                    if progress:
                        progress(outcome.tenant, outcome.source)

    if dry_run:
        run_all(None)
    else:
        with job_lock(store, wait=lock_wait):
            run_all(_Writer(store, run_id, today or utc_today(), now))
    order = {(t.slug, p.source): i for i, (p, t) in enumerate(pairs)}
    outcomes.sort(key=lambda o: order[(o.tenant, o.source)])
    written.sort(key=lambda w: (w.tenant, w.day, w.source))
    reports = [
        http.concurrency.report() for p in providers if isinstance(http := getattr(p, "http", None), Http)
    ]
    return CollectResult(run_id, window, dry_run, outcomes, written, reports)
