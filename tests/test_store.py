from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from usagectl.config import TenantConfig
from usagectl.errors import SchemaError
from usagectl.store import engine as eng
from usagectl.store.engine import Store, open_store
from usagectl.store.tables import SCHEMA_HEAD, metadata, tenants, usage_metrics, usage_rollups_daily, utcnow
from usagectl.store.tenants import get_tenant, list_tenants, sync_tenants


def test_schema_head_constant_matches_migration_scripts() -> None:
    assert eng.head_revision() == SCHEMA_HEAD


def test_migration_creates_exactly_the_declared_tables(store: Store) -> None:
    insp = inspect(store.engine)
    names = set(insp.get_table_names()) - {"alembic_version"}
    assert names == set(metadata.tables)
    for table in metadata.sorted_tables:
        cols = {c["name"] for c in insp.get_columns(table.name)}
        assert cols == set(table.c.keys()), table.name
    uniques = {tuple(u["column_names"]) for u in insp.get_unique_constraints("usage_metrics")}
    assert ("tenant_id", "date", "source") in uniques


def test_money_is_exact_and_sums_in_sql(store: Store) -> None:
    sync_tenants(store, [TenantConfig(slug="a")])
    now = utcnow()
    with store.engine.begin() as conn:
        tid = get_tenant(conn, "a").id
        for day in range(1, 11):
            conn.execute(
                insert(usage_rollups_daily).values(
                    tenant_id=tid,
                    date=date(2026, 11, day),
                    estimated_cost_usd=Decimal("0.100001"),
                    pricing_version="v1",
                    plan_tier="starter",
                    created_at=now,
                )
            )
    with store.engine.connect() as conn:
        raw = conn.execute(text("SELECT SUM(estimated_cost_usd) FROM usage_rollups_daily")).scalar()
        assert raw == 1_000_010  # stored as integer micro-USD
        one = conn.execute(select(usage_rollups_daily.c.estimated_cost_usd).limit(1)).scalar()
        assert one == Decimal("0.100001") and isinstance(one, Decimal)


def test_money_refuses_sub_micro_amounts(store: Store) -> None:
    sync_tenants(store, [TenantConfig(slug="a")])
    with pytest.raises(Exception, match="micro-dollars"), store.engine.begin() as conn:
        conn.execute(
            insert(usage_metrics).values(
                tenant_id=1,
                date=date(2026, 1, 1),
                source="x",
                provider_cost_usd=Decimal("0.0000001"),
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )


def test_usage_metrics_unique_per_tenant_day_source(store: Store) -> None:
    sync_tenants(store, [TenantConfig(slug="a")])
    row = dict(tenant_id=1, date=date(2026, 1, 1), source="twilio", created_at=utcnow(), updated_at=utcnow())
    with store.engine.begin() as conn:
        conn.execute(insert(usage_metrics).values(**row))
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(insert(usage_metrics).values(**row))


def test_tenant_sync_adds_renames_and_keeps_removed(store: Store) -> None:
    r = sync_tenants(store, [TenantConfig(slug="a", name="A"), TenantConfig(slug="b", plan="pro")])
    assert r.added == ("a", "b")
    r = sync_tenants(store, [TenantConfig(slug="a", name="A2", plan="elite")])
    assert r.updated == ("a",) and r.deactivated == ("b",)
    with store.engine.connect() as conn:
        rows = {t.slug: t for t in list_tenants(conn)}
    assert rows["a"].name == "A2" and rows["a"].plan_tier == "elite" and rows["a"].active
    assert not rows["b"].active and rows["b"].plan_tier == "pro"
    again = sync_tenants(store, [TenantConfig(slug="a", name="A2", plan="elite")])
    assert not again.changed


def test_new_sqlite_file_is_migrated_automatically(isolated_env: Path) -> None:
    # In the default data dir, which is created on first use (isolated_env: not there yet).
    assert not isolated_env.exists()
    url = f"sqlite:///{isolated_env / 'usage.db'}"
    s = open_store(url)
    try:
        assert eng.current_revision(s.engine) == SCHEMA_HEAD
        with s.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == eng.SQLITE_BUSY_TIMEOUT_MS
    finally:
        s.close()


def test_existing_sqlite_without_schema_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "other.db"
    e = eng.make_engine(f"sqlite:///{p}")
    with e.begin() as conn:
        conn.execute(text("CREATE TABLE unrelated (x INTEGER)"))
    e.dispose()
    with pytest.raises(SchemaError, match="db upgrade"):
        open_store(f"sqlite:///{p}")


@pytest.mark.postgres
def test_postgres_requires_db_upgrade(pg_schema) -> None:
    with pytest.raises(SchemaError, match="no usagectl schema; run: usagectl db upgrade"):
        open_store(pg_schema.url)
    e = eng.make_engine(pg_schema.url)
    eng.upgrade(e)
    e.dispose()
    s = open_store(pg_schema.url)
    with s.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tenants)).scalar() == 0
    s.close()


def test_postgres_url_forms_use_psycopg() -> None:
    assert eng.normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert eng.normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    from usagectl.errors import ConfigError

    with pytest.raises(ConfigError, match="unsupported backend"):
        eng.normalize_url("mysql://u@h/db")


def test_upsert_metric_replaces_never_adds(store: Store) -> None:
    from usagectl.records import MetricRow, ModelTokens
    from usagectl.store.metrics import upsert_metric
    from usagectl.store.tables import usage_metrics_ai_models

    sync_tenants(store, [TenantConfig(slug="a")])
    d = date(2026, 11, 23)
    first = MetricRow(sms_outbound_count=5, ai_tokens_in=10, ai_models=(ModelTokens("m", 10, 0),))
    later = MetricRow(sms_outbound_count=7, provider_cost_usd=Decimal("0.0525"))
    for row in (first, first, later):
        with store.engine.begin() as conn:
            upsert_metric(conn, 1, d, "twilio", row)
    with store.engine.connect() as conn:
        rows = conn.execute(select(usage_metrics)).all()
        models = conn.execute(select(usage_metrics_ai_models)).all()
    assert len(rows) == 1
    assert rows[0].sms_outbound_count == 7 and rows[0].ai_tokens_in == 0
    assert rows[0].provider_cost_usd == Decimal("0.0525")
    assert models == []


def test_job_lock_excludes_a_second_holder(store: Store) -> None:
    from usagectl.errors import LockBusyError
    from usagectl.store.locks import job_lock

    with job_lock(store, wait=0):
        other = open_store(str(store.engine.url.render_as_string(hide_password=False)))
        try:
            with (
                pytest.raises(LockBusyError, match="another usagectl run"),
                job_lock(other, wait=0.3, poll=0.1),
            ):
                pass
        finally:
            other.close()
    with job_lock(store, wait=0):  # released
        pass
