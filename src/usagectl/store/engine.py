"""Engine creation, schema version checks and migrations.

SQLite: a new file is created and migrated on first use; WAL mode and a busy timeout let a report read while a
collect writes. PostgreSQL: the schema is only changed by `usagectl db upgrade`; a schema behind the code is a
clear error, not a crash halfway through a run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import NullPool

from usagectl.config import default_data_dir, redact_url
from usagectl.errors import ConfigError, SchemaError
from usagectl.store.tables import SCHEMA_HEAD

try:
    import fcntl
except ImportError:  # Windows: no flock; concurrent first starts there are not serialised
    fcntl = None  # type: ignore[assignment]

SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
ALEMBIC_VERSION_TABLE = "alembic_version"  # Alembic's default, which migrations/env.py keeps


def normalize_url(url: str) -> URL:
    """Accept plain `postgresql://` and `postgres://` URLs and use psycopg 3 for them."""
    try:
        u = make_url(url)
    except ArgumentError:
        raise ConfigError(f"database URL {redact_url(url)!r} is not a valid URL") from None
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    if u.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"database URL: unsupported backend {u.get_backend_name()!r} (use sqlite or postgresql)"
        )
    return u


def _check_sqlite_dir(path: Path, url: str) -> None:
    """The default data dir is created on first use; any other folder must exist: a typo in a configured URL
    would otherwise silently start an empty database somewhere new."""
    parent = path.parent
    if parent.is_dir():
        return
    if os.path.abspath(parent) == os.path.abspath(default_data_dir()):
        parent.mkdir(parents=True, exist_ok=True)
        return
    raise ConfigError(
        f"database URL {redact_url(url)!r}: the directory {str(parent)!r} does not exist (create it first)"
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str, *, pool: bool = True) -> Engine:
    u = normalize_url(url)
    kwargs: dict[str, Any] = {}
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            _check_sqlite_dir(Path(u.database).expanduser(), url)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    else:
        kwargs["pool_pre_ping"] = True
    if not pool:
        kwargs["poolclass"] = NullPool
    engine = create_engine(u, **kwargs)
    if u.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def current_revision(engine: Engine) -> str | None:
    """The schema revision recorded in Alembic's version table (None: no schema yet). Read with plain SQL:
    importing Alembic for this would slow every command's start-up (docs/performance.md, Design decisions)."""
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(ALEMBIC_VERSION_TABLE):
                return None
            revs = [r for (r,) in conn.execute(text(f"SELECT version_num FROM {ALEMBIC_VERSION_TABLE}"))]
    except OperationalError as exc:
        raise SchemaError(
            f"cannot open the database at {redact_url(str(engine.url))}: {_first_line(exc)}"
        ) from None
    if len(revs) > 1:
        raise SchemaError(
            f"the database at {redact_url(str(engine.url))} records several schema revisions "
            f"({', '.join(sorted(revs))}); fix its {ALEMBIC_VERSION_TABLE} table"
        )
    return revs[0] if revs else None


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config(create_engine("sqlite://"))).get_current_head()
    assert head is not None
    return head


@contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """One migrating process at a time per database: the others wait here, then find the schema done.

    SQLite: an exclusive flock on the database file itself (created empty if missing, which still counts as
    new); SQLite's own locks are fcntl byte ranges, which flock does not touch. PostgreSQL: a session advisory
    lock keyed by the current schema, held on a connection of its own while Alembic migrates on another."""
    if engine.dialect.name == "sqlite":
        db = engine.url.database
        if not db or db == ":memory:" or fcntl is None:
            yield
            return
        fd = os.open(Path(db).expanduser(), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock
        return
    with engine.connect() as conn:
        conn.execute(_PG_MIGRATE_LOCK)
        conn.commit()  # a session lock outlives the transaction; no transaction stays open meanwhile
        try:
            yield
        finally:
            conn.execute(_PG_MIGRATE_UNLOCK)
            conn.commit()


# The two-key form, so it can never be the jobs lock (store.locks, one bigint key) under another name.
_PG_MIGRATE_LOCK = text("SELECT pg_advisory_lock(7413, hashtext(coalesce(current_schema(), '')))")
_PG_MIGRATE_UNLOCK = text("SELECT pg_advisory_unlock(7413, hashtext(coalesce(current_schema(), '')))")


def _alembic_upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to `revision`; concurrent callers run one after the other (the later ones find nothing to do)."""
    with migration_lock(engine):
        _alembic_upgrade(engine, revision)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


def _is_new_sqlite(engine: Engine) -> bool:
    if engine.dialect.name != "sqlite":
        return False
    db = engine.url.database
    if not db or db == ":memory:":
        return True
    path = Path(db).expanduser()
    if not path.exists() or path.stat().st_size == 0:
        return True
    # An existing file with no tables yet (created by a failed first run) is still new.
    return not inspect(engine).get_table_names()


def migrate_new_sqlite(engine: Engine) -> bool:
    """Migrate a brand-new SQLite file, under the migration lock: of several processes starting on the same new
    file one migrates, the others wait and then use it. True if the schema may have changed."""
    if engine.dialect.name != "sqlite":
        return False
    if not _is_new_sqlite(engine) and current_revision(engine) is not None:
        return False
    # A file with tables but no recorded revision may be another process halfway through its migration (SQLite
    # runs each DDL statement on its own): waiting for the lock lets it finish.
    with migration_lock(engine):
        if _is_new_sqlite(engine):
            _alembic_upgrade(engine)
    return True


def ensure_schema(engine: Engine) -> None:
    """Fail clearly when the schema is not the one this code expects; migrate a brand-new SQLite file."""
    if _is_new_sqlite(engine):
        migrate_new_sqlite(engine)
    rev = current_revision(engine)
    if rev is None and migrate_new_sqlite(engine):
        rev = current_revision(engine)
    if rev == SCHEMA_HEAD:
        return
    # Another process may be migrating right now, and each revision is recorded as it completes: wait for it to
    # finish before calling the schema behind.
    with migration_lock(engine):
        rev = current_revision(engine)
    if rev == SCHEMA_HEAD:
        return
    where = redact_url(str(engine.url))
    if rev is None:
        raise SchemaError(f"the database at {where} has no usagectl schema; run: usagectl db upgrade")
    raise SchemaError(
        f"the database at {where} is at schema {rev}, this usagectl needs {SCHEMA_HEAD}; run: usagectl db upgrade"
    )


@dataclass
class Store:
    """An open database: the engine plus what the rest of the code needs to know about it."""

    engine: Engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()


def open_store(url: str, *, check_schema: bool = True) -> Store:
    engine = make_engine(url)
    if check_schema:
        ensure_schema(engine)
    return Store(engine)


def sqlite_path(url: str) -> str | None:
    u = normalize_url(url)
    if u.get_backend_name() != "sqlite" or not u.database:
        return None
    return os.path.abspath(os.path.expanduser(u.database))
