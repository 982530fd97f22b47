"""The HTTP(S) server: ``/metrics``, a landing page, basic auth, TLS."""

from __future__ import annotations

import contextlib
import gzip
import html
import logging
import socket
import socketserver
import ssl
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from exporter_web.listen import resolve_listen_address
from exporter_web.webconfig import WebConfig, WebConfigWatcher
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from docker_exporter import __version__

log = logging.getLogger(__name__)


class ExporterServer(ThreadingHTTPServer):
    """A threading HTTP server with optional TLS, basic auth and a connection cap."""

    daemon_threads = True
    MAX_CONNECTIONS = 64

    def __init__(
        self,
        listen_address: str,
        registry: CollectorRegistry,
        telemetry_path: str = "/metrics",
        web_config: WebConfig | WebConfigWatcher | None = None,
        handler_timeout: float = 30.0,
    ) -> None:
        family, sockaddr = resolve_listen_address(listen_address)
        self.address_family = family
        self.registry = registry
        self.telemetry_path = telemetry_path
        # TLS, users and headers come from the watcher per connection and per
        # request: a changed web config file applies without a restart.
        self.web = (
            web_config
            if isinstance(web_config, WebConfigWatcher)
            else WebConfigWatcher(config=web_config)
        )
        self.handler_timeout = handler_timeout
        self._slots = threading.BoundedSemaphore(self.MAX_CONNECTIONS)
        super().__init__(sockaddr, ExporterHandler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6 and self.server_address[0] == "::":
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # HTTPServer.server_bind would look up the host's FQDN: a DNS query at
        # start that can hang on machines without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    @property
    def scheme(self) -> str:
        return "https" if self.web.tls else "http"

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if self.address_family == socket.AF_INET6:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.debug("refusing %s: %d connections open", client_address, self.MAX_CONNECTIONS)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs in the connection's own thread, so a slow TLS handshake holds up
        # nobody else.
        request.settimeout(self.handler_timeout)
        ssl_context = self.web.current().ssl_context
        if ssl_context is None:
            super().finish_request(request, client_address)
            return
        try:
            tls = ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as err:
            log.debug("TLS handshake with %s failed: %s", client_address, err)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            with contextlib.suppress(OSError):
                tls.shutdown(socket.SHUT_WR)
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("error while serving %s", client_address, exc_info=True)


_LANDING = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Docker exporter</title></head>
<body><h1>Docker exporter</h1>
<p>Per-container Docker state for Prometheus. Version {version}.</p>
<p><a href="{path}">Metrics</a></p></body></html>
"""


class ExporterHandler(BaseHTTPRequestHandler):
    server: ExporterServer
    protocol_version = "HTTP/1.1"
    server_version = f"docker-exporter/{__version__}"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        extra = self.server.web.current().config.headers
        for name, value in {**extra, **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorized(self) -> bool:
        auth = self.server.web.current().auth
        if not auth.enabled or auth.check_header(self.headers.get("Authorization")):
            return True
        self._send(
            HTTPStatus.UNAUTHORIZED,
            b"Unauthorized\n",
            "text/plain; charset=utf-8",
            {"WWW-Authenticate": "Basic"},
        )
        return False

    def do_GET(self) -> None:
        if not self._authorized():
            return
        path = urlsplit(self.path).path
        if path == self.server.telemetry_path:
            self._metrics()
        elif path == "/":
            page = _LANDING.format(
                version=__version__, path=html.escape(self.server.telemetry_path, quote=True)
            )
            self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"Not Found\n", "text/plain; charset=utf-8")

    do_HEAD = do_GET

    def _metrics(self) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept"))
        body = encoder(self.server.registry)
        headers = {}
        if "gzip" in (self.headers.get("Accept-Encoding") or ""):
            body = gzip.compress(body, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        self._send(HTTPStatus.OK, body, content_type, headers)
