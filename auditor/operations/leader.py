"""One daemon runs rounds at a time: the leader lock.

On PostgreSQL the leader holds a session-level advisory lock on a connection it keeps open;
if the leader dies, PostgreSQL ends its session and releases the lock, and a standby daemon's
next attempt takes it over. On SQLite an exclusive `flock` on a file beside the database keeps
a second daemon out the same way (the kernel releases it when the process dies).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import zlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

#: The advisory lock's key: stable across processes and versions.
LOCK_KEY = zlib.crc32(b"provider-auditor/daemon-leader")


class LeaderLock(ABC):
    @abstractmethod
    def try_acquire(self) -> bool:
        """Take the lock if it is free; True while this process holds it."""

    @abstractmethod
    def still_held(self) -> bool:
        """Whether the lock is still ours (a lost database connection loses it)."""

    @abstractmethod
    def release(self) -> None: ...


class PostgresLock(LeaderLock):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None

    def try_acquire(self) -> bool:
        if self._conn is not None:
            return self.still_held()
        try:
            conn = self.engine.connect()
        except SQLAlchemyError:  # the database is away: not the leader, try again later
            return False
        try:
            got = bool(
                conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
            )
            conn.commit()
        except SQLAlchemyError:
            conn.close()
            return False
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def still_held(self) -> bool:
        if self._conn is None:
            return False
        try:
            held = self._conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND objid = :k AND pid = pg_backend_pid() AND granted"
                ),
                {"k": LOCK_KEY & 0xFFFFFFFF},
            ).scalar()
            self._conn.commit()
        except SQLAlchemyError:
            self._drop()
            return False
        if not held:
            self._drop()
        return bool(held)

    def release(self) -> None:
        if self._conn is None:
            return
        # Closing the session below releases the lock even if the unlock fails.
        with contextlib.suppress(SQLAlchemyError):
            self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
            self._conn.commit()
        self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.close()
            self._conn = None


class FileLock(LeaderLock):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def try_acquire(self) -> bool:
        if self._file is not None:
            return True
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for as long as we lead
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return True

    def still_held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def lock_for(engine: Engine) -> LeaderLock:
    """The advisory lock on PostgreSQL; a lock file beside the database file on SQLite."""
    url = make_url(str(engine.url))
    if url.get_backend_name() == "postgresql":
        return PostgresLock(engine)
    database = url.database or "auditor.db"
    path = Path(database) if database != ":memory:" else Path("auditor-memory.db")
    return FileLock(path.with_name(path.name + ".leader.lock"))
