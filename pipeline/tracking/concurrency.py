"""Waiting out a busy tracking store: the helpers the retrying client (`client.py`) builds on.

Many jobs writing to one store meet three kinds of trouble, and all go away by waiting: SQLite's
lock contention ("database is locked" once SQLite's busy timeout, 20 s in MLflow, runs out), a
tracking server or PostgreSQL backend that restarts or is overloaded (connection refused or reset,
HTTP 429/502/503/504), and two jobs inserting the same data set row at once (the loser's
transaction is rolled back whole, and its retry finds the winner's row). `transient` recognises
them, `delay` spaces the retries, `file_lock` serialises what SQLite cannot take from several
processes at once (creating and migrating a fresh store), and `use_wal` switches a SQLite file to
write-ahead logging, where readers never wait for the writer. No MLflow imports here.
"""

from __future__ import annotations

import contextlib
import fcntl
import random
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

# Errors that waiting cures, as their messages read at any level of wrapping (MLflow wraps the
# driver's error in its own, the REST client wraps the requests error in a string).
_TRANSIENT = re.compile(
    "|".join(
        [
            # SQLite: SQLITE_BUSY / SQLITE_LOCKED after the busy timeout
            r"database is locked",
            r"database is busy",
            r"database table is locked",
            # a tracking server that restarts, or is overloaded
            r"connection refused",
            r"connection reset",
            r"connection aborted",
            r"remote end closed connection",
            r"read timed out",
            r"failed with error code (429|502|503|504)\b",
            r"too many (429|502|503|504) error responses",
            # PostgreSQL restarting or dropping connections
            r"could not connect to server",
            r"server closed the connection unexpectedly",
            r"terminating connection due to administrator command",
            r"the database system is (starting up|shutting down|in recovery mode)",
            r"could not serialize access",
            # Two jobs of a sweep logging the same data set: MLflow looks the (experiment, name,
            # digest) row up, then inserts it, in one transaction; the job that loses the race
            # has its whole transaction rolled back, and its retry finds the other's row.
            r"duplicate key value violates unique constraint \"dataset_pk\"",  # PostgreSQL
            r"UNIQUE constraint failed: datasets\.",  # SQLite
            r"Violation of PRIMARY KEY constraint 'dataset_pk'",  # SQL Server
            # MySQL and MariaDB name the key PRIMARY (8.0.19+: datasets.PRIMARY), not the table:
            # the statement MLflow's message quotes says which
            r"Duplicate entry '[^']*' for key '(datasets\.)?PRIMARY'[\s\S]*INSERT INTO datasets\b",
        ]
    ),
    re.IGNORECASE,
)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an error's message, shortened: for one-line reports."""
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def transient(error: BaseException) -> str | None:
    """A one-line reason when `error` (or an error it wraps) is one that waiting can cure, else None."""
    for e in _chain(error):
        if isinstance(e, ConnectionError):  # refused, reset, aborted, broken pipe
            return first_line(e)
        if match := _TRANSIENT.search(str(e)):
            return match.group(0).splitlines()[0]  # (a pattern may run on into the quoted SQL)
    return None


def delay(attempt: int, first: float = 0.25, cap: float = 15.0) -> float:
    """Seconds to wait before retry number `attempt` (0-based): doubling from `first` up to `cap`,
    times a random factor in [0.5, 1.5) so jobs that failed together do not retry together."""
    return min(cap, first * 2.0**attempt) * (0.5 + random.random())


@contextlib.contextmanager
def file_lock(path: Path, max_wait_s: float) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) across processes of this machine;
    TimeoutError after `max_wait_s` seconds of waiting for it."""
    start = time.monotonic()
    with open(path, "a") as f:
        attempt = 0
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - start > max_wait_s:
                    raise TimeoutError(f"{path} stayed locked for {max_wait_s:g} s") from None
                time.sleep(delay(attempt, first=0.02, cap=0.5))
                attempt += 1
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def use_wal(db: Path) -> str:
    """Put the SQLite file `db` (created if missing) in write-ahead-log mode; returns the mode now
    in effect. The mode is stored in the file, so this is needed once per store; while other
    processes hold the file open the switch may be refused, and the file keeps its mode."""
    con = sqlite3.connect(db, timeout=5)
    try:
        mode = con.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal":
            mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        return mode
    except sqlite3.OperationalError:  # busy: another process has the store open
        return "unchanged"
    finally:
        con.close()
