"""`usagectl directory sync`: the platform's tenants (a SQL query, a JSON endpoint or an exported file) into the
directory tables (store.directory), validated row by row.

A bad row is reported with its slug or row number and skipped: its tenant keeps its previous state, every good row
syncs. Nothing here runs on its own: every other command reads the synced tables, never the platform.
"""

from __future__ import annotations

import csv
import gc
import hashlib
import io
import json
import pickle
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from operator import itemgetter
from pathlib import Path
from typing import Any

from usagectl.config import (
    CONTROL_CHARS,
    DIRECTORY_FIELDS,
    MAX_TENANT_NAME_CHARS,
    PLAN_TIERS,
    SLUG_RE,
    Config,
    DirectoryConfig,
)
from usagectl.errors import ConfigError, UsagectlError
from usagectl.periods import utc_today
from usagectl.store.directory import SyncDiff, TenantSpec, apply_specs
from usagectl.store.engine import Store
from usagectl.store.locks import job_lock

SID_RE = re.compile(r"\AAC[0-9a-f]{32}\Z")
E164_RE = re.compile(r"\A\+[1-9]\d{6,14}\Z")
ENV_NAME_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")
_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n", ""}
MAX_HTTP_PAGES = 100_000
_BATCH = 5000  # rows per fetch and per pickled part of the digest


class DirectorySourceError(UsagectlError):
    """The source could not be read at all (nothing was synced)."""


@dataclass(frozen=True)
class BadRow:
    where: str  # "row 7" or "row 7 (acme)"
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


# A source's row: an object, a line that could not be read, or something that is not an object.
Row = Mapping[str, Any] | BadRow | None


@dataclass(frozen=True)
class SyncOutcome:
    diff: SyncDiff
    bad: tuple[BadRow, ...]
    rows: int  # rows read from the source
    dry_run: bool
    unchanged: bool = False  # the digest matched the last clean sync's: nothing validated, diffed or written


# ---- reading a source --------------------------------------------------------------------------------------


