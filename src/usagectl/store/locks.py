"""One database-wide job lock, so two collect/rollup runs (on one host or several) never overlap.

PostgreSQL: a session advisory lock on a connection held for the whole job (released by the server if the process
dies). SQLite: a row in `job_locks` with an expiry that the holder keeps extending; a holder killed with -9 stops
extending it and the lock is taken over once it has expired.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from usagectl.errors import LockBusyError
from usagectl.store.engine import Store
from usagectl.store.tables import job_locks, utcnow

JOBS_LOCK = "jobs"  # collect and rollup share it
LEASE = timedelta(seconds=60)


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _holder_is_dead(holder: str | None) -> bool:
    """True when the holder ran on this host and its process is gone (killed with -9, say): its lease need not
    run out before the next run may start."""
    if not holder:
        return False
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _busy(name: str, wait: float, holder: str | None = None) -> LockBusyError:
    who = f" (held by {holder})" if holder else ""
    return LockBusyError(
        f"another usagectl run holds the '{name}' lock{who}; waited {wait:g}s. Try again when it has finished."
    )


@contextmanager
def job_lock(
    store: Store, name: str = JOBS_LOCK, *, wait: float = 10.0, poll: float = 0.25
) -> Iterator[None]:
    """Hold the named lock for the `with` block; wait up to `wait` seconds, then raise LockBusyError."""
    if store.dialect == "postgresql":
        with _pg_lock(store, name, wait, poll):
            yield
    else:
        with _sqlite_lock(store, name, wait, poll):
            yield


@contextmanager
def _pg_lock(store: Store, name: str, wait: float, poll: float) -> Iterator[None]:
    conn = store.engine.connect()
    try:
        # Advisory locks are database-wide: key them by schema too, so that usagectl installs (and test runs)
        # in different schemas of one database do not block each other.
        schema = conn.execute(text("SELECT current_schema()")).scalar()
        key = zlib.crc32(f"usagectl:{schema}:{name}".encode())
        deadline = time.monotonic() + wait
        while True:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            conn.commit()
            if got:
                break
            if time.monotonic() >= deadline:
                raise _busy(name, wait)
            time.sleep(poll)
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()
    finally:
        conn.close()


@contextmanager
def _sqlite_lock(store: Store, name: str, wait: float, poll: float) -> Iterator[None]:
    me = _holder()
    deadline = time.monotonic() + wait
    current_holder: str | None = None
    while True:
        now = utcnow()
        with store.engine.begin() as conn:
            # Clear a lease its holder stopped renewing, or whose holder on this host is gone.
            conn.execute(delete(job_locks).where(job_locks.c.name == name, job_locks.c.expires_at < now))
            if _holder_is_dead(current_holder):
                conn.execute(
                    delete(job_locks).where(job_locks.c.name == name, job_locks.c.holder == current_holder)
                )
            try:
                conn.execute(
                    insert(job_locks).values(name=name, holder=me, acquired_at=now, expires_at=now + LEASE)
                )
                break
            except IntegrityError:
                pass
        with store.engine.connect() as conn:
            current_holder = conn.execute(select(job_locks.c.holder).where(job_locks.c.name == name)).scalar()
        if time.monotonic() >= deadline:
            raise _busy(name, wait, current_holder)
        time.sleep(poll)

    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LEASE.total_seconds() / 3):
            with store.engine.begin() as conn:
                conn.execute(
                    update(job_locks)
                    .where(job_locks.c.name == name, job_locks.c.holder == me)
                    .values(expires_at=utcnow() + LEASE)
                )

    renewer = threading.Thread(target=renew, name=f"lock-{name}", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        with store.engine.begin() as conn:
            conn.execute(delete(job_locks).where(job_locks.c.name == name, job_locks.c.holder == me))
