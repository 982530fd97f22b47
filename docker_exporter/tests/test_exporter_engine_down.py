"""An engine that is absent or hangs: docker_engine_up 0, within the deadline."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .support import RunningExporter


@pytest.fixture
def silent_engine(tmp_path: Path) -> Iterator[str]:
    """A Unix socket that accepts connections and never answers a byte."""
    path = tmp_path / "silent.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"unix://{path}"
    stop.set()
    thread.join(5)
    for connection in held:
        connection.close()
    listener.close()


def assert_down(exporter: RunningExporter, within: float) -> None:
    scrape = exporter.scrape()
    assert scrape.value("docker_engine_up") == 0.0
    assert not [s for s in scrape.samples if s.name.startswith("docker_container_")]
    assert scrape.value("docker_exporter_scrape_duration_seconds") < within
    assert scrape.find("process_resident_memory_bytes")
    assert scrape.seconds < within


def test_no_engine_listening(
    start_exporter: Callable[..., RunningExporter], tmp_path: Path
) -> None:
    exporter = start_exporter(f"unix://{tmp_path}/nobody-here.sock", deadline=8.0)
    start = time.monotonic()
    assert_down(exporter, within=1.0)  # refused at once, no waiting for the deadline
    assert time.monotonic() - start < 1.0
    errors = exporter.scrape().value("docker_exporter_api_errors_total", call="list")
    assert errors >= 1


def test_hanging_engine_is_cut_off_at_the_deadline(
    start_exporter: Callable[..., RunningExporter], silent_engine: str
) -> None:
    # Each call may wait 5 s, but the scrape as a whole gives up after 1 s.
    exporter = start_exporter(silent_engine, timeout=5.0, deadline=1.0)
    for _ in range(2):
        start = time.monotonic()
        assert_down(exporter, within=1.8)
        assert time.monotonic() - start >= 0.9


def test_hanging_engine_call_timeout(
    start_exporter: Callable[..., RunningExporter], silent_engine: str
) -> None:
    # A call timeout shorter than the deadline ends the scrape sooner, as an API error.
    exporter = start_exporter(silent_engine, timeout=0.5, deadline=5.0)
    assert_down(exporter, within=1.5)
    assert exporter.scrape().value("docker_exporter_api_errors_total", call="list") >= 1
