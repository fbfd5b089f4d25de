"""`usagectl demo`: the whole pipeline against the sandbox, with no config and no network beyond loopback."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from decimal import Decimal
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
    assert "total (4)" in r.out and "Estimated cost per day" in r.out
    # The demo's directory file: initech upgrades mid-month and hands a number to hooli (issue 19).
    assert "initech plan starter -> pro" in r.out and "hooli added" in r.out
    assert re.search(r"initech phone_number \+15005550006,\+15005550010 -> \+15005550006", r.out)
    assert "collected" in r.err and "kept the demo database" in r.err
    assert "provisional: initech twilio" in r.err and "call(s) not over yet" in r.err
    store = open_store(f"sqlite:///{keep / 'usage.db'}")
    try:
        with store.engine.connect() as conn:
            metrics = conn.execute(select(func.count()).select_from(usage_metrics)).scalar_one()
            rollups = conn.execute(select(func.count()).select_from(usage_rollups_daily)).scalar_one()
            c = collection_runs.c
            not_ok = conn.execute(select(c.source, c.date, c.status).where(c.status != "ok")).all()
            last = conn.execute(select(func.max(usage_metrics.c.date))).scalar_one()
    finally:
        store.close()
    # 12 days: acme and globex on 3 providers, initech on Twilio and SendGrid, hooli (the number it was given) on
    # Twilio; one rollup per tenant-day.
    assert (metrics, rollups) == (12 * 9, 12 * 4)
    # Nothing failed; the last day of initech's numbers is provisional (a message sending, a call ringing).
    assert {(source, status) for source, _, status in not_ok} == {("twilio", "provisional")}
    assert {d for _, d, _ in not_ok} == {last}


def test_demo_quiet_prints_only_the_reports(cli: Callable[..., Any]) -> None:
    r = cli("-q", "demo", "--days", "3")
    assert r.code == 0 and r.err == ""
    assert "acme" in r.out


def test_demo_prices_with_the_example_plans_and_shows_an_allowance_over(cli: Callable[..., Any]) -> None:
    """Issue 12 item 1: the plans of config.example.toml (pro SMS at $0.012, allowances) are in the demo."""
    from usagectl.demo import run_demo

    result = run_demo(days=10, today=date(2026, 11, 25))
    rep = result.report
    assert rep.tenant.plan_tier == "pro" and rep.totals.sms > 0
    # Pro overrides the book's $0.014 per SMS with $0.012.
    assert rep.totals.sms_cost == Decimal("0.012") * rep.totals.sms
    assert {a.metric: a.included for a in rep.allowances}["sms"] == 5000
    assert any(a.over for a in rep.allowances)
    r = cli("demo", "--days", "10")
    assert r.code == 0, r.err
    # The CLI runs on today's date: its month and whether an allowance is over yet depend on the day of the month.
    assert re.search(r"Plan pro: [A-Z][a-z]+ \d{4}", r.out) and "included" in r.out and "% " in r.out


def test_demo_upgrade_and_reassignment_are_in_its_report() -> None:
    """Issue 19: the demo syncs from a directory file with a mid-month upgrade and one number reassignment."""
    from usagectl.demo import MOVED, run_demo

    result = run_demo(days=20, today=date(2026, 11, 25))
    up = result.upgraded.plan_charge
    assert up is not None and [p.plan_tier for p in up.parts] == ["starter", "pro"]
    assert [(p.days.start, p.days.last) for p in up.parts] == [
        (date(2026, 11, 1), date(2026, 11, 12)),
        (date(2026, 11, 13), date(2026, 11, 30)),
    ]
    days = {d.date: d for d in result.upgraded.days}
    assert {d.plan_tier for k, d in days.items() if k < date(2026, 11, 13)} == {"starter"}
    assert {d.plan_tier for k, d in days.items() if k >= date(2026, 11, 13)} == {"pro"}
    hooli = next(line for line in result.ranking.lines if line.slug == "hooli")
    assert hooli.sms > 0 and MOVED == "+15005550010"
    assert any("hooli added" in c for c in result.directory_changes)


def test_demo_report_ends_yesterday_and_shows_days_without_rollup_as_gaps() -> None:
    """Issue 12 item 2: the 30-day window ends at the last complete UTC day; missing days are gaps, not $0."""
    from usagectl.demo import run_demo
    from usagectl.render.table import render_tenant_report

    result = run_demo(days=5, today=date(2026, 11, 25))
    rep = result.report
    assert rep.window.label() == "2026-10-26 .. 2026-11-24"
    assert rep.missing_days[-1] == date(2026, 11, 19) and len(rep.missing_days) == 25
    out = io.StringIO()
    render_tenant_report(rep, out, width=80)
    text = out.getvalue()
    assert "2026-10-26 .. 2026-11-24 UTC" in text
    assert "No rollup (missing, not zero) for 25 day(s)" in text
    # The chart's $0 row has no point: the 25 missing days are not drawn as zero.
    zero_row = next(line for line in text.splitlines() if re.match(r"\s*0\.0+┤", line))
    assert "•" not in zero_row


def test_readme_quick_start_shows_the_demo_report_with_a_plan_allowance(cli: Callable[..., Any]) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    assert "usagectl demo" in setup and "Plan pro: " in setup and "% over" in setup
    # The excerpt has the demo's own layout: its allowance header line is printed by the demo today.
    header = next(line for line in setup.splitlines() if "included" in line and "used" in line)
    r = cli("-q", "demo", "--days", "3")
    # (Side by side with the cost card on a wider terminal: compare the words.)
    assert " ".join(header.strip("│ ").split()) in " ".join(r.out.split())


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
            assert conn.execute(select(func.count()).select_from(usage_metrics)).scalar_one() == 2 * 9
    finally:
        kept.close()


def _demo_serve(tmp_path: Path, port: int, **env: str) -> subprocess.Popen[str]:
    """`usagectl demo --days 3 --serve` in its own process, in `tmp_path`, with no database or config of the
    caller's (`env`: more variables); the caller stops it."""
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **env}
    environ.pop("USAGECTL_DATABASE_URL", None)
    environ.pop("USAGECTL_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "usagectl", "demo", "--days", "3", "--serve", "--port", str(port)],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )


def test_demo_serve_prints_tokens_that_sign_in_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    import signal
    import subprocess

    import httpx

    from test_serve_process import free_port

    port = free_port()
    proc = _demo_serve(tmp_path, port)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C stops"):
                break
        text = "".join(lines)
        base = f"http://127.0.0.1:{port}"
        assert f"sign in at {base}/signin" in text, text
        tokens = dict(re.findall(r"^  (root admin|tenant admin of \w+)[^:]*: (uct_\S+)$", text, re.M))
        assert len(tokens) == 2, text
        tenant_token = next(v for k, v in tokens.items() if k.startswith("tenant"))
        with httpx.Client(base_url=base, timeout=30) as c:
            for _ in range(300):  # readiness: the server starts right after printing
                try:
                    form = c.get("/signin")
                    break
                except httpx.TransportError:
                    import time

                    time.sleep(0.1)
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
            assert csrf
            r = c.post("/signin", data={"token": tenant_token, "csrf_token": csrf.group(1)})
            assert r.status_code == 303 and r.headers["location"] == "/admin/billing-usage"
            page = c.get("/admin/billing-usage")
            assert page.status_code == 200 and "Billing &amp; Usage" in page.text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0


def test_demo_port_without_serve_is_a_usage_error(cli: Callable[..., Any]) -> None:
    r = cli("demo", "--port", "9000")
    assert r.code == 2 and "--port" in r.err


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signame", "when"),
    [("SIGINT", "serving"), ("SIGTERM", "serving"), ("SIGHUP", "serving"), ("SIGTERM", "collecting")],
)
def test_demo_serve_removes_its_temporary_folder_when_stopped_by_a_signal(
    tmp_path: Path, signame: str, when: str
) -> None:
    """Issue 23: stopped by SIGTERM (the default action ends the process without `finally`), the demo left its
    temporary folder behind. Whenever the signal lands, the folder goes."""
    import signal
    import time

    import httpx

    from test_serve_process import free_port

    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    proc = _demo_serve(tmp_path, port, TMPDIR=str(temp))
    try:
        if when == "collecting":
            assert proc.stderr is not None
            for line in proc.stderr:
                if line.startswith("collecting"):
                    break
        else:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("Ctrl-C stops"):
                    break
            for _ in range(300):  # readiness: the server starts right after printing
                try:
                    assert httpx.get(f"http://127.0.0.1:{port}/signin", timeout=30).status_code == 200
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
        made = [p.name for p in temp.iterdir()]
        assert any(name.startswith("usagectl-demo-") for name in made), made
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert list(temp.iterdir()) == [], err
    assert "Traceback" not in err
    # Serving, a signal is how the demo ends (exit 0); before that, it interrupts the demo (130), unless the
    # collect had just finished.
    assert proc.returncode in ((0,) if when == "serving" else (0, 130)), err


def test_early_in_a_month_the_demo_upgrade_is_in_the_middle_of_the_month_before() -> None:
    """On 3 December the month so far has two complete days: the upgrade and the number's move go to the middle of
    November (not yesterday), so each plan part, and each holder of the number, has many days."""
    from usagectl.demo import MOVED, run_demo

    result = run_demo(days=20, today=date(2026, 12, 3))
    up = result.upgraded.plan_charge
    assert up is not None and [p.plan_tier for p in up.parts] == ["starter", "pro"]
    assert [(p.days.start, p.days.last) for p in up.parts] == [
        (date(2026, 11, 1), date(2026, 11, 15)),
        (date(2026, 11, 16), date(2026, 11, 30)),
    ]
    days = {d.date: d.plan_tier for d in result.upgraded.days}
    assert sum(1 for k, tier in days.items() if tier == "starter" and k < date(2026, 11, 16)) >= 3
    assert sum(1 for k, tier in days.items() if tier == "pro" and k >= date(2026, 11, 16)) >= 10
    assert all(c.startswith("2026-11-16: ") for c in result.directory_changes), result.directory_changes
    assert any(
        f"initech phone_number +15005550006,{MOVED} -> +15005550006" in c for c in result.directory_changes
    )
