"""The deployment path (issue 12 item 6): a starter config that writes no example tenant into the database, a
crontab and systemd unit that say where usagectl and the secrets are, and `config show` output that is a config."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from priced import TENANTS, priced_toml
from usagectl import config as cfgmod
from usagectl.config_files import starter_config_text
from usagectl.store.engine import open_store
from usagectl.store.tables import tenants

ROOT = Path(__file__).resolve().parents[1]


def test_init_writes_no_example_tenant_into_the_database(
    cli: Callable[..., Any], tmp_path: Path, isolated_env: Path
) -> None:
    cfg = tmp_path / "config.toml"
    assert cli("init", "--path", str(cfg)).code == 0
    assert cli("--config", str(cfg), "tenants").code == 0
    store = open_store(f"sqlite:///{isolated_env / 'usage.db'}")
    try:
        with store.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(tenants)).scalar_one() == 0
    finally:
        store.close()


def test_the_commented_example_tenants_are_valid_once_uncommented() -> None:
    text = starter_config_text()
    block = text[text.index("# [[tenants]]") :]
    uncommented = "\n".join(
        line[2:] if line.startswith("# ") else line.lstrip("#") for line in block.splitlines()
    )
    cfg = cfgmod.parse(tomllib.loads(uncommented), "example tenants")
    assert [t.slug for t in cfg.tenants] == ["acme", "globex"]


def test_crontab_and_systemd_unit_show_the_venv_path_and_where_secrets_come_from() -> None:
    cron = (ROOT / "crontab.example").read_text()
    path_line = re.search(r"^PATH=(\S+)$", cron, re.M)
    assert path_line is not None
    venv_bin = path_line.group(1).split(":")[0]
    assert venv_bin.endswith("/venv/bin")
    assert "secrets.env" in cron and "_file" in cron
    unit = (ROOT / "deploy" / "usagectl.service").read_text()
    starts = re.findall(r"^ExecStart=(\S+)", unit, re.M)
    assert starts and all(s == f"{venv_bin}/usagectl" for s in starts)
    assert re.search(r"^EnvironmentFile=-?/etc/usagectl/secrets.env$", unit, re.M)
    assert "/etc/usagectl/secrets/" in unit


# The shared priced config (books, plans, tenants), with providers and a tenant holding its own Twilio account.
OWN_ACCOUNT = (
    "acme", "Acme Corp", "starter",
    'twilio = { account_sid = "AC11111111111111111111111111111111", auth_token_env = "ACME_TOKEN" }',
)  # fmt: skip


@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_config_show_output_loads_back_as_the_same_config(
    cli: Callable[..., Any],
    write_config: Callable[..., Path],
    providers_toml: str,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
) -> None:
    monkeypatch.setenv("ACME_TOKEN", "acme-secret-token-value")
    original = write_config(priced_toml(tenants=(OWN_ACCOUNT, *TENANTS[1:]), extra=providers_toml))
    r = cli("--config", str(original), "config", "show", "--format", fmt)
    assert r.code == 0, r.err
    assert "secret-token-value" not in r.out and "super-secret" not in r.out
    assert 'auth_token_env = "T_TOKEN"' in r.out if fmt == "toml" else '"auth_token_env": "T_TOKEN"' in r.out
    if fmt == "toml":
        shown = write_config(r.out, "shown.toml")
    else:
        import tomli_w

        def no_nulls(obj: Any) -> Any:  # TOML has no null
            if isinstance(obj, dict):
                return {k: no_nulls(v) for k, v in obj.items() if v is not None}
            return [no_nulls(v) for v in obj] if isinstance(obj, list) else obj

        shown = write_config(tomli_w.dumps(no_nulls(json.loads(r.out))), "shown.toml")
    check = cli("--config", str(shown), "config", "check")
    assert check.code == 0, check.err
    assert "2 secrets resolved" not in check.err and "3 secrets resolved" in check.err
    # The same config, but for the database URL, which is shown resolved (here the default SQLite file).
    again, first = cfgmod.load(shown), cfgmod.load(original)
    assert again.model_dump(exclude={"database"}) == first.model_dump(exclude={"database"})
    assert again.database_url() == first.database_url()


def test_the_hourly_today_job_in_cron_and_systemd_runs_clear_of_the_nightly_job() -> None:
    cron = (ROOT / "crontab.example").read_text()
    hourly = re.search(r"^(\S+) \* \* \* \* usagectl -q collect --today && usagectl -q rollup$", cron, re.M)
    assert hourly is not None and hourly.group(1) != "0"  # the nightly job holds the jobs lock at 00:00
    unit = (ROOT / "deploy" / "usagectl-today.service").read_text()
    starts = re.findall(r"^ExecStart=(.*)$", unit, re.M)
    assert starts == [
        "/opt/usagectl/venv/bin/usagectl -q collect --today",
        "/opt/usagectl/venv/bin/usagectl -q rollup",
    ]
    timer = (ROOT / "deploy" / "usagectl-today.timer").read_text()
    assert re.search(r"^OnCalendar=\*-\*-\* \*:30:00 UTC$", timer, re.M)
