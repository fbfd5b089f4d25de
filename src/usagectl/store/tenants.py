"""The `tenants` table follows the config: added, renamed, plan changed (from that day); a tenant dropped from the
config is marked inactive and keeps its history. The writing is store.directory's, shared with the directory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, select

from usagectl.config import TenantConfig
from usagectl.periods import utc_today
from usagectl.store.engine import Store
from usagectl.store.tables import tenants


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


def sync_tenants(
    store: Store, configured: Sequence[TenantConfig], *, today: date | None = None
) -> SyncResult:
    """The `[[tenants]]` of the TOML into the directory tables (origin "config"): a plan change takes effect
    from `today` (UTC), a tenant dropped from the TOML is inactive from then on."""
    from sqlalchemy.exc import IntegrityError

    from usagectl.store.directory import apply_specs, spec_of

    today = today or utc_today()
    specs = [spec_of(t) for t in sorted(configured, key=lambda t: t.slug)]
    for attempt in (1, 2):
        try:
            with store.engine.begin() as conn:
                diff = apply_specs(conn, specs, "config", today, refuse_origin="directory")
            break
        except IntegrityError:
            # Another process starting on the same database added the same tenant between our read and write.
            if attempt == 2:
                raise
    added = set(diff.added)
    return SyncResult(diff.added, tuple(s for s in diff.changed_slugs if s not in added), diff.gone)


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
