"""Durable storage: SQLite in WAL mode with synchronous=FULL, one writer thread.

Every change goes through :meth:`Store.write`, which runs it in the writer
thread inside a transaction and returns once that transaction is committed,
that is once SQLite has fsync()ed the write-ahead log. Changes that arrive
while a commit is under way are committed together by the next one (group
commit): one fsync serves many notifications, and none is answered before its
own data is on disk. Reads run in a small pool of threads on connections of
their own, beside the writer (WAL lets readers and one writer work at once).

When the storage fails (disk full, I/O error, a file system remounted
read-only), every operation that fails raises StorageError and is counted
(:attr:`Store.failures`); the failure is logged once, when it starts, and once
more when a write succeeds again. After a failure every connection is closed
and opened again at its next use, so that a file system repaired and mounted
again at the same path is used without a restart (and an old one is not kept
busy). The database file is never created again after the start: a path whose
file system is not mounted fails instead of starting an empty database.

Tables (schema version 2):

- ``notifications``: one row per accepted webhook call (the receiver from the
  URL, when, the group's status and key, and the group context as JSON).
- ``alerts``: one row per alert of a notification, as received.
- ``deliveries``: one row per (alert, target): a destination's name or
  ``hook:<name>``. ``state`` is ``pending`` (to be sent, at ``next_attempt_at``),
  ``running`` (a hook whose attempt started), ``delivered``, ``dead`` (given up:
  see ``dead_letters``), ``failed`` (a hook whose attempts are used up) or
  ``duplicate`` (this alert was already forwarded to this target: see
  ``duplicate_of``).
- ``forwarded_keys``: per target, each (fingerprint, status, startsAt) that was
  queued, with its latest delivery: what makes a resent alert a duplicate.
- ``dead_letters``: deliveries given up, with the reason and the body that
  was not delivered.
- ``meta``: the random instance id of the idempotency keys.

The ids of notifications, alerts and deliveries are AUTOINCREMENT: never given
twice, even after pruning emptied a table (a delivery's id is part of its
Idempotency-Key, a notification's the history API's page cursor). Version 1
lacked that; it is migrated at start, its data kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import secrets
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from alert_relay.payload import Notification, format_time

log = logging.getLogger(__name__)

T = TypeVar("T")

DATABASE = "relay.db"
SCHEMA_VERSION = 2
_BATCH = 512  # most changes one commit takes
PRUNE_BATCH = 2000  # notifications one pruning transaction removes, at most
# Free pages one incremental_vacuum transaction gives back (16 MiB of 4 KiB pages): the
# writer is not held for long, and webhooks are committed between the steps.
VACUUM_STEP_PAGES = 4096
# The write-ahead log is cut back to this size when it restarts: after a large prune it
# would otherwise keep its largest size on disk.
_WAL_SIZE_LIMIT = 8 << 20

# The tables whose ids SQLite gives out, with their indexes: AUTOINCREMENT since version 2.
_COUNTED_TABLES = {
    "notifications": """(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  receiver TEXT NOT NULL,
  received_at REAL NOT NULL,
  status TEXT NOT NULL,
  group_key TEXT NOT NULL,
  context TEXT NOT NULL
)""",
    "alerts": """(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  notification_id INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
  alertname TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  status TEXT NOT NULL,
  starts_at TEXT NOT NULL,
  ends_at TEXT NOT NULL,
  alert TEXT NOT NULL
)""",
    "deliveries": """(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  alert_id INTEGER NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
  target TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  state TEXT NOT NULL,
  duplicate_of INTEGER,
  attempts INTEGER NOT NULL DEFAULT 0,
  created_at REAL NOT NULL,
  next_attempt_at REAL,
  last_attempt_at REAL,
  done_at REAL,
  last_status INTEGER,
  last_error TEXT,
  output TEXT
)""",
}
_COUNTED_INDEXES = """
CREATE INDEX notifications_received ON notifications (received_at);
CREATE INDEX alerts_notification ON alerts (notification_id);
CREATE INDEX deliveries_alert ON deliveries (alert_id);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_queue ON deliveries (target, created_at) WHERE state = 'pending';
CREATE INDEX deliveries_order ON deliveries (target, fingerprint, id) WHERE state = 'pending';
CREATE INDEX deliveries_running ON deliveries (target) WHERE state = 'running';
"""
_OTHER_TABLES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE forwarded_keys (
  target TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  status TEXT NOT NULL,
  starts_at TEXT NOT NULL,
  delivery_id INTEGER NOT NULL,
  queued_at REAL NOT NULL,
  last_seen_at REAL NOT NULL,
  PRIMARY KEY (target, fingerprint, status, starts_at)
) WITHOUT ROWID;
CREATE INDEX forwarded_keys_seen ON forwarded_keys (last_seen_at);
CREATE TABLE dead_letters (
  delivery_id INTEGER PRIMARY KEY REFERENCES deliveries (id) ON DELETE CASCADE,
  target TEXT NOT NULL,
  died_at REAL NOT NULL,
  reason TEXT NOT NULL,
  body TEXT NOT NULL
);
CREATE INDEX dead_letters_died ON dead_letters (died_at);
"""
_SCHEMA = (
    "".join(f"CREATE TABLE {name} {columns};\n" for name, columns in _COUNTED_TABLES.items())
    + _COUNTED_INDEXES
    + _OTHER_TABLES
)


