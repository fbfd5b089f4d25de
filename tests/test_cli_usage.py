"""Global options anywhere, help pages without Python types, usage errors as one line (issue 12 items 4, 5)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from usagectl.cli.main import hoist_global_options

TENANTS = '[[tenants]]\nslug = "acme"\nname = "Acme"\n\n[[tenants]]\nslug = "globex"\nname = "Globex"\n'


def test_global_options_after_the_command_are_moved_before_it() -> None:
    assert hoist_global_options(["collect", "-q", "--tenant", "acme", "--config", "c.toml", "--debug"]) == [
        "--debug",
        "--config",
        "c.toml",
        "-q",
        "collect",
        "--tenant",
        "acme",
    ]
    assert hoist_global_options(["-c", "a.toml", "db", "path"]) == ["-c", "a.toml", "db", "path"]
    # After `--` everything is the command's own.
    assert hoist_global_options(["record", "--", "x", "-q"]) == ["record", "--", "x", "-q"]


def test_quiet_debug_and_config_work_after_the_command_name(
    cli: Callable[..., Any], write_config: Callable[..., Path], isolated_env: Path
) -> None:
    cfg = write_config(TENANTS)
    r = cli("db", "path", "--config", str(cfg))
    assert r.code == 0, r.err
    assert r.out.strip() == str(isolated_env / "usage.db")
    r = cli("record", "--tenant", "acme", "jobs_executed", "1", "-q", "--config", str(cfg))
    assert (r.code, r.err) == (0, "")
    # `collect -q` was "No such option: -q"; now it collects the local events source, silently.
    r = cli("collect", "-q", "--debug", "-c", str(cfg), "--provider", "events")
    assert (r.code, r.out, r.err) == (0, "", "")


@pytest.mark.parametrize(
    "path",
    [
        ("collect",),
        ("report",),
        ("tenants",),
        ("export",),
        ("record",),
        ("demo",),
        ("config", "show"),
        ("init",),
    ],
    ids=" ".join,
)
def test_help_shows_no_type_placeholders(cli: Callable[..., Any], path: tuple[str, ...]) -> None:
    r = cli(*path, "--help")
    assert r.code == 0
    for placeholder in ("<bool>", "<str>", "<int", "<list", "list[str]", "<file>", "<dir>"):
        assert placeholder not in r.out, f"usagectl {' '.join(path)} --help shows {placeholder}"


def test_help_details(cli: Callable[..., Any]) -> None:
    collect = cli("collect", "--help").out
    assert "--tenant SLUG" in collect and "--dry-run " in collect
    assert "today" in collect.split("--date", 1)[1].split("\n", 1)[0]
    for group in ("db", "config"):
        r = cli(group, "--help")
        assert r.code == 0 and f"Example: usagectl {group} " in r.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("collect", "--lookback", "-1"), "'--lookback'"),
        (("report",), "Missing option '--tenant'"),
        (("db", "current", "--bogus"), "No such option: --bogus"),
    ],
)
def test_usage_errors_are_one_line(cli: Callable[..., Any], args: tuple[str, ...], message: str) -> None:
    r = cli(*args)
    assert r.code == 2
    assert r.err.count("\n") == 1 and r.err.startswith("usagectl: error: ") and message in r.err
    assert "╭" not in r.err and "Usage:" not in r.err


def test_record_negative_value_says_it_must_be_a_non_negative_integer(
    cli: Callable[..., Any], write_config: Callable[..., Path]
) -> None:
    cfg = write_config(TENANTS)
    r = cli("-c", str(cfg), "record", "--tenant", "acme", "jobs_executed", "-3")
    assert r.code == 2 and r.err.count("\n") == 1
    assert "must be a non-negative integer" in r.err and "No such option" not in r.err


def test_unknown_tenant_suggests_the_closest_slug(
    cli: Callable[..., Any], write_config: Callable[..., Path]
) -> None:
    cfg = str(write_config(TENANTS))
    for args in (
        ("report", "--tenant", "acm"),
        ("export", "--format", "csv", "--tenant", "acme_"),
        ("record", "--tenant", "acmee", "jobs_executed", "1"),
        ("collect", "--tenant", "acne"),
    ):
        r = cli("-c", cfg, *args)
        assert r.code == 2 and "did you mean 'acme'?" in r.err, (args, r.err)
    r = cli("-c", cfg, "report", "--tenant", "zzzz")
    assert r.code == 2 and "did you mean" not in r.err
