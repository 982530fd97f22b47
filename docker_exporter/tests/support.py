"""Helpers of the exporter's tests: polling, scraping, an in-process exporter."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import requests
from exporter_web_tests.support import (
    assert_promtool_clean,
    serve_in_thread,
    stop_server,
    wait_for,
)
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


class RunningExporter:
    """An exporter served in-process from a thread."""

    def __init__(self, scraper: EngineScraper, **server_kwargs: object) -> None:
        self.scraper = scraper
        self.server = ExporterServer(
            server_kwargs.pop("listen_address", "127.0.0.1:0"),  # type: ignore[arg-type]
            build_registry(scraper),
            **server_kwargs,  # type: ignore[arg-type]
        )
        serve_in_thread(self.server)

    @property
    def url(self) -> str:
        return self.server.url

    def scrape(self, **kwargs: object) -> Scrape:
        return scrape_url(self.url + self.server.telemetry_path, **kwargs)

    def close(self) -> None:
        stop_server(self.server)
        self.scraper.close()
