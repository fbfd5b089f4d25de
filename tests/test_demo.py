"""`usagectl demo`: the whole pipeline against the sandbox, with no config and no network beyond loopback."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from usagectl.store.engine import open_store
from usagectl.store.tables import collection_runs, tenants, usage_metrics, usage_rollups_daily


def test_demo_runs_offline_and_keeps_its_database(
    tmp_path: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_connect = socket.socket.connect

    def loopback_only(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"the demo tried to reach {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)
    keep = tmp_path / "demo"
    r = cli("demo", "--days", "12", "--keep", str(keep))
    assert r.code == 0, r.err
    for slug in ("acme", "globex", "initech"):
        assert slug in r.out
    assert "total (3)" in r.out and "Estimated cost per day" in r.out
    assert "collected" in r.err and "kept the demo database" in r.err
    store = open_store(f"sqlite:///{keep / 'usage.db'}")
    try:
        with store.engine.connect() as conn:
            metrics = conn.execute(select(func.count()).select_from(usage_metrics)).scalar_one()
            rollups = conn.execute(select(func.count()).select_from(usage_rollups_daily)).scalar_one()
            failed = conn.execute(
                select(func.count()).select_from(collection_runs).where(collection_runs.c.status != "ok")
            ).scalar_one()
    finally:
        store.close()
    # 12 days: acme and globex on 3 providers, initech on Twilio and SendGrid; one rollup per tenant-day.
    assert (metrics, rollups, failed) == (12 * 8, 12 * 3, 0)


def test_demo_quiet_prints_only_the_reports(cli: Callable[..., Any]) -> None:
    r = cli("-q", "demo", "--days", "3")
    assert r.code == 0 and r.err == ""
    assert "acme" in r.out


def test_demo_never_writes_into_the_configured_database(
    db_url: str,
    tmp_path: Path,
    cli: Callable[..., Any],
    write_config: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Both the environment and a config point at a real database; the demo must use only its own file.
    monkeypatch.setenv("USAGECTL_DATABASE_URL", db_url)
    cfg = write_config(f'[database]\nurl = "{db_url}"\n\n[[tenants]]\nslug = "acme"\n')
    monkeypatch.setenv("USAGECTL_CONFIG", str(cfg))
    keep = tmp_path / "kept"
    r = cli("-q", "demo", "--days", "2", "--keep", str(keep))
    assert r.code == 0, r.err
    real = open_store(db_url)
    try:
        with real.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(tenants)).scalar_one() == 0
            assert conn.execute(select(func.count()).select_from(usage_metrics)).scalar_one() == 0
    finally:
        real.close()
    kept = open_store(f"sqlite:///{keep / 'usage.db'}")
    try:
        with kept.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(usage_metrics)).scalar_one() == 2 * 8
    finally:
        kept.close()
