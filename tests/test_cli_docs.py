"""Every command has help with an example and is documented in the README."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main

from usagectl.cli.main import app

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _commands() -> Iterator[tuple[str, ...]]:
    root = typer.main.get_command(app)

    def walk(cmd: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        sub = getattr(cmd, "commands", None)
        if sub:
            for name, child in sub.items():
                yield from walk(child, (*path, name))
        else:
            yield path

    yield from walk(root, ())


COMMANDS = sorted(_commands())


def test_there_are_commands() -> None:
    assert ("db", "upgrade") in COMMANDS and ("init",) in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_command_help_has_an_example(cli: Callable[..., Any], path: tuple[str, ...]) -> None:
    r = cli(*path, "--help")
    assert r.code == 0, r.err
    assert "Example:" in r.out, f"usagectl {' '.join(path)} --help has no example"
    assert f"usagectl {' '.join(path)}" in r.out


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_command_is_in_the_readme(path: tuple[str, ...]) -> None:
    assert f"usagectl {' '.join(path)}" in README, f"README does not mention usagectl {' '.join(path)}"


def test_provider_names_in_help_come_from_the_provider_table(cli: Callable[..., Any]) -> None:
    from usagectl.providers.registry import HTTP_SOURCES, SOURCES

    collect_help = " ".join(cli("collect", "--help").out.split())
    assert ", ".join(SOURCES) in collect_help
    reconcile_help = " ".join(cli("reconcile", "--help").out.split())
    assert f"({', '.join(HTTP_SOURCES)})" in reconcile_help
