"""The scrape's bookkeeping, on a stand-in client (the real engine is in test_exporter_engine).

These check what the real engine cannot be made to do on demand: an inspect
that fails with a 500, a stats call that never comes back, a cgroup that
cannot be read.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from docker.errors import APIError, NotFound
from prometheus_client import generate_latest

from docker_exporter.cgroup import CgroupMemoryReader
from docker_exporter.cli import build_registry
from docker_exporter.engine import EngineScraper, ScrapeFailed

from .support import Scrape, assert_promtool_clean


def cid(n: int) -> str:
    return f"{n:012x}" + "f" * 52


def inspect_payload(n: int, status: str) -> dict[str, Any]:
    return {
        "Id": cid(n),
        "Name": f"/c{n}",
        "State": {"Status": status, "Pid": 100 + n if status == "running" else 0},
        "Config": {"Image": "img:1"},
        "HostConfig": {"Memory": 0},
    }


class StandInClient:
    api_version = "1.41"

    def __init__(self, listed: dict[int, str], inspected: dict[int, Any] | None = None) -> None:
        self.listed = listed  # n -> state in the list answer
        self.inspected = inspected or {}  # n -> state, or an exception to raise
        self.stats_calls: list[str] = []
        self.stats_delay = 0.0

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
        return inspect_payload(n, state)

    def stats(self, container_id: str, stream: bool, one_shot: bool) -> dict[str, Any]:
        assert stream is False and one_shot is True
        self.stats_calls.append(container_id)
        time.sleep(self.stats_delay)
        return {"memory_stats": {"usage": 1000 + int(container_id[:12], 16), "stats": {}}}

    def close(self) -> None:
        pass


class NoCgroup(CgroupMemoryReader):
    def __init__(self) -> None:
        pass

    @property
    def available(self) -> bool:
        return True

    def memory_usage(self, pid: int, container_id: str) -> int | None:
        return None


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
