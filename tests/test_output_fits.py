"""Output that fits (issue 12 item 3): money and counts are never truncated at 80 or 60 columns, and the collect
failure summary is one plain line per failed task when stderr is not a terminal."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from usagectl.sandbox import Sandbox, demo_tenants

D1 = date(2026, 11, 20)


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(seed=3) as sandbox:
        yield sandbox


@pytest.fixture
def demo_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from usagectl.demo import run_demo

    result = run_demo(days=12, keep=tmp_path / "demo", today=date(2026, 11, 25))
    url = f"sqlite:///{result.database}"
    monkeypatch.setenv("USAGECTL_DATABASE_URL", url)
    return url


def _no_cut_figures(text: str, width: int) -> None:
    assert "…" not in text and not re.search(r"[\d$,]\.\.\.", text)
    # Every money figure keeps its cents.
    for figure in re.findall(r"\$[\d,]+(?:\.\d*)?", text):
        assert re.fullmatch(r"\$[\d,]+\.\d{2}", figure), figure


@pytest.mark.parametrize("columns", ["80", "60"])
def test_tenants_and_report_keep_every_figure_and_column(
    cli: Callable[..., Any], demo_db: str, monkeypatch: pytest.MonkeyPatch, columns: str
) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    r = cli("tenants", "--month", "2026-11")
    assert r.code == 0, r.err
    _no_cut_figures(r.out, int(columns))
    for word in ("tenant", "acme", "globex", "initech", "hooli", "Est. cost", "AI tokens", "total (4)"):
        assert word in r.out
    assert max(len(line) for line in r.out.splitlines()) <= int(columns)
    rep = cli("report", "--tenant", "acme", "--month", "2026-11")
    assert rep.code == 0, rep.err
    _no_cut_figures(rep.out, int(columns))
    daily = rep.out.split("Daily usage (UTC days)", 1)[1]
    # The 2026-11-24 row's cost is printed in full in one of the (possibly split) tables.
    assert re.search(r"2026-11-24\s+.*\$\d+\.\d{2}", daily)
    assert max(len(line) for line in rep.out.splitlines()) <= int(columns)


def test_dry_run_at_80_columns_prints_every_figure(
    sb: Sandbox, tmp_path: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    cfg = tmp_path / "c.toml"
    cfg.write_text(sb.toml(sb.config(demo_tenants()), f"sqlite:///{tmp_path / 'u.db'}"), encoding="utf-8")
    r = cli("--config", str(cfg), "collect", "--date", D1.isoformat(), "--dry-run")
    assert r.code == 0, r.err
    assert "…" not in r.out
    assert max(len(line) for line in r.out.splitlines()) <= 80
    # Every row of the dry run shows its AI tokens whole, e.g. "76,512/20,431".
    assert re.search(r"acme\s+2026-11-20\s+openai\s+.*\d{1,3}(,\d{3})*/\d{1,3}(,\d{3})*", r.out)


def test_collect_failure_summary_is_one_plain_line_per_failed_task(
    sb: Sandbox, tmp_path: Path, cli: Callable[..., Any]
) -> None:
    sb.sendgrid.fault("500", match="subusers=globex", times=None)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        sb.toml(sb.config(demo_tenants(), max_retries=1), f"sqlite:///{tmp_path / 'u.db'}"), encoding="utf-8"
    )
    r = cli("--config", str(cfg), "-q", "collect", "--date", D1.isoformat(), "--provider", "sendgrid")
    assert r.code == 3
    lines = r.err.strip().splitlines()
    assert lines[0].startswith("globex sendgrid 1 day: ") and "HTTP 500" in lines[0]
    assert lines[-1].startswith("usagectl: error: 1 of 3 tenant/provider collections failed")
    assert len(lines) == 2
    assert not any(ch in r.err for ch in "│┃━─")


def test_split_tables_keep_their_keys_at_60_columns(
    cli: Callable[..., Any], demo_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    # tenants: the sort column comes right after the tenant, so it shares the first table with it.
    for sort, header in (("ai", "AI tokens"), ("cost", "Est. cost"), ("email", "Emails")):
        r = cli("tenants", "--month", "2026-11", "--sort", sort)
        assert r.code == 0, r.err
        head = next(line for line in r.out.splitlines() if line.startswith("tenant"))
        assert head.split()[0] == "tenant" and head[len("tenant") :].lstrip().startswith(header), (sort, head)
    # reconcile: every split table repeats the tenant and the provider.
    r = cli("reconcile", "--month", "2026-11")
    assert r.code == 0, r.err
    heads = [line for line in r.out.splitlines() if line.startswith("tenant")]
    assert len(heads) >= 2, r.out  # split at 60 columns
    assert all(line.split()[:2] == ["tenant", "provider"] for line in heads), heads
