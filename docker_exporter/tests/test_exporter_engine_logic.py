"""The scrape's bookkeeping, on a stand-in client (the real engine is in test_exporter_engine).

These check what the real engine cannot be made to do on demand: an inspect
that fails with a 500, a stats call that never comes back, a cgroup that
cannot be read, a container whose CPU or network figures are partly unknown.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from docker.errors import APIError, NotFound
from prometheus_client import generate_latest

from docker_exporter.cgroup import CgroupReader, CpuFigures, HostFigures, InterfaceCounters
from docker_exporter.cli import build_registry
from docker_exporter.engine import EngineScraper, ScrapeFailed

from .support import Scrape, assert_promtool_clean


def cid(n: int) -> str:
    return f"{n:012x}" + "f" * 52


def inspect_payload(n: int, status: str, network_mode: str = "bridge") -> dict[str, Any]:
    return {
        "Id": cid(n),
        "Name": f"/c{n}",
        "State": {"Status": status, "Pid": 100 + n if status == "running" else 0},
        "Config": {"Image": "img:1"},
        "HostConfig": {"Memory": 0, "NetworkMode": network_mode},
    }


class StandInClient:
    api_version = "1.41"

    def __init__(self, listed: dict[int, str], inspected: dict[int, Any] | None = None) -> None:
        self.listed = listed  # n -> state in the list answer
        self.inspected = inspected or {}  # n -> state, or an exception to raise
        self.stats_calls: list[str] = []
        self.stats_delay = 0.0
        self.network_modes: dict[int, str] = {}  # n -> HostConfig.NetworkMode

    def containers(self, all: bool) -> list[dict[str, Any]]:
        assert all
        return [
            {
                "Id": cid(n),
                "Names": [f"/c{n}"],
                "Image": "img:1",
                "Labels": {"com.docker.compose.project": "p", "com.docker.compose.service": "s"},
                "State": state,
            }
            for n, state in self.listed.items()
        ]

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        n = int(container_id[:12], 16)
        state = self.inspected.get(n, self.listed.get(n))
        if isinstance(state, Exception):
            raise state
        return inspect_payload(n, state, self.network_modes.get(n, "bridge"))

    def stats(self, container_id: str, stream: bool, one_shot: bool) -> dict[str, Any]:
        assert stream is False and one_shot is True
        self.stats_calls.append(container_id)
        time.sleep(self.stats_delay)
        return {"memory_stats": {"usage": 1000 + int(container_id[:12], 16), "stats": {}}}

    def close(self) -> None:
        pass


class NoCgroup(CgroupReader):
    """A host whose cgroup files cannot be read (another PID namespace, hidepid)."""

    def __init__(self) -> None:
        pass

    @property
    def available(self) -> bool:
        return True

    def read(self, pid: int, container_id: str, *, network: bool = True) -> HostFigures | None:
        return None


class StandInHost(CgroupReader):
    """Host figures made up per container (n), with the reads it was asked for."""

    def __init__(self, figures: dict[int, HostFigures]) -> None:
        self.figures = figures
        self.reads: dict[int, bool] = {}  # n -> network asked

    @property
    def available(self) -> bool:
        return True

    def read(self, pid: int, container_id: str, *, network: bool = True) -> HostFigures | None:
        n = int(container_id[:12], 16)
        assert pid == 100 + n
        self.reads[n] = network
        return self.figures.get(n)


def scraper_for(client: StandInClient, **kwargs: Any) -> EngineScraper:
    class WithStandIn(EngineScraper):
        def _negotiate(self) -> Any:
            return client

    kwargs.setdefault("memory_source", "stats")
    return WithStandIn("unix:///nonexistent.sock", **kwargs)


def test_partial_inspect_failure_keeps_the_others() -> None:
    client = StandInClient({1: "running", 2: "exited", 3: "running"}, {3: APIError("boom")})
    scraper = scraper_for(client)
    by_name = {c.name: c for c in scraper.scrape()}
    assert sorted(by_name) == ["c1", "c2", "c3"]
    assert [n for n, c in sorted(by_name.items()) if c.inspect_failed] == ["c3"]
    # What the list call knew of the failed one.
    failed = by_name["c3"]
    assert (failed.full_id, failed.image, failed.state) == (cid(3), "img:1", "running")
    assert (failed.compose_project, failed.compose_service) == ("p", "s")
    assert scraper.api_errors() == {"list": 0, "inspect": 1, "stats": 0}
    scraper.close()


def test_a_failed_inspect_shows_in_the_metrics() -> None:
    """The container stays, with its state from the list call and inspect_failed 1."""
    client = StandInClient({1: "running", 2: "exited", 3: "running"}, {3: APIError("boom")})
    scraper = scraper_for(client)
    try:
        text = generate_latest(build_registry(scraper)).decode()
    finally:
        scraper.close()
    scrape = Scrape(text, 0.0)
    assert scrape.value("docker_engine_up") == 1.0
    for name, failed in (("c1", 0.0), ("c2", 0.0), ("c3", 1.0)):
        assert scrape.value("docker_container_inspect_failed", name=name) == failed
    labels = {"name": "c3", "id": cid(3)[:12], "image": "img:1", "compose_project": "p"}
    assert scrape.value("docker_container_state", state="running", **labels) == 1.0
    assert scrape.value("docker_container_state", state="exited", **labels) == 0.0
    # What only inspect knows is not sent for it rather than sent as 0.
    for metric in (
        "docker_container_health_status",
        "docker_container_exit_code",
        "docker_container_restarts",
        "docker_container_memory_limit_bytes",
    ):
        assert not scrape.find(metric, name="c3"), metric
        assert scrape.find(metric, name="c1"), metric
    assert scrape.value("docker_exporter_api_errors_total", call="inspect") == 1.0
    assert_promtool_clean(text)


def test_every_inspect_failing_fails_the_scrape() -> None:
    client = StandInClient({1: "running", 2: "exited"}, {1: APIError("a"), 2: APIError("b")})
    scraper = scraper_for(client)
    with pytest.raises(ScrapeFailed, match="every inspect call failed"):
        scraper.scrape()
    scraper.close()


def test_gone_containers_are_not_errors() -> None:
    client = StandInClient({1: "running", 2: "exited"}, {1: NotFound("gone"), 2: NotFound("gone")})
    scraper = scraper_for(client)
    assert scraper.scrape() == []  # an engine with nothing left: up, no series
    assert scraper.api_errors()["inspect"] == 0
    scraper.close()


def test_stats_source_asks_the_list_running_and_trusts_inspect() -> None:
    # 2 stopped between list and inspect; 3 started in between (no stats asked).
    client = StandInClient(
        {1: "running", 2: "running", 3: "exited", 4: "paused"}, {2: "exited", 3: "running"}
    )
    scraper = scraper_for(client)
    by_name = {c.name: c for c in scraper.scrape()}
    assert sorted(client.stats_calls) == [cid(1), cid(2)]
    assert by_name["c1"].memory_usage == 1001
    assert by_name["c2"].memory_usage is None  # not running any more
    assert by_name["c3"].memory_usage is None
    scraper.close()


def test_auto_falls_back_to_stats_when_cgroupfs_fails() -> None:
    client = StandInClient({1: "running", 2: "exited"})

    class WithStandIn(EngineScraper):
        def _negotiate(self) -> Any:
            return client

    scraper = WithStandIn(
        "unix:///nonexistent.sock", memory_source="auto", cgroup_reader=NoCgroup()
    )
    by_name = {c.name: c for c in scraper.scrape()}
    assert client.stats_calls == [cid(1)]
    assert by_name["c1"].memory_usage == 1001
    scraper.close()


def test_slow_stats_hit_the_deadline() -> None:
    client = StandInClient({1: "running"})
    client.stats_delay = 2.0
    scraper = scraper_for(client, deadline=0.5)
    start = time.monotonic()
    with pytest.raises(ScrapeFailed, match="deadline"):
        scraper.scrape()
    assert time.monotonic() - start < 1.0
    scraper.close()


def test_stats_calls_run_side_by_side() -> None:
    # The engine answers stats on its collector's tick: they must not queue.
    client = StandInClient({n: "running" for n in range(1, 41)})
    client.stats_delay = 0.5
    scraper = scraper_for(client, max_concurrency=4, stats_concurrency=64)
    start = time.monotonic()
    assert len(scraper.scrape()) == 40
    assert time.monotonic() - start < 1.5
    scraper.close()


def host_figures(n: int, *, network: bool = True) -> HostFigures:
    return HostFigures(
        memory_usage=1000 + n,
        oom_kills=n,
        cpu=CpuFigures(
            usage_seconds=n + 0.25,
            limit_cores=0.5 * n,
            periods=100 * n,
            throttled_periods=10 * n,
            throttled_seconds=n / 8,
        ),
        network=(
            InterfaceCounters("eth0", 1 + n, 2, 3, 4 + n, 5, 6),
            InterfaceCounters("eth1", 7, 8, 9, 10, 11, 12),
        )
        if network
        else None,
    )


def scrape_with_host(
    client: StandInClient, host: CgroupReader, memory_source: str = "auto"
) -> tuple[Scrape, str]:
    class WithStandIn(EngineScraper):
        def _negotiate(self) -> Any:
            return client

    scraper = WithStandIn(
        "unix:///nonexistent.sock", memory_source=memory_source, cgroup_reader=host
    )
    try:
        text = generate_latest(build_registry(scraper)).decode()
    finally:
        scraper.close()
    return Scrape(text, 0.0), text


def test_host_figures_become_series() -> None:
    client = StandInClient({1: "running", 2: "exited"})
    host = StandInHost({1: host_figures(1)})
    scrape, text = scrape_with_host(client, host)
    assert host.reads == {1: True}  # only running containers are read
    c1 = {"name": "c1", "id": cid(1)[:12], "image": "img:1", "compose_project": ""}
    assert scrape.value("docker_container_memory_usage_bytes", **c1) == 1001
    assert scrape.value("docker_container_memory_oom_kills_total", **c1) == 1
    assert scrape.value("docker_container_cpu_usage_seconds_total", **c1) == 1.25
    assert scrape.value("docker_container_cpu_limit_cores", **c1) == 0.5
    assert scrape.value("docker_container_cpu_cfs_periods_total", **c1) == 100
    assert scrape.value("docker_container_cpu_cfs_throttled_periods_total", **c1) == 10
    assert scrape.value("docker_container_cpu_cfs_throttled_seconds_total", **c1) == 0.125
    expected = {
        "receive_bytes": (2, 7),
        "receive_errors": (2, 8),
        "receive_packets_dropped": (3, 9),
        "transmit_bytes": (5, 10),
        "transmit_errors": (5, 11),
        "transmit_packets_dropped": (6, 12),
    }
    for name, (eth0, eth1) in expected.items():
        metric = f"docker_container_network_{name}_total"
        assert scrape.value(metric, interface="eth0", **c1) == eth0, name
        assert scrape.value(metric, interface="eth1", **c1) == eth1, name
    # No quota and no period: no CFS series, the rest as usual.
    host.figures[3] = HostFigures(cpu=CpuFigures(usage_seconds=1.0, limit_cores=0.0, periods=0))
    client.listed[3] = "running"
    scrape, text = scrape_with_host(client, host)
    assert scrape.value("docker_container_cpu_limit_cores", name="c3") == 0.0
    assert not scrape.find("docker_container_cpu_cfs_periods_total", name="c3")
    assert not scrape.find("docker_container_cpu_cfs_throttled_periods_total", name="c3")
    assert scrape.value("docker_container_cpu_cfs_periods_total", **c1) == 100
    # A stopped container has none of them.
    for family in ("cpu_usage_seconds_total", "network_receive_bytes_total", "memory_oom_kills"):
        assert not [s for s in scrape.samples if family in s.name and s.labels["name"] == "c2"]
    assert_promtool_clean(text)


def test_figures_that_could_not_be_read_are_left_out() -> None:
    client = StandInClient({1: "running", 2: "running", 3: "running"})
    host = StandInHost(
        {
            # Its quota could not be read, and it had no CFS period yet.
            1: HostFigures(memory_usage=5, cpu=CpuFigures(usage_seconds=2.0, periods=0)),
            # A quota, no period used yet, and v2 without throttled_usec.
            3: HostFigures(
                memory_usage=5,
                cpu=CpuFigures(limit_cores=1.5, periods=0, throttled_periods=0),
            ),
        }
    )
    scrape, text = scrape_with_host(client, host, memory_source="cgroup")
    assert scrape.value("docker_container_cpu_usage_seconds_total", name="c1") == 2.0
    for metric in (
        "docker_container_memory_oom_kills_total",
        "docker_container_cpu_limit_cores",
        "docker_container_cpu_cfs_periods_total",
        "docker_container_cpu_cfs_throttled_periods_total",
        "docker_container_cpu_cfs_throttled_seconds_total",
        "docker_container_network_receive_bytes_total",
    ):
        assert not scrape.find(metric, name="c1"), metric
    assert scrape.value("docker_container_cpu_limit_cores", name="c3") == 1.5
    assert scrape.value("docker_container_cpu_cfs_periods_total", name="c3") == 0
    assert scrape.value("docker_container_cpu_cfs_throttled_periods_total", name="c3") == 0
    assert not scrape.find("docker_container_cpu_cfs_throttled_seconds_total", name="c3")
    assert not scrape.find("docker_container_cpu_usage_seconds_total", name="c3")
    # c2's process could not be read at all: only what inspect knows.
    assert scrape.value("docker_container_memory_limit_bytes", name="c2") == 0
    assert not [s for s in scrape.samples if "cpu" in s.name and s.labels.get("name") == "c2"]
    assert_promtool_clean(text)


def test_network_read_only_for_a_namespace_of_its_own() -> None:
    modes = {1: "bridge", 2: "host", 3: f"container:{cid(1)}", 4: "none", 5: "dxtest-net"}
    client = StandInClient(dict.fromkeys(modes, "running"))
    client.network_modes = modes
    host = StandInHost({n: host_figures(n, network=(n in (1, 5))) for n in modes})
    scrape, _text = scrape_with_host(client, host)
    assert host.reads == {1: True, 2: False, 3: False, 4: False, 5: True}
    with_network = {
        s.labels["name"] for s in scrape.find("docker_container_network_receive_bytes_total")
    }
    assert with_network == {"c1", "c5"}
    assert len(scrape.find("docker_container_cpu_usage_seconds_total")) == 5


def test_stats_source_reads_no_host_files() -> None:
    client = StandInClient({1: "running"})
    host = StandInHost({1: host_figures(1)})
    scrape, _text = scrape_with_host(client, host, memory_source="stats")
    assert host.reads == {}
    assert scrape.value("docker_container_memory_usage_bytes", name="c1") == 1001  # from stats
    assert not scrape.find("docker_container_cpu_usage_seconds_total")
    assert not scrape.find("docker_container_network_receive_bytes_total")
