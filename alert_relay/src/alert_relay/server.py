"""The HTTP(S) side: webhooks, the history API, metrics, reload and health, on aiohttp.

TLS and basic auth come from the web config file (exporter-toolkit's format,
shared with the Docker exporter: exporter_web.webconfig). Its watcher is asked
at every connection and request, so that new certificates, client CAs and
passwords apply without a restart: each accepted TCP connection starts TLS
with the SSLContext in force at that moment (asyncio's start_tls), which is
what exporter-toolkit does when it reads its config for each connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import logging
import math
import socket
import ssl
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_server import Server
from exporter_web.listen import url_host
from exporter_web.webconfig import WebConfigWatcher
from prometheus_client.exposition import choose_encoder

from alert_relay import __version__
from alert_relay.basic_auth import PasswordChecks, Verdict
from alert_relay.config import Config, ConfigError, Receiver, SecretError, load_config
from alert_relay.forwarder import Dispatcher
from alert_relay.metrics import RelayMetrics, StorageHealth
from alert_relay.payload import PayloadError, parse_notification, parse_time
from alert_relay.store import (
    PRUNE_BATCH,
    StorageError,
    Store,
    dead_letters,
    history,
    prune,
    queue_stats,
)

log = logging.getLogger(__name__)

TLS_HANDSHAKE_TIMEOUT = 10.0
KEEPALIVE_TIMEOUT = 30.0
API_DEFAULT_LIMIT = 1000
API_MAX_LIMIT = 10000


class Relay:
    """One running relay: its configuration (reloadable), storage, dispatcher and metrics."""

    def __init__(
        self, config_path: str, config: Config, store: Store, web_config: WebConfigWatcher
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.store = store
        self.web = web_config
        self.password_checks = PasswordChecks(web_config)
        self.metrics = RelayMetrics(
            lambda: store.read_blocking(queue_stats),
            lambda: self.config,
            web_config,
            lambda: StorageHealth(store.failures, store.failing),
            lambda: dict(self.password_checks.results),
        )
        self.metrics.config_loaded(config)
        self.dispatcher = Dispatcher(store, lambda: self.config, self.metrics)
        self.ready = False

    def reload(self) -> None:
        """Load --config.file again; a file that does not load leaves the running one in force.

        Raises ConfigError (after logging it) when the file does not load.
        """
        try:
            config = load_config(self.config_path)
        except ConfigError as err:
            self.metrics.config_reload_successful.set(0)
            log.error(
                "cannot reload --config.file %s, keeping the previous one: %s",
                self.config_path,
                err,
            )
            raise
        self.config = config
        self.metrics.config_loaded(config)
        self.dispatcher.wake()
        log.info("reloaded --config.file %s", self.config_path)

    async def prune_once(self) -> int:
        """Drop history older than history_retention; returns how many notifications went."""
        cutoff = time.time() - self.config.history_retention
        total = 0
        while True:
            removed = await self.store.write(lambda conn: prune(conn, cutoff))
            total += removed
            if removed < PRUNE_BATCH:
                break
        if total:
            pages = await self.store.reclaim_space()
            log.info(
                "pruned %d notifications older than the history retention; %d free pages"
                " given back to the file system",
                total,
                pages,
            )
        return total

    async def prune_loop(self) -> None:
        while True:
            try:
                await self.prune_once()
            except StorageError as err:  # logged by the store; tried again next time
                log.error("cannot prune the history: %s", err)
            await asyncio.sleep(self.config.prune_interval)


RELAY = web.AppKey("relay", Relay)


def _text(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers=headers)


def _api_error(status: int, message: str) -> web.Response:
    kind = "unavailable" if status == 503 else "bad_data"  # as Prometheus' API says them
    body = {"status": "error", "errorType": kind, "error": message}
    return web.json_response(body, status=status)


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The request body, or None when it is longer than ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _bearer_ok(header: str | None, receiver: Receiver) -> bool:
    assert receiver.token_file is not None
    scheme, _space, credentials = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return False
    try:
        tokens = receiver.token_file.lines()
    except SecretError as err:
        log.error("receiver %s: %s", receiver.name, err)
        return False
    given = credentials.strip().encode("utf-8", "surrogateescape")
    # Compared with every token, in constant time each: no early exit tells which is close.
    matches = [hmac.compare_digest(given, token) for token in tokens]
    return any(matches)


_UNAUTHORIZED_BASIC = {"WWW-Authenticate": "Basic"}
_UNAUTHORIZED_BEARER = {"WWW-Authenticate": 'Bearer realm="alert-relay"'}


def _auth_busy() -> web.Response:
    # Not checked: a flood of password checks is under way. 503: clients (Alertmanager,
    # Prometheus) try again.
    return _text(503, "too many password checks under way; retry", {"Retry-After": "1"})


async def _refused(relay: Relay, receiver: Receiver, request: web.Request) -> web.Response | None:
    """The answer to a webhook call without valid credentials; None when they are valid."""
    header = request.headers.get("Authorization")
    if receiver.token_file is not None:
        if _bearer_ok(header, receiver):
            return None
        challenge = _UNAUTHORIZED_BEARER
    else:
        verdict = await relay.password_checks.check(header)
        if verdict is Verdict.GRANTED:
            return None
        if verdict is Verdict.BUSY:
            return _auth_busy()
        challenge = _UNAUTHORIZED_BASIC
    relay.metrics.received.labels(receiver.name, "unauthorized").inc()
    return _text(401, "Unauthorized", challenge)


async def webhook(request: web.Request) -> web.Response:
    relay = request.app[RELAY]
    config = relay.config
    metrics = relay.metrics
    name = request.match_info["receiver"]
    receiver = config.receivers.get(name)
    if receiver is None:
        # Label "" rather than the name: the URL must not make new series.
        metrics.received.labels("", "unknown_receiver").inc()
        return _text(404, f"unknown receiver {name[:64]!r}")
    refused = await _refused(relay, receiver, request)
    if refused is not None:
        return refused
    body = await _read_body(request, config.max_request_bytes)
    if body is None:
        metrics.received.labels(name, "too_large").inc()
        return _text(413, f"notification larger than {config.max_request_bytes} bytes")
    started = time.monotonic()
    try:
        notification = parse_notification(body)
    except PayloadError as err:
        metrics.received.labels(name, "bad_request").inc()
        return _text(400, f"not an Alertmanager webhook notification: {err}")
    targets = [config.targets(receiver, a.alertname, a.status) for a in notification.alerts]
    try:
        accepted = await relay.store.accept(
            name,
            notification,
            targets,
            relay.dispatcher.now(),  # after the shift of the schedule, if the clock jumped
            receiver.forward_repeats,
            receiver.repeat_min_interval,
        )
    except StorageError:  # counted (alert_relay_storage_errors_total) and logged by the store
        metrics.received.labels(name, "storage_error").inc()
        # Alertmanager retries a 5xx: nothing is lost.
        return _text(503, "cannot store the notification now; retry")
    metrics.accept_duration.observe(time.monotonic() - started)
    metrics.received.labels(name, "accepted").inc()
    for alert in notification.alerts:
        metrics.alerts_received.labels(name, alert.status).inc()
    for target, count in accepted.duplicates.items():
        metrics.deduplicated.labels(target).inc(count)
    if accepted.queued:
        relay.dispatcher.wake()
    return web.json_response(
        {
            "status": "success",
            "notificationId": accepted.notification_id,
            "queued": accepted.queued,
            "duplicates": sum(accepted.duplicates.values()),
        }
    )


def _time_param(request: web.Request, name: str, default: float) -> float:
    """A time as Prometheus' API takes it: RFC 3339 or Unix seconds."""
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        try:
            return parse_time(text)[0] / 1e9
        except ValueError:
            reason = f"{name}: {text[:40]!r} is neither RFC 3339 nor Unix seconds"
            raise ValueError(reason) from None
    if not math.isfinite(value):
        raise ValueError(f"{name}: not a finite time")
    return value


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}: not a whole number") from None
    if not low <= value <= high:
        raise ValueError(f"{name}: must be from {low} to {high}")
    return value