def _sql_batches(d: DirectoryConfig) -> Iterator[tuple[tuple[str, ...], list[tuple[Any, ...]]]]:
    """The query's column names with its rows as the driver returns them (plain tuples), batch by batch; the
    first batch is empty (the names alone, even for a query that returns no row)."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    from usagectl.store.engine import normalize_url

    assert d.url is not None and d.query is not None
    url = normalize_url(d.url)
    secret = None
    if d.password is not None:
        secret = d.password.resolve("directory.password").get_secret_value()
        url = url.set(password=secret)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            # The driver's own cursor: its rows are plain tuples, hashed as read; a Row or a dict per row would
            # cost as much again as the SELECT, and most syncs (source unchanged) need neither.
            cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cur.execute(d.query)
                if cur.description is None:
                    raise DirectorySourceError("directory: the SQL query returns no rows (is it a SELECT?)")
                keys = tuple(str(c[0]) for c in cur.description)
                yield keys, []
                while batch := cur.fetchmany(_BATCH):
                    rows: Any = batch if type(batch[0]) is tuple else [tuple(r) for r in batch]
                    yield keys, rows
            finally:
                cur.close()
    except SQLAlchemyError as exc:
        message = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        if secret:
            message = message.replace(secret, "***")
        raise DirectorySourceError(f"directory: the SQL source failed: {message}") from None
    except engine.dialect.loaded_dbapi.Error as exc:  # the driver's own cursor: its errors are not wrapped
        message = (str(exc).splitlines() or [type(exc).__name__])[0]
        if secret:
            message = message.replace(secret, "***")
        raise DirectorySourceError(f"directory: the SQL source failed: {message}") from None
    finally:
        engine.dispose()


def _http_rows(d: DirectoryConfig) -> Iterator[Row]:
    from usagectl.http import Http, PageGuard, Policy
    from usagectl.records import ProviderError

    assert d.url is not None
    headers: dict[str, str] = {}
    secrets: tuple[str, ...] = ()
    if d.token is not None:
        token = d.token.resolve("directory.token").get_secret_value()
        headers["Authorization"] = f"Bearer {token}"
        secrets = (token,)
    http = Http(
        "directory", d.url, Policy(timeout=d.timeout, max_concurrency=1), headers=headers, secrets=secrets
    )
    guard = PageGuard("directory", d.url, max_pages=MAX_HTTP_PAGES)
    url: str | None = d.url
    try:
        while url:
            try:
                page = http.get_json(url)
            except ProviderError as exc:
                raise DirectorySourceError(str(exc)) from None
            if not isinstance(page, dict) or not isinstance(page.get(d.items_key), list):
                raise DirectorySourceError(
                    f"directory: {d.url}: the answer has no list {d.items_key!r} (items_key)"
                )
            for item in page[d.items_key]:
                yield item if isinstance(item, dict) else None
            nxt = page.get(d.next_key)
            if nxt in (None, ""):
                return
            if not isinstance(nxt, str):
                raise DirectorySourceError(f"directory: {d.url}: {d.next_key!r} is not a URL")
            try:
                guard.follow(nxt)
            except ProviderError as exc:
                raise DirectorySourceError(str(exc)) from None
            url = nxt
    finally:
        http.close()


def _file_rows(d: DirectoryConfig) -> Iterator[Row]:
    assert d.path is not None
    path = Path(d.path).expanduser()
    fmt = d.format or {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}.get(path.suffix.lower(), "json")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DirectorySourceError(f"directory: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise DirectorySourceError(f"directory: {path} is not UTF-8 text") from None
    if fmt == "csv":
        yield from csv.DictReader(io.StringIO(text, newline=""))
        return
    if fmt == "jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line, parse_float=Decimal)
            except ValueError as exc:
                yield BadRow(f"{path}:{n}", f"not JSON: {exc}")
                continue
            yield item if isinstance(item, dict) else BadRow(f"{path}:{n}", "not a JSON object")
        return
    try:
        doc = json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise DirectorySourceError(f"directory: {path} is not JSON: {exc}") from None
    items = doc.get(d.items_key) if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise DirectorySourceError(
            f"directory: {path}: expected a list of tenants or {{{d.items_key!r}: [...]}}"
        )
    for item in items:
        yield item if isinstance(item, dict) else None


def source_rows(d: DirectoryConfig) -> Iterator[Row]:
    """The source's rows as mappings (the SQL source's as dicts of its columns)."""
    if d.kind == "sql":
        return (dict(zip(keys, r, strict=True)) for keys, b in _sql_batches(d) for r in b)
    if d.kind == "http":
        return _http_rows(d)
    return _file_rows(d)


# ---- validating a row --------------------------------------------------------------------------------------


class _Bad(ValueError):
    pass


def _text(value: Any) -> str | None:
    if type(value) is str:  # the common case, first
        return value.strip() or None
    if value is None:
        return None
    if isinstance(value, (dict, list, tuple)):
        raise _Bad(f"{value!r} is not text")
    out = str(value).strip()
    return out or None


def _list(value: Any, sep: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text[0] == "{" and text[-1] == "}":  # a PostgreSQL array as text: {a,b}
            text = text[1:-1]
        if sep not in text and '"' not in text:
            return [text.strip()] if text.strip() else []
        items = [v.strip().strip('"') for v in text.split(sep)]
    elif isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value if v is not None]
    else:
        raise _Bad(f"{value!r} is not a list")
    return [v for v in items if v]


def _active(value: Any) -> bool:
    if value is None or value is True:
        return True
    if value is False:
        return False
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Bad(f"active: {value!r} is not true or false")


_SLUG_OK = SLUG_RE.fullmatch
_SID_OK = SID_RE.fullmatch
_E164_OK = E164_RE.fullmatch
_ENV_OK = ENV_NAME_RE.fullmatch
_CONTROL = CONTROL_CHARS.search
_MICRO = Decimal("0.000001")
MAX_TOKEN_FILE_CHARS = 1000
Fields = tuple[Any, ...]  # a source row's values in the order of DIRECTORY_FIELDS (None where absent)


def parse_fields(v: Fields, sep: str) -> tuple[TenantSpec, bool]:
    """A source row (its values in DIRECTORY_FIELDS order) as a spec and whether it is active; _Bad naming the
    field when it is not valid. Plain checks and precompiled patterns: it runs once per row of a large source."""
    (
        slug_v,
        name_v,
        plan_v,
        sub_v,
        acc_v,
        env_v,
        file_v,
        numbers_v,
        subuser_v,
        category_v,
        projects_v,
        budget_v,
        active_v,
    ) = v
    # type(x) is str first, inline: the common case, once per field of every row.
    slug = slug_v.strip() if type(slug_v) is str else _text(slug_v)
    if not slug:
        raise _Bad("no slug")
    if not _SLUG_OK(slug):
        raise _Bad(f"slug {slug!r} is not valid (lower-case letters, digits, '-' and '_', 1-63 chars)")
    name = (name_v.strip() if type(name_v) is str else _text(name_v)) or slug
    if len(name) > MAX_TENANT_NAME_CHARS or _CONTROL(name):
        raise _Bad(f"name is longer than {MAX_TENANT_NAME_CHARS} characters or holds a control character")
    plan = (plan_v.strip() if type(plan_v) is str else _text(plan_v) or "").lower()
    if plan not in PLAN_TIERS:
        raise _Bad(f"unknown plan {plan_v!r} (one of {', '.join(PLAN_TIERS)})")
    maps: list[tuple[str, str]] = []
    sub = None if sub_v is None else _text(sub_v)
    if sub is not None:
        if not _SID_OK(sub):
            raise _Bad(f"twilio_subaccount_sid {sub!r} is not a Twilio account SID (AC + 32 hex digits)")
        maps.append(("twilio_subaccount", sub))
    own = None if acc_v is None else _text(acc_v)
    if own is not None:
        if not _SID_OK(own):
            raise _Bad(f"twilio_account_sid {own!r} is not a Twilio account SID (AC + 32 hex digits)")
        maps.append(("twilio_account", own))
    numbers = [] if numbers_v is None else _list(numbers_v, sep)
    for n in numbers:
        if not _E164_OK(n):
            raise _Bad(f"phone number {n!r} is not in E.164 form (+15551234567)")
        maps.append(("phone_number", n))
    token_env = None if env_v is None else _text(env_v)
    if token_env is not None and not _ENV_OK(token_env):
        raise _Bad("twilio_auth_token_env must be the NAME of an environment variable, not a token")
    token_file = None if file_v is None else _text(file_v)
    if token_file is not None and (
        token_file[0] not in "/~" or len(token_file) > MAX_TOKEN_FILE_CHARS or _CONTROL(token_file)
    ):
        # An absolute path (or ~/...) cannot be a token pasted in the wrong column.
        raise _Bad(
            "twilio_auth_token_file must be the absolute PATH of a file holding the token, not a token"
        )
    if token_env is not None and token_file is not None:
        raise _Bad("give one of twilio_auth_token_env and twilio_auth_token_file")
    if own is not None and token_env is None and token_file is None:
        raise _Bad("twilio_account_sid (own account) needs twilio_auth_token_env or twilio_auth_token_file")
    if (sub is not None) + bool(numbers) + (own is not None) > 1:
        raise _Bad("give one of twilio_subaccount_sid, phone_numbers and twilio_account_sid")
    subuser = subuser_v.strip() if type(subuser_v) is str else _text(subuser_v)
    category = None if category_v is None else _text(category_v)
    if subuser and category:
        raise _Bad("give one of sendgrid_subuser and sendgrid_category")
    if subuser:
        maps.append(("sendgrid_subuser", subuser))
    if category:
        maps.append(("sendgrid_category", category))
    if projects_v is not None:
        maps.extend([("openai_project", p) for p in _list(projects_v, sep)])
    budget: Decimal | None = None
    if budget_v is not None and budget_v != "":
        try:
            budget = Decimal(str(budget_v).strip())
        except InvalidOperation:
            raise _Bad(f"monthly_budget {budget_v!r} is not a number") from None
        if not budget.is_finite() or budget < 0 or budget != budget.quantize(_MICRO):
            raise _Bad(f"monthly_budget {budget_v!r} is not a USD amount")
        budget = budget.quantize(_MICRO)
    spec = TenantSpec(slug, name, plan, frozenset(maps), budget, token_env, token_file)
    return spec, True if active_v is None else _active(active_v)


def parse_row(raw: Mapping[str, Any], columns: Mapping[str, str], sep: str) -> tuple[TenantSpec | None, bool]:
    """A source row given as a mapping (field names through `columns`): see parse_fields."""
    return parse_fields(tuple(raw.get(columns.get(f, f)) for f in DIRECTORY_FIELDS), sep)


FieldRow = Fields | BadRow | None


def validate(
    rows: Iterator[FieldRow], d: DirectoryConfig
) -> tuple[list[TenantSpec], list[BadRow], set[str], int]:
    """The good specs, the bad rows, the slugs of bad rows (kept as they were) and the number of rows read.
    `rows` are the source's rows as field tuples (`_Source.fields`)."""
    good: dict[str, tuple[int, TenantSpec]] = {}
    bad: list[BadRow] = []
    keep: set[str] = set()
    seen: dict[str, int] = {}
    count = 0
    sep = d.list_separator
    for n, v in enumerate(rows, 1):
        count = n
        if v is None:
            bad.append(BadRow(f"row {n}", "not an object"))
            continue
        if isinstance(v, BadRow):
            bad.append(v)
            continue
        try:
            spec, active = parse_fields(v, sep)
        except _Bad as exc:
            hint = v[0]
            named = isinstance(hint, str) and _SLUG_OK(hint)
            bad.append(BadRow(f"row {n}" + (f" ({hint})" if named else ""), str(exc)))
            if named:
                keep.add(hint)
            continue
        slug = spec.slug
        if slug in seen:
            hint = v[0]
            where = f"row {n}" + (f" ({hint})" if isinstance(hint, str) and _SLUG_OK(hint) else "")
            bad.append(BadRow(where, f"duplicate slug {slug!r} (also row {seen[slug]})"))
            keep.add(slug)
            good.pop(slug, None)
            continue
        seen[slug] = n
        if active:
            good[slug] = (n, spec)
    # A number (or any identity) held by two active tenants: both rows are bad, both tenants stay as they were.
    every = [key for _, spec in good.values() for key in spec.mappings]
    clash: set[tuple[str, str]] = set()
    if len(set(every)) != len(every):  # the common case (no clash) in two C-level passes
        first: dict[tuple[str, str], str] = {}
        for slug, (_, spec) in good.items():
            for key in spec.mappings:
                if first.setdefault(key, slug) != slug:
                    clash.add(key)
    if clash:
        holders: dict[tuple[str, str], list[str]] = {}
        for slug, (_, spec) in good.items():
            for key in spec.mappings & clash:
                holders.setdefault(key, []).append(slug)
        for (kind, value), slugs in sorted(holders.items()):
            for slug in slugs:
                if slug in good:
                    n = good[slug][0]
                    others = ", ".join(s for s in slugs if s != slug)
                    bad.append(BadRow(f"row {n} ({slug})", f"{kind} {value} is also held by {others}"))
                    keep.add(slug)
            for slug in slugs:
                good.pop(slug, None)
    return [spec for _, spec in good.values()], bad, keep, count


