"""The maps stay true: docs/architecture.md names every file of the package, docs/api.md every route of the app."""

from __future__ import annotations

import re
from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from usagectl import config as cfgmod
from usagectl.store.engine import open_store
from usagectl.web.app import ServeSettings, create_app

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "usagectl"
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()
API = (ROOT / "docs" / "api.md").read_text()

# Files that carry no code of their own and so need no line.
_NOT_MODULES = {"py.typed"}


def _package_files() -> list[str]:
    return sorted(
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.name not in _NOT_MODULES
    )


def _file_table_entries() -> list[str]:
    section = ARCHITECTURE.split("## Every file, in one line", 1)[1]
    return [m.group(1) for m in re.finditer(r"^\| `([^`]+)` \|", section, flags=re.M)]


def _named(path: str, entries: list[str]) -> bool:
    return any(path == e or fnmatchcase(path, e) or (e.endswith("/") and path.startswith(e)) for e in entries)


def test_architecture_names_every_file_of_the_package() -> None:
    entries = _file_table_entries()
    assert len(entries) > 20, "the table 'Every file, in one line' is missing from docs/architecture.md"
    missing = [p for p in _package_files() if not _named(p, entries)]
    assert not missing, f"docs/architecture.md 'Every file, in one line' does not name: {missing}"


def test_architecture_names_no_file_that_is_gone() -> None:
    files = _package_files()
    stale = [e for e in _file_table_entries() if not any(_named(f, [e]) for f in files)]
    assert not stale, f"docs/architecture.md names files that do not exist: {stale}"


def test_the_file_check_can_fail() -> None:
    # The check above is only worth something if an unnamed file is reported.
    assert not _named("web/brand_new.py", _file_table_entries())
    assert _named("cli/report_cmd.py", _file_table_entries())


def _documented_routes() -> set[tuple[str, str]]:
    section = API.split("## Routes", 1)[1].split("\n## ", 1)[0]
    return {
        (m.group(1), m.group(2))
        for m in re.finditer(r"^\| `(GET|POST|PUT|PATCH|DELETE) ([^`]+)` \|", section, flags=re.M)
    }


def _app_routes(found: Sequence[object]) -> set[tuple[str, str]]:
    # FastAPI 0.165 keeps an included router as one entry (its routes under `original_router`); older versions
    # copy the routes into the app. Both are walked. The routers here are included without a prefix.
    routes: set[tuple[str, str]] = set()
    for route in found:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            routes |= _app_routes(inner.routes)
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                routes.add((method, getattr(route, "path", "")))
    return routes


def test_api_md_documents_every_route_of_the_app(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'usage.db'}")
    try:
        app = create_app(ServeSettings(cfgmod.Config(), store=store, access_log=False))
        routes = _app_routes(app.routes)
    finally:
        store.close()
    documented = _documented_routes()
    assert routes, "the app has no routes?"
    assert routes - documented == set(), f"routes missing from docs/api.md '## Routes': {routes - documented}"
    assert documented - routes == set(), f"docs/api.md documents routes the app lacks: {documented - routes}"


@pytest.mark.parametrize("text", ["GET /nowhere", "POST /api/admin/usage/daily"])
def test_the_route_check_can_fail(text: str) -> None:
    method, path = text.split()
    assert (method, path) not in _documented_routes()
