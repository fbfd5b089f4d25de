"""Bad config files that `config check` used to pass and that failed later (at rollup, in a provider request, on
PostgreSQL...): each is now refused at load time, exit 2, with one line naming the file and the key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

BOOK = (
    '[[pricing.books]]\nversion = "v1"\neffective_from = 2026-01-01\nsms = {sms}\nmms = "0.02"\n'
    'voice_minute = "0.015"\nemail = "0.0005"\nai_token = "0.000002"\n'
)

# (id, config text, what the one-line error must contain: the key, then the reason)
CORPUS: list[tuple[str, str, str]] = [
    (
        "price-13-decimals",
        BOOK.format(sms='"0.0000000000001"'),
        "pricing.books[0].sms: 0.0000000000001 has more than 12 decimal places",
    ),
    (
        "price-13-decimals-exponent",
        BOOK.format(sms='"1E-13"'),
        "pricing.books[0].sms: 0.0000000000001 has more than 12 decimal places",
    ),
    (
        "price-float-13-decimals",
        BOOK.format(sms="1.0000000000001"),
        "pricing.books[0].sms: 1.0000000000001 has more than 12",
    ),
    ("price-picos-overflow", BOOK.format(sms='"9300000"'), "pricing.books[0].sms: 9300000 is too large"),
    ("price-nan", BOOK.format(sms='"NaN"'), "pricing.books[0].sms"),
    ("price-infinity", BOOK.format(sms='"Infinity"'), "pricing.books[0].sms"),
    (
        "model-price-13-decimals",
        BOOK.format(sms='"0.01"')
        + '[pricing.books.ai_models.gpt-x]\ninput = "0.0000000000001"\noutput = "1"\n',
        "pricing.books[0].ai_models.gpt-x.input: 0.0000000000001 has more than 12",
    ),
    (
        "plan-override-overflow",
        '[plans.pro.overrides]\nsms = "10000000"\n',
        "plans.pro.overrides.sms: 10000000 is too large",
    ),
    ("rate-limit-inf", "[providers.sendgrid]\nrate_limit = inf\n", "providers.sendgrid.rate_limit: "),
    ("rate-limit-nan", "[providers.openai]\nrate_limit = nan\n", "providers.openai.rate_limit: "),
    ("timeout-nan", "[providers.twilio]\ntimeout = nan\n", "providers.twilio.timeout: "),
    (
        "base-url-ftp",
        '[providers.openai]\nbase_url = "ftp://api.openai.com"\n',
        "providers.openai.base_url: 'ftp://api.openai.com' is not an http:// or https:// URL",
    ),
    (
        "base-url-no-scheme",
        '[providers.sendgrid]\nbase_url = "api.sendgrid.com"\n',
        "providers.sendgrid.base_url: 'api.sendgrid.com' is not an http",
    ),
    ("base-url-file", '[providers.twilio]\nbase_url = "file:///etc/passwd"\n', "providers.twilio.base_url: "),
    (
        "base-url-bad-port",
        '[providers.twilio]\nbase_url = "https://api.twilio.com:99999"\n',
        "providers.twilio.base_url: 'https://api.twilio.com:99999' is not a valid URL",
    ),
    (
        "database-mysql",
        '[database]\nurl = "mysql://u@db/usage"\n',
        "database.url: unsupported database 'mysql'",
    ),
    (
        "database-asyncpg",
        '[database]\nurl = "postgresql+asyncpg://db/usage"\n',
        "database.url: unsupported database 'postgresql+asyncpg'",
    ),
    (
        "database-bad-port",
        '[database]\nurl = "postgresql://u:hunter2@db:abc/usage"\n',
        "database.url: 'postgresql://u:***@db:abc/usage' is not a valid database URL",
    ),
    (
        "database-not-a-url",
        '[database]\nurl = "usage.db"\n',
        "database.url: 'usage.db' is not a valid database URL",
    ),
    (
        "database-port-range",
        '[database]\nurl = "postgresql://db:70000/usage"\n',
        "database.url: port 70000 is out of range",
    ),
    (
        "builtin-counter-as-gauge",
        '[events.metrics]\njobs_executed = "gauge"\n',
        "events.metrics: jobs_executed is a built-in counter, it cannot be a gauge",
    ),
    (
        "builtin-gauge-as-counter",
        '[events.metrics]\nstorage_bytes = "counter"\n',
        "events.metrics: storage_bytes is a built-in gauge, it cannot be a counter",
    ),
    ("metric-name-too-long", f'[events.metrics]\n{"m" * 65} = "counter"\n', "events.metrics: metric name"),
    (
        "tenant-name-201-chars",
        f'[[tenants]]\nslug = "a"\nname = "{"n" * 201}"\n',
        "tenants[0].name: is 201 characters long; at most 200",
    ),
    (
        "tenant-name-cr",
        '[[tenants]]\nslug = "a"\nname = "Acme\\rDental"\n',
        "tenants[0].name: holds the control character U+000D",
    ),
    (
        "tenant-name-escape",
        '[[tenants]]\nslug = "a"\nname = "\\u001b[2J\\u001b[31mAcme"\n',
        "tenants[0].name: holds the control character U+001B",
    ),
    (
        "tenant-name-newline",
        '[[tenants]]\nslug = "a"\nname = "Acme\\nDental"\n',
        "tenants[0].name: holds the control character U+000A",
    ),
    (
        "tenant-name-bidi",
        '[[tenants]]\nslug = "a"\nname = "Acme\\u202eDental"\n',
        "tenants[0].name: holds the control character U+202E",
    ),
    (
        "slug-trailing-newline",
        '[[tenants]]\nslug = "t00\\n"\n',
        "tenants[0].slug: 't00\\n' is not a valid slug",
    ),
    # Refused before this corpus was written; kept so that they stay refused.
    ("slug-upper-case", '[[tenants]]\nslug = "Acme"\n', "tenants[0].slug: 'Acme' is not a valid slug"),
    ("slug-64-chars", f'[[tenants]]\nslug = "{"a" * 64}"\n', "tenants[0].slug: "),
    ("slug-leading-dash", '[[tenants]]\nslug = "-a"\n', "tenants[0].slug: '-a' is not a valid slug"),
    ("price-negative", BOOK.format(sms='"-0.01"'), "pricing.books[0].sms: "),
    ("lookback-61-days", "[collect]\nlookback_days = 61\n", "collect.lookback_days: "),
    ("workers-0", "[collect]\nworkers = 0\n", "collect.workers: "),
    (
        "secret-env-and-file",
        '[providers.sendgrid]\napi_key_env = "K"\napi_key_file = "/k"\n',
        "providers.sendgrid: give one of api_key_env and api_key_file, not both",
    ),
    (
        "own-twilio-without-token",
        '[[tenants]]\nslug = "a"\ntwilio = { account_sid = "AC1" }\n',
        "tenants[0].twilio: own credentials need both",
    ),
    ("unknown-plan-tier", "[plans.gold]\nincluded = { sms = 1 }\n", "plans.gold"),
    ("allowance-negative", "[plans.pro]\nincluded = { sms = -1 }\n", "plans.pro.included.sms: "),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_bad_config_is_refused_by_config_check_with_one_line_naming_the_key(
    cli: Callable[..., Any], write_config: Callable[[str], Path], text: str, expected: str
) -> None:
    path = write_config(text)
    r = cli("--config", str(path), "config", "check")
    assert r.code == 2, r.err
    assert r.out == ""
    assert r.err.count("\n") == 1, r.err
    assert r.err.startswith(f"usagectl: error: {path}: "), r.err
    assert expected in r.err
    assert "hunter2" not in r.err and "Traceback" not in r.err


def test_a_secret_file_that_is_not_utf8_is_a_config_error_naming_the_key(
    cli: Callable[..., Any], write_config: Callable[[str], Path], tmp_path: Path
) -> None:
    key = tmp_path / "sg.key"
    key.write_bytes(b"SG.\xff\xfe-latin1-\xe9")
    path = write_config(f'[providers.sendgrid]\napi_key_file = "{key}"\n')
    r = cli("--config", str(path), "config", "check")
    assert r.code == 2, r.err
    assert (
        r.err == f"usagectl: error: {path}: providers.sendgrid.api_key: secret file {key} is not UTF-8 text\n"
    )


def test_a_bad_database_url_in_the_environment_names_the_variable(
    cli: Callable[..., Any], write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USAGECTL_DATABASE_URL", "oracle://u:hunter2@db/usage")
    r = cli("--config", str(write_config('[[tenants]]\nslug = "a"\n')), "config", "check")
    assert r.code == 2, r.err
    assert (
        r.err
        == "usagectl: error: $USAGECTL_DATABASE_URL: unsupported database 'oracle' (use sqlite:///PATH or postgresql://HOST/DB)\n"
    )


def test_config_check_reports_every_unreadable_secret_in_one_run(
    cli: Callable[..., Any],
    write_config: Callable[[str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    path = write_config(
        '[providers.twilio]\naccount_sid = "AC0"\nauth_token_env = "NO_SUCH_TOKEN"\n'
        f'[providers.sendgrid]\napi_key_file = "{tmp_path / "missing.key"}"\n'
        '[providers.openai]\nadmin_key_env = "NO_SUCH_TOKEN"\n'
        '[[tenants]]\nslug = "a"\n'
        f'twilio = {{ account_sid = "AC1", auth_token_file = "{tmp_path / "a.token"}" }}\n'
    )
    r = cli("--config", str(path), "config", "check")
    assert r.code == 2
    assert r.err.startswith("usagectl: error: 4 secrets cannot be read:\n")
    for key in (
        "providers.twilio.auth_token: environment variable NO_SUCH_TOKEN is not set",
        "providers.sendgrid.api_key: cannot read secret file",
        "providers.openai.admin_key: environment variable NO_SUCH_TOKEN is not set",
        "tenants[0].twilio.auth_token: cannot read secret file",
    ):
        assert f"\n  {path}: {key}" in r.err
    assert r.err.count("\n") == 5