def _settings(d: DirectoryConfig, cfg: Config) -> bytes:
    """What decides a sync's outcome besides the source's rows: where they come from, how they are read and
    mapped, the plans known, and the [[tenants]] slugs (a slug in both is refused)."""
    parts = (
        d.kind,
        d.url,
        d.query,
        str(d.path) if d.path is not None else None,
        d.format,
        d.items_key,
        d.next_key,
        d.list_separator,
        sorted(d.columns.items()),
        tuple(PLAN_TIERS),
        sorted(t.slug for t in cfg.tenants),
    )
    return repr(parts).encode()


def _tables_state(conn: Any) -> bytes:
    """The directory tables' state in one cheap query: the count of writes that the triggers of directory_changes
    keep (migration 0012), so any update or delete, by usagectl or by hand in SQL (a mapping re-dated, moved to
    another tenant or closed), moves it; on PostgreSQL inserts too. SQLite counts no insert (a trigger per row),
    so there each table's count and largest id, both read from an index, stand for them."""
    tables = ("tenants", "tenant_plans", "tenant_mappings")
    if conn.dialect.name == "postgresql":
        parts = [f"(SELECT max(id) FROM {t})" for t in tables]
    else:
        parts = [f"(SELECT count(*) FROM {t}), (SELECT max(id) FROM {t})" for t in tables]
    sql = "SELECT (SELECT changes FROM directory_changes WHERE id = 1), " + ", ".join(parts)
    return repr(tuple(conn.exec_driver_sql(sql).one())).encode()


