from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from usagectl import config as cfgmod
from usagectl.errors import ConfigError

GOOD_TENANTS = """
[[tenants]]
slug = "acme"
plan = "pro"
twilio = { subaccount_sid = "AC11111111111111111111111111111111" }

[[tenants]]
slug = "globex"
twilio = { phone_numbers = ["+15005550006"] }
sendgrid = { category = "tenant-globex" }
"""


@pytest.fixture
def good(providers_toml: str, write_config: Callable[[str], Path]) -> Path:
    return write_config(providers_toml + GOOD_TENANTS)


def test_example_config_is_valid_and_shipped_with_the_package() -> None:
    root = Path(__file__).resolve().parents[1]
    example = (root / "config.example.toml").read_text()
    from usagectl.config_files import starter_config_text

    assert starter_config_text() == example
    cfg = cfgmod.load(root / "config.example.toml")
    assert cfg.tenants == []  # the example tenants are commented out (see test_deploy.py)
    assert cfg.plan("pro").overrides.sms is not None


def test_defaults_without_a_config_file() -> None:
    cfg = cfgmod.load(None)
    assert cfg.tenants == []
    book = cfg.pricing.books[0]
    assert (str(book.sms), str(book.mms), str(book.voice_minute), str(book.email), str(book.ai_token)) == (
        "0.014",
        "0.02",
        "0.015",
        "0.0005",
        "0.000002",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[[tenants]]\nslug = "a"\n[[tenants]]\nslug = "b"\n[[tenants]]\nslug = "c"\nplan = "gold"\n',
            "tenants[2].plan: 'gold' is not one of starter, pro, elite",
        ),
        (
            '[[tenants]]\nslug = "a"\n[[tenants]]\nslug = "a"\n',
            "tenants: tenant slug 'a' appears more than once",
        ),
        ('[report]\ntimezone = "Mars/Olympus"\n', "report.timezone: unknown time zone 'Mars/Olympus'"),
        ("[collect]\nworkerz = 3\n", "collect.workerz: unknown key"),
        ('[providers.twilio]\nauth_token = "abc123"\n', "must not hold a secret inline"),
        ('[[tenants]]\nslug = "a"\ntwilio = { phone_numbers = ["555"] }\n', "is not in E.164 form"),
        (
            '[[tenants]]\nslug = "a"\nsendgrid = { subuser = "x", category = "y" }\n',
            "tenants[0].sendgrid: give exactly one of subuser and category",
        ),
        (
            '[[pricing.books]]\nversion = "v1"\neffective_from = 2026-01-01\nsms = "abc"\nmms = "1"\n'
            'voice_minute = "1"\nemail = "1"\nai_token = "1"\n',
            "pricing.books[0].sms",
        ),
    ],
)
def test_bad_config_names_file_and_key(write_config: Callable[[str], Path], text: str, expected: str) -> None:
    path = write_config(text)
    with pytest.raises(ConfigError) as exc:
        cfgmod.load(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: ")
    assert expected in msg
    assert "\n" not in msg


def test_malformed_toml_reports_line(write_config: Callable[[str], Path]) -> None:
    path = write_config('[database]\nurl = "x"\n\n[report\n')
    with pytest.raises(ConfigError, match=r"invalid TOML: .*line 4"):
        cfgmod.load(path)


def test_toml_float_prices_keep_what_was_typed(write_config: Callable[[str], Path]) -> None:
    path = write_config(
        '[[pricing.books]]\nversion = "v1"\neffective_from = 2026-01-01\nsms = 0.014\nmms = 0.02\n'
        "voice_minute = 0.015\nemail = 0.0005\nai_token = 0.000002\n"
    )
    book = cfgmod.load(path).pricing.books[0]
    assert str(book.sms) == "0.014" and str(book.ai_token) == "0.000002"


def test_missing_secret_env_is_a_config_error(good: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("T_TOKEN")
    cfg = cfgmod.load(good)
    with pytest.raises(
        ConfigError, match=r"providers.twilio.auth_token: environment variable T_TOKEN is not set"
    ):
        cfg.resolve_secrets()


def test_discovery_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_config: Callable[..., Path]
) -> None:
    assert cfgmod.discover(None) is None
    user = cfgmod.user_config_path()
    user.parent.mkdir(parents=True)
    user.write_text("")
    assert cfgmod.discover(None) == user
    env = write_config("", "env.toml")
    monkeypatch.setenv("USAGECTL_CONFIG", str(env))
    assert cfgmod.discover(None) == env
    explicit = write_config("", "explicit.toml")
    assert cfgmod.discover(explicit) == explicit
    with pytest.raises(ConfigError, match="config file not found"):
        cfgmod.discover(tmp_path / "nope.toml")


def test_database_url_precedence(
    write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    assert cfgmod.load(None).database_url() == f"sqlite:///{isolated_env / 'usage.db'}"
    cfg = cfgmod.load(write_config('[database]\nurl = "sqlite:////tmp/x.db"\n'))
    assert cfg.database_url() == "sqlite:////tmp/x.db"
    monkeypatch.setenv("USAGECTL_DATABASE_URL", "postgresql://u:pw@h/db")
    assert cfg.database_url() == "postgresql://u:pw@h/db"
    assert cfgmod.redact_url(cfg.database_url()) == "postgresql://u:***@h/db"


# --- through the CLI ---------------------------------------------------------------------------------------


def test_cli_bad_config_is_one_line_exit_2(
    cli: Callable[..., Any], write_config: Callable[[str], Path]
) -> None:
    path = write_config('[[tenants]]\nslug = "a"\nplan = "gold"\n')
    r = cli("--config", str(path), "config", "check")
    assert r.code == 2
    assert (
        r.err.strip() == f"usagectl: error: {path}: tenants[0].plan: 'gold' is not one of starter, pro, elite"
    )
    assert "Traceback" not in r.err


def test_cli_missing_secret_exit_2(
    cli: Callable[..., Any], good: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("T_TOKEN")
    r = cli("--config", str(good), "config", "check")
    assert r.code == 2
    assert "T_TOKEN is not set" in r.err


@pytest.mark.parametrize(
    "toml, key, problem",
    [
        (
            '[alerts.webhook]\nurl = "https://hooks.example/usage"\nsecret_env = "U23_UNSET"\n',
            "alerts.webhook.secret",
            "environment variable U23_UNSET is not set",
        ),
        ('[serve]\nsession_secret_env = "U23_UNSET"\n', "serve.session_secret", "U23_UNSET is not set"),
        (
            '[serve]\nsession_secret_env = "U23_SHORT"\n',
            "serve.session_secret",
            "holds 5 bytes; use at least 16",
        ),
        (
            '[serve.auth]\nmode = "jwt"\njwt_secret_file = "/nonexistent/u23-jwt"\n',
            "serve.auth.jwt_secret",
            "cannot read secret file /nonexistent/u23-jwt",
        ),
    ],
)
def test_config_check_resolves_the_webhook_session_and_jwt_secrets(
    cli: Callable[..., Any],
    write_config: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
    toml: str,
    key: str,
    problem: str,
) -> None:
    """Issue 23 item 5: `config check` said ok while `alerts` (or `serve`) then failed on the secret."""
    monkeypatch.delenv("U23_UNSET", raising=False)
    monkeypatch.setenv("U23_SHORT", "short")
    path = write_config(toml)
    r = cli("--config", str(path), "config", "check")
    assert r.code == 2, r.err
    assert r.err.startswith(f"usagectl: error: {path}: {key}: ") and problem in r.err, r.err
    assert r.err.count("\n") == 1 and "ok" not in r.out
    # Set, the same config checks out, the secret counted and never printed.
    monkeypatch.setenv("U23_UNSET", "a-webhook-secret-of-some-length")
    monkeypatch.setenv("U23_SHORT", "long-enough-session-secret")
    if "jwt_secret_file" in toml:
        secret = write_config("a-jwt-secret-of-some-length", "jwt.txt")
        path = write_config(toml.replace("/nonexistent/u23-jwt", str(secret)))
    r = cli("--config", str(path), "config", "check")
    assert r.code == 0 and "1 secret resolved" in r.err, r.err
    assert "of-some-length" not in r.err + r.out and "long-enough" not in r.err + r.out


def test_config_check_names_every_unreadable_secret_at_once(
    cli: Callable[..., Any], write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("U23_A", "U23_B"):
        monkeypatch.delenv(var, raising=False)
    path = write_config(
        '[serve]\nsession_secret_env = "U23_A"\n'
        '[alerts.webhook]\nurl = "https://hooks.example/usage"\nsecret_env = "U23_B"\n'
    )
    r = cli("--config", str(path), "config", "check")
    assert r.code == 2
    assert "2 secrets cannot be read" in r.err
    assert "serve.session_secret: environment variable U23_A" in r.err
    assert "alerts.webhook.secret: environment variable U23_B" in r.err


def test_config_show_never_prints_secrets(
    cli: Callable[..., Any], good: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USAGECTL_DATABASE_URL", "postgresql://user:db-password-123@localhost/x")
    for fmt in ("toml", "json"):
        r = cli("--config", str(good), "config", "show", "--format", fmt)
        assert r.code == 0, r.err
        for secret in ("twilio-secret-token-value", "super-secret-sendgrid-key", "db-password-123"):
            assert secret not in r.out and secret not in r.err
        assert "T_TOKEN" in r.out
    data = json.loads(r.out)
    assert data["providers"]["twilio"]["auth_token_env"] == "T_TOKEN"
    r = cli("--config", str(good), "config", "check")
    assert r.code == 0 and "2 secrets resolved" in r.err
    assert "twilio-secret-token-value" not in r.err


def _big_config(n: int, plan: str = "pro") -> str:
    head = """
[[pricing.books]]
version = "v1"
effective_from = 2026-01-01
sms = "0.014"
mms = 0.02
voice_minute = "0.015"
email = "0.0005"
ai_token = "0.000002"

[[pricing.books]]
version = "v2"
effective_from = 2026-11-15
sms = 0.0125
mms = "0.02"
voice_minute = "0.015"
email = "0.0005"
ai_token = "0.000002"
"""
    tenants = "".join(
        f'\n[[tenants]]\nslug = "t{i:05d}"\nname = "Tenant number {i}"\nplan = "{plan}"\n'
        f'sendgrid = {{ subuser = "t{i:05d}" }}\n'
        for i in range(n)
    )
    return head + tenants


def test_large_config_parse_is_cached_by_content(
    write_config: Callable[..., Path], isolated_env: Path
) -> None:
    text = _big_config(1200)
    assert len(text.encode()) >= cfgmod.TOML_CACHE_MIN_BYTES
    path = write_config(text)
    first = cfgmod.load(path)
    cached = list((isolated_env / "cache" / "config").glob("*.json"))
    assert len(cached) == 1
    second = cfgmod.load(path)  # from the cache
    assert second == first
    assert second.pricing.books[1].effective_from.isoformat() == "2026-11-15"
    assert str(second.pricing.books[1].sms) == "0.0125"  # a TOML float, exact through the cache too

    # An edit is a new content hash: never served stale.
    path.write_text(_big_config(1200, plan="elite"), encoding="utf-8")
    assert {t.plan for t in cfgmod.load(path).tenants} == {"elite"}

    # A damaged cache entry is ignored, and a bad file is still reported with its line.
    for f in (isolated_env / "cache" / "config").glob("*.json"):
        f.write_text("{not json", encoding="utf-8")
    assert {t.plan for t in cfgmod.load(path).tenants} == {"elite"}
    path.write_text(_big_config(1200) + "\n[[tenants]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid TOML"):
        cfgmod.load(path)


def test_small_configs_are_not_cached(write_config: Callable[..., Path], isolated_env: Path) -> None:
    cfgmod.load(write_config(_big_config(3)))
    assert not (isolated_env / "cache").exists()
