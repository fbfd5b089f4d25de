"""The tenant directory in the database: tenants, their plan periods and their dated provider mappings.

Both sources of tenants write here through `apply_specs`: `[[tenants]]` of the TOML (origin "config", on every
command, store.tenants.sync_tenants) and the platform's directory (origin "directory", `usagectl directory sync`).
History is kept in UTC days and never deleted: a plan change opens a new plan period from its day, a mapping that
moves is closed on the day it moves and opened for its new holder on the same day, and a tenant gone from its
source becomes inactive from the day it went. Every command reads tenants from here; none asks the platform.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, func, insert, or_, select, update

from usagectl.config import TenantConfig
from usagectl.errors import ConfigError
from usagectl.store.tables import tenant_mappings, tenant_plans, tenants, utcnow

EARLIEST = date(1, 1, 1)  # the start of a tenant's first plan period and of a value's first mapping
MAPPING_KINDS = (
    "phone_number",
    "twilio_subaccount",
    "twilio_account",
    "sendgrid_subuser",
    "sendgrid_category",
    "openai_project",
)
_BATCH = 5000  # rows per executemany: bounded memory and statement size at 100,000 tenants


class TenantSpec(NamedTuple):
    """One tenant as its source defines it today. A named tuple, not a dataclass: a sync builds one per row of
    the source, and a frozen dataclass's field-by-field __init__ costs several times a tuple's."""

    slug: str
    name: str
    plan: str
    mappings: frozenset[tuple[str, str]] = frozenset()  # (kind, value)
    monthly_budget: Decimal | None = None
    twilio_auth_token_env: str | None = None
    twilio_auth_token_file: str | None = None  # the path of a file holding the token (never the token)

    def values(self, kind: str) -> list[str]:
        return sorted(v for k, v in self.mappings if k == kind)


def spec_of(t: TenantConfig) -> TenantSpec:
    """A `[[tenants]]` entry as a spec (its own-account token stays in the TOML, where it is resolved)."""
    maps: set[tuple[str, str]] = set()
    if t.twilio is not None:
        if t.twilio.subaccount_sid:
            maps.add(("twilio_subaccount", t.twilio.subaccount_sid))
        if t.twilio.account_sid:
            maps.add(("twilio_account", t.twilio.account_sid))
        maps.update(("phone_number", n) for n in t.twilio.phone_numbers)
    if t.sendgrid is not None:
        if t.sendgrid.subuser:
            maps.add(("sendgrid_subuser", t.sendgrid.subuser))
        if t.sendgrid.category:
            maps.add(("sendgrid_category", t.sendgrid.category))
    if t.openai is not None:
        maps.update(("openai_project", p) for p in t.openai.project_ids)
    return TenantSpec(t.slug, t.display_name, t.plan, frozenset(maps), None, None, None)


@dataclass(frozen=True)
class FieldChange:
    slug: str
    field: str
    old: str
    new: str


@dataclass(frozen=True)
class SyncDiff:
    """What a sync changed (or, dry, would change)."""

    added: tuple[str, ...] = ()
    changed: tuple[FieldChange, ...] = ()
    gone: tuple[str, ...] = ()
    rows_written: int = 0

    @property
    def any(self) -> bool:
        return bool(self.added or self.changed or self.gone)

    @property
    def changed_slugs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.slug for c in self.changed))


def _show(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, Decimal):
        return f"{value:f}"
    return str(value)


@dataclass
class _Existing:
    id: int
    name: str
    plan_tier: str
    source_plan: str | None
    active: bool
    origin: str
    budget: Decimal | None
    token_env: str | None
    token_file: str | None
    open_maps: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, value) -> mapping row id


def _existing(
    conn: Connection, origin: str | None = None
) -> tuple[dict[str, _Existing], dict[tuple[str, str], int], set[tuple[str, str]]]:
    """Every tenant by slug (or only those of `origin`); who holds each open mapping; every (kind, value) ever
    mapped (by those tenants)."""
    c = tenants.c
    found: dict[str, _Existing] = {}
    by_id: dict[int, _Existing] = {}
    q = select(
        c.slug,
        c.id,
        c.name,
        c.plan_tier,
        c.source_plan,
        c.active,
        c.origin,
        c.monthly_budget_usd,
        c.twilio_auth_token_env,
        c.twilio_auth_token_file,
    )
    if origin is not None:
        q = q.where(c.origin == origin)
    for slug, pk, name, plan, source_plan, active, origin_, budget, token_env, token_file in conn.execute(
        q
    ).all():
        e = _Existing(int(pk), name, plan, source_plan, bool(active), origin_, budget, token_env, token_file)
        found[slug] = by_id[e.id] = e
    m = tenant_mappings.c
    holder: dict[tuple[str, str], int] = {}
    ever: set[tuple[str, str]] = set()
    mq = select(m.id, m.tenant_id, m.kind, m.value, m.valid_to)
    if origin is not None:
        mq = mq.join(tenants, c.id == m.tenant_id).where(c.origin == origin)
    for mid, tid, kind, value, valid_to in conn.execute(mq).all():
        ever.add((kind, value))
        if valid_to is None and tid in by_id:
            by_id[tid].open_maps[(kind, value)] = int(mid)
            holder[(kind, value)] = int(tid)
    return found, holder, ever


def record_plan(
    conn: Connection, tenant_id: int, tier: str, from_day: date, how: str, now: datetime | None = None
) -> int:
    """Put `tenant_id` on `tier` from `from_day`: the period holding that day ends there (or, starting that very
    day, changes tier); later periods stay. Returns the rows written (0 when the tenant is already on `tier`
    that day and no period starts after it would need cutting)."""
    now = now or utcnow()
    p = tenant_plans.c
    periods = conn.execute(
        select(p.id, p.plan_tier, p.valid_from, p.valid_to)
        .where(p.tenant_id == tenant_id)
        .order_by(p.valid_from)
    ).all()
    holding = next(
        (r for r in periods if r.valid_from <= from_day and (r.valid_to is None or from_day < r.valid_to)),
        None,
    )
    written = 0
    if holding is None:
        # Before the first period (it starts at EARLIEST when written here; by hand it may start later).
        nxt = next((r.valid_from for r in periods if r.valid_from > from_day), None)
        conn.execute(
            insert(tenant_plans).values(
                tenant_id=tenant_id,
                plan_tier=tier,
                valid_from=from_day,
                valid_to=nxt,
                how=how,
                recorded_at=now,
            )
        )
        written = 1
    elif holding.plan_tier == tier:
        return 0
    elif holding.valid_from == from_day:
        conn.execute(
            update(tenant_plans).where(p.id == holding.id).values(plan_tier=tier, how=how, recorded_at=now)
        )
        written = 1
    else:
        conn.execute(update(tenant_plans).where(p.id == holding.id).values(valid_to=from_day))
        conn.execute(
            insert(tenant_plans).values(
                tenant_id=tenant_id,
                plan_tier=tier,
                valid_from=from_day,
                valid_to=holding.valid_to,
                how=how,
                recorded_at=now,
            )
        )
        written = 2
    current = conn.execute(
        select(p.plan_tier).where(p.tenant_id == tenant_id).order_by(p.valid_from.desc()).limit(1)
    ).scalar_one()
    conn.execute(update(tenants).where(tenants.c.id == tenant_id).values(plan_tier=current, updated_at=now))
    return written + 1


def _bind_processor(conn: Connection, column: Any) -> Any:
    """The column type's conversion of a Python value into what this driver stores (None: none needed)."""
    return column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)


