"""`usagectl collect` and `config check --online` through the CLI, against the sandbox over real HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from usagectl.config import TenantConfig, TenantOpenAI, TenantSendGrid, TenantTwilio
from usagectl.sandbox import Sandbox, demo_tenants, twilio_sid
from usagectl.store.engine import open_store
from usagectl.store.tables import collection_runs, tenants, usage_metrics

D1 = date(2026, 11, 20)
HTTP = ("--provider", "twilio", "--provider", "sendgrid", "--provider", "openai")


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(seed=3) as sandbox:
        yield sandbox


def two_tenants() -> list[TenantConfig]:
    return [
        TenantConfig(slug="acme", sendgrid=TenantSendGrid(subuser="acme")),
        TenantConfig(
            slug="globex",
            twilio=TenantTwilio(subaccount_sid=twilio_sid("AC", "globex")),
            sendgrid=TenantSendGrid(subuser="globex"),
            openai=TenantOpenAI(project_ids=["proj_g"]),
        ),
    ]


def config_file(sb: Sandbox, tmp_path: Path, db_url: str, tenants_: list[TenantConfig], **kw: Any) -> Path:
    path = tmp_path / "usagectl.toml"
    path.write_text(sb.toml(sb.config(tenants_, **kw), db_url), encoding="utf-8")
    return path


def snapshot(db_url: str) -> dict[tuple[str, date, str], tuple[Any, ...]]:
    store = open_store(db_url)
    try:
        m = usage_metrics.c
        cols = [c for c in usage_metrics.c if c.name not in ("id", "tenant_id", "created_at", "updated_at")]
        with store.engine.connect() as conn:
            q = select(tenants.c.slug, *cols).join(tenants, tenants.c.id == m.tenant_id)
            return {(r[0], r[1], r[2]): tuple(r[3:]) for r in conn.execute(q)}
    finally:
        store.close()


def test_collect_writes_and_reports_on_stderr(
    sb: Sandbox, tmp_path: Path, db_url: str, cli: Callable[..., Any]
) -> None:
    cfg = config_file(sb, tmp_path, db_url, two_tenants())
    r = cli("--config", str(cfg), "collect", "--date", D1.isoformat(), *HTTP)
    assert r.code == 0, r.err
    assert r.out == ""  # data goes to stdout only in a dry run; the summary is on stderr
    assert "acme" in r.err and "globex" in r.err and "ok" in r.err
    assert len(snapshot(db_url)) == 1 + 3  # acme: sendgrid; globex: twilio, sendgrid, openai

    quiet = cli("--config", str(cfg), "-q", "collect", "--date", D1.isoformat(), *HTTP)
    assert (quiet.code, quiet.out, quiet.err) == (0, "", "")


def test_dry_run_prints_rows_and_writes_nothing(
    sb: Sandbox, tmp_path: Path, db_url: str, cli: Callable[..., Any]
) -> None:
    cfg = config_file(sb, tmp_path, db_url, two_tenants())
    r = cli(
        "--config", str(cfg), "collect", "--date", D1.isoformat(), "--dry-run", "--tenant", "globex", *HTTP
    )
    assert r.code == 0, r.err
    assert "would write 3 rows" in r.out and "globex" in r.out and "acme" not in r.out
    assert snapshot(db_url) == {}


def test_partial_failure_exits_3_with_a_summary(
    sb: Sandbox, tmp_path: Path, db_url: str, cli: Callable[..., Any]
) -> None:
    sb.sendgrid.fault("500", match="subusers=globex", times=None)
    cfg = config_file(sb, tmp_path, db_url, two_tenants(), max_retries=1)
    r = cli("--config", str(cfg), "-q", "collect", "--date", D1.isoformat(), "--provider", "sendgrid")
    assert r.code == 3
    assert "globex" in r.err and "failed" in r.err and "HTTP 500" in r.err
    assert "1 of 2 tenant/provider collections failed" in r.err
    assert set(snapshot(db_url)) == {("acme", D1, "sendgrid")}


def test_bad_filters_are_usage_errors(
    sb: Sandbox, tmp_path: Path, db_url: str, cli: Callable[..., Any]
) -> None:
    cfg = config_file(sb, tmp_path, db_url, two_tenants())
    bad_provider = cli("--config", str(cfg), "collect", "--provider", "smtp")
    assert bad_provider.code == 2 and "unknown provider 'smtp'" in bad_provider.err
    bad_tenant = cli("--config", str(cfg), "collect", "--tenant", "nobody", *HTTP)
    assert bad_tenant.code == 2 and "unknown tenant 'nobody'" in bad_tenant.err
    assert "Traceback" not in bad_provider.err + bad_tenant.err


def test_config_check_online(sb: Sandbox, tmp_path: Path, db_url: str, cli: Callable[..., Any]) -> None:
    tenants_ = demo_tenants()
    cfg = config_file(sb, tmp_path, db_url, tenants_)
    ok = cli("--config", str(cfg), "config", "check", "--online")
    assert ok.code == 0, ok.err
    assert ok.out.count("ok ") >= 4  # platform Twilio, globex's own Twilio, SendGrid, OpenAI
    assert "FAILED" not in ok.out

    (sb.folder / "openai.key").write_text("sk-admin-wrongwrongwrongwrong1234")
    bad = cli("--config", str(cfg), "config", "check", "--online")
    assert bad.code == 1
    assert "FAILED  openai" in bad.out and "Incorrect API key" in bad.out
    assert "wrongwrong" not in bad.out + bad.err and "1234" not in bad.out
    assert "1 of 4 credential checks failed" in bad.err


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_matches_a_clean_run(tmp_path: Path, db_url: str) -> None:
    """A collector killed mid-write leaves each tenant-day whole; re-running gives a clean run's totals."""
    since, until = D1 - timedelta(days=9), D1
    args = ["collect", "--since", since.isoformat(), "--until", until.isoformat(), *HTTP]
    env = {**os.environ, "NO_COLOR": "1"}
    with Sandbox(seed=11, latency=0.02) as sb:
        cfg = config_file(sb, tmp_path, db_url, demo_tenants())
        cmd = [sys.executable, "-m", "usagectl", "--config", str(cfg), *args]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        store = open_store(db_url)
        try:
            deadline = time.monotonic() + 60
            written = 0
            while time.monotonic() < deadline and proc.poll() is None:
                with store.engine.connect() as conn:
                    written = conn.execute(
                        select(func.count())
                        .select_from(collection_runs)
                        .where(collection_runs.c.status == "ok")
                    ).scalar_one()
                if written >= 5:
                    break
                time.sleep(0.02)
            assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()!r}"  # type: ignore[union-attr]
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            partial = snapshot(db_url)
            assert 5 <= len(partial) < 90, "killed mid-run: some tenant-days written, not all"
            rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
            assert rerun.returncode == 0, rerun.stderr
            after_kill = snapshot(db_url)
        finally:
            store.close()

        clean_url = f"sqlite:///{tmp_path / 'clean.db'}"
        clean_cfg = tmp_path / "clean.toml"
        clean_cfg.write_text(sb.toml(sb.config(demo_tenants()), clean_url), encoding="utf-8")
        clean = subprocess.run(
            [sys.executable, "-m", "usagectl", "--config", str(clean_cfg), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert clean.returncode == 0, clean.stderr
    assert after_kill == snapshot(clean_url)
    assert len(after_kill) == 10 * (3 + 3 + 2)  # acme and globex: 3 providers; initech: twilio + sendgrid


def test_one_tenants_unreadable_secret_fails_only_that_tenants_tasks(
    sb: Sandbox, tmp_path: Path, db_url: str, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # the summary table's error column unfolded
    cfg = config_file(sb, tmp_path, db_url, demo_tenants())
    # globex (tenants[1]) polls its own Twilio account with its own token: that file is gone.
    (sb.folder / f"twilio-{twilio_sid('AC', 'globex-own')}.token").unlink()
    r = cli("--config", str(cfg), "-q", "collect", "--date", D1.isoformat(), *HTTP)
    assert r.code == 3, r.err
    assert "tenants[1].twilio.auth_token: cannot read secret file" in r.err
    assert "1 of 8 tenant/provider collections failed" in r.err
    written = set(snapshot(db_url))
    assert ("globex", D1, "twilio") not in written
    assert {("globex", D1, "sendgrid"), ("acme", D1, "twilio"), ("initech", D1, "twilio")} <= written
    assert len(written) == 7

    # `config check` still calls it a config error, naming the key.
    check = cli("--config", str(cfg), "config", "check", "--online")
    assert check.code == 2
    assert "tenants[1].twilio.auth_token: cannot read secret file" in check.err


@pytest.mark.parametrize("option", ["--date", "--since", "--until"])
def test_collect_refuses_days_after_today(
    sb: Sandbox, tmp_path: Path, db_url: str, cli: Callable[..., Any], option: str
) -> None:
    from usagectl.periods import utc_today

    cfg = config_file(sb, tmp_path, db_url, two_tenants())
    today = utc_today()
    future = (today + timedelta(days=1)).isoformat()
    args = (
        [option, future]
        if option != "--until"
        else ["--since", (today - timedelta(days=1)).isoformat(), option, future]
    )
    r = cli("--config", str(cfg), "collect", *args, *HTTP)
    assert r.code == 2
    assert r.err.strip() == (
        f"usagectl: error: {option} {future}: {future} is after today ({today}, UTC); "
        "usage can only be collected up to today"
    )
    assert snapshot(db_url) == {}
    # Today itself (a partial day so far) is still allowed.
    assert cli("--config", str(cfg), "-q", "collect", "--date", "today", *HTTP).code == 0
