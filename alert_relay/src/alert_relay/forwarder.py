"""Forwarding: the dispatcher that sends queued alerts to destinations and runs hooks.

A delivery is one alert for one target. The dispatcher picks the deliveries
that are due from the database (never two of one alert's deliveries to one
target at once, and the older first, so that a resolution never overtakes
its firing), sends each, and records the outcome before it lets go of it.
A failed attempt is retried with exponential backoff and jitter, capped at
``max_backoff``, until ``max_age`` after the alert was queued (the last try
falls on that instant); then the delivery is a dead letter. While a
destination fails, it gets one attempt at a time: a new alert's first
attempt at once, a retry only at the destination's next probe time (a
backoff of its own), however many alerts wait for it; those that reach
``max_age`` meanwhile are dead letters without an attempt of their own. When
it answers again, everything waiting for it is made due at once, rather than
each alert at its own next retry.

The outcome of each attempt is committed before the delivery is let go.
When the storage fails, an outcome that cannot be written is kept in memory
(the delivery is not attempted again: a success would be sent twice), no
attempt starts, and a write is tried now and then, with a growing delay; when
one succeeds, the outcomes are written and the dispatcher resumes.

A jump of the wall clock (seen against CLOCK_BOOTTIME) shifts the queue's
schedule by as much: a day forward does not make every queued alert a day
older (dead at once), a day back does not make them wait a day.

Hooks are deliveries too: an attempt is recorded as started before the
process runs, so a crash during a hook never makes it run again unless
``max_attempts`` allows another attempt.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import os
import random
import signal
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from alert_relay import __version__
from alert_relay.config import Config, Destination, Hook, Retry, SecretError
from alert_relay.metrics import RelayMetrics
from alert_relay.payload import format_time
from alert_relay.store import (
    Due,
    StorageError,
    Store,
    due_deliveries,
    expired_deliveries,
    interrupted_hooks,
    mark_delivered,
    mark_given_up,
    mark_retry,
    mark_running,
    next_due_after,
    oldest_pending,
    pull_forward,
    shift_schedule,
    touch,
)

log = logging.getLogger(__name__)

_INTERRUPTED = "interrupted by a stop or crash of the relay"
# What a hook's environment holds besides its ALERT_RELAY_* variables: nothing of the relay's.
HOOK_PATH = "/usr/local/bin:/usr/bin:/bin"
HOOK_OUTPUT_BYTES = 4096  # the tail of a hook's output kept in the history
_IDLE_WAKE = 30.0  # seconds between scans when nothing is due and nothing happens
_UNKNOWN_TARGET_SLOTS = 8  # deliveries of unconfigured targets handled per scan
_EXPIRE_BATCH = 500  # alerts of a failing destination given up per scan, at most
_DEAD_LETTERS_LOGGED = 5  # dead letters logged one by one per scan; the rest in one line
CLOCK_JUMP = 60.0  # a step of the wall clock this large (seconds) shifts the schedule
# While the storage fails, a write is tried after 1 s, then 2, 4, ... up to 30 s apart.
STORAGE_RETRY_FIRST = 1.0
STORAGE_RETRY_MAX = 30.0


@dataclass(frozen=True)
class Attempt:
    result: str  # metrics.FORWARD_RESULTS or metrics.HOOK_RESULTS
    status: int | None = None  # HTTP status, or a hook's exit code
    error: str | None = None
    output: str | None = None

    @property
    def ok(self) -> bool:
        return self.result == "success"


def backoff_delay(retry: Retry, failures: int, rng: random.Random) -> float:
    """The wait after ``failures`` failed attempts: exponential from initial_backoff, capped
    at max_backoff, with "equal jitter" (half the delay fixed, half random) so that many
    alerts failing together do not come back together."""
    delay = min(retry.max_backoff, retry.initial_backoff * 2.0 ** min(failures - 1, 62))
    return delay / 2 + rng.uniform(0, delay / 2)


def next_attempt_at(
    retry: Retry, attempts: int, created_at: float, now: float, rng: random.Random
) -> float | None:
    """When to try again after ``attempts`` failed attempts; None: give up (max_age reached).
    The last attempt is made at max_age after the alert was queued."""
    deadline = created_at + retry.max_age
    if now >= deadline:
        return None
    return min(now + backoff_delay(retry, attempts, rng), deadline)


def delivery_body(due: Due) -> bytes:
    """What is posted to a destination and given to a hook on stdin: one alert with the
    notification's context."""
    document = {
        "version": "1",
        "receiver": due.receiver,
        "receivedAt": format_time(due.received_at),
        "alert": due.alert,
        **due.context,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _header_value(secret_text: str, where: str) -> str:
    if "\r" in secret_text or "\n" in secret_text:
        raise SecretError(f"{where} holds more than one line")
    return secret_text


def request_headers(destination: Destination, body: bytes, idempotency_key: str) -> dict[str, str]:
    """The headers of a forwarding request; raises SecretError when a secret file fails."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"alert-relay/{__version__}",
        # The same for every attempt of one delivery: a destination that saw it can drop it.
        "Idempotency-Key": idempotency_key,
        **destination.headers,
    }
    for name, secret in destination.header_files.items():
        headers[name] = _header_value(secret.text(), secret.path)
    if destination.bearer_token_file is not None:
        token = destination.bearer_token_file
        headers["Authorization"] = "Bearer " + _header_value(token.text(), token.path)
    if destination.basic_auth_password_file is not None:
        assert destination.basic_auth_username is not None
        password = destination.basic_auth_password_file.text()
        headers["Authorization"] = aiohttp.BasicAuth(
            destination.basic_auth_username, password
        ).encode()
    if destination.hmac_key_file is not None:
        digest = hmac.new(destination.hmac_key_file.read(), body, hashlib.sha256).hexdigest()
        headers[destination.hmac_header] = "sha256=" + digest
    return headers


def _describe(err: BaseException) -> str:
    """A failure, said without the URL (which may carry a key): the kind, the OS's reason."""
    reason = getattr(err, "os_error", None) or err
    if isinstance(reason, OSError) and reason.strerror:
        return f"{type(err).__name__}: {reason.strerror}"
    return type(err).__name__


async def post(
    session: aiohttp.ClientSession, destination: Destination, body: bytes, idempotency_key: str
) -> Attempt:
    """One attempt to forward ``body``: any 2xx is success; redirects are not followed."""
    try:
        url = destination.resolve_url()
        headers = request_headers(destination, body, idempotency_key)
    except (SecretError, ValueError) as err:
        # ValueError: a value the request cannot carry (a password file with a character
        # that is not Latin-1, say). A failed attempt like any other; its type only, as its
        # message may quote a secret.
        reason = str(err) if isinstance(err, SecretError) else type(err).__name__
        return Attempt("error", error=f"cannot build the request: {reason}")
    try:
        async with session.post(
            url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=destination.timeout),
            ssl=destination.ssl_context if destination.ssl_context is not None else True,
            allow_redirects=False,
        ) as response:
            await response.content.read(65536)  # enough to keep the connection reusable
            status = response.status
    except TimeoutError:
        return Attempt("timeout", error=f"no answer within {destination.timeout:g} s")
    except (aiohttp.ClientConnectionError, OSError) as err:
        return Attempt("connection_error", error=_describe(err))
    except (aiohttp.ClientError, ValueError) as err:
        return Attempt("error", error=_describe(err))
    if 200 <= status < 300:
        return Attempt("success", status=status)
    return Attempt("http_error", status=status, error=f"HTTP {status}")


