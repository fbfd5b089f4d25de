"""Dated attribution in collect: a number reassigned from one tenant to another on day X gives every message and
call before X to the old tenant and from X to the new one, collected day by day or by a later backfill; the
real Twilio collector over real HTTP against the sandbox, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from usagectl.collector import collect, with_directory
from usagectl.config import Config, DirectoryConfig
from usagectl.directory import sync_directory
from usagectl.periods import Window
from usagectl.providers.registry import open_providers
from usagectl.sandbox import Sandbox, twilio_sid
from usagectl.store.engine import Store
from usagectl.store.tables import tenants, usage_metrics

NUM = "+15005550006"
KEPT = "+15005550007"  # acme's other number, never moved
CUSTOMER = "+14155550100"
X = date(2026, 11, 15)  # the day NUM moves from acme to globex
DAYS = [X - timedelta(days=2), X - timedelta(days=1), X, X + timedelta(days=1)]


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(synthetic=False, page_size_cap=2) as sandbox:
        yield sandbox


def _traffic(sb: Sandbox) -> None:
    acct = sb.twilio_accounts.master_sid
    for i, day in enumerate(DAYS):
        # i+1 outbound and one inbound message on NUM, one on KEPT, and a 2-minute call to NUM each day.
        for k in range(i + 1):
            sb.world.add_message(
                acct, from_=NUM, to=CUSTOMER, direction="outbound-api",
                date_sent=datetime(day.year, day.month, day.day, 10, k, tzinfo=UTC), price="-0.0079",
            )  # fmt: skip
        sb.world.add_message(
            acct, from_=CUSTOMER, to=NUM, direction="inbound",
            date_sent=datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC), price="-0.0079",
        )  # fmt: skip
        sb.world.add_message(
            acct, from_=KEPT, to=CUSTOMER, direction="outbound-api",
            date_sent=datetime(day.year, day.month, day.day, 0, 0, 0, tzinfo=UTC), price="-0.0079",
        )  # fmt: skip
        sb.world.add_call(
            acct, from_=CUSTOMER, to=NUM, direction="inbound", duration=120,
            start_time=datetime(day.year, day.month, day.day, 12, tzinfo=UTC), price="-0.0170",
        )  # fmt: skip


def _directory(path: Path, acme: list[str], globex: list[str]) -> None:
    rows = [
        {"slug": "acme", "plan": "starter", "phone_numbers": acme},
        {"slug": "globex", "plan": "pro", "phone_numbers": globex},
    ]
    path.write_text(json.dumps(rows), encoding="utf-8")


def _collect(sb: Sandbox, store: Store, cfg: Config, window: Window) -> None:
    run_cfg = with_directory(store, cfg, window)
    with open_providers(run_cfg, store, only=["twilio"]) as providers:
        result = collect(store, run_cfg, providers, window, workers=2, today=DAYS[-1] + timedelta(days=1))
    assert result.exit_code == 0, [o.errors for o in result.outcomes]


def _rows(store: Store) -> dict[tuple[str, date], tuple[int, int, int]]:
    m, t = usage_metrics.c, tenants.c
    q = select(t.slug, m.date, m.sms_outbound_count, m.sms_inbound_count, m.voice_minutes).join(
        tenants, t.id == m.tenant_id
    )
    with store.engine.connect() as conn:
        return {(s, d): (o, i, v) for s, d, o, i, v in conn.execute(q)}


def _expected() -> dict[tuple[str, date], tuple[int, int, int]]:
    out: dict[tuple[str, date], tuple[int, int, int]] = {}
    for i, day in enumerate(DAYS):
        if day < X:
            out[("acme", day)] = (i + 1 + 1, 1, 2)  # NUM's i+1 and KEPT's 1 outbound; NUM's inbound and call
            out[("globex", day)] = (0, 0, 0)
        else:
            out[("acme", day)] = (1, 0, 0)  # KEPT only
            out[("globex", day)] = (i + 1, 1, 2)
    return out


def _setup(sb: Sandbox, tmp_path: Path) -> tuple[Config, Path]:
    _traffic(sb)
    path = tmp_path / "directory.json"
    base = sb.config([])
    cfg = base.model_copy(update={"directory": DirectoryConfig(kind="file", path=path)})
    return cfg, path


def test_collect_day_by_day_across_a_reassignment(sb: Sandbox, store: Store, tmp_path: Path) -> None:
    cfg, path = _setup(sb, tmp_path)
    _directory(path, [NUM, KEPT], [])
    sync_directory(store, cfg, today=DAYS[0])
    for day in DAYS:
        if day == X:
            _directory(path, [KEPT], [NUM])
            sync_directory(store, cfg, today=X)
        _collect(sb, store, cfg, Window.day(day))
    got = _rows(store)
    want = _expected()
    # globex was not in the directory's numbers before X: its rows there are empty ones or absent.
    for key, value in want.items():
        assert got.get(key, (0, 0, 0)) == value, key


def test_a_backfill_across_the_reassignment_splits_at_the_day(
    sb: Sandbox, store: Store, tmp_path: Path
) -> None:
    cfg, path = _setup(sb, tmp_path)
    _directory(path, [NUM, KEPT], [])
    sync_directory(store, cfg, today=DAYS[0])
    _directory(path, [KEPT], [NUM])
    sync_directory(store, cfg, today=X)
    # One backfill over all four days, after the move: NUM's days before X stay acme's.
    _collect(sb, store, cfg, Window(DAYS[0], DAYS[-1] + timedelta(days=1)))
    got: dict[Any, Any] = _rows(store)
    for key, value in _expected().items():
        assert got.get(key, (0, 0, 0)) == value, key


def test_directory_tenants_on_their_own_accounts_collect_with_a_token_file_or_variable(
    sb: Sandbox, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An own-account tenant of the directory: the source names where its token is (a file's path, through a
    mapped column, or a variable's name); the database keeps that reference, never the token; collect reads the
    token and gets the account's usage from the sandbox over HTTP."""
    by_file, by_env = twilio_sid("AC", "hooli-own"), twilio_sid("AC", "umbrella-own")
    ref = sb.own_account(by_file)
    assert ref.file is not None
    file_token = ref.file.read_text(encoding="utf-8")
    env_token = sb.own_account(by_env)
    assert env_token.file is not None
    monkeypatch.setenv("UMBRELLA_TWILIO_TOKEN", env_token.file.read_text(encoding="utf-8"))
    day = DAYS[0]
    sb.world.set_usage_record(by_file, day, "sms-outbound", 7, price="0.0553")
    sb.world.set_usage_record(by_env, day, "sms-outbound", 3, price="0.0237")
    path = tmp_path / "directory.json"
    rows = [
        {"slug": "hooli", "plan": "pro", "twilio_account_sid": by_file, "token_path": str(ref.file)},
        {
            "slug": "umbrella",
            "plan": "starter",
            "twilio_account_sid": by_env,
            "twilio_auth_token_env": "UMBRELLA_TWILIO_TOKEN",
        },
    ]
    path.write_text(json.dumps(rows), encoding="utf-8")
    directory = DirectoryConfig(kind="file", path=path, columns={"twilio_auth_token_file": "token_path"})
    cfg = sb.config([]).model_copy(update={"directory": directory})
    out = sync_directory(store, cfg, today=day)
    assert out.bad == () and out.diff.added == ("hooli", "umbrella")
    with store.engine.connect() as conn:
        stored = [tuple(r) for r in conn.execute(select(tenants))]
        refs = dict(
            conn.execute(
                select(tenants.c.slug, tenants.c.twilio_auth_token_file).where(
                    tenants.c.origin == "directory"
                )
            ).all()
        )
    assert refs == {"hooli": str(ref.file), "umbrella": None}
    assert file_token not in repr(stored) and env_token.file.read_text(encoding="utf-8") not in repr(stored)
    _collect(sb, store, cfg, Window.day(day))
    m, t = usage_metrics.c, tenants.c
    with store.engine.connect() as conn:
        got = dict(
            conn.execute(
                select(t.slug, m.sms_outbound_count)
                .join(tenants, t.id == m.tenant_id)
                .where(m.source == "twilio", m.date == day)
            ).all()
        )
    assert got == {"hooli": 7, "umbrella": 3}
    assert sb.twilio.requests(f"/Accounts/{by_file}/") and sb.twilio.requests(f"/Accounts/{by_env}/")