class StorageError(Exception):
    """The database could not be opened, read or written."""


@dataclass(frozen=True)
class Accepted:
    notification_id: int
    queued: int  # deliveries queued
    duplicates: dict[str, int]  # per target: alerts not queued again


@dataclass(frozen=True)
class Due:
    """A delivery to attempt now, with what its body is built from."""

    id: int
    target: str
    attempts: int
    created_at: float
    receiver: str
    received_at: float
    alert: dict[str, Any]
    context: dict[str, Any]


@dataclass(frozen=True)
class QueueStats:
    depth: dict[str, int]
    oldest: dict[str, float]  # created_at of the oldest pending delivery per target


def _connect(path: str, create: bool = False) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; the writer says BEGIN itself.
    # mode=rw after the start: a missing file (its file system not mounted) is an error,
    # not a new empty database. check_same_thread=False: a reader's connection may be
    # closed by another thread after a failure (never used by two at once).
    mode = "rwc" if create else "rw"
    conn = sqlite3.connect(
        f"file:{urllib.parse.quote(path)}?mode={mode}",
        uri=True,
        isolation_level=None,
        check_same_thread=False,
        timeout=30,
    )
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


class Store:
    """The database of one relay; see the module's docstring."""

    def __init__(self, directory: str, readers: int = 2) -> None:
        self.path = os.path.join(directory, DATABASE)
        try:
            os.makedirs(directory, exist_ok=True)
            self.instance_id = self._initialise()
        except (OSError, sqlite3.Error) as err:
            raise StorageError(f"cannot open {self.path}: {err}") from err
        self._health = threading.Lock()  # guards failures, failing_since, _generation, _idle
        self.failures = 0  # operations that failed since the start
        self.failing_since: float | None = None  # time.time() of this failure's start
        self._episode_failures = 0
        self._generation = 0  # raised at each failure: older connections are closed
        self._idle: list[tuple[sqlite3.Connection, int]] = []  # read connections, generation
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="sqlite-writer", daemon=True)
        self._writer.start()
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-reader")

    def _initialise(self) -> str:
        """Create, check or migrate the schema; returns this database's random instance id."""
        created = not os.path.exists(self.path)
        conn = _connect(self.path, create=True)
        try:
            if created:
                # Must precede the first table: freed pages can then be returned to the OS.
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StorageError(f"{self.path}: cannot use WAL mode (got {mode})")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                # One transaction: a crash while creating leaves no half schema behind.
                conn.executescript(
                    f"BEGIN IMMEDIATE;\n{_SCHEMA}"
                    f"INSERT INTO meta VALUES ('instance_id', '{secrets.token_hex(8)}');\n"
                    f"PRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;"
                )
            elif version == 1:
                _migrate_from_1(conn)
                log.info("%s: migrated from schema version 1 to %d", self.path, SCHEMA_VERSION)
            elif version != SCHEMA_VERSION:
                raise StorageError(
                    f"{self.path}: schema version {version}, this relay knows {SCHEMA_VERSION}"
                )
            instance = conn.execute("SELECT value FROM meta WHERE key = 'instance_id'").fetchone()
        finally:
            conn.close()
        if created:
            # The new file's directory entry must survive a crash too.
            fd = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return str(instance[0])

    # --- Health -------------------------------------------------------------------------------

    @property
    def failing(self) -> bool:
        """True from a failed operation until a write succeeds again."""
        return self.failing_since is not None

    def _failed(self, what: str, err: BaseException, operations: int = 1) -> StorageError:
        """Count a failure; log it when it starts a failing episode; close idle connections."""
        with self._health:
            self.failures += operations
            self._episode_failures += operations
            self._generation += 1
            idle, self._idle = self._idle, []
            starts = self.failing_since is None
            if starts:
                self.failing_since = time.time()
        for conn, _generation in idle:
            conn.close()
        if starts:
            log.error(
                "storage failing: cannot %s %s: %s (not logged again until it works)",
                what,
                self.path,
                err,
            )
        return StorageError(f"cannot {what}: {err}")

    def _succeeded(self) -> None:
        """A write was committed: the storage works (again)."""
        if self.failing_since is None:
            return
        with self._health:
            since, failures = self.failing_since, self._episode_failures
            self.failing_since, self._episode_failures = None, 0
        if since is not None:
            log.warning(
                "storage works again, after %d failed operations in %.0f s",
                failures,
                time.time() - since,
            )

    # --- The writer ---------------------------------------------------------------------------

    def _open_writer(self) -> sqlite3.Connection:
        conn = _connect(self.path)
        try:
            conn.execute("PRAGMA synchronous = FULL")  # WAL fsync()ed at every commit
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _write_loop(self) -> None:
        conn: sqlite3.Connection | None = None
        waiting: _Job | None = None  # a job that must run alone, met while batching
        while True:
            job = waiting or self._jobs.get()
            waiting = None
            if job is None:
                break
            batch = [job]
            while not job.alone and len(batch) < _BATCH:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)  # stop after this batch
                    break
                if more.alone:
                    waiting = more
                    break
                batch.append(more)
            if conn is None:
                try:
                    conn = self._open_writer()
                except sqlite3.Error as err:
                    failure = self._failed("open", err, len(batch))
                    _settle_everywhere([(j, None, failure) for j in batch])
                    continue
            committed = self._run_alone(conn, job) if job.alone else self._commit(conn, batch)
            if not committed:
                # Opened again at the next job: a file system repaired and mounted again
                # is then used, and the broken one is not kept busy.
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> bool:
        """Run a batch of jobs in one transaction; True when it was committed without a
        storage failure."""
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        failed = 0
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                # A savepoint each: one job's failure does not undo the others.
                conn.execute("SAVEPOINT job")
                try:
                    result = job.work(conn)
                except Exception as err:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    if isinstance(err, sqlite3.Error):  # the database's failure, not the job's
                        failed += 1
                        err = self._failed("write", err)
                    outcomes.append((job, None, err))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((job, result, None))
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            # Every job of the batch is undone, those counted above included.
            failure = self._failed("commit", err, len(batch) - failed)
            outcomes = [(job, None, failure) for job in batch]
            failed = len(batch)
        if not failed:
            self._succeeded()
        _settle_everywhere(outcomes)
        return failed == 0

    def _run_alone(self, conn: sqlite3.Connection, job: _Job) -> bool:
        """A job that manages its own transaction (autocommit: a PRAGMA such as
        incremental_vacuum or wal_checkpoint), so that its failure undoes nothing else."""
        try:
            result = job.work(conn)
        except sqlite3.Error as err:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            _settle_everywhere([(job, None, self._failed("write", err))])
            return False
        except Exception as err:
            _settle_everywhere([(job, None, err)])
            return True
        self._succeeded()
        _settle_everywhere([(job, result, None)])
        return True

    def submit(
        self, work: Callable[[sqlite3.Connection], T], alone: bool = False
    ) -> asyncio.Future[T]:
        """Queue ``work`` now (jobs are committed in the order they were queued); the future
        is done once it is committed (durable). ``alone``: run outside the group commit, in
        autocommit mode, for statements that make their own transaction."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(work, loop, future, alone))
        return future

    async def write(self, work: Callable[[sqlite3.Connection], T], alone: bool = False) -> T:
        """Run ``work`` in a transaction; returns once it is committed (durable)."""
        return await self.submit(work, alone)

    async def reclaim_space(self) -> int:
        """Give the pages that deletions freed back to the file system; returns how many.

        Each step is a transaction of its own, outside the group commit
        (``PRAGMA incremental_vacuum`` makes its own), so that its failure
        undoes nothing else; then a checkpoint lets SQLite cut the database
        file down.
        """
        freed = 0
        while True:
            step = await self.write(_vacuum_step, alone=True)
            freed += step
            if step < VACUUM_STEP_PAGES:
                break
        await self.write(_checkpoint, alone=True)
        return freed

    # --- Readers ------------------------------------------------------------------------------

    def _borrow_reader(self) -> tuple[sqlite3.Connection, int]:
        with self._health:
            if self._idle:
                return self._idle.pop()
            generation = self._generation
        conn = _connect(self.path)
        try:
            conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error:
            conn.close()
            raise
        return conn, generation

    def _give_back(self, conn: sqlite3.Connection, generation: int) -> None:
        with self._health:
            # While the storage fails, no connection stays open between uses: an operator
            # must be able to unmount the broken file system.
            if generation == self._generation and self.failing_since is None:
                self._idle.append((conn, generation))
                return
        conn.close()

    def read_blocking(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on a read connection, in one read transaction."""
        try:
            conn, generation = self._borrow_reader()
        except sqlite3.Error as err:
            raise self._failed("open", err) from err
        try:
            conn.execute("BEGIN")
            try:
                result = work(conn)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as err:
            conn.close()
            raise self._failed("read", err) from err
        except BaseException:
            conn.close()
            raise
        self._give_back(conn, generation)
        return result

    async def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self.read_blocking, work)

    def close(self) -> None:
        self._jobs.put(None)
        self._writer.join(timeout=30)
        self._readers.shutdown(wait=True)
        with self._health:
            idle, self._idle = self._idle, []
        for conn, _generation in idle:
            conn.close()

    # --- What the relay asks ------------------------------------------------------------------

    async def accept(
        self,
        receiver: str,
        notification: Notification,
        targets: list[list[str]],
        now: float,
        forward_repeats: bool,
        repeat_min_interval: float,
    ) -> Accepted:
        """Store a notification and queue its alerts to their targets (``targets[i]``
        for ``notification.alerts[i]``); durable when this returns."""

        def work(conn: sqlite3.Connection) -> Accepted:
            return _accept(
                conn, receiver, notification, targets, now, forward_repeats, repeat_min_interval
            )

        return await self.write(work)