def hook_environment(hook: Hook, due: Due, idempotency_key: str) -> dict[str, str]:
    """A hook's whole environment: a fixed PATH and locale, and what the alert is."""
    labels = due.alert.get("labels", {})
    values = {
        "PATH": HOOK_PATH,
        "LANG": "C.UTF-8",
        "ALERT_RELAY_HOOK": hook.name,
        "ALERT_RELAY_RECEIVER": due.receiver,
        "ALERT_RELAY_ALERTNAME": labels.get("alertname", ""),
        "ALERT_RELAY_STATUS": due.alert.get("status", ""),
        "ALERT_RELAY_FINGERPRINT": due.alert.get("fingerprint", ""),
        "ALERT_RELAY_DELIVERY": idempotency_key,
    }
    return {name: value.replace("\0", "") for name, value in values.items()}


async def run_hook(hook: Hook, stdin: bytes, env: dict[str, str]) -> Attempt:
    """Run a hook with the alert on stdin; its process group is killed after the timeout."""
    try:
        process = await asyncio.create_subprocess_exec(
            *hook.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd="/",
            start_new_session=True,  # its own process group: a timeout kills its children too
        )
    except OSError as err:
        return Attempt("error", error=f"cannot start: {err.strerror or err}")
    output = bytearray()

    async def feed() -> None:
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            process.stdin.write(stdin)
            await process.stdin.drain()
        process.stdin.close()

    async def collect() -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(65536):
            output.extend(chunk)
            del output[:-HOOK_OUTPUT_BYTES]

    def kill() -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    try:
        await asyncio.wait_for(asyncio.gather(feed(), collect(), process.wait()), hook.timeout)
    except TimeoutError:
        kill()
        await process.wait()
        text = output.decode("utf-8", "replace")
        return Attempt("timeout", error=f"killed after {hook.timeout:g} s", output=text)
    except asyncio.CancelledError:
        kill()
        raise
    text = output.decode("utf-8", "replace")
    code = process.returncode
    assert code is not None
    if code == 0:
        return Attempt("success", status=0, output=text)
    reason = f"exit code {code}" if code > 0 else f"killed by signal {-code}"
    return Attempt("failed", status=code, error=reason, output=text)