def _db_value(conn: Connection, column: Any, value: Any) -> Any:
    proc = _bind_processor(conn, column)
    return value if proc is None else proc(value)


def _bulk_insert(conn: Connection, table: Any, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> int:
    """Insert plain tuples, already in the driver's form (`_db_value`), through the driver itself, inside the
    connection's transaction: COPY on PostgreSQL, one executemany per batch on SQLite. SQLAlchemy's executemany
    would convert every value of every row again (a first sync of 100,000 tenants writes 500,000 rows)."""
    if not rows:
        return 0
    from sqlalchemy.exc import DBAPIError

    dbapi: Any = conn.connection.dbapi_connection
    driver_error = conn.dialect.loaded_dbapi.Error
    names = ", ".join(columns)
    sql = f"INSERT INTO {table.name} ({names})"
    try:
        if conn.dialect.name == "postgresql":
            sql = f"COPY {table.name} ({names}) FROM STDIN"
            with dbapi.cursor() as cur, cur.copy(sql) as copy:
                for row in rows:
                    copy.write_row(row)
            return len(rows)
        cur = dbapi.cursor()
        try:
            marks = ", ".join("?" * len(columns))
            for i in range(0, len(rows), _BATCH):
                cur.executemany(f"{sql} VALUES ({marks})", rows[i : i + _BATCH])
        finally:
            cur.close()
    except driver_error as exc:
        # As SQLAlchemy would raise it (IntegrityError, OperationalError...): callers retry on those (two
        # processes adding the same tenant at once, store.tenants.sync_tenants).
        raise DBAPIError.instance(sql, None, exc, driver_error) from None
    return len(rows)


def _batched(conn: Connection, stmt: Any, rows: Sequence[Mapping[str, Any]]) -> int:
    for i in range(0, len(rows), _BATCH):
        conn.execute(stmt, list(rows[i : i + _BATCH]))
    return len(rows)


def diff_specs(
    conn: Connection,
    specs: Iterable[TenantSpec],
    origin: str,
    keep: frozenset[str] | set[str] = frozenset(),
    *,
    scoped: bool = False,
) -> tuple[SyncDiff, dict[str, _Existing], dict[tuple[str, str], int], set[tuple[str, str]]]:
    """What applying `specs` would change; `keep` are slugs left as they are (their source row was bad).
    `scoped`: read only the tenants of `origin` (enough to tell whether anything changes; every command syncs
    [[tenants]] this way, so a large directory costs it nothing)."""
    found, holder, ever = _existing(conn, origin if scoped else None)
    added: list[str] = []
    changes: list[FieldChange] = []
    wanted = {s.slug: s for s in specs}
    for slug in sorted(wanted):
        s = wanted[slug]
        e = found.get(slug)
        if e is None:
            added.append(slug)
            continue
        if not e.active:
            changes.append(FieldChange(slug, "active", "no", "yes"))
        if e.name != s.name:
            changes.append(FieldChange(slug, "name", e.name, s.name))
        if (e.source_plan or e.plan_tier) != s.plan:
            changes.append(FieldChange(slug, "plan", e.source_plan or e.plan_tier, s.plan))
        if origin == "directory":
            if e.budget != s.monthly_budget:
                changes.append(FieldChange(slug, "monthly_budget", _show(e.budget), _show(s.monthly_budget)))
            if e.token_env != s.twilio_auth_token_env:
                changes.append(
                    FieldChange(
                        slug, "twilio_auth_token_env", _show(e.token_env), _show(s.twilio_auth_token_env)
                    )
                )
            if e.token_file != s.twilio_auth_token_file:
                changes.append(
                    FieldChange(
                        slug, "twilio_auth_token_file", _show(e.token_file), _show(s.twilio_auth_token_file)
                    )
                )
        have = e.open_maps.keys()
        if have == s.mappings:
            continue  # the common case at 100,000 tenants: nothing moved, no per-kind lists to build
        for kind in MAPPING_KINDS:
            old = sorted(v for k, v in have if k == kind)
            new = s.values(kind)
            if old != new:
                changes.append(FieldChange(slug, kind, ",".join(old) or "-", ",".join(new) or "-"))
    gone = sorted(
        slug
        for slug, e in found.items()
        if e.origin == origin and e.active and slug not in wanted and slug not in keep
    )
    return SyncDiff(tuple(added), tuple(changes), tuple(gone)), found, holder, ever


def apply_specs(
    conn: Connection,
    specs: Sequence[TenantSpec],
    origin: str,
    today: date,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    keep: frozenset[str] | set[str] = frozenset(),
    refuse_origin: str | None = None,
) -> SyncDiff:
    """Make the tenants of `origin` what `specs` say, from `today` (UTC). Writes only what changed: an unchanged
    source writes no row. The specs must be valid already (a number held by two of them is refused upstream)."""
    now = now or utcnow()
    diff, found, holder, ever = diff_specs(conn, specs, origin, keep, scoped=True)
    if refuse_origin is not None and diff.added:
        # A slug new to this origin may be a tenant of the other one: one source per tenant.
        clash = conn.execute(
            select(tenants.c.slug).where(tenants.c.origin == refuse_origin, tenants.c.slug.in_(diff.added))
        ).first()
        if clash is not None:
            raise ConfigError(
                f"tenant {clash.slug!r} is both in [[tenants]] and in the tenant directory; define it in one place"
            )
    if dry_run or not diff.any:
        return diff
    # Something changes: every tenant's mappings, since a value may move from a tenant of the other origin (read
    # again only when there is such a tenant).
    if conn.execute(select(tenants.c.id).where(tenants.c.origin != origin).limit(1)).first() is not None:
        diff, found, holder, ever = diff_specs(conn, specs, origin, keep)
    wanted = {s.slug: s for s in specs}
    written = 0
    touched = set(diff.changed_slugs)
    # Gone: inactive from today, their open mappings closed today (a number can then move to another tenant).
    close_ids: list[int] = []
    for slug in diff.gone:
        e = found[slug]
        conn.execute(
            update(tenants)
            .where(tenants.c.id == e.id)
            .values(active=False, inactive_from=today, updated_at=now)
        )
        written += 1
        close_ids.extend(e.open_maps.values())
        for key in e.open_maps:
            holder.pop(key, None)
    # Mappings that changed hands or were dropped close first, so the new holders open theirs on the same day.
    for slug in sorted(touched):
        e = found[slug]
        want = wanted[slug].mappings
        for key, mid in e.open_maps.items():
            if key not in want:
                close_ids.append(mid)
                holder.pop(key, None)
    # New tenants first (bulk inserts of plain tuples, their ids read back in one query), so that the mappings
    # below are built once, as the rows they are written as.
    new_ids: dict[str, int] = {}
    if diff.added:
        t = tenants.c
        last_id = conn.execute(select(func.max(t.id))).scalar() or 0
        now_db = _db_value(conn, t.created_at, now)
        active_db = _db_value(conn, t.active, True)
        money = _bind_processor(conn, t.monthly_budget_usd)
        written += _bulk_insert(
            conn,
            tenants,
            (
                "slug",
                "name",
                "plan_tier",
                "source_plan",
                "active",
                "origin",
                "monthly_budget_usd",
                "twilio_auth_token_env",
                "twilio_auth_token_file",
                "created_at",
                "updated_at",
            ),
            [
                (
                    s.slug,
                    s.name,
                    s.plan,
                    s.plan,
                    active_db,
                    origin,
                    None if s.monthly_budget is None or money is None else money(s.monthly_budget),
                    s.twilio_auth_token_env,
                    s.twilio_auth_token_file,
                    now_db,
                    now_db,
                )
                for s in map(wanted.__getitem__, diff.added)
            ],
        )
        added = set(diff.added)
        new_ids = {
            slug: int(pk)
            for slug, pk in conn.exec_driver_sql(
                "SELECT slug, id FROM tenants WHERE id > " + str(int(last_id))
            ).fetchall()
            if slug in added
        }
        earliest_db = _db_value(conn, tenant_plans.c.valid_from, EARLIEST)
        written += _bulk_insert(
            conn,
            tenant_plans,
            ("tenant_id", "plan_tier", "valid_from", "valid_to", "how", "recorded_at"),
            [(new_ids[slug], wanted[slug].plan, earliest_db, None, origin, now_db) for slug in diff.added],
        )
    mc = tenant_mappings.c
    from_db = {
        EARLIEST: _db_value(conn, mc.valid_from, EARLIEST),
        today: _db_value(conn, mc.valid_from, today),
    }
    at_db = _db_value(conn, mc.recorded_at, now)
    by_id = {x.id: x for x in found.values()}
    opens: list[tuple[Any, ...]] = []  # tenant_mappings rows, in the driver's form
    for slug in sorted(set(diff.added) | touched):
        s = wanted[slug]
        known = found.get(slug)
        tid = known.id if known is not None else new_ids[slug]
        for key in sorted(s.mappings.difference(known.open_maps) if known is not None else s.mappings):
            other = holder.get(key)
            if other is not None and other in by_id and key in by_id[other].open_maps:
                # Held by a tenant of the other origin (or one not in this sync): it moves today.
                close_ids.append(by_id[other].open_maps[key])
            opens.append((tid, key[0], key[1], from_db[today if key in ever else EARLIEST], None, at_db))
    if close_ids:
        stmt = update(tenant_mappings).where(mc.id == bindparam("mid")).values(valid_to=today)
        written += _batched(conn, stmt, [{"mid": i} for i in sorted(set(close_ids))])
    written += _bulk_insert(
        conn, tenant_mappings, ("tenant_id", "kind", "value", "valid_from", "valid_to", "recorded_at"), opens
    )
    # Changed tenants: their own fields, and a plan period from today when the source's plan moved.
    for slug in sorted(touched):
        e, s = found[slug], wanted[slug]
        values: dict[str, Any] = {"name": s.name, "active": True, "inactive_from": None, "origin": origin}
        if origin == "directory":
            values["monthly_budget_usd"] = s.monthly_budget
            values["twilio_auth_token_env"] = s.twilio_auth_token_env
            values["twilio_auth_token_file"] = s.twilio_auth_token_file
        if (e.source_plan or e.plan_tier) != s.plan:
            written += record_plan(conn, e.id, s.plan, today, origin, now)
            values["source_plan"] = s.plan
        conn.execute(update(tenants).where(tenants.c.id == e.id).values(updated_at=now, **values))
        written += 1
    return SyncDiff(diff.added, diff.changed, diff.gone, written)


# ---- reading the history -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanPeriod:
    plan_tier: str
    start: date  # inclusive
    end: date | None  # exclusive; None: still current


def plan_periods(
    conn: Connection, start: date, end: date, tenant_id: int | None = None
) -> dict[int, list[PlanPeriod]]:
    """The plan periods overlapping [start, end), oldest first, of each tenant whose plan changes after `start`
    (inside the window or later). Any other tenant has one plan over the window, its plan now (tenants.plan_tier,
    the plan of its last period): at 100,000 tenants the few that changed are all a report needs to read."""
    p = tenant_plans.c
    changing = select(p.tenant_id).where(p.valid_from > start)
    q = select(p.tenant_id, p.plan_tier, p.valid_from, p.valid_to).where(
        p.valid_from < end, or_(p.valid_to.is_(None), p.valid_to > start), p.tenant_id.in_(changing)
    )
    if tenant_id is not None:
        q = q.where(p.tenant_id == tenant_id)
    out: dict[int, list[PlanPeriod]] = {}
    for tid, tier, a, b in conn.execute(q.order_by(p.tenant_id, p.valid_from)):
        out.setdefault(int(tid), []).append(PlanPeriod(tier, a, b))
    return out


@dataclass(frozen=True)
class Held:
    tenant_id: int
    slug: str
    start: date
    end: date | None


class Attribution:
    """Who held which provider identity on which UTC day: the one lookup collect attributes by (phone numbers on
    the platform account today; any account-wide listing keyed by number or SID goes through `owner`)."""

    def __init__(self, rows: Iterable[tuple[str, str, Held]]) -> None:
        self._by_value: dict[tuple[str, str], list[Held]] = {}
        self._by_tenant: dict[tuple[str, str], list[tuple[str, Held]]] = {}
        for kind, value, held in rows:
            self._by_value.setdefault((kind, value), []).append(held)
            self._by_tenant.setdefault((held.slug, kind), []).append((value, held))

    @classmethod
    def load(cls, conn: Connection, kinds: Sequence[str] = MAPPING_KINDS) -> Attribution:
        m, t = tenant_mappings.c, tenants.c
        q = (
            select(m.kind, m.value, m.tenant_id, t.slug, m.valid_from, m.valid_to)
            .select_from(tenant_mappings.join(tenants, t.id == m.tenant_id))
            .where(m.kind.in_(kinds))
            .order_by(m.valid_from)
        )
        return cls((k, v, Held(int(tid), slug, a, b)) for k, v, tid, slug, a, b in conn.execute(q))

    def owner(self, kind: str, value: str, day: date) -> Held | None:
        """The tenant that held `value` on `day`, or None."""
        for h in self._by_value.get((kind, value), ()):
            if h.start <= day and (h.end is None or day < h.end):
                return h
        return None

    def known(self, kind: str, value: str) -> bool:
        """Whether the history has `value` at all (else its configured holder stands)."""
        return (kind, value) in self._by_value

    def held_by(self, slug: str, kind: str, day: date) -> list[str]:
        """What `slug` held of `kind` on `day` (each value checked with `owner`, so both answers agree)."""
        return sorted(
            v
            for v, h in self._by_tenant.get((slug, kind), ())
            if h.start <= day and (h.end is None or day < h.end)
        )

    def ever_held(self, slug: str, kind: str, start: date, end: date) -> list[str]:
        """What `slug` held of `kind` on any day of [start, end)."""
        return sorted(
            {
                v
                for v, h in self._by_tenant.get((slug, kind), ())
                if h.start < end and (h.end is None or h.end > start)
            }
        )

    def knows(self, slug: str, kind: str) -> bool:
        return (slug, kind) in self._by_tenant


def directory_tenants(conn: Connection, start: date, end: date) -> list[TenantConfig]:
    """The directory's tenants (origin "directory") to collect over [start, end), as TenantConfig: those active,
    and those gone that held a mapping on some day of it (a backfill). Phone numbers are every number held on
    some day of the window; collect asks `Attribution` which of them the tenant held on each day. A tenant that
    moved between Twilio modes inside the window is collected in one: numbers, else its subaccount, else its
    own account."""
    from usagectl.config import SecretRef, TenantOpenAI, TenantSendGrid, TenantTwilio

    t, m = tenants.c, tenant_mappings.c
    rows = conn.execute(
        select(
            t.id,
            t.slug,
            t.name,
            t.plan_tier,
            t.active,
            t.monthly_budget_usd,
            t.twilio_auth_token_env,
            t.twilio_auth_token_file,
        ).where(t.origin == "directory")
    ).all()
    held: dict[int, list[tuple[str, str, date]]] = {}
    for tid, kind, value, a in conn.execute(
        select(m.tenant_id, m.kind, m.value, m.valid_from)
        .where(m.valid_from < end, or_(m.valid_to.is_(None), m.valid_to > start))
        .order_by(m.valid_from)
    ):
        held.setdefault(int(tid), []).append((kind, value, a))
    out: list[TenantConfig] = []
    for tid, slug, name, plan, active, budget, token_env, token_file in rows:
        mine = held.get(int(tid), [])
        if not active and not mine:
            continue

        def values(kind: str, mine: list[tuple[str, str, date]] = mine) -> list[str]:
            return list(dict.fromkeys(v for k, v, _ in mine if k == kind))

        numbers, subs, owns = values("phone_number"), values("twilio_subaccount"), values("twilio_account")
        twilio = None
        if numbers:
            twilio = TenantTwilio(phone_numbers=sorted(numbers))
        elif subs:
            twilio = TenantTwilio(subaccount_sid=subs[-1])
        elif owns and (token_env or token_file):
            # A reference only (a variable's name or a file's path): the token is read when collect runs.
            token = SecretRef(env=token_env) if token_env else SecretRef(file=Path(str(token_file)))
            twilio = TenantTwilio(account_sid=owns[-1], auth_token=token)
        subusers, categories = values("sendgrid_subuser"), values("sendgrid_category")
        sendgrid = None
        if subusers:
            sendgrid = TenantSendGrid(subuser=subusers[-1])
        elif categories:
            sendgrid = TenantSendGrid(category=categories[-1])
        projects = values("openai_project")
        out.append(
            TenantConfig(
                slug=slug,
                name=name,
                plan=plan,
                twilio=twilio,
                sendgrid=sendgrid,
                openai=TenantOpenAI(project_ids=sorted(projects)) if projects else None,
                monthly_budget=budget,
            )
        )
    return out
