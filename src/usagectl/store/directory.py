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
from typing import Any

from sqlalchemy import Connection, bindparam, insert, or_, select, update

from usagectl.config import TenantConfig
from usagectl.errors import ConfigError
from usagectl.store.tables import UTCDateTime, tenant_mappings, tenant_plans, tenants, utcnow

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


@dataclass(frozen=True)
class TenantSpec:
    """One tenant as its source defines it today."""

    slug: str
    name: str
    plan: str
    mappings: frozenset[tuple[str, str]] = frozenset()  # (kind, value)
    monthly_budget: Decimal | None = None
    twilio_auth_token_env: str | None = None

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
    return TenantSpec(t.slug, t.display_name, t.plan, frozenset(maps), None, None)


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
    )
    if origin is not None:
        q = q.where(c.origin == origin)
    for slug, pk, name, plan, source_plan, active, origin_, budget, token_env in conn.execute(q).all():
        e = _Existing(int(pk), name, plan, source_plan, bool(active), origin_, budget, token_env)
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


def _now_param(now: datetime) -> Any:
    # One bound value in the statement for every row of an executemany: the timestamp type's conversion runs
    # once, not once per row (a first sync of 100,000 tenants writes 500,000 rows).
    from sqlalchemy import literal

    return literal(now, UTCDateTime)


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
    # Something changes: every tenant's mappings, since a value may move from a tenant of the other origin.
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
    opens: list[dict[str, Any]] = []
    for slug in sorted(touched):
        e = found[slug]
        want = wanted[slug].mappings
        for key, mid in e.open_maps.items():
            if key not in want:
                close_ids.append(mid)
                holder.pop(key, None)
    for slug in sorted(wanted):
        s = wanted[slug]
        known = found.get(slug)
        if known is not None and slug not in touched:
            continue
        for key in sorted(s.mappings - set(known.open_maps if known else ())):
            other = holder.get(key)
            if other is not None:
                # Held by a tenant of the other origin (or one not in this sync): it moves today.
                close_ids.extend(
                    x.open_maps[key] for x in found.values() if x.id == other and key in x.open_maps
                )
            opens.append(
                {"kind": key[0], "value": key[1], "slug": slug, "from": today if key in ever else EARLIEST}
            )
    if close_ids:
        m = tenant_mappings.c
        stmt = update(tenant_mappings).where(m.id == bindparam("mid")).values(valid_to=today)
        written += _batched(conn, stmt, [{"mid": i} for i in sorted(set(close_ids))])
    # New tenants: one batch of inserts, their ids read back by slug.
    if diff.added:
        rows = [
            {
                "slug": slug,
                "name": wanted[slug].name,
                "plan_tier": wanted[slug].plan,
                "source_plan": wanted[slug].plan,
                "active": True,
                "origin": origin,
                "monthly_budget_usd": wanted[slug].monthly_budget,
                "twilio_auth_token_env": wanted[slug].twilio_auth_token_env,
            }
            for slug in diff.added
        ]
        written += _batched(
            conn, insert(tenants).values(created_at=_now_param(now), updated_at=_now_param(now)), rows
        )
        new_ids = {
            slug: int(pk)
            for slug, pk in conn.execute(
                select(tenants.c.slug, tenants.c.id).where(tenants.c.created_at == now)
            )
        }
        written += _batched(
            conn,
            insert(tenant_plans).values(recorded_at=_now_param(now)),
            [
                {
                    "tenant_id": new_ids[slug],
                    "plan_tier": wanted[slug].plan,
                    "valid_from": EARLIEST,
                    "valid_to": None,
                    "how": origin,
                }
                for slug in diff.added
            ],
        )
    else:
        new_ids = {}
    ids = {slug: e.id for slug, e in found.items()} | new_ids
    if opens:
        written += _batched(
            conn,
            insert(tenant_mappings).values(recorded_at=_now_param(now)),
            [
                {
                    "tenant_id": ids[o["slug"]],
                    "kind": o["kind"],
                    "value": o["value"],
                    "valid_from": o["from"],
                    "valid_to": None,
                }
                for o in opens
            ],
        )
    # Changed tenants: their own fields, and a plan period from today when the source's plan moved.
    for slug in sorted(touched):
        e, s = found[slug], wanted[slug]
        values: dict[str, Any] = {"name": s.name, "active": True, "inactive_from": None, "origin": origin}
        if origin == "directory":
            values["monthly_budget_usd"] = s.monthly_budget
            values["twilio_auth_token_env"] = s.twilio_auth_token_env
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
            t.id, t.slug, t.name, t.plan_tier, t.active, t.monthly_budget_usd, t.twilio_auth_token_env
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
    for tid, slug, name, plan, active, budget, token_env in rows:
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
        elif owns and token_env:
            twilio = TenantTwilio(account_sid=owns[-1], auth_token=SecretRef(env=token_env))
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