async def api_history(request: web.Request) -> web.Response:
    relay = request.app[RELAY]
    try:
        since = _time_param(request, "since", 0.0)
        until = _time_param(request, "until", math.inf)
        limit = _int_param(request, "limit", API_DEFAULT_LIMIT, 1, API_MAX_LIMIT)
        after = _int_param(request, "after", 0, 0, 2**63 - 1)
    except ValueError as err:
        return _api_error(400, str(err))
    receiver = request.query.get("receiver") or None
    try:
        rows = await relay.store.read(
            lambda conn: history(conn, since, until, receiver, after, limit)
        )
    except StorageError:
        return _api_error(503, "cannot read the database now; retry")
    following = rows[-1]["id"] if len(rows) == limit else None
    return web.json_response(
        {"status": "success", "data": {"notifications": rows, "next": following}}
    )


async def api_dead_letters(request: web.Request) -> web.Response:
    relay = request.app[RELAY]
    try:
        since = _time_param(request, "since", 0.0)
        until = _time_param(request, "until", math.inf)
        limit = _int_param(request, "limit", API_DEFAULT_LIMIT, 1, API_MAX_LIMIT)
        after = _int_param(request, "after", 0, 0, 2**63 - 1)
    except ValueError as err:
        return _api_error(400, str(err))
    try:
        rows = await relay.store.read(lambda conn: dead_letters(conn, since, until, after, limit))
    except StorageError:
        return _api_error(503, "cannot read the database now; retry")
    following = rows[-1]["deliveryId"] if len(rows) == limit else None
    return web.json_response(
        {"status": "success", "data": {"deadLetters": rows, "next": following}}
    )


async def metrics(request: web.Request) -> web.Response:
    relay = request.app[RELAY]
    encoder, content_type = choose_encoder(request.headers.get("Accept"))
    loop = asyncio.get_running_loop()
    # The queue figures come from the database: off the event loop.
    body = await loop.run_in_executor(None, encoder, relay.metrics.registry)
    response = web.Response(body=body, headers={"Content-Type": content_type})
    response.enable_compression()
    return response