class WallClock:
    """time.time(), watched for jumps: a step of the wall clock (an NTP correction, an
    operator's date command) against CLOCK_BOOTTIME, which only ever runs forward (and,
    unlike CLOCK_MONOTONIC, on through a suspend, which is then no jump)."""

    def __init__(self) -> None:
        self._offset = time.time() - _steady()

    def jump(self) -> float:
        """Seconds the wall clock jumped since the last call; 0 for less than CLOCK_JUMP
        (drift, or an NTP slew, which is gradual)."""
        offset = time.time() - _steady()
        jump, self._offset = offset - self._offset, offset
        return jump if abs(jump) >= CLOCK_JUMP else 0.0


def _steady() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@dataclass
class _Outage:
    """A destination whose last attempt failed. It gets one attempt at a time: a new
    alert's first attempt, or a retry, which waits for the next probe time (a backoff of
    the destination's own, as an alert's) rather than each alert's own retry time: with
    thousands queued, that would be a steady stream of failing requests. An alert that
    reaches max_age meanwhile is given up without an attempt of its own: the failing
    attempts stand for it."""

    since: float  # time.time() of the first failure
    failures: int = 0  # probes that failed
    next_probe: float = 0.0  # time.monotonic() from which the next probe may start
    status: int | None = None  # of the last failed attempt
    error: str = ""

    def failed(self, attempt: Attempt, started: float, retry: Retry, rng: random.Random) -> None:
        self.status, self.error = attempt.status, attempt.error or attempt.result
        if started < self.next_probe:
            return  # started before the outage was seen (in parallel with the first failure)
        self.failures += 1
        self.next_probe = time.monotonic() + backoff_delay(retry, self.failures, rng)


@dataclass
class _StorageHold:
    """The storage fails: nothing is attempted until a write succeeds again, tried with a
    growing delay (never more than every STORAGE_RETRY_MAX seconds)."""

    since: float  # time.monotonic()
    delay: float = 0.0
    retry_at: float = 0.0  # time.monotonic()

    def failed_again(self) -> None:
        self.delay = min(STORAGE_RETRY_MAX, max(STORAGE_RETRY_FIRST, 2 * self.delay))
        self.retry_at = time.monotonic() + self.delay


