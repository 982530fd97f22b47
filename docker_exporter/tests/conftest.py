"""Fixtures of the exporter's tests.

Tests marked ``engine`` talk to the real Docker engine at
/var/run/docker.sock (or $DXTEST_DOCKER_HOST) and FAIL when it does not
answer: CI always has one. Containers they make are named ``dxtest-<run>-*``
and labelled ``dxtest=1``, and are removed afterwards even on failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from docker_exporter.engine import EngineScraper

from .support import DOCKER_HOST, RunningExporter


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "engine: needs the real Docker engine (fails without)")


@pytest.fixture
def start_exporter() -> Iterator[Callable[..., RunningExporter]]:
    """Factory: start_exporter(docker_host=..., timeout=..., ...) -> RunningExporter."""
    started: list[RunningExporter] = []

    def start(
        docker_host: str = DOCKER_HOST,
        *,
        timeout: float = 3.0,
        max_concurrency: int = 16,
        stats_concurrency: int = 128,
        deadline: float = 8.0,
        memory_source: str = "auto",
        **server_kwargs: object,
    ) -> RunningExporter:
        scraper = EngineScraper(
            docker_host,
            timeout=timeout,
            max_concurrency=max_concurrency,
            stats_concurrency=stats_concurrency,
            deadline=deadline,
            memory_source=memory_source,
        )
        exporter = RunningExporter(scraper, **server_kwargs)
        started.append(exporter)
        return exporter

    yield start
    for exporter in started:
        exporter.close()
