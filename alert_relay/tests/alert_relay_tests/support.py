"""Helpers of the relay's tests: the relay as a process, a destination stand-in,
notifications; polling, promtool and certificates from exporter_web_tests."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from exporter_web_tests.support import (
    Certs,
    assert_promtool_clean,
    make_certs,
    serve_in_thread,
    stop_server,
    wait_for,
)

from . import PYTHONPATH

__all__ = [
    "BASE_CONFIG",
    "TOKEN",
    "Certs",
    "RelayProcess",
    "Sink",
    "alert",
    "assert_promtool_clean",
    "make_certs",
    "notification",
    "run_relay",
    "start_sink",
    "wait_for",
]

TOKEN = "am-token-0123456789"

# The usual configuration of a test: one receiver with a token, one destination, short
# backoffs so that retries and dead letters take seconds, not hours.
BASE_CONFIG = """
global:
  retry: {{initial_backoff: 50ms, max_backoff: 200ms, max_age: 30s}}
  history_retention: 1h
receivers:
  critical:
    bearer_token_file: token
    destinations: [sink]
destinations:
  sink:
    url: {url}/alerts
    timeout: 2s
"""


# --- Notifications ---------------------------------------------------------------------------


def alert(
    name: str = "TradingBotDown",
    status: str = "firing",
    starts_at: str = "2024-05-01T10:00:00.123456789Z",
    **labels: str,
) -> dict[str, Any]:
    all_labels = {"alertname": name, "severity": "critical", **labels}
    return {
        "status": status,
        "labels": all_labels,
        "annotations": {"summary": f"{name} summary", "runbook_url": "https://runbooks/x"},
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2024-05-01T11:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
    }


def notification(*alerts: dict[str, Any], receiver: str = "critical-alerts") -> dict[str, Any]:
    alerts = alerts or (alert(),)
    status = "firing" if any(a.get("status") == "firing" for a in alerts) else "resolved"
    return {
        "version": "4",
        "groupKey": '{}:{alertname="TradingBotDown"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"alertname": (alerts[0].get("labels") or {}).get("alertname", "")},
        "commonLabels": {"severity": "critical"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


# --- The destination stand-in ----------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Sink:
    """An HTTP destination that records what it gets, and fails when told to."""

    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)  # answered 200
    attempts: list[float] = field(default_factory=list)  # when each POST came, failed or not
    fail_next: int = 0  # answer this many requests with ``fail_status``
    fail_status: int = 503
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attempts_between(self, start: float, end: float) -> int:
        with self.lock:
            return sum(1 for at in self.attempts if start <= at < end)

    def assert_each_once(self) -> list[Any]:
        """Nothing was received twice (by Idempotency-Key, and by body); the bodies."""
        with self.lock:
            keys = collections.Counter(r.headers["Idempotency-Key"] for r in self.received)
            bodies = collections.Counter(r.body for r in self.received)
        assert max(keys.values(), default=1) == 1, keys.most_common(3)
        assert max(bodies.values(), default=1) == 1, bodies.most_common(1)
        return self.bodies()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def bodies(self) -> list[Any]:
        with self.lock:
            return [r.json for r in self.received]

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def close(self) -> None:
        stop_server(self.server)


def start_sink(port: int = 0) -> Sink:
    sink: Sink

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with sink.lock:
                sink.attempts.append(time.time())
            if sink.delay:
                time.sleep(sink.delay)
            with sink.lock:
                failing = sink.fail_next > 0
                if failing:
                    sink.fail_next -= 1
                else:
                    sink.received.append(
                        Received(self.path, dict(self.headers.items()), body, time.time())
                    )
            status = sink.fail_status if failing else 200
            self.send_response(status)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"ok\n")

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    sink = Sink(server)
    serve_in_thread(server)
    return sink


# --- The relay as a process ------------------------------------------------------------------

_LISTENING = re.compile(r"listening on (https?://\S+),")


class RelayProcess:
    """``python -m alert_relay`` from the sources, on a port of its choosing."""

    def __init__(
        self,
        directory: Path,
        config: str,
        *extra: str,
        log_level: str = "info",
        env: dict[str, str] | None = None,
    ) -> None:
        self.directory = directory
        self.config_path = directory / "relay.yml"
        self.config_path.write_text(config)
        self.storage = directory / "data"
        self.extra = extra
        self.log_level = log_level
        self.env = env or {}
        self.lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.start()

    def start(self, listen: str = "127.0.0.1:0") -> None:
        command = [
            sys.executable,
            "-m",
            "alert_relay",
            f"--config.file={self.config_path}",
            f"--storage.path={self.storage}",
            f"--web.listen-address={listen}",
            f"--log.level={self.log_level}",
            *self.extra,
        ]
        env = {**os.environ, "PYTHONPATH": PYTHONPATH, **self.env}
        self.process = subprocess.Popen(
            command, env=env, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
        )
        assert self.process.stderr is not None
        listening = threading.Event()

        def read(stream: Any) -> None:
            for line in stream:
                self.lines.append(line)
                match = _LISTENING.search(line)
                if match:
                    self.url = match.group(1)
                    listening.set()

        threading.Thread(target=read, args=(self.process.stderr,), daemon=True).start()
        deadline = time.monotonic() + 20
        while not listening.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the relay did not start:\n{self.log}")

    @property
    def log(self) -> str:
        return "".join(self.lines)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def post(self, receiver: str, body: Any, token: str | None = TOKEN, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = body if isinstance(body, bytes | Iterator) else json.dumps(body).encode()
        return requests.post(
            f"{self.url}/webhooks/{receiver}", data=data, headers=headers, timeout=10, **kwargs
        )

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kwargs)

    def history(self, **params: Any) -> list[dict[str, Any]]:
        response = self.get("/api/v1/history", params=params)
        assert response.status_code == 200, response.text
        return response.json()["data"]["notifications"]

    def deliveries(self) -> list[dict[str, Any]]:
        """Every delivery of every alert in the history, with the alert's identity."""
        found = []
        for entry in self.history():
            for item in entry["alerts"]:
                for delivery in item["deliveries"]:
                    found.append(
                        {**delivery, "fingerprint": item["fingerprint"], "status": item["status"]}
                    )
        return found

    def metric(self, name: str, auth: tuple[str, str] | None = None, **labels: str) -> float:
        """The value of one sample of /metrics (0 when absent)."""
        response = self.get("/metrics", auth=auth)
        assert response.status_code == 200, response.text
        text = response.text
        for line in text.splitlines():
            if not line.startswith(name):
                continue
            series, _, value = line.rpartition(" ")
            if series.split("{")[0] != name:
                continue
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                return float(value)
        return 0.0

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """kill -9: no chance to finish anything."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def restart(self) -> None:
        self.start(f"127.0.0.1:{self.port}")


def run_relay(directory: Path, config: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The relay run to completion (for flags and configurations it refuses)."""
    (directory / "relay.yml").write_text(config)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "alert_relay",
            f"--config.file={directory / 'relay.yml'}",
            f"--storage.path={directory / 'data'}",
            "--web.listen-address=127.0.0.1:0",
            *args,
        ],
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