class Dispatcher:
    """Sends what is due, as long as the relay runs; woken by new alerts and finished attempts."""

    def __init__(
        self,
        store: Store,
        config: Callable[[], Config],
        metrics: RelayMetrics,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._metrics = metrics
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._busy: dict[int, str] = {}  # delivery id -> target, while an attempt is under way
        self._outages: dict[str, _Outage] = {}  # destinations whose last attempt failed
        # Outcomes of attempts that the storage failed to record, per delivery id: written
        # when it works again; until then the delivery is not attempted again (a success
        # would be sent twice, a hook run twice).
        self._unrecorded: dict[int, Callable[[sqlite3.Connection], None]] = {}
        self._storage_hold: _StorageHold | None = None
        self._clock = WallClock()
        self._clock_shift = 0.0  # sum of the wall clock's jumps seen so far
        self._shifting: asyncio.Future[int] | None = None  # the last shift, being committed
        self._unshifted = 0.0  # jumps whose shift of the schedule failed to commit
        self._last_hold: tuple[float, float] | None = None  # (delay, when it ended)
        self._recovered = False  # interrupted hook runs settled
        self._reported: set[str] = set()  # kinds of unexpected errors logged with a traceback
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._session: aiohttp.ClientSession | None = None

    def wake(self) -> None:
        self._wake.set()

    def now(self) -> float:
        """time.time(), for anything the queue's timing is measured against.

        When the wall clock jumped, the shift of the queue's schedule by as much is queued
        at once: the store commits in order, so what is written after this call, in the new
        time, is not shifted, and what was written before is.
        """
        jump = self._clock.jump()
        if jump:
            self._clock_shift += jump
            log.warning(
                "the wall clock jumped %s by %.0f s: shifting the schedule of queued deliveries"
                " by as much",
                "forward" if jump > 0 else "back",
                abs(jump),
            )
            self._shifting = self._store.submit(lambda conn: shift_schedule(conn, jump))
            self._shifting.add_done_callback(functools.partial(self._shifted, jump))
        return time.time()

    def _shifted(self, seconds: float, future: asyncio.Future[int]) -> None:
        if future.cancelled() or future.exception() is not None:
            self._unshifted += seconds  # written by the storage hold, before anything else
            self._wake.set()
        else:
            log.info("moved %d queued deliveries by %+.0f s", future.result(), seconds)

    def _idempotency_key(self, delivery_id: int) -> str:
        return f"{self._store.instance_id}-{delivery_id}"

    async def run(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )
        while not self._stopping:
            self._wake.clear()
            try:
                if self._storage_failing():
                    wait = await self._retry_storage()
                else:
                    if not self._recovered:
                        await self._recover()
                        self._recovered = True
                    wait = await self._start_due()
            except StorageError:
                wait = 0.0  # the hold starts at the next turn (logged by the store)
            except Exception:  # a bug: try again later, do not die
                log.exception("cannot dispatch the queue")
                wait = 5.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(max(0.0, wait), _IDLE_WAKE))

    # --- When the storage fails ---------------------------------------------------------------

    def _storage_failing(self) -> bool:
        return bool(self._unrecorded) or bool(self._unshifted) or self._store.failing

    async def _retry_storage(self) -> float:
        """While the storage fails: write what waits to be written (or a write that changes
        nothing) now and then; returns how long to wait before the next turn."""
        hold = self._storage_hold
        if hold is None:
            hold = self._storage_hold = _StorageHold(since=time.monotonic())
            if self._last_hold is not None and time.monotonic() - self._last_hold[1] < 60:
                hold.delay = self._last_hold[0]  # failing again soon: no faster than before
            hold.failed_again()
            log.warning(
                "deliveries paused while the storage fails (%d outcomes of attempts kept in"
                " memory until they can be written)",
                len(self._unrecorded),
            )
            return hold.delay
        # A write that succeeded elsewhere (a webhook) says it works: try at once.
        if self._store.failing and time.monotonic() < hold.retry_at:
            return hold.retry_at - time.monotonic()
        writes = list(self._unrecorded.values())
        shift = self._unshifted

        def catch_up(conn: sqlite3.Connection) -> None:
            touch(conn)  # a write even when nothing waits: does the storage take one?
            if shift:  # first: the outcomes were measured in the new time
                shift_schedule(conn, shift)
            for write in writes:
                write(conn)

        try:
            await self._store.write(catch_up)
        except StorageError:
            hold.failed_again()
            return hold.delay
        self._unshifted -= shift
        for delivery_id in [i for i, w in self._unrecorded.items() if w in writes]:
            del self._unrecorded[delivery_id]
        log.info(
            "deliveries resumed: the storage works again after %.0f s (%d outcomes written)",
            time.monotonic() - hold.since,
            len(writes),
        )
        self._storage_hold = None
        self._last_hold = (hold.delay, time.monotonic())
        return 0.0

    async def _record(self, delivery_id: int, write: Callable[[sqlite3.Connection], None]) -> None:
        """Commit an attempt's outcome; when the storage fails, keep it for later (see
        _unrecorded) rather than leave the delivery due."""
        if self._storage_failing():
            # After what already waits (a shift of the schedule first): the hold writes all.
            self._unrecorded[delivery_id] = write
            return
        try:
            await self._store.write(write)
        except StorageError:
            self._unrecorded[delivery_id] = write

    # --- Picking what is due ------------------------------------------------------------------

    async def _start_due(self) -> float:
        """Start what is due and may start now; return the seconds until the next turn."""
        config = self._config()
        now = self.now()
        if self._shifting is not None:
            # Read nothing measured in the old time: a jump would make every age wrong.
            shifting, self._shifting = self._shifting, None
            await shifting
        steady = time.monotonic()
        limits = config.target_limits()
        # A destination in an outage gets one attempt at a time; its retries wait for its
        # next probe time (held), its new alerts do not.
        held = [t for t, outage in self._outages.items() if outage.next_probe > steady]
        for target in self._outages.keys() & limits.keys():
            limits[target] = 1
        excluded = [*self._busy, *self._unrecorded]
        # The jumps the rows read below are shifted by (a jump seen while they are read,
        # rare, may be missed by the in-flight attempts' ages; the rows are shifted anyway).
        shift = self._clock_shift
        wait = _IDLE_WAKE
        for target in held:
            wait = min(wait, await self._expire(config, target, now, excluded))
        running = collections.Counter(self._busy.values())
        hooks_running = sum(n for target, n in running.items() if target.startswith("hook:"))
        full = [t for t, limit in limits.items() if running[t] >= limit]
        if hooks_running >= config.hook_concurrency:
            full += [hook.target for hook in config.hooks.values()]
        free = sum(max(0, limit - running[t]) for t, limit in limits.items() if t not in full)
        due = await self._store.read(
            lambda conn: due_deliveries(
                conn,
                now,
                busy=excluded,
                full=full,
                held=held,
                limit=free + _UNKNOWN_TARGET_SLOTS,
            )
        )
        for item in due:
            limit = limits.get(item.target)
            if limit is not None and running[item.target] >= limit:
                continue
            if item.target.startswith("hook:") and limit is not None:
                if hooks_running >= config.hook_concurrency:
                    continue
                hooks_running += 1
            running[item.target] += 1
            self._busy[item.id] = item.target
            task = asyncio.create_task(self._attempt(item, config, shift))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        next_at = await self._store.read(lambda conn: next_due_after(conn, now, held))
        if next_at is not None:
            wait = min(wait, next_at - now)
        return wait

    async def _expire(self, config: Config, target: str, now: float, excluded: list[int]) -> float:
        """Give up the alerts waiting for a destination in an outage that reached max_age;
        return the seconds until its next probe or the next such alert's max_age."""
        outage = self._outages[target]
        max_age = self._retry_of(config, target).max_age
        expired = await self._store.read(
            lambda conn: expired_deliveries(conn, target, now - max_age, excluded, _EXPIRE_BATCH)
        )
        if expired:
            since = format_time(outage.since)
            error = f"destination failing since {since}: {outage.error}"
            bodies = {due.id: delivery_body(due).decode("utf-8") for due in expired}

            def give_up(conn: sqlite3.Connection) -> None:
                for due in expired:
                    mark_given_up(
                        conn,
                        due.id,
                        state="dead",
                        now=now,
                        status=None,
                        error=_given_up(due, now, error, due.attempts),
                        body=bodies[due.id],
                        counted=False,
                    )

            await self._store.write(give_up)
            for number, due in enumerate(expired):
                self._dead_letter(due, _given_up(due, now, error, due.attempts), number)
            if len(expired) > _DEAD_LETTERS_LOGGED:
                log.warning(
                    "dead letters: %d more alerts for destination %s reached max_age",
                    len(expired) - _DEAD_LETTERS_LOGGED,
                    target,
                )
        oldest = await self._store.read(lambda conn: oldest_pending(conn, target))
        if oldest is None:
            # Nothing waits for it: the next alert's attempt is the next probe.
            del self._outages[target]
            return _IDLE_WAKE
        return min(outage.next_probe - time.monotonic(), oldest + max_age - now)

    def _dead_letter(self, due: Due, reason: str, number: int = 0) -> None:
        self._metrics.dead_letters.labels(due.target).inc()
        if number >= _DEAD_LETTERS_LOGGED:
            return  # many at once: counted in one line
        log.warning(
            "dead letter: alert %s (fingerprint %s, %s) for destination %s, delivery %d: %s",
            due.alert.get("labels", {}).get("alertname", ""),
            due.alert.get("fingerprint", ""),
            due.alert.get("status", ""),
            due.target,
            due.id,
            reason,
        )

    # --- Attempts -----------------------------------------------------------------------------

    async def _attempt(self, due: Due, config: Config, clock_shift: float) -> None:
        started = time.monotonic()
        try:
            if due.target.startswith("hook:"):
                await self._run_hook(due, config, clock_shift)
            else:
                await self._forward(due, config, clock_shift)
        except StorageError:
            pass  # nothing ran (a hook's start could not be recorded): the storage hold begins
        except Exception as err:
            # A bug. A failed attempt like any other: backed off, dead at max_age.
            kind = type(err).__name__
            if kind not in self._reported:
                self._reported.add(kind)
                log.exception("delivery %d to %s failed unexpectedly", due.id, due.target)
            failure = Attempt("error", error=f"internal error: {kind}")
            if due.target.startswith("hook:"):
                await self._hook_failed(due, config, clock_shift, failure)
            else:
                await self._forward_failed(due, config, clock_shift, failure, started)
        finally:
            self._busy.pop(due.id, None)
            self._wake.set()

    def _created_at(self, due: Due, clock_shift: float) -> float:
        """When ``due`` was queued, in the wall clock's time now (it may have jumped since
        the delivery was read)."""
        return due.created_at + (self._clock_shift - clock_shift)

    def _retry_of(self, config: Config, target: str) -> Retry:
        """A destination's retry settings; the global ones when it is no longer configured."""
        destination = config.destinations.get(target)
        return destination.retry if destination else config.retry

    async def _forward(self, due: Due, config: Config, clock_shift: float) -> None:
        destination = config.destinations.get(due.target)
        started = time.monotonic()
        if destination is None:
            attempt = Attempt("error", error="destination no longer configured")
        else:
            assert self._session is not None
            body = delivery_body(due)
            attempt = await post(self._session, destination, body, self._idempotency_key(due.id))
            self._metrics.forward_duration.labels(due.target).observe(time.monotonic() - started)
            self._metrics.forward_attempts.labels(due.target, attempt.result).inc()
        if not attempt.ok:
            await self._forward_failed(due, config, clock_shift, attempt, started)
            return
        now = self.now()
        await self._record(
            due.id, lambda conn: mark_delivered(conn, due.id, now, attempt.status, None)
        )
        outage = self._outages.pop(due.target, None)
        if outage is not None:
            log.info(
                "destination %s answers again, after %d failed probes in %.0f s",
                due.target,
                outage.failures,
                now - outage.since,
            )
            # What waits for it goes now, not at each alert's own next retry (up to
            # max_backoff away). Only sooner: when this cannot be written, it waits.
            with contextlib.suppress(StorageError):
                await self._store.write(lambda conn: pull_forward(conn, due.target, now))

    async def _forward_failed(
        self, due: Due, config: Config, clock_shift: float, attempt: Attempt, started: float
    ) -> None:
        now = self.now()
        retry = self._retry_of(config, due.target)
        outage = self._outages.get(due.target)
        if outage is None:
            outage = self._outages[due.target] = _Outage(since=now)
            log.warning("destination %s failed: %s", due.target, attempt.error or attempt.result)
        outage.failed(attempt, started, retry, self._rng)
        error = attempt.error or attempt.result
        created_at = self._created_at(due, clock_shift)
        retry_at = next_attempt_at(retry, due.attempts + 1, created_at, now, self._rng)
        if retry_at is not None:
            log.debug(
                "alert to %s failed (%s), next attempt in %.1f s", due.target, error, retry_at - now
            )
            await self._record(
                due.id,
                lambda conn: mark_retry(
                    conn,
                    due.id,
                    now=now,
                    next_attempt_at=retry_at,
                    status=attempt.status,
                    error=error,
                ),
            )
            return
        reason = _given_up(due, now, error, due.attempts + 1, created_at)
        body = delivery_body(due).decode("utf-8")
        await self._record(
            due.id,
            lambda conn: mark_given_up(
                conn,
                due.id,
                state="dead",
                now=now,
                status=attempt.status,
                error=reason,
                body=body,
            ),
        )
        self._dead_letter(due, reason)

    async def _run_hook(self, due: Due, config: Config, clock_shift: float) -> None:
        name = due.target.removeprefix("hook:")
        hook = config.hooks.get(name)
        now = self.now()
        if hook is None or now - self._created_at(due, clock_shift) > hook.retry.max_age:
            why = "hook no longer configured" if hook is None else "older than retry.max_age"
            await self._record(
                due.id,
                lambda conn: mark_given_up(
                    conn,
                    due.id,
                    state="failed",
                    now=now,
                    status=None,
                    error=why,
                    body=None,
                    counted=False,
                ),
            )
            self._metrics.hooks_failed.labels(name).inc()
            log.warning("hook %s not run for delivery %d: %s", name, due.id, why)
            return
        # Recorded before it runs; when that fails (StorageError), it does not run.
        await self._store.write(lambda conn: mark_running(conn, due.id, now))
        key = self._idempotency_key(due.id)
        attempt = await run_hook(hook, delivery_body(due), hook_environment(hook, due, key))
        self._metrics.hook_runs.labels(name, attempt.result).inc()
        if attempt.ok:
            done = self.now()
            await self._record(
                due.id,
                lambda conn: mark_delivered(conn, due.id, done, attempt.status, attempt.output),
            )
            return
        await self._hook_failed(due, config, clock_shift, attempt)

    async def _hook_failed(
        self, due: Due, config: Config, clock_shift: float, attempt: Attempt
    ) -> None:
        name = due.target.removeprefix("hook:")
        hook = config.hooks.get(name)
        done = self.now()
        attempts = due.attempts + 1
        error = attempt.error or attempt.result
        retry_at = None
        if hook is not None and attempts < hook.max_attempts:
            created_at = self._created_at(due, clock_shift)
            retry_at = next_attempt_at(hook.retry, attempts, created_at, done, self._rng)
        if retry_at is not None:
            await self._record(
                due.id,
                lambda conn: mark_retry(
                    conn,
                    due.id,
                    now=done,
                    next_attempt_at=retry_at,
                    status=attempt.status,
                    error=error,
                    output=attempt.output,
                    counted=False,
                ),
            )
            return
        await self._record(
            due.id,
            lambda conn: mark_given_up(
                conn,
                due.id,
                state="failed",
                now=done,
                status=attempt.status,
                error=error,
                body=None,
                output=attempt.output,
                counted=False,
            ),
        )
        self._metrics.hooks_failed.labels(name).inc()
        log.warning(
            "hook %s failed for delivery %d after %d attempts: %s", name, due.id, attempts, error
        )

    async def _recover(self) -> None:
        """Hook attempts a stop or crash interrupted: counted, retried only if allowed."""
        config = self._config()
        now = self.now()
        for delivery_id, target, attempts, created_at in await self._store.read(interrupted_hooks):
            name = target.removeprefix("hook:")
            hook = config.hooks.get(name)
            self._metrics.hook_runs.labels(name, "interrupted").inc()
            retry_at = None
            if hook is not None and attempts < hook.max_attempts:
                retry_at = next_attempt_at(hook.retry, attempts, created_at, now, self._rng)
            if retry_at is not None:
                await self._store.write(
                    lambda conn, i=delivery_id, t=retry_at: mark_retry(
                        conn,
                        i,
                        now=now,
                        next_attempt_at=t,
                        status=None,
                        error=_INTERRUPTED,
                        counted=False,
                    )
                )
            else:
                await self._store.write(
                    lambda conn, i=delivery_id: mark_given_up(
                        conn,
                        i,
                        state="failed",
                        now=now,
                        status=None,
                        error=_INTERRUPTED,
                        body=None,
                        counted=False,
                    )
                )
                self._metrics.hooks_failed.labels(name).inc()
            log.warning("hook %s for delivery %d was interrupted", name, delivery_id)

    async def stop(self, grace: float = 5.0) -> None:
        """Let attempts under way finish for up to ``grace`` seconds, then cancel them (they
        stay queued and are made again after a restart)."""
        self._stopping = True
        self._wake.set()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._unrecorded:
            log.error(
                "stopping with %d outcomes of attempts not written (the storage fails): those"
                " alerts are attempted again after the start",
                len(self._unrecorded),
            )


def _given_up(
    due: Due, now: float, error: str, attempts: int, created_at: float | None = None
) -> str:
    age = now - (due.created_at if created_at is None else created_at)
    return f"given up after {attempts} attempts in {age:.0f} s: {error}"
