"""Durable storage: SQLite in WAL mode with synchronous=FULL, one writer thread.

Every change goes through :meth:`Store.write`, which runs it in the writer
thread inside a transaction and returns once that transaction is committed,
that is once SQLite has fsync()ed the write-ahead log. Changes that arrive
while a commit is under way are committed together by the next one (group
commit): one fsync serves many notifications, and none is answered before its
own data is on disk. Reads run in a small pool of threads with connections of
their own, beside the writer (WAL lets readers and one writer work at once).

Tables:

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
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from alert_relay.payload import Notification, format_time

log = logging.getLogger(__name__)

T = TypeVar("T")

DATABASE = "relay.db"
SCHEMA_VERSION = 1
_BATCH = 512  # most changes one commit takes

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE notifications (
  id INTEGER PRIMARY KEY,
  receiver TEXT NOT NULL,
  received_at REAL NOT NULL,
  status TEXT NOT NULL,
  group_key TEXT NOT NULL,
  context TEXT NOT NULL
);
CREATE INDEX notifications_received ON notifications (received_at);
CREATE TABLE alerts (
  id INTEGER PRIMARY KEY,
  notification_id INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
  alertname TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  status TEXT NOT NULL,
  starts_at TEXT NOT NULL,
  ends_at TEXT NOT NULL,
  alert TEXT NOT NULL
);
CREATE INDEX alerts_notification ON alerts (notification_id);
CREATE TABLE deliveries (
  id INTEGER PRIMARY KEY,
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
);
CREATE INDEX deliveries_alert ON deliveries (alert_id);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_queue ON deliveries (target, created_at) WHERE state = 'pending';
CREATE INDEX deliveries_order ON deliveries (target, fingerprint, id) WHERE state = 'pending';
CREATE INDEX deliveries_running ON deliveries (target) WHERE state = 'running';
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


class StorageError(Exception):
    """The database could not be opened or written."""


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


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; the writer says BEGIN itself.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=True, timeout=30)
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
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="sqlite-writer", daemon=True)
        self._writer.start()
        self._local = threading.local()
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-reader")

    def _initialise(self) -> str:
        """Create or check the schema; returns this database's random instance id."""
        created = not os.path.exists(self.path)
        conn = _connect(self.path)
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

    # --- The writer ---------------------------------------------------------------------------

    def _write_loop(self) -> None:
        conn = _connect(self.path)
        conn.execute("PRAGMA synchronous = FULL")  # WAL fsync()ed at every commit
        conn.execute("PRAGMA foreign_keys = ON")
        while True:
            job = self._jobs.get()
            if job is None:
                break
            batch = [job]
            while len(batch) < _BATCH:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)  # stop after this batch
                    break
                batch.append(more)
            self._commit(conn, batch)
        conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
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
                        log.error("cannot write to %s: %s", self.path, err)
                        err = StorageError(f"cannot write: {err}")
                    outcomes.append((job, None, err))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((job, result, None))
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            log.error("cannot commit to %s: %s", self.path, err)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            failure = StorageError(f"cannot commit: {err}")
            outcomes = [(job, None, failure) for job in batch]
        by_loop: dict[asyncio.AbstractEventLoop | None, list[Any]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].loop, []).append(outcome)
        for loop, done in by_loop.items():
            if loop is None:
                _settle(done)
            else:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    loop.call_soon_threadsafe(_settle, done)

    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in a transaction; returns once it is committed (durable)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(work, loop, future))
        return await future

    def write_blocking(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """:meth:`write` for code outside the event loop (tests, tools)."""
        done = threading.Event()
        holder: dict[str, Any] = {}

        def record(result: Any, error: BaseException | None) -> None:
            holder.update(result=result, error=error)
            done.set()

        self._jobs.put(_Job(work, None, record))
        done.wait()
        if holder["error"] is not None:
            raise holder["error"]
        return holder["result"]

    # --- Readers ------------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
        return conn

    def read_blocking(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on this thread's read connection, in one read transaction."""
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            return work(conn)
        finally:
            conn.execute("COMMIT")

    async def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self.read_blocking, work)

    def close(self) -> None:
        self._jobs.put(None)
        self._writer.join(timeout=30)
        self._readers.shutdown(wait=True)

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
    loop: asyncio.AbstractEventLoop | None
    # An asyncio future (loop set) or a callback(result, error) (loop None).
    waiter: Any


def _settle(done: list[tuple[_Job, Any, BaseException | None]]) -> None:
    for job, result, error in done:
        if job.loop is None:
            job.waiter(result, error)
        elif not job.waiter.done():
            if error is not None:
                job.waiter.set_exception(error)
            else:
                job.waiter.set_result(result)


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
            repeat = (
                seen is not None
                and forward_repeats
                and seen[2] not in ("pending", "running")
                and now - seen[1] >= repeat_min_interval
            )
            if seen is not None and not repeat:
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


# --- Queries the dispatcher, the metrics and the API run (on a read connection) ---------------


def due_deliveries(
    conn: sqlite3.Connection, now: float, busy: Iterable[int], full: Iterable[str], limit: int
) -> list[Due]:
    """Pending deliveries due by ``now``, oldest first, at most one per (target, fingerprint):
    an alert's later delivery (its resolution) never overtakes an earlier one (its firing)."""
    rows = conn.execute(
        "SELECT d.id, d.target, d.attempts, d.created_at, n.receiver, n.received_at, a.alert,"
        " n.context FROM deliveries d"
        " JOIN alerts a ON a.id = d.alert_id JOIN notifications n ON n.id = a.notification_id"
        " WHERE d.state = 'pending' AND d.next_attempt_at <= ?"
        " AND d.id NOT IN (SELECT value FROM json_each(?))"
        " AND d.target NOT IN (SELECT value FROM json_each(?))"
        " AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.state = 'pending'"
        "   AND e.target = d.target AND e.fingerprint = d.fingerprint AND e.id < d.id)"
        " ORDER BY d.next_attempt_at, d.id LIMIT ?",
        (now, json.dumps(list(busy)), json.dumps(list(full)), limit),
    ).fetchall()
    return [
        Due(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]), json.loads(row[7]))
        for row in rows
    ]