_PAD = (None,)


@dataclass
class _Source:
    """A source's rows as read: the SQL source's as its driver's tuples (`keys` their column names), the others'
    as objects. Turned into field tuples only when they must be validated."""

    keys: tuple[str, ...] | None
    parts: list[list[Any]]  # empty when only hashed (`_read` with keep=False)
    count: int  # rows read

    def fields(self, d: DirectoryConfig) -> Iterator[FieldRow]:
        names = [d.columns.get(f, f) for f in DIRECTORY_FIELDS]
        if self.keys is not None:
            pos = {k: i for i, k in enumerate(self.keys)}
            pick = itemgetter(*(pos.get(name, len(self.keys)) for name in names))  # absent: the pad's None
            for part in self.parts:
                for r in part:
                    yield pick(r + _PAD)
            return
        for part in self.parts:
            for raw in part:
                if raw is None or isinstance(raw, BadRow):
                    yield raw
                else:
                    yield tuple(raw.get(name) for name in names)


def _read(d: DirectoryConfig, cfg: Config, *, keep: bool) -> tuple[_Source, Any]:
    """A SHA-256 of the source's rows as read and of the settings, and the rows themselves when `keep` (else
    only their number: the SQL source's rows are hashed batch by batch and dropped, so an unchanged source costs
    little more than its SELECT; a changed one is read again to be validated). The other kinds always keep them.

    pickle is a faithful serialization (1, "1", Decimal("1"), None and a date all differ; so does key order, and
    a string shared between rows is written once), so equal bytes mean equal rows; the worst a difference in form
    can do is make an equal source look changed: a full sync, never a wrong skip. Only dumped, never loaded."""
    h = hashlib.sha256(_settings(d, cfg))
    # Kept rows would be rescanned by the cyclic GC again and again while 100,000 of them are read, though plain
    # rows hold no cycles.
    enabled = gc.isenabled()
    gc.disable()
    try:
        if d.kind == "sql":
            keys: tuple[str, ...] = ()
            parts: list[list[Any]] = []
            count = 0
            for keys, batch in _sql_batches(d):
                if not batch:
                    h.update(repr(keys).encode())
                    continue
                h.update(pickle.dumps(batch, protocol=5))
                count += len(batch)
                if keep:
                    parts.append(batch)
            return _Source(keys, parts, count), h
        rows = list(source_rows(d))
        src = _Source(None, [rows[i : i + _BATCH] for i in range(0, len(rows), _BATCH)], len(rows))
    finally:
        if enabled:
            gc.enable()
    for part in src.parts:
        h.update(pickle.dumps(part, protocol=5))
    return src, h


