"""The `tenants` table follows the config: added, renamed, plan changed; a tenant dropped from the config is
marked inactive and keeps its history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from usagectl.config import TenantConfig
from usagectl.store.engine import Store
from usagectl.store.tables import tenants, utcnow


@dataclass(frozen=True)
class TenantRow:
    id: int
    slug: str
    name: str
    plan_tier: str
    active: bool


@dataclass(frozen=True)
class SyncResult:
    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    deactivated: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.deactivated)


def sync_tenants(store: Store, configured: Sequence[TenantConfig]) -> SyncResult:
    now = utcnow()
    added: list[str] = []
    updated: list[str] = []
    deactivated: list[str] = []
    with store.engine.begin() as conn:
        # Only the compared columns, as plain tuples: every command with a config file runs this, and at 10,000
        # tenants Row objects and timestamp conversion cost more than the report itself.
        c = tenants.c
        existing = {
            slug: (pk, (name, plan, bool(active)))
            for slug, pk, name, plan, active in conn.execute(
                select(c.slug, c.id, c.name, c.plan_tier, c.active)
            )
        }
        wanted = {t.slug: t for t in sorted(configured, key=lambda t: t.slug)}
        insert = sqlite_insert if store.dialect == "sqlite" else pg_insert
        for slug, t in wanted.items():
            found = existing.get(slug)
            if found is None:
                # An upsert: another process starting on the same database may add the same tenant between the
                # read above and this write (slug order keeps two such syncs from deadlocking on PostgreSQL).
                ins = insert(tenants).values(
                    slug=slug,
                    name=t.display_name,
                    plan_tier=t.plan,
                    active=True,
                    created_at=now,
                    updated_at=now,
                )
                conn.execute(
                    ins.on_conflict_do_update(
                        index_elements=[tenants.c.slug],
                        set_={"name": t.display_name, "plan_tier": t.plan, "active": True, "updated_at": now},
                    )
                )
                added.append(slug)
            elif found[1] != (t.display_name, t.plan, True):
                conn.execute(
                    update(tenants)
                    .where(tenants.c.id == found[0])
                    .values(name=t.display_name, plan_tier=t.plan, active=True, updated_at=now)
                )
                updated.append(slug)
        for slug, (pk, (_name, _plan, active)) in existing.items():
            if slug not in wanted and active:
                conn.execute(update(tenants).where(tenants.c.id == pk).values(active=False, updated_at=now))
                deactivated.append(slug)
    return SyncResult(tuple(added), tuple(updated), tuple(deactivated))


def _row(r: object) -> TenantRow:
    return TenantRow(
        id=r.id,  # type: ignore[attr-defined]
        slug=r.slug,  # type: ignore[attr-defined]
        name=r.name,  # type: ignore[attr-defined]
        plan_tier=r.plan_tier,  # type: ignore[attr-defined]
        active=bool(r.active),  # type: ignore[attr-defined]
    )


def list_tenants(conn: Connection, *, include_inactive: bool = True) -> list[TenantRow]:
    q = select(tenants).order_by(tenants.c.slug)
    if not include_inactive:
        q = q.where(tenants.c.active.is_(True))
    return [_row(r) for r in conn.execute(q).all()]


def tenant_ids(conn: Connection, *, include_inactive: bool = True) -> dict[str, int]:
    """slug -> id, without building whole rows (ingest and collect look up thousands)."""
    q = select(tenants.c.slug, tenants.c.id)
    if not include_inactive:
        q = q.where(tenants.c.active.is_(True))
    return {slug: int(pk) for slug, pk in conn.execute(q).all()}


def get_tenant(conn: Connection, slug: str) -> TenantRow | None:
    r = conn.execute(select(tenants).where(tenants.c.slug == slug)).first()
    return _row(r) if r is not None else None
