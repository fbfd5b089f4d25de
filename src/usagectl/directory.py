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
from pathlib import Path
from typing import Any

from usagectl.config import (
    CONTROL_CHARS,
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


def _sql_rows(d: DirectoryConfig) -> Iterator[Row]:
    from sqlalchemy import create_engine, text
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
            result = conn.execution_options(stream_results=True, yield_per=5000).execute(text(d.query))
            keys = tuple(result.keys())
            for part in result.partitions(5000):
                # Plain tuples zipped with the keys: a RowMapping per row costs as much again as the SELECT.
                for row in part:
                    yield dict(zip(keys, row, strict=True))
    except SQLAlchemyError as exc:
        message = str(getattr(exc, "orig", None) or exc).splitlines()[0]
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
    if d.kind == "sql":
        return _sql_rows(d)
    if d.kind == "http":
        return _http_rows(d)
    return _file_rows(d)


# ---- validating a row --------------------------------------------------------------------------------------


class _Bad(ValueError):
    pass


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list, tuple)):
        raise _Bad(f"{value!r} is not text")
    out = str(value).strip()
    return out or None


def _list(value: Any, sep: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value if v is not None]
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("{") and text.endswith("}"):  # a PostgreSQL array as text: {a,b}
            text = text[1:-1]
        items = [v.strip().strip('"') for v in text.split(sep)]
    else:
        raise _Bad(f"{value!r} is not a list")
    return [v for v in items if v]


