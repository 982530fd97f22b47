"""A real Alertmanager posts to the relay: its payload, bearer token and fingerprints."""

from __future__ import annotations

import datetime
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from alert_relay.payload import label_fingerprint

from .support import BASE_CONFIG, RelayProcess, Sink, wait_for

ALERTMANAGER_CONFIG = """
route:
  receiver: relay
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: relay
    webhook_configs:
      - url: {url}/webhooks/critical
        send_resolved: true
        http_config:
          authorization:
            credentials_file: {token}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Factory: alertmanager(relay_url) -> the URL of an Alertmanager posting to the relay.

    Debian's prometheus-alertmanager, which CI installs: missing, the test fails.
    """
    processes: list[subprocess.Popen[bytes]] = []

    def start(relay_url: str) -> str:
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if binary is None:
            pytest.fail("Alertmanager not found on PATH (Debian package prometheus-alertmanager)")
        config = tmp_path / "alertmanager.yml"
        config.write_text(ALERTMANAGER_CONFIG.format(url=relay_url, token=tmp_path / "token"))
        port = _free_port()
        log = (tmp_path / "alertmanager.log").open("wb")
        processes.append(
            subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.path={tmp_path / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--cluster.listen-address=",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return requests.get(url + "/-/ready", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_for(ready, 20, "Alertmanager ready")
        return url

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)


def _now(offset: float = 0.0) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=offset)
    return moment.isoformat().replace("+00:00", "Z")


def test_alertmanager_to_relay_to_destination(
    start_relay: Callable[..., RelayProcess],
    sink: Sink,
    alertmanager: Callable[[str], str],
) -> None:
    relay = start_relay(BASE_CONFIG.format(url=sink.url))
    am = alertmanager(relay.url)
    labels = {"alertname": "TradingBotDown", "severity": "critical", "instance": "bot:8082"}
    annotations = {"summary": "The trading bot is down", "description": "up == 0 for 1m"}
    fault = {"labels": labels, "annotations": annotations, "startsAt": _now(-5)}
    assert requests.post(f"{am}/api/v2/alerts", json=[fault], timeout=5).status_code == 200
    wait_for(lambda: sink.count() >= 1, 20, "the firing alert at the destination")
    firing = sink.bodies()[0]["alert"]
    assert firing["status"] == "firing"
    assert firing["labels"] == labels and firing["annotations"] == annotations
    (held,) = requests.get(f"{am}/api/v2/alerts", timeout=5).json()
    # Alertmanager's fingerprint, as sent, and as the relay computes it from the labels.
    assert firing["fingerprint"] == held["fingerprint"] == label_fingerprint(labels)

    resolved = {**fault, "endsAt": _now()}
    assert requests.post(f"{am}/api/v2/alerts", json=[resolved], timeout=5).status_code == 200
    wait_for(lambda: sink.count() >= 2, 20, "the resolution at the destination")
    last = sink.bodies()[1]["alert"]
    assert last["status"] == "resolved" and last["labels"] == labels
    assert relay.metric("alert_relay_notifications_received_total", outcome="unauthorized") == 0