async def reload(request: web.Request) -> web.Response:
    relay = request.app[RELAY]
    try:
        relay.reload()
    except ConfigError as err:
        return _text(500, f"failed to reload config: {err}")
    return _text(200, "OK")


async def healthy(request: web.Request) -> web.Response:
    return _text(200, "Alert relay is Healthy.")


async def ready(request: web.Request) -> web.Response:
    if request.app[RELAY].ready:
        return _text(200, "Alert relay is Ready.")
    return _text(503, "Alert relay is not ready.")


_LANDING = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Alert relay</title></head>
<body><h1>Alert relay</h1>
<p>Takes Alertmanager's webhook notifications, stores them and forwards them. Version {version}.</p>
<p>Receivers: {receivers}</p>
<ul><li><a href="metrics">Metrics</a></li><li><a href="api/v1/history">History</a></li>
<li><a href="api/v1/dead-letters">Dead letters</a></li></ul></body></html>
"""


async def landing(request: web.Request) -> web.Response:
    relay = request.app[RELAY]
    names = ", ".join(f"/webhooks/{html.escape(n)}" for n in sorted(relay.config.receivers))
    page = _LANDING.format(version=__version__, receivers=names)
    return web.Response(text=page, content_type="text/html")


@web.middleware
async def basic_auth(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Basic auth from the web config on every path but the webhooks, which check their
    receiver's bearer token (Alertmanager sends one Authorization header, not two)."""
    if request.path.startswith("/webhooks/"):
        return await handler(request)
    verdict = await request.app[RELAY].password_checks.check(request.headers.get("Authorization"))
    if verdict is Verdict.BUSY:
        return _auth_busy()
    if verdict is not Verdict.GRANTED:
        return _text(401, "Unauthorized", _UNAUTHORIZED_BASIC)
    return await handler(request)


async def _response_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = "alert-relay"  # not aiohttp's and Python's versions
    for name, value in request.app[RELAY].web.current().config.headers.items():
        response.headers[name] = value


def build_app(relay: Relay) -> web.Application:
    app = web.Application(middlewares=[basic_auth], client_max_size=1 << 16)
    app[RELAY] = relay
    app.on_response_prepare.append(_response_headers)
    app.router.add_post("/webhooks/{receiver}", webhook)
    app.router.add_get("/api/v1/history", api_history)
    app.router.add_get("/api/v1/dead-letters", api_dead_letters)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/-/reload", reload)
    app.router.add_put("/-/reload", reload)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_get("/", landing)
    return app


class _StartTLS(asyncio.Protocol):
    """A new TCP connection: TLS with the context in force now, then aiohttp's handler."""

    def __init__(self, server: Server, context: Callable[[], ssl.SSLContext | None]) -> None:
        self._server = server
        self._context = context
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # the ClientHello waits for start_tls
        self._task = asyncio.get_running_loop().create_task(self._start_tls(transport))

    async def _start_tls(self, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        context = self._context()
        assert context is not None
        handler = self._server()
        try:
            tls = await loop.start_tls(
                transport,
                handler,
                context,
                server_side=True,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as err:
            log.debug("TLS handshake failed: %s", err)
            transport.abort()
            return
        if tls is None:  # the connection closed during the handshake
            transport.abort()
            return
        handler.connection_made(tls)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()


class RelaySite(web.SockSite):
    """aiohttp's site on a socket we bound, with TLS chosen per connection when on."""

    def __init__(self, runner: web.AppRunner, sock: socket.socket, web_config: WebConfigWatcher):
        super().__init__(runner, sock, backlog=512)
        self._web = web_config
        scheme = "https" if web_config.tls else "http"
        self._url = f"{scheme}://{url_host(sock)}"

    @property
    def name(self) -> str:
        return self._url

    async def start(self) -> None:
        if not self._web.tls:
            await super().start()
            return
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()

        def protocol() -> _StartTLS:
            return _StartTLS(server, lambda: self._web.current().ssl_context)

        self._server = await loop.create_server(protocol, sock=self._sock, backlog=self._backlog)


def runner_for(app: web.Application) -> web.AppRunner:
    return web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        keepalive_timeout=KEEPALIVE_TIMEOUT,
        shutdown_timeout=5.0,
    )


async def serve(relay: Relay, sock: socket.socket, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set, then stop gracefully: requests under way are answered,
    attempts under way get a few seconds."""
    runner = runner_for(build_app(relay))
    await runner.setup()
    site = RelaySite(runner, sock, relay.web)
    await site.start()
    tasks = [
        asyncio.create_task(relay.dispatcher.run(), name="dispatcher"),
        asyncio.create_task(relay.prune_loop(), name="pruner"),
    ]
    relay.ready = True
    log.info(
        "alert-relay %s listening on %s, receivers: %s",
        __version__,
        site.name,
        " ".join(f"/webhooks/{n}" for n in sorted(relay.config.receivers)),
    )
    try:
        await stop.wait()
    finally:
        relay.ready = False
        await runner.cleanup()
        await relay.dispatcher.stop()
        relay.password_checks.close()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
