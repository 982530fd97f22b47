"""Forwarding: the dispatcher that sends queued alerts to destinations and runs hooks.

A delivery is one alert for one target. The dispatcher picks the deliveries
that are due from the database (never two of one alert's deliveries to one
target at once, and the older first, so that a resolution never overtakes
its firing), sends each, and records the outcome before it lets go of it.
A failed attempt is retried with exponential backoff and jitter, capped at
``max_backoff``, until ``max_age`` after the alert was queued (the last try
falls on that instant); then the delivery is a dead letter. When a
destination answers again after failures, everything waiting for it is made
due at once, rather than each alert at its own next retry; while it fails,
it gets one attempt at a time.

Hooks are deliveries too: an attempt is recorded as started before the
process runs, so a crash during a hook never makes it run again unless
``max_attempts`` allows another attempt.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import json
import logging
import os
import random
import signal
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
    Store,
    due_deliveries,
    interrupted_hooks,
    mark_delivered,
    mark_given_up,
    mark_retry,
    mark_running,
    next_due_after,
    pull_forward,
)

log = logging.getLogger(__name__)

_INTERRUPTED = "interrupted by a stop or crash of the relay"
# What a hook's environment holds besides its ALERT_RELAY_* variables: nothing of the relay's.
HOOK_PATH = "/usr/local/bin:/usr/bin:/bin"
HOOK_OUTPUT_BYTES = 4096  # the tail of a hook's output kept in the history
_IDLE_WAKE = 30.0  # seconds between scans when nothing is due and nothing happens
_UNKNOWN_TARGET_SLOTS = 8  # deliveries of unconfigured targets handled per scan


@dataclass(frozen=True)
class Attempt:
    result: str  # metrics.FORWARD_RESULTS or metrics.HOOK_RESULTS
    status: int | None = None  # HTTP status, or a hook's exit code
    error: str | None = None
    output: str | None = None

    @property
    def ok(self) -> bool:
        return self.result == "success"


def next_attempt_at(
    retry: Retry, attempts: int, created_at: float, now: float, rng: random.Random
) -> float | None:
    """When to try again after ``attempts`` failed attempts; None: give up (max_age reached).

    Exponential backoff from initial_backoff, capped at max_backoff, with
    "equal jitter" (half the delay fixed, half random) so that many alerts
    failing together do not come back together; the last attempt is made at
    max_age after the alert was queued.
    """
    deadline = created_at + retry.max_age
    if now >= deadline:
        return None
    delay = min(retry.max_backoff, retry.initial_backoff * 2.0 ** min(attempts - 1, 62))
    delay = delay / 2 + rng.uniform(0, delay / 2)
    return min(now + delay, deadline)


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
    except SecretError as err:
        return Attempt("error", error=str(err))
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
        self._failing: set[str] = set()  # destinations whose last attempt failed
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._session: aiohttp.ClientSession | None = None

    def wake(self) -> None:
        self._wake.set()

    def _idempotency_key(self, delivery_id: int) -> str:
        return f"{self._store.instance_id}-{delivery_id}"

    async def run(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )
        try:
            await self._recover()
        except Exception:  # the database failed: the hooks stay "running" until a restart
            log.exception("cannot recover interrupted hook runs")
        while not self._stopping:
            self._wake.clear()
            try:
                next_at = await self._start_due()
            except Exception:  # the database failed: try again later, do not die
                log.exception("cannot read the queue")
                next_at = time.time() + 5.0
            timeout = _IDLE_WAKE if next_at is None else max(0.0, next_at - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(timeout, _IDLE_WAKE))

    async def _start_due(self) -> float | None:
        """Start what is due and may start now; return when the next thing falls due."""
        config = self._config()
        limits = config.target_limits()
        for target in self._failing & limits.keys():
            # A failing destination gets one attempt at a time, a probe, not max_concurrency
            # attempts that fail too (or hang until their timeout) and cost as much.
            limits[target] = 1
        running = collections.Counter(self._busy.values())
        hooks_running = sum(n for target, n in running.items() if target.startswith("hook:"))
        full = [t for t, limit in limits.items() if running[t] >= limit]
        if hooks_running >= config.hook_concurrency:
            full += [hook.target for hook in config.hooks.values()]
        free = sum(max(0, limit - running[t]) for t, limit in limits.items() if t not in full)
        now = time.time()
        busy = list(self._busy)
        due = await self._store.read(
            lambda conn: due_deliveries(conn, now, busy, full, free + _UNKNOWN_TARGET_SLOTS)
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
            task = asyncio.create_task(self._attempt(item, config))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await self._store.read(lambda conn: next_due_after(conn, now))

    async def _attempt(self, due: Due, config: Config) -> None:
        try:
            if due.target.startswith("hook:"):
                await self._run_hook(due, config)
            else:
                await self._forward(due, config)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            # Never leave a due delivery as it was: it would be picked again at once.
            log.exception("delivery %d to %s failed unexpectedly", due.id, due.target)
            retry_at = time.time() + 30.0
            kind = type(err).__name__
            with contextlib.suppress(Exception):
                await self._store.write(
                    lambda conn: mark_retry(
                        conn, due.id, time.time(), retry_at, None, kind, None, False
                    )
                )
        finally:
            self._busy.pop(due.id, None)
            self._wake.set()

    async def _forward(self, due: Due, config: Config) -> None:
        destination = config.destinations.get(due.target)
        body = delivery_body(due)
        if destination is None:
            attempt = Attempt("error", error="destination no longer configured")
            retry = config.retry
        else:
            assert self._session is not None
            started = time.monotonic()
            attempt = await post(self._session, destination, body, self._idempotency_key(due.id))
            self._metrics.forward_duration.labels(due.target).observe(time.monotonic() - started)
            self._metrics.forward_attempts.labels(due.target, attempt.result).inc()
            retry = destination.retry
        now = time.time()
        if attempt.ok:
            await self._store.write(
                lambda conn: mark_delivered(conn, due.id, now, attempt.status, None)
            )
            if due.target in self._failing:
                # It answers again: what waits for it goes now, not at its own next retry
                # (up to max_backoff away).
                self._failing.discard(due.target)
                await self._store.write(lambda conn: pull_forward(conn, due.target, now))
                log.info("destination %s answers again", due.target)
            return
        if due.target not in self._failing:
            self._failing.add(due.target)
            log.warning("destination %s failed: %s", due.target, attempt.error or attempt.result)
        error = attempt.error or attempt.result
        retry_at = next_attempt_at(retry, due.attempts + 1, due.created_at, now, self._rng)
        if retry_at is not None:
            log.debug(
                "alert to %s failed (%s), next attempt in %.1f s", due.target, error, retry_at - now
            )
            await self._store.write(
                lambda conn: mark_retry(conn, due.id, now, retry_at, attempt.status, error)
            )
            return
        text = body.decode("utf-8")
        age = now - due.created_at
        reason = f"given up after {due.attempts + 1} attempts in {age:.0f} s: {error}"
        await self._store.write(
            lambda conn: mark_given_up(conn, due.id, "dead", now, attempt.status, reason, text)
        )
        self._metrics.dead_letters.labels(due.target).inc()
        log.warning(
            "dead letter: alert %s (fingerprint %s, %s) for destination %s, delivery %d: %s",
            due.alert.get("labels", {}).get("alertname", ""),
            due.alert.get("fingerprint", ""),
            due.alert.get("status", ""),
            due.target,
            due.id,
            reason,
        )

    async def _run_hook(self, due: Due, config: Config) -> None:
        name = due.target.removeprefix("hook:")
        hook = config.hooks.get(name)
        now = time.time()
        if hook is None or now - due.created_at > hook.retry.max_age:
            why = "hook no longer configured" if hook is None else "older than retry.max_age"
            await self._store.write(
                lambda conn: mark_given_up(
                    conn, due.id, "failed", now, None, why, None, None, False
                )
            )
            self._metrics.hooks_failed.labels(name).inc()
            log.warning("hook %s not run for delivery %d: %s", name, due.id, why)
            return
        await self._store.write(lambda conn: mark_running(conn, due.id, now))
        key = self._idempotency_key(due.id)
        attempt = await run_hook(hook, delivery_body(due), hook_environment(hook, due, key))
        self._metrics.hook_runs.labels(name, attempt.result).inc()
        done = time.time()
        attempts = due.attempts + 1
        if attempt.ok:
            await self._store.write(
                lambda conn: mark_delivered(conn, due.id, done, attempt.status, attempt.output)
            )
            return
        error = attempt.error or attempt.result
        retry_at = None
        if attempts < hook.max_attempts:
            retry_at = next_attempt_at(hook.retry, attempts, due.created_at, done, self._rng)
        if retry_at is not None:
            await self._store.write(
                lambda conn: mark_retry(
                    conn, due.id, done, retry_at, attempt.status, error, attempt.output, False
                )
            )
            return
        await self._store.write(
            lambda conn: mark_given_up(
                conn, due.id, "failed", done, attempt.status, error, None, attempt.output, False
            )
        )
        self._metrics.hooks_failed.labels(name).inc()
        log.warning(
            "hook %s failed for delivery %d after %d attempts: %s", name, due.id, attempts, error
        )

    async def _recover(self) -> None:
        """Hook attempts a stop or crash interrupted: counted, retried only if allowed."""
        config = self._config()
        now = time.time()
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
                        conn, i, now, t, None, _INTERRUPTED, None, False
                    )
                )
            else:
                await self._store.write(
                    lambda conn, i=delivery_id: mark_given_up(
                        conn, i, "failed", now, None, _INTERRUPTED, None, None, False
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
