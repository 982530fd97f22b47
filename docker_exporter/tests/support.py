"""Helpers of the exporter's tests: polling, scraping, an in-process exporter."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from docker_exporter.cli import build_registry
from docker_exporter.engine import EngineScraper
from docker_exporter.server import ExporterServer

from . import SRC

__all__ = [
    "DOCKER_HOST",
    "SRC",
    "TEST_IMAGE",
    "RunningExporter",
    "Scrape",
    "assert_promtool_clean",
    "scrape_url",
    "wait_for",
]

DOCKER_HOST = os.environ.get("DXTEST_DOCKER_HOST", "unix:///var/run/docker.sock")
TEST_IMAGE = "debian:bookworm"


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, interval: float = 0.2
) -> object:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


class Scrape:
    """One parsed /metrics response."""

    def __init__(self, text: str, seconds: float) -> None:
        self.text = text
        self.seconds = seconds
        self.samples = [
            Sample(s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def find(self, metric: str, /, **labels: str) -> list[Sample]:
        """Samples of ``metric`` whose labels include ``labels``."""
        return [
            s
            for s in self.samples
            if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, metric: str, /, **labels: str) -> float:
        found = self.find(metric, **labels)
        assert len(found) == 1, f"{len(found)} samples of {metric}{labels}, want 1"
        return found[0].value


def scrape_url(url: str, **kwargs: object) -> Scrape:
    start = time.monotonic()
    response = requests.get(url, timeout=30, **kwargs)  # type: ignore[arg-type]
    seconds = time.monotonic() - start
    assert response.status_code == 200, response.text
    return Scrape(response.text, seconds)


def assert_promtool_clean(text: str) -> None:
    """``promtool check metrics`` finds nothing to say about ``text`` (Prometheus format).

    promtool comes with Debian's prometheus package, which CI installs
    (scripts/prepare-machine): missing, the test fails rather than skips.
    """
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found on PATH (Debian package prometheus)")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    problems = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not problems, f"promtool check metrics:\n{problems}"


class RunningExporter:
    """An exporter served in-process from a thread."""

    def __init__(self, scraper: EngineScraper, **server_kwargs: object) -> None:
        self.scraper = scraper
        self.server = ExporterServer(
            server_kwargs.pop("listen_address", "127.0.0.1:0"),  # type: ignore[arg-type]
            build_registry(scraper),
            **server_kwargs,  # type: ignore[arg-type]
        )
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return self.server.url

    def scrape(self, **kwargs: object) -> Scrape:
        return scrape_url(self.url + self.server.telemetry_path, **kwargs)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.scraper.close()
