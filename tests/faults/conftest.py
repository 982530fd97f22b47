"""Fixtures of the fault matrix: the rendered catalog, a recorder, and a bench that stops
what a test started (and unmounts what it mounted) whatever the outcome."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Recorder, Service, render_catalog


@pytest.fixture(scope="session")
def catalog(tmp_path_factory):
    """The monitoring host's configuration as site.yml renders it (time accelerated).

    `make faults` renders it once before the tests run side by side and names it in
    FAULTS_CATALOG; a plain pytest run renders it itself.
    """
    if os.geteuid() != 0:
        pytest.fail("the fault matrix mounts file systems: run it as root (CI does)")
    rendered = os.environ.get("FAULTS_CATALOG")
    if rendered:
        return Path(rendered)
    return render_catalog(tmp_path_factory.mktemp("rendered"))


@pytest.fixture
def recorder():
    recorder = Recorder()
    yield recorder
    recorder.close()


class Bench:
    """What one test started: stopped at its end, logs kept in its directory."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.services: list[Service] = []
        self.cleanups: list = []

    def start(self, service: Service, wait: bool = True) -> Service:
        self.services.append(service)
        service.start(wait=wait)
        return service

    def close(self) -> None:
        for service in reversed(self.services):
            service.stop()
        for cleanup in reversed(self.cleanups):
            cleanup()


@pytest.fixture
def bench(tmp_path, request):
    bench = Bench(tmp_path)
    yield bench
    bench.close()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        for service in bench.services:
            print(f"--- {service.name} ({service.log_path}):\n{service.log_tail(40)}")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)
