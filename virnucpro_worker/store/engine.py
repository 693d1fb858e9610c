"""Connecting to the database: SQLite by default, PostgreSQL (psycopg 3) in production.

SQLite gets what concurrent writers need (WAL, a busy timeout) and foreign keys; a plain
`postgresql://` URL is read as `postgresql+psycopg://`. Passwords never leave this module in
an error message.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import UserError
from ..redact import redact_text, redact_url

SQLITE_BUSY_MS = 60_000
T = TypeVar("T")
log = logging.getLogger(__name__)


def database_url(url: str) -> URL:
    """The SQLAlchemy URL for `url`, the driver made explicit."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UserError(f"not a database URL: {redact_url(url)!r}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise UserError(f"{redact_url(url)}: only SQLite and PostgreSQL databases are supported")
    return parsed


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL; None for PostgreSQL and in-memory SQLite."""
    parsed = database_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


# The files SQLite keeps beside a database in WAL mode (and in rollback mode).
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


def check_exists(url: str) -> None:
    """Reading a database never creates one: a SQLite file that is not there is an error."""
    file = sqlite_file(url)
    if file is not None and not file.is_file():
        raise UserError(f"database {redact_url(url)}: no such file (nothing recorded there yet)")


def make_engine(url: str) -> Engine:
    parsed = database_url(url)
    if parsed.get_backend_name() == "sqlite":
        if file := sqlite_file(url):
            file.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        f"busy_timeout={SQLITE_BUSY_MS}",
        "foreign_keys=ON",
        "synchronous=NORMAL",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Driver errors as one line naming the database, its password hidden."""
    try:
        yield
    except DBAPIError as error:
        reason = str(error.orig).strip().splitlines()
        message = reason[0] if reason else type(error.orig).__name__
        conflict = _is_conflict(error)
        unreachable = not conflict and (
            isinstance(error, OperationalError) or error.connection_invalidated
        )
        text = redact_text(f"database {redact_url(url)}: {message}", url)
        raise DatabaseError(text, unreachable=unreachable, conflict=conflict) from None
    except SQLAlchemyError as error:
        message = str(error).strip().splitlines()[0]
        raise DatabaseError(redact_text(f"database {redact_url(url)}: {message}", url)) from None


# PostgreSQL's serialization failure and deadlock: the transaction was aborted to let another
# one through, and is worth running again at once.
CONFLICT_SQLSTATES = ("40001", "40P01")


def _is_conflict(error: DBAPIError) -> bool:
    if getattr(error.orig, "sqlstate", None) in CONFLICT_SQLSTATES:
        return True
    return "database is locked" in str(error.orig)  # SQLite gave up waiting for its lock


class DatabaseError(UserError):
    """The database cannot be reached (`unreachable`: worth trying again after a while),
    aborted the transaction for another one (`conflict`: worth running again at once), or
    refused an operation."""

    def __init__(self, message: str, unreachable: bool = False, conflict: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable
        self.conflict = conflict


def patiently(operation: Callable[[], T], patience: float, what: str) -> T:
    """`operation()`, tried again (waits of 1, 2, 4 ... up to 30 s) while the database is
    unreachable, for up to `patience` seconds; then its error."""
    deadline, wait = time.monotonic() + patience, 1.0
    while True:
        try:
            return operation()
        except DatabaseError as error:
            if not error.unreachable or time.monotonic() + wait > deadline:
                raise
            log.warning("%s: %s; trying again in %.0f s", what, error, wait)
            time.sleep(wait)
            wait = min(2 * wait, 30.0)
