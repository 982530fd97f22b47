"""Against the real Docker engine: prepared containers, scraped over HTTP.

No mock of the engine anywhere: these tests start containers from
debian:bookworm, wait (by polling) until each is in the state it was made
for, and check every metric of each of them in the exporter's output.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import docker
import pytest
from docker.errors import NotFound

from docker_exporter.engine import EngineScraper
from docker_exporter.parsing import HEALTH_STATUSES, STATES
from docker_exporter.transport import SharedPoolUnixAdapter, make_client

from .support import (
    DOCKER_HOST,
    TEST_IMAGE,
    RunningExporter,
    Scrape,
    assert_promtool_clean,
    wait_for,
)

pytestmark = pytest.mark.engine

SECOND_NS = 1_000_000_000
MIB = 1024 * 1024


@dataclass
class Prepared:
    client: docker.DockerClient
    prefix: str
    started: float
    containers: dict[str, Any] = field(default_factory=dict)

    def name(self, key: str) -> str:
        return self.prefix + key


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    """The real engine; a test that needs it fails (never skips) without it."""
    try:
        client = docker.DockerClient(base_url=DOCKER_HOST, version="auto", timeout=60)
        client.ping()
        client.images.get(TEST_IMAGE)
    except Exception as err:
        pytest.fail(f"no usable Docker engine at {DOCKER_HOST} with {TEST_IMAGE}: {err}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def prepared(engine: docker.DockerClient) -> Iterator[Prepared]:
    run = uuid.uuid4().hex[:8]
    labels = {"dxtest": "1", "dxtest.run": run}
    prep = Prepared(engine, f"dxtest-{run}-", time.time())
    volumes = []

    def start(key: str, command: list[str], **kwargs: Any) -> None:
        container = engine.containers.run(
            TEST_IMAGE,
            command,
            name=prep.name(key),
            labels={**labels, **kwargs.pop("labels", {})},
            detach=True,
            **kwargs,
        )
        prep.containers[key] = container

    sleep = ["sleep", "infinity"]
    try:
        # The restart loop first: its count grows while the others start.
        start(
            "restartloop",
            ["sh", "-c", "sleep 1; exit 1"],
            restart_policy={"Name": "always"},
        )
        start(
            "healthy",
            sleep,
            healthcheck={"test": ["CMD", "true"], "interval": SECOND_NS, "retries": 1},
        )
        start(
            "unhealthy",
            sleep,
            healthcheck={"test": ["CMD", "false"], "interval": SECOND_NS, "retries": 1},
        )
        start("exit3", ["sh", "-c", "exit 3"])
        start("limit64m", sleep, mem_limit=64 * MIB)
        start("nolimit", sleep)
        start(
            "compose",
            sleep,
            labels={
                "com.docker.compose.project": "dxtestproj",
                "com.docker.compose.service": "web",
            },
        )
        for n in (1, 2):
            volumes.append(engine.volumes.create(name=prep.name(f"vol{n}"), labels=labels))
        start(
            "mounts",
            sleep,
            volumes={
                volumes[0].name: {"bind": "/data1", "mode": "rw"},
                volumes[1].name: {"bind": "/data2", "mode": "ro"},
            },
        )

        def state(key: str) -> dict[str, Any]:
            return engine.api.inspect_container(prep.containers[key].id)

        expectations: dict[str, Callable[[dict[str, Any]], bool]] = {
            "restartloop": lambda c: c["RestartCount"] >= 1,
            "healthy": lambda c: c["State"].get("Health", {}).get("Status") == "healthy",
            "unhealthy": lambda c: c["State"].get("Health", {}).get("Status") == "unhealthy",
            "exit3": lambda c: c["State"]["Status"] == "exited",
            "limit64m": lambda c: c["State"]["Status"] == "running",
            "nolimit": lambda c: c["State"]["Status"] == "running",
            "compose": lambda c: c["State"]["Status"] == "running",
            "mounts": lambda c: c["State"]["Status"] == "running",
        }

        def unmet() -> list[str]:
            return [key for key, check in expectations.items() if not check(state(key))]

        wait_for(lambda: not unmet(), 90, "the prepared containers' states")
        yield prep
    finally:
        for container in prep.containers.values():
            with contextlib.suppress(NotFound):
                container.remove(force=True)
        for volume in volumes:
            with contextlib.suppress(NotFound):
                volume.remove(force=True)


@pytest.fixture(scope="module")
def exporter(prepared: Prepared) -> Iterator[RunningExporter]:
    scraper = EngineScraper(DOCKER_HOST, timeout=3.0, max_concurrency=16, deadline=8.0)
    running = RunningExporter(scraper)
    yield running
    running.close()


def series(scrape: Scrape, name: str, container: str, **labels: str) -> float:
    return scrape.value(name, name=container, **labels)


def assert_state(scrape: Scrape, container: str, expected: str) -> None:
    values = {s: series(scrape, "docker_container_state", container, state=s) for s in STATES}
    assert values == {s: 1.0 if s == expected else 0.0 for s in STATES}, container


def assert_health(scrape: Scrape, container: str, expected: str) -> None:
    values = {
        h: series(scrape, "docker_container_health_status", container, health=h)
        for h in HEALTH_STATUSES
    }
    assert values == {h: 1.0 if h == expected else 0.0 for h in HEALTH_STATUSES}, container


RUNNING = ("healthy", "unhealthy", "limit64m", "nolimit", "compose", "mounts")


def test_engine_up_and_self_metrics(exporter: RunningExporter) -> None:
    scrape = exporter.scrape()
    assert scrape.value("docker_engine_up") == 1.0
    assert 0 < scrape.value("docker_exporter_scrape_duration_seconds") < 8.0
    for call in ("list", "inspect", "stats"):
        assert scrape.value("docker_exporter_api_errors_total", call=call) == 0.0
    for sample in scrape.find("docker_container_inspect_failed"):
        assert sample.value == 0.0, sample
    assert scrape.value("process_resident_memory_bytes") > 0
    assert scrape.find("process_cpu_seconds_total")


def test_output_passes_promtool_check_metrics(
    exporter: RunningExporter, prepared: Prepared
) -> None:
    """A real scrape, with every kind of container prepared above, lints clean."""
    scrape = exporter.scrape()
    assert scrape.find("docker_container_restarts", name=prepared.name("restartloop"))
    assert scrape.value("docker_exporter_web_config_last_reload_successful") == 1.0
    assert_promtool_clean(scrape.text)


def test_labels(exporter: RunningExporter, prepared: Prepared) -> None:
    scrape = exporter.scrape()
    for key, container in prepared.containers.items():
        (sample,) = scrape.find("docker_container_exit_code", name=prepared.name(key))
        assert sample.labels["id"] == container.id[:12]
        assert sample.labels["image"] == TEST_IMAGE
        compose = ("dxtestproj", "web") if key == "compose" else ("", "")
        assert (sample.labels["compose_project"], sample.labels["compose_service"]) == compose


def test_states_and_health(exporter: RunningExporter, prepared: Prepared) -> None:
    scrape = exporter.scrape()
    for key in RUNNING:
        assert_state(scrape, prepared.name(key), "running")
    assert_state(scrape, prepared.name("exit3"), "exited")
    assert_health(scrape, prepared.name("healthy"), "healthy")
    assert_health(scrape, prepared.name("unhealthy"), "unhealthy")
    for key in ("exit3", "limit64m", "nolimit", "compose", "mounts", "restartloop"):
        assert_health(scrape, prepared.name(key), "none")


def test_exit_codes_and_oom(exporter: RunningExporter, prepared: Prepared) -> None:
    scrape = exporter.scrape()
    assert series(scrape, "docker_container_exit_code", prepared.name("exit3")) == 3.0
    for key in RUNNING:
        assert series(scrape, "docker_container_exit_code", prepared.name(key)) == 0.0
    for key in prepared.containers:
        assert series(scrape, "docker_container_oom_killed", prepared.name(key)) == 0.0


def test_times(exporter: RunningExporter, prepared: Prepared) -> None:
    scrape = exporter.scrape()
    now = time.time()
    for key in (*RUNNING, "exit3"):
        started = series(scrape, "docker_container_start_time_seconds", prepared.name(key))
        assert prepared.started - 5 <= started <= now + 1, key
    for key in RUNNING:  # never stopped: no finish time
        assert not scrape.find("docker_container_finish_time_seconds", name=prepared.name(key))
    finished = series(scrape, "docker_container_finish_time_seconds", prepared.name("exit3"))
    assert prepared.started - 5 <= finished <= now + 1


def test_never_started_container_has_no_times(
    exporter: RunningExporter, prepared: Prepared
) -> None:
    container = prepared.client.containers.create(
        TEST_IMAGE, ["true"], name=prepared.name("created"), labels={"dxtest": "1"}
    )
    prepared.containers["created"] = container  # removed by the fixture
    scrape = exporter.scrape()
    name = prepared.name("created")
    assert_state(scrape, name, "created")
    assert not scrape.find("docker_container_start_time_seconds", name=name)
    assert not scrape.find("docker_container_finish_time_seconds", name=name)
    assert not scrape.find("docker_container_memory_limit_bytes", name=name)


def test_mounts(exporter: RunningExporter, prepared: Prepared) -> None:
    scrape = exporter.scrape()
    assert series(scrape, "docker_container_mounts", prepared.name("mounts")) == 2.0
    assert series(scrape, "docker_container_mounts", prepared.name("nolimit")) == 0.0


def test_memory(exporter: RunningExporter, prepared: Prepared) -> None:
    scrape = exporter.scrape()
    limit = "docker_container_memory_limit_bytes"
    assert series(scrape, limit, prepared.name("limit64m")) == 67108864.0
    assert series(scrape, limit, prepared.name("nolimit")) == 0.0
    for key in RUNNING:
        usage = series(scrape, "docker_container_memory_usage_bytes", prepared.name(key))
        assert 0 < usage < 64 * MIB, key
    for absent in ("exit3",):  # not running: no memory series
        assert not scrape.find(limit, name=prepared.name(absent))
        assert not scrape.find("docker_container_memory_usage_bytes", name=prepared.name(absent))


def test_restart_loop(exporter: RunningExporter, prepared: Prepared) -> None:
    name = prepared.name("restartloop")

    def check(scrape: Scrape) -> float:
        state = {s: series(scrape, "docker_container_state", name, state=s) for s in STATES}
        assert sum(state.values()) == 1.0
        assert state["restarting"] == 1.0 or state["running"] == 1.0, state
        count = series(scrape, "docker_container_restarts", name)
        assert count > 0
        # Exited with 1 at least once, so a finish time is there in any state.
        assert series(scrape, "docker_container_exit_code", name) in (0.0, 1.0)
        assert scrape.find("docker_container_finish_time_seconds", name=name)
        return count

    first = check(exporter.scrape())
    wait_for(lambda: check(exporter.scrape()) > first, 60, "the restart count to grow")


def test_stats_memory_source(
    start_exporter: Callable[..., RunningExporter], prepared: Prepared
) -> None:
    """Memory through Engine stats calls only: the path for a remote engine."""
    exporter = start_exporter(memory_source="stats")
    scrape = exporter.scrape()
    assert scrape.value("docker_engine_up") == 1.0
    assert scrape.value("docker_exporter_api_errors_total", call="stats") == 0.0
    assert (
        series(scrape, "docker_container_memory_limit_bytes", prepared.name("limit64m"))
        == 67108864.0
    )
    # Some engines (this CI's nested one among them) answer stats calls with
    # empty memory figures; then the series is left out rather than sent as 0.
    for key in RUNNING:
        for sample in scrape.find("docker_container_memory_usage_bytes", name=prepared.name(key)):
            assert sample.value > 0
    assert scrape.seconds < 8.0


def test_container_gone_between_list_and_inspect(prepared: Prepared) -> None:
    """A 404 on inspect drops that container silently: not an error, not a failed scrape."""

    class ListsAGhost(EngineScraper):
        def _list(self, client: Any) -> list[dict[str, Any]]:
            return [*super()._list(client), {"Id": "0" * 64}]

    scraper = ListsAGhost(DOCKER_HOST, timeout=3.0, max_concurrency=4, deadline=8.0)
    try:
        containers = scraper.scrape()
    finally:
        scraper.close()
    names = {c.name for c in containers}
    assert prepared.name("healthy") in names
    assert all(c.full_id != "0" * 64 for c in containers)
    assert scraper.api_errors() == {"list": 0, "inspect": 0, "stats": 0}


def test_small_pool_and_connection_reuse(
    start_exporter: Callable[..., RunningExporter], prepared: Prepared
) -> None:
    exporter = start_exporter(max_concurrency=1)
    for _ in range(3):
        scrape = exporter.scrape()
        assert scrape.value("docker_engine_up") == 1.0
        assert_state(scrape, prepared.name("exit3"), "exited")


def test_one_connection_pool_for_all_containers(prepared: Prepared) -> None:
    """docker-py alone opens a new connection per container URL; ours reuses one."""
    client = make_client(
        DOCKER_HOST, version="1.41", timeout=5.0, max_pool_size=4, user_agent="dxtest"
    )
    try:
        for container in prepared.containers.values():
            client.inspect_container(container.id)
        adapter = client.get_adapter("http+docker://localhost")
        assert isinstance(adapter, SharedPoolUnixAdapter)
        assert len(adapter.pools) == 1
        (key,) = adapter.pools.keys()
        pool = adapter.pools[key]
        idle = [conn for conn in pool.pool.queue if conn is not None]
        assert len(idle) == 1  # sequential calls: one connection, reused
    finally:
        client.close()