def _active(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Bad(f"active: {value!r} is not true or false")


def parse_row(raw: Mapping[str, Any], columns: Mapping[str, str], sep: str) -> tuple[TenantSpec | None, bool]:
    """A source row as a spec and whether it is active; _Bad naming the field when it is not valid."""

    def get(field: str) -> Any:
        return raw.get(columns.get(field, field))

    slug = _text(get("slug"))
    if slug is None:
        raise _Bad("no slug")
    if not SLUG_RE.fullmatch(slug):
        raise _Bad(f"slug {slug!r} is not valid (lower-case letters, digits, '-' and '_', 1-63 chars)")
    name = _text(get("name")) or slug
    if len(name) > MAX_TENANT_NAME_CHARS or CONTROL_CHARS.search(name):
        raise _Bad(f"name is longer than {MAX_TENANT_NAME_CHARS} characters or holds a control character")
    plan = (_text(get("plan")) or "").lower()
    if plan not in PLAN_TIERS:
        raise _Bad(f"unknown plan {get('plan')!r} (one of {', '.join(PLAN_TIERS)})")
    maps: set[tuple[str, str]] = set()
    for field, kind in (
        ("twilio_subaccount_sid", "twilio_subaccount"),
        ("twilio_account_sid", "twilio_account"),
    ):
        sid = _text(get(field))
        if sid is not None:
            if not SID_RE.fullmatch(sid):
                raise _Bad(f"{field} {sid!r} is not a Twilio account SID (AC + 32 hex digits)")
            maps.add((kind, sid))
    numbers = _list(get("phone_numbers"), sep)
    for n in numbers:
        if not E164_RE.fullmatch(n):
            raise _Bad(f"phone number {n!r} is not in E.164 form (+15551234567)")
    maps.update(("phone_number", n) for n in numbers)
    token_env = _text(get("twilio_auth_token_env"))
    if token_env is not None and not ENV_NAME_RE.fullmatch(token_env):
        raise _Bad("twilio_auth_token_env must be the NAME of an environment variable, not a token")
    if ("twilio_account", _text(get("twilio_account_sid"))) in maps and token_env is None:
        raise _Bad("twilio_account_sid (own account) needs twilio_auth_token_env")
    twilio_modes = sum(
        (
            any(k == "twilio_subaccount" for k, _ in maps),
            bool(numbers),
            any(k == "twilio_account" for k, _ in maps),
        )
    )
    if twilio_modes > 1:
        raise _Bad("give one of twilio_subaccount_sid, phone_numbers and twilio_account_sid")
    subuser, category = _text(get("sendgrid_subuser")), _text(get("sendgrid_category"))
    if subuser and category:
        raise _Bad("give one of sendgrid_subuser and sendgrid_category")
    if subuser:
        maps.add(("sendgrid_subuser", subuser))
    if category:
        maps.add(("sendgrid_category", category))
    maps.update(("openai_project", p) for p in _list(get("openai_project_ids"), sep))
    budget_raw = get("monthly_budget")
    budget: Decimal | None = None
    if budget_raw not in (None, ""):
        try:
            budget = Decimal(str(budget_raw).strip())
        except InvalidOperation:
            raise _Bad(f"monthly_budget {budget_raw!r} is not a number") from None
        if not budget.is_finite() or budget < 0 or budget != budget.quantize(Decimal("0.000001")):
            raise _Bad(f"monthly_budget {budget_raw!r} is not a USD amount")
        budget = budget.quantize(Decimal("0.000001"))
    spec = TenantSpec(slug, name, plan, frozenset(maps), budget, token_env)
    return spec, _active(get("active"))


def validate(rows: Iterator[Row], d: DirectoryConfig) -> tuple[list[TenantSpec], list[BadRow], set[str], int]:
    """The good specs, the bad rows, the slugs of bad rows (kept as they were) and the number of rows read."""
    good: dict[str, tuple[int, TenantSpec]] = {}
    bad: list[BadRow] = []
    keep: set[str] = set()
    seen: dict[str, int] = {}
    count = 0
    for n, raw in enumerate(rows, 1):
        count = n
        if isinstance(raw, BadRow):
            bad.append(raw)
            continue
        if raw is None:
            bad.append(BadRow(f"row {n}", "not an object"))
            continue
        slug_hint = raw.get(d.columns.get("slug", "slug"))
        where = f"row {n}" + (
            f" ({slug_hint})" if isinstance(slug_hint, str) and SLUG_RE.fullmatch(slug_hint) else ""
        )
        try:
            spec, active = parse_row(raw, d.columns, d.list_separator)
        except _Bad as exc:
            bad.append(BadRow(where, str(exc)))
            if isinstance(slug_hint, str) and SLUG_RE.fullmatch(slug_hint):
                keep.add(slug_hint)
            continue
        assert spec is not None
        if spec.slug in seen:
            bad.append(BadRow(where, f"duplicate slug {spec.slug!r} (also row {seen[spec.slug]})"))
            keep.add(spec.slug)
            good.pop(spec.slug, None)
            continue
        seen[spec.slug] = n
        if active:
            good[spec.slug] = (n, spec)
    # A number (or any identity) held by two active tenants: both rows are bad, both tenants stay as they were.
    holders: dict[tuple[str, str], list[str]] = {}
    for slug, (_, spec) in good.items():
        for key in spec.mappings:
            holders.setdefault(key, []).append(slug)
    for (kind, value), slugs in sorted(holders.items()):
        if len(slugs) > 1:
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
    """The directory tables' state, cheaply: any write to them (a sync of either origin, `directory plan` by
    hand) moves a count, a largest id or a newest timestamp."""
    from sqlalchemy import func, select

    from usagectl.store.tables import tenant_mappings, tenant_plans, tenants

    t, p, m = tenants.c, tenant_plans.c, tenant_mappings.c
    state = (
        tuple(conn.execute(select(func.count(), func.max(t.id), func.max(t.updated_at))).one()),
        tuple(conn.execute(select(func.count(), func.max(p.id), func.max(p.recorded_at))).one()),
        tuple(conn.execute(select(func.count(), func.max(m.id), func.count(m.valid_to))).one()),
    )
    return repr(state).encode()


def _read(rows: Iterator[Row], d: DirectoryConfig, cfg: Config) -> tuple[list[Row], Any]:
    """Every row of the source, kept for validation, and a SHA-256 of them as read and of the settings."""
    h = hashlib.sha256(_settings(d, cfg))
    # The rows are kept (validated only if the digest differs); the cyclic GC would rescan every kept dict again
    # and again while 100,000 of them are built, though plain rows hold no cycles.
    enabled = gc.isenabled()
    gc.disable()
    try:
        out = list(rows)
    finally:
        if enabled:
            gc.enable()
    # pickle is a faithful serialization (1, "1", Decimal("1"), None and a date all differ; so does key order, and
    # a string shared between rows is written once), so equal bytes mean equal rows; the worst a difference in
    # form can do is make an equal source look changed: a full sync, never a wrong skip. Only dumped, never loaded.
    for i in range(0, len(out), 5000):
        h.update(pickle.dumps(out[i : i + 5000], protocol=5))
    return out, h


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
    rows, source_hash = _read(source_rows(d), d, cfg)

    def digest(conn: Any) -> str:
        h = source_hash.copy()
        h.update(b"\0" + _tables_state(conn))
        return str(h.hexdigest())

    today = today or utc_today()
    with job_lock(store, wait=lock_wait):
        with store.engine.connect() as conn:
            recorded = conn.execute(
                select(directory_digests.c.digest).where(directory_digests.c.origin == origin)
            ).scalar()
            if recorded is not None and recorded == digest(conn):
                return SyncOutcome(SyncDiff(), (), len(rows), dry_run, unchanged=True)
        specs, bad, keep, count = validate(iter(rows), d)
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