def sync_directory(
    store: Store, cfg: Config, *, dry_run: bool = False, today: date | None = None, lock_wait: float = 10.0
) -> SyncOutcome:
    """Read the source, validate, and apply the good rows (origin "directory") from `today` (UTC).

    When the source's rows, the settings and the directory tables are as they were after the last sync that had
    no bad row (one digest, directory_digests), the outcome is known: nothing to write. The day does not enter
    it: with the same rows no tenant is gone, so no inactive_from is written whatever the day."""
    from sqlalchemy import delete, insert, select

    from usagectl.store.tables import directory_digests, utcnow

    d = cfg.directory
    if d is None:
        raise ConfigError(
            f"{cfg.where()}no [directory] section: nothing to sync from (README, Tenants from the platform)"
        )
    origin = "directory"

    def recorded() -> str | None:
        with store.engine.connect() as conn:
            return conn.execute(
                select(directory_digests.c.digest).where(directory_digests.c.origin == origin)
            ).scalar()

    # With a digest to compare with, the SQL source is only hashed first (read again if it differs).
    src, source_hash = _read(d, cfg, keep=recorded() is None)

    def digest(conn: Any) -> str:
        h = source_hash.copy()
        h.update(b"\0" + _tables_state(conn))
        return str(h.hexdigest())

    today = today or utc_today()
    with job_lock(store, wait=lock_wait):
        with store.engine.connect() as conn:
            last = conn.execute(
                select(directory_digests.c.digest).where(directory_digests.c.origin == origin)
            ).scalar()
            if last is not None and last == digest(conn):
                return SyncOutcome(SyncDiff(), (), src.count, dry_run, unchanged=True)
        if src.count and not src.parts:
            # Changed: read again, keeping the rows; the digest recorded is the one of the rows validated.
            src, source_hash = _read(d, cfg, keep=True)
        specs, bad, keep, count = validate(src.fields(d), d)
        in_toml = sorted({s.slug for s in specs} & {t.slug for t in cfg.tenants})
        if in_toml:
            raise ConfigError(
                f"{cfg.where()}tenant {in_toml[0]!r} is both in [[tenants]] and in the directory; "
                "define it in one place"
            )
        with store.engine.begin() as conn:
            diff = apply_specs(conn, specs, origin, today, dry_run=dry_run, keep=keep)
            if not dry_run:
                dg = directory_digests.c
                conn.execute(delete(directory_digests).where(dg.origin == origin))
                if not bad:  # a run with bad rows never records one: its next run validates again
                    conn.execute(
                        insert(directory_digests).values(
                            origin=origin, digest=digest(conn), recorded_at=utcnow()
                        )
                    )
    return SyncOutcome(diff, tuple(bad), count, dry_run)