@dataclass
class _Job:
    work: Callable[[sqlite3.Connection], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    alone: bool = False


def _settle_everywhere(outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
    """Hand the outcomes to their event loops (from the writer thread)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Any, BaseException | None]]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, done in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(_settle, done)


def _settle(done: list[tuple[_Job, Any, BaseException | None]]) -> None:
    for job, result, error in done:
        if not job.future.done():
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)


def touch(conn: sqlite3.Connection) -> None:
    """A write that changes nothing: whether the storage takes writes again."""
    conn.execute("UPDATE meta SET value = value WHERE key = 'instance_id'")


def _vacuum_step(conn: sqlite3.Connection) -> int:
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    # incremental_vacuum frees one page per step of its statement, and a statement without
    # result columns is stepped only once by execute(): executescript() runs it to its end.
    conn.executescript(f"PRAGMA incremental_vacuum({VACUUM_STEP_PAGES})")
    return int(free - conn.execute("PRAGMA freelist_count").fetchone()[0])


def _checkpoint(conn: sqlite3.Connection) -> None:
    # PASSIVE: copies what no reader still needs, never waits for one. When it completes,
    # SQLite truncates the database file to its pages.
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _migrate_from_1(conn: sqlite3.Connection) -> None:
    """Schema version 1 -> 2: the counted tables rebuilt with AUTOINCREMENT, rows kept.

    SQLite cannot change a column in place: each table is copied into a new
    one, dropped and replaced (SQLite's documented 12-step procedure), in one
    transaction. The delivery counter starts above every delivery id still
    named anywhere (forwarded keys and dead letters outlive their rows).
    """
    conn.execute("PRAGMA foreign_keys = OFF")  # no cascades while tables are replaced
    conn.execute("BEGIN IMMEDIATE")
    try:
        for name, columns in _COUNTED_TABLES.items():
            conn.execute(f"CREATE TABLE {name}_v2 {columns}")
            conn.execute(f"INSERT INTO {name}_v2 SELECT * FROM {name}")
            conn.execute(f"DROP TABLE {name}")
            conn.execute(f"ALTER TABLE {name}_v2 RENAME TO {name}")
        for statement in filter(None, (s.strip() for s in _COUNTED_INDEXES.split(";"))):
            conn.execute(statement)
        floors = {
            "notifications": "SELECT max(id) FROM notifications",
            "alerts": "SELECT max(id) FROM alerts",
            "deliveries": "SELECT max(max(coalesce((SELECT max(id) FROM deliveries), 0),"
            " coalesce((SELECT max(delivery_id) FROM forwarded_keys), 0)),"
            " coalesce((SELECT max(delivery_id) FROM dead_letters), 0))",
        }
        for name, query in floors.items():
            floor = conn.execute(query).fetchone()[0] or 0
            conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", (name,))
            conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (name, floor))
        if conn.execute("PRAGMA foreign_key_check").fetchall():
            raise StorageError("migration from schema version 1: foreign keys do not hold")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    # The old tables' pages are free now: give them back (see _vacuum_step).
    conn.executescript("PRAGMA incremental_vacuum")


def _accept(
    conn: sqlite3.Connection,
    receiver: str,
    notification: Notification,
    targets: list[list[str]],
    now: float,
    forward_repeats: bool,
    repeat_min_interval: float,
) -> Accepted:
    cursor = conn.execute(
        "INSERT INTO notifications (receiver, received_at, status, group_key, context)"
        " VALUES (?, ?, ?, ?, ?)",
        (
            receiver,
            now,
            notification.status,
            notification.group_key,
            json.dumps(notification.context(), separators=(",", ":")),
        ),
    )
    notification_id = cursor.lastrowid
    queued = 0
    duplicates: dict[str, int] = {}
    for alert, alert_targets in zip(notification.alerts, targets, strict=True):
        alert_id = conn.execute(
            "INSERT INTO alerts (notification_id, alertname, fingerprint, status, starts_at,"
            " ends_at, alert) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                notification_id,
                alert.alertname,
                alert.fingerprint,
                alert.status,
                alert.starts_at,
                alert.ends_at,
                json.dumps(alert.as_json(), separators=(",", ":")),
            ),
        ).lastrowid
        for target in alert_targets:
            key = (target, alert.fingerprint, alert.status, alert.starts_at)
            seen = conn.execute(
                "SELECT k.delivery_id, k.queued_at, d.state FROM forwarded_keys k"
                " LEFT JOIN deliveries d ON d.id = k.delivery_id"
                " WHERE k.target = ? AND k.fingerprint = ? AND k.status = ? AND k.starts_at = ?",
                key,
            ).fetchone()
            if seen is not None and not _queue_again(
                seen[2], now - seen[1], forward_repeats, repeat_min_interval
            ):
                conn.execute(
                    "INSERT INTO deliveries (alert_id, target, fingerprint, state, duplicate_of,"
                    " created_at, done_at) VALUES (?, ?, ?, 'duplicate', ?, ?, ?)",
                    (alert_id, target, alert.fingerprint, seen[0], now, now),
                )
                conn.execute(
                    "UPDATE forwarded_keys SET last_seen_at = ? WHERE target = ?"
                    " AND fingerprint = ? AND status = ? AND starts_at = ?",
                    (now, *key),
                )
                duplicates[target] = duplicates.get(target, 0) + 1
                continue
            delivery_id = conn.execute(
                "INSERT INTO deliveries (alert_id, target, fingerprint, state, created_at,"
                " next_attempt_at) VALUES (?, ?, ?, 'pending', ?, ?)",
                (alert_id, target, alert.fingerprint, now, now),
            ).lastrowid
            conn.execute(
                "INSERT INTO forwarded_keys (target, fingerprint, status, starts_at, delivery_id,"
                " queued_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO UPDATE SET delivery_id = excluded.delivery_id,"
                " queued_at = excluded.queued_at, last_seen_at = excluded.last_seen_at",
                (*key, delivery_id, now, now),
            )
            queued += 1
    assert notification_id is not None
    return Accepted(notification_id, queued, duplicates)


def _queue_again(
    state: str | None, since_queued: float, forward_repeats: bool, repeat_min_interval: float
) -> bool:
    """Whether an alert whose key was queued before (its delivery now in ``state``, None when
    pruned) is queued again rather than recorded as a duplicate.

    Never while that delivery is under way, nor sooner than repeat_min_interval after it was
    queued: Alertmanager's re-sends and retries, seconds to group_interval apart, are
    duplicates. After that, a repeat is queued when the receiver forwards repeats, and in
    any case when the earlier delivery ended dead or failed: the alert still fires and has
    not reached the target (a destination down longer than max_age).
    """
    if state in ("pending", "running") or since_queued < repeat_min_interval:
        return False
    return forward_repeats or state in ("dead", "failed")


# --- Queries the dispatcher, the metrics and the API run (on a read connection) ---------------


def _due(row: tuple[Any, ...]) -> Due:
    return Due(
        row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]), json.loads(row[7])
    )


_DUE_COLUMNS = (
    "SELECT d.id, d.target, d.attempts, d.created_at, n.receiver, n.received_at, a.alert,"
    " n.context FROM deliveries d"
    " JOIN alerts a ON a.id = d.alert_id JOIN notifications n ON n.id = a.notification_id"
)


def due_deliveries(
    conn: sqlite3.Connection,
    now: float,
    *,
    busy: Iterable[int],
    full: Iterable[str],
    held: Iterable[str],
    limit: int,
) -> list[Due]:
    """Pending deliveries due by ``now``, oldest first, at most one per (target, fingerprint):
    an alert's later delivery (its resolution) never overtakes an earlier one (its firing).
    Not those in ``busy``, nor any to the ``full`` targets, nor retries to the ``held``
    ones (their first attempts, yes)."""
    rows = conn.execute(
        _DUE_COLUMNS + " WHERE d.state = 'pending' AND d.next_attempt_at <= ?"
        " AND d.id NOT IN (SELECT value FROM json_each(?))"
        " AND d.target NOT IN (SELECT value FROM json_each(?))"
        " AND (d.attempts = 0 OR d.target NOT IN (SELECT value FROM json_each(?)))"
        " AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.state = 'pending'"
        "   AND e.target = d.target AND e.fingerprint = d.fingerprint AND e.id < d.id)"
        " ORDER BY d.next_attempt_at, d.id LIMIT ?",
        (now, json.dumps(list(busy)), json.dumps(list(full)), json.dumps(list(held)), limit),
    ).fetchall()
    return [_due(row) for row in rows]


def expired_deliveries(
    conn: sqlite3.Connection, target: str, queued_before: float, busy: Iterable[int], limit: int
) -> list[Due]:
    """Pending deliveries to ``target`` queued before ``queued_before`` (past their max_age)."""
    rows = conn.execute(
        _DUE_COLUMNS + " WHERE d.state = 'pending' AND d.target = ? AND d.created_at < ?"
        " AND d.id NOT IN (SELECT value FROM json_each(?))"
        " ORDER BY d.created_at LIMIT ?",
        (target, queued_before, json.dumps(list(busy)), limit),
    ).fetchall()
    return [_due(row) for row in rows]


def next_due_after(conn: sqlite3.Connection, now: float, held: Iterable[str] = ()) -> float | None:
    """When the next pending delivery falls due, those to the ``held`` targets aside."""
    row = conn.execute(
        "SELECT min(next_attempt_at) FROM deliveries WHERE state = 'pending'"
        " AND next_attempt_at > ? AND target NOT IN (SELECT value FROM json_each(?))",
        (now, json.dumps(list(held))),
    ).fetchone()
    return row[0]


def oldest_pending(conn: sqlite3.Connection, target: str) -> float | None:
    """created_at of the oldest delivery waiting for ``target``."""
    row = conn.execute(
        "SELECT min(created_at) FROM deliveries WHERE state = 'pending' AND target = ?",
        (target,),
    ).fetchone()
    return row[0]


def queue_stats(conn: sqlite3.Connection) -> QueueStats:
    rows = conn.execute(
        "SELECT target, count(*), min(created_at) FROM deliveries WHERE state = 'pending'"
        " GROUP BY target"
    ).fetchall()
    return QueueStats({r[0]: r[1] for r in rows}, {r[0]: r[2] for r in rows})


# --- Changes the dispatcher makes (in the writer) ---------------------------------------------


def mark_delivered(
    conn: sqlite3.Connection, delivery_id: int, now: float, status: int | None, output: str | None
) -> None:
    conn.execute(
        "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1,"
        " last_attempt_at = ?, done_at = ?, next_attempt_at = NULL, last_status = ?,"
        " last_error = NULL, output = ? WHERE id = ?",
        (now, now, status, output, delivery_id),
    )


def mark_retry(
    conn: sqlite3.Connection,
    delivery_id: int,
    *,
    now: float,
    next_attempt_at: float,
    status: int | None,
    error: str,
    output: str | None = None,
    counted: bool = True,
) -> None:
    """A failed attempt, tried again at ``next_attempt_at``. ``counted``: false for a hook,
    whose attempt was counted when it started."""
    conn.execute(
        "UPDATE deliveries SET state = 'pending', attempts = attempts + ?, last_attempt_at = ?,"
        " next_attempt_at = ?, last_status = ?, last_error = ?, output = ? WHERE id = ?",
        (1 if counted else 0, now, next_attempt_at, status, error, output, delivery_id),
    )


def mark_given_up(
    conn: sqlite3.Connection,
    delivery_id: int,
    *,
    state: str,
    now: float,
    status: int | None,
    error: str,
    body: str | None,
    output: str | None = None,
    counted: bool = True,
) -> None:
    """``dead`` (a destination: also a dead letter with the body) or ``failed`` (a hook).
    ``counted``: false when no attempt is made now (or a hook's, counted when it started)."""
    conn.execute(
        "UPDATE deliveries SET state = ?, attempts = attempts + ?, last_attempt_at ="
        " CASE WHEN ? THEN ? ELSE last_attempt_at END, done_at = ?, next_attempt_at = NULL,"
        " last_status = coalesce(?, last_status), last_error = ?, output = ? WHERE id = ?",
        (state, 1 if counted else 0, counted, now, now, status, error, output, delivery_id),
    )
    if body is not None:
        conn.execute(
            "INSERT INTO dead_letters (delivery_id, target, died_at, reason, body)"
            " SELECT id, target, ?, ?, ? FROM deliveries WHERE id = ?",
            (now, error, body, delivery_id),
        )


def pull_forward(conn: sqlite3.Connection, target: str, now: float) -> None:
    """Make every delivery waiting for ``target`` due now: it answered again."""
    conn.execute(
        "UPDATE deliveries SET next_attempt_at = ? WHERE state = 'pending' AND target = ?"
        " AND next_attempt_at > ?",
        (now, target, now),
    )


def mark_running(conn: sqlite3.Connection, delivery_id: int, now: float) -> None:
    """A hook's attempt starts: on disk first, so a crash during it is not run again unseen."""
    conn.execute(
        "UPDATE deliveries SET state = 'running', attempts = attempts + 1, last_attempt_at = ?"
        " WHERE id = ?",
        (now, delivery_id),
    )


def interrupted_hooks(conn: sqlite3.Connection) -> list[tuple[int, str, int, float]]:
    """Hook attempts a crash or stop interrupted: (id, target, attempts, created_at)."""
    return conn.execute(
        "SELECT id, target, attempts, created_at FROM deliveries WHERE state = 'running'"
    ).fetchall()


def shift_schedule(conn: sqlite3.Connection, seconds: float) -> int:
    """The wall clock jumped by ``seconds``: move what the queue's timing is measured from by
    as much, so that ages (max_age, repeat_min_interval) and waits stay what they were.
    Returns how many deliveries were moved."""
    moved = conn.execute(
        "UPDATE deliveries SET created_at = created_at + ?1,"
        " next_attempt_at = next_attempt_at + ?1 WHERE state IN ('pending', 'running')",
        (seconds,),
    ).rowcount
    conn.execute("UPDATE forwarded_keys SET queued_at = queued_at + ?", (seconds,))
    return moved


def prune(conn: sqlite3.Connection, cutoff: float) -> int:
    """Remove up to PRUNE_BATCH notifications received before ``cutoff`` (with their alerts,
    deliveries and dead letters) that have nothing pending; returns how many."""
    removed = conn.execute(
        "DELETE FROM notifications WHERE id IN (SELECT n.id FROM notifications n"
        " WHERE n.received_at < ? AND NOT EXISTS (SELECT 1 FROM alerts a"
        "  JOIN deliveries d ON d.alert_id = a.id"
        "  WHERE a.notification_id = n.id AND d.state IN ('pending', 'running'))"
        " ORDER BY n.received_at LIMIT ?)",
        (cutoff, PRUNE_BATCH),
    ).rowcount
    if removed < PRUNE_BATCH:
        conn.execute("DELETE FROM forwarded_keys WHERE last_seen_at < ?", (cutoff,))
    return removed


# --- History (the HTTP read API) --------------------------------------------------------------


def history(
    conn: sqlite3.Connection,
    since: float,
    until: float,
    receiver: str | None,
    after_id: int,
    limit: int,
) -> list[dict[str, Any]]:
    """Notifications received in [since, until), id above ``after_id``, oldest first, each
    with its alerts and every alert's deliveries."""
    rows = conn.execute(
        "SELECT id, receiver, received_at, status, group_key, context FROM notifications"
        " WHERE received_at >= ? AND received_at < ? AND id > ? AND (? IS NULL OR receiver = ?)"
        " ORDER BY id LIMIT ?",
        (since, until, after_id, receiver, receiver, limit),
    ).fetchall()
    if not rows:
        return []
    ids = json.dumps([r[0] for r in rows])
    alerts: dict[int, list[dict[str, Any]]] = {}
    by_alert: dict[int, dict[str, Any]] = {}
    for alert_id, notification_id, document in conn.execute(
        "SELECT id, notification_id, alert FROM alerts"
        " WHERE notification_id IN (SELECT value FROM json_each(?)) ORDER BY id",
        (ids,),
    ):
        entry = {**json.loads(document), "deliveries": []}
        by_alert[alert_id] = entry
        alerts.setdefault(notification_id, []).append(entry)
    for row in conn.execute(
        "SELECT d.alert_id, d.id, d.target, d.state, d.attempts, d.created_at,"
        " d.last_attempt_at, d.done_at, d.last_status, d.last_error, d.duplicate_of, d.output"
        " FROM deliveries d JOIN alerts a ON a.id = d.alert_id"
        " WHERE a.notification_id IN (SELECT value FROM json_each(?)) ORDER BY d.id",
        (ids,),
    ):
        by_alert[row[0]]["deliveries"].append(_delivery(row[1:]))
    return [
        {
            "id": r[0],
            "receiver": r[1],
            "receivedAt": format_time(r[2]),
            "status": r[3],
            "groupKey": r[4],
            **json.loads(r[5]),
            "alerts": alerts.get(r[0], []),
        }
        for r in rows
    ]


def _delivery(row: tuple[Any, ...]) -> dict[str, Any]:
    (delivery_id, target, state, attempts, created, last_attempt, done, status, error) = row[:9]
    duplicate_of, output = row[9], row[10]
    entry: dict[str, Any] = {
        "id": delivery_id,
        "target": target,
        "state": state,
        "attempts": attempts,
        "queuedAt": format_time(created),
        "lastAttemptAt": format_time(last_attempt),
        "deliveredAt": format_time(done) if state == "delivered" else None,
        "doneAt": format_time(done),
        "lastStatus": status,
        "lastError": error,
    }
    if duplicate_of is not None:
        entry["duplicateOf"] = duplicate_of
    if output is not None:
        entry["output"] = output
    return entry


def dead_letters(
    conn: sqlite3.Connection, since: float, until: float, after_id: int, limit: int
) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT l.delivery_id, l.target, l.died_at, l.reason, l.body, d.attempts, d.created_at"
        " FROM dead_letters l JOIN deliveries d ON d.id = l.delivery_id"
        " WHERE l.died_at >= ? AND l.died_at < ? AND l.delivery_id > ?"
        " ORDER BY l.delivery_id LIMIT ?",
        (since, until, after_id, limit),
    ).fetchall()
    return [
        {
            "deliveryId": r[0],
            "target": r[1],
            "diedAt": format_time(r[2]),
            "reason": r[3],
            "body": json.loads(r[4]),
            "attempts": r[5],
            "queuedAt": format_time(r[6]),
        }
        for r in rows
    ]