def test_a_token_in_the_file_column_or_both_references_is_a_bad_row(store: Store, tmp_path: Path) -> None:
    own = twilio_sid("AC", "hooli-own")
    path = tmp_path / "directory.json"
    secret = "0123456789abcdef0123456789abcdef"
    rows = [
        {"slug": "hooli", "plan": "pro", "twilio_account_sid": own, "twilio_auth_token_file": secret},
        {
            "slug": "umbrella",
            "plan": "pro",
            "twilio_account_sid": twilio_sid("AC", "umbrella-own"),
            "twilio_auth_token_env": "UMBRELLA_TWILIO_TOKEN",
            "twilio_auth_token_file": "/etc/usagectl/umbrella.token",
        },
        {"slug": "acme", "plan": "starter"},
    ]
    path.write_text(json.dumps(rows), encoding="utf-8")
    out = sync_directory(store, Config(directory=DirectoryConfig(kind="file", path=path)), today=DAYS[0])
    assert out.diff.added == ("acme",)
    assert [str(b) for b in out.bad] == [
        "row 1 (hooli): twilio_auth_token_file must be the absolute PATH of a file holding the token, not a token",
        "row 2 (umbrella): give one of twilio_auth_token_env and twilio_auth_token_file",
    ]
    assert secret not in repr(out)