def next_due_after(conn: sqlite3.Connection, now: float) -> float | None:
    row = conn.execute(
        "SELECT min(next_attempt_at) FROM deliveries WHERE state = 'pending'"
        " AND next_attempt_at > ?",
        (now,),
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
    now: float,
    next_attempt_at: float,
    status: int | None,
    error: str,
    output: str | None = None,
    counted: bool = True,
) -> None:
    conn.execute(
        "UPDATE deliveries SET state = 'pending', attempts = attempts + ?, last_attempt_at = ?,"
        " next_attempt_at = ?, last_status = ?, last_error = ?, output = ? WHERE id = ?",
        (1 if counted else 0, now, next_attempt_at, status, error, output, delivery_id),
    )


def mark_given_up(
    conn: sqlite3.Connection,
    delivery_id: int,
    state: str,
    now: float,
    status: int | None,
    error: str,
    body: str | None,
    output: str | None = None,
    counted: bool = True,
) -> None:
    """``dead`` (a destination: also a dead letter with the body) or ``failed`` (a hook)."""
    conn.execute(
        "UPDATE deliveries SET state = ?, attempts = attempts + ?, last_attempt_at = ?,"
        " done_at = ?, next_attempt_at = NULL, last_status = ?, last_error = ?, output = ?"
        " WHERE id = ?",
        (state, 1 if counted else 0, now, now, status, error, output, delivery_id),
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


def prune(conn: sqlite3.Connection, cutoff: float, batch: int = 2000) -> int:
    """Remove up to ``batch`` notifications received before ``cutoff`` (with their alerts,
    deliveries and dead letters) that have nothing pending; returns how many."""
    removed = conn.execute(
        "DELETE FROM notifications WHERE id IN (SELECT n.id FROM notifications n"
        " WHERE n.received_at < ? AND NOT EXISTS (SELECT 1 FROM alerts a"
        "  JOIN deliveries d ON d.alert_id = a.id"
        "  WHERE a.notification_id = n.id AND d.state IN ('pending', 'running'))"
        " ORDER BY n.received_at LIMIT ?)",
        (cutoff, batch),
    ).rowcount
    if removed < batch:
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
