"""Against the real Docker engine: prepared containers, scraped over HTTP.

No mock of the engine anywhere: these tests start containers from
debian:bookworm, wait (by polling) until each is in the state it was made
for, and check every metric of each of them in the exporter's output. CPU,
OOM kill and network figures come from the real cgroup and /proc files of
these containers, and are checked against what the kernel shows elsewhere
(the process's own CPU time, the interface's counters seen from inside the
container) and against traffic the tests send.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import docker
import pytest
from docker.errors import APIError, NotFound

from docker_exporter.cgroup import CgroupReader
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
    networks = []

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
        # Busy, with a CFS quota of 0.2 CPU (10 ms per 50 ms period): throttled
        # in nearly every period.
        start("cpubusy", ["sh", "-c", "while :; do :; done"], cpu_period=50000, cpu_quota=10000)
        start("hostnet", sleep, network_mode="host")
        networks.append(engine.networks.create(prep.name("net"), labels=labels))
        start("twonets", sleep)
        networks[0].connect(prep.containers["twonets"])
        # A child process killed by the OOM killer; the container runs on.
        start(
            "oom",
            ["sh", "-c", "tail /dev/zero; sleep infinity"],
            mem_limit=32 * MIB,
            memswap_limit=32 * MIB,
        )
        # Created, and its start failed (the command is not in the image):
        # what a wrong image or tag looks like once Compose has created it.
        prep.containers["startfail"] = engine.containers.create(
            TEST_IMAGE, ["/nonexistent"], name=prep.name("startfail"), labels=labels
        )
        with contextlib.suppress(APIError):
            prep.containers["startfail"].start()
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
            "cpubusy": lambda c: c["State"]["Status"] == "running",
            "hostnet": lambda c: c["State"]["Status"] == "running",
            "twonets": lambda c: len(c["NetworkSettings"]["Networks"]) == 2,
            "oom": lambda c: c["State"]["Status"] == "running",
            "startfail": lambda c: c["State"]["ExitCode"] == 127,
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
        for network in networks:
            with contextlib.suppress(NotFound):
                network.remove()


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


RUNNING = (
    "healthy",
    "unhealthy",
    "limit64m",
    "nolimit",
    "compose",
    "mounts",
    "cpubusy",
    "hostnet",
    "twonets",
    "oom",
)


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


# --- CPU, OOM kills and network, from the real cgroup and /proc files ------


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process (/proc/<pid>/stat): the kernel's per-task accounting."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_cpu_limit(exporter: RunningExporter, prepared: Prepared) -> None:
    scrape = exporter.scrape()
    limit = "docker_container_cpu_limit_cores"
    assert series(scrape, limit, prepared.name("cpubusy")) == 0.2  # 10000 / 50000
    for key in ("nolimit", "limit64m", "hostnet"):
        assert series(scrape, limit, prepared.name(key)) == 0.0, key  # no quota: 0
    for key in ("exit3", "startfail"):  # not running: no CPU series
        assert not scrape.find(limit, name=prepared.name(key))
        assert not scrape.find("docker_container_cpu_usage_seconds_total", name=prepared.name(key))


def test_cpu_usage_matches_the_process_accounting(
    exporter: RunningExporter, prepared: Prepared
) -> None:
    """The cgroup's CPU time of a one-process container is that process's CPU time."""
    name = prepared.name("cpubusy")
    pid = prepared.client.api.inspect_container(prepared.containers["cpubusy"].id)["State"]["Pid"]
    before = process_cpu_seconds(pid)
    usage = series(exporter.scrape(), "docker_container_cpu_usage_seconds_total", name)
    after = process_cpu_seconds(pid)
    # One clock tick of rounding, and runc's own start in the container's cgroup.
    assert before - 0.05 <= usage <= after + 0.05, (before, usage, after)
    assert usage > 0


def test_cpu_throttling(exporter: RunningExporter, prepared: Prepared) -> None:
    name = prepared.name("cpubusy")
    names = (
        "docker_container_cpu_usage_seconds_total",
        "docker_container_cpu_cfs_periods_total",
        "docker_container_cpu_cfs_throttled_periods_total",
        "docker_container_cpu_cfs_throttled_seconds_total",
    )
    outer_start = time.monotonic()
    first = exporter.scrape()
    inner_start = time.monotonic()
    time.sleep(2.0)
    inner = time.monotonic() - inner_start
    second = exporter.scrape()
    outer = time.monotonic() - outer_start
    usage, periods, throttled, throttled_seconds = (
        series(second, metric, name) - series(first, metric, name) for metric in names
    )
    # A quota of 0.2 CPU: never more than that, and some of it even on busy cores.
    assert 0 < usage <= 0.2 * outer + 0.02, (usage, outer)
    # Busy all the time: one 50 ms period after another (the two reads are
    # between the inner and the outer interval apart).
    assert 0.8 * inner / 0.05 <= periods <= outer / 0.05 + 2, (periods, inner, outer)
    # Throttled in some of them: how many depends on how busy the host's cores
    # are (22 of 51 on the 2 shared cores of the development machine).
    assert 0 < throttled <= periods, (throttled, periods)
    # Summed over the CPUs its threads waited on.
    assert 0 < throttled_seconds <= outer * (os.cpu_count() or 1)
    # No quota: no CFS series (they would stay 0).
    nolimit = prepared.name("nolimit")
    for metric in names[1:]:
        assert not second.find(metric, name=nolimit), metric


def test_cgroup_v2_files_of_a_real_container(prepared: Prepared, tmp_path: Any) -> None:
    """The v2 code path on this host's real cgroup2 files (Debian 12: the hybrid
    hierarchy, where v2 has CPU usage only; Debian 13: all of them), against the
    figures of the reader that sees every hierarchy."""
    with open("/proc/self/mountinfo", encoding="ascii") as handle:
        v2_only = [line for line in handle if " - cgroup2 " in line]
    assert v2_only, "no cgroup2 hierarchy mounted on this host"
    container = prepared.client.api.inspect_container(prepared.containers["cpubusy"].id)
    pid, full_id = container["State"]["Pid"], container["Id"]
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mountinfo").write_text("".join(v2_only))
    (tmp_path / str(pid)).symlink_to(f"/proc/{pid}")
    v2 = CgroupReader(proc=str(tmp_path)).read(pid, full_id)
    every = CgroupReader().read(pid, full_id)
    assert v2 is not None and every is not None
    assert v2.cpu.usage_seconds is not None and every.cpu.usage_seconds is not None
    # Read one after the other by a container using 0.2 CPU at most.
    assert 0 <= every.cpu.usage_seconds - v2.cpu.usage_seconds < 0.1
    # The same interfaces, through the same process.
    assert v2.network is not None and every.network is not None
    assert [i.interface for i in v2.network] == [i.interface for i in every.network] == ["eth0"]


def test_oom_kill_in_a_running_container(exporter: RunningExporter, prepared: Prepared) -> None:
    """The kernel counts the kill; the engine's flag is about how the last run ended."""
    name = prepared.name("oom")
    wait_for(
        lambda: (
            exporter.scrape().find("docker_container_memory_oom_kills_total", name=name)[0].value
            >= 1
        ),
        30,
        "the OOM killer to kill tail in the oom container",
    )
    scrape = exporter.scrape()
    assert series(scrape, "docker_container_memory_oom_kills_total", name) == 1.0
    assert_state(scrape, name, "running")
    assert series(scrape, "docker_container_oom_killed", name) == 0.0
    for key in ("nolimit", "limit64m", "cpubusy"):
        assert series(scrape, "docker_container_memory_oom_kills_total", prepared.name(key)) == 0


def test_container_that_could_not_start(exporter: RunningExporter, prepared: Prepared) -> None:
    """Created, start failed: state created, the engine's exit code 127, never started."""
    name = prepared.name("startfail")
    scrape = exporter.scrape()
    assert_state(scrape, name, "created")
    assert series(scrape, "docker_container_exit_code", name) == 127.0
    assert not scrape.find("docker_container_start_time_seconds", name=name)


def interface_statistics(container: Any, interface: str) -> dict[str, int]:
    """The interface's counters as the container sees them (sysfs in its namespace)."""
    files = ("rx_bytes", "rx_errors", "rx_dropped", "tx_bytes", "tx_errors", "tx_dropped")
    command = f"cd /sys/class/net/{interface}/statistics && cat {' '.join(files)}"
    result = container.exec_run(["sh", "-c", command])
    assert result.exit_code == 0, result.output
    return dict(zip(files, (int(v) for v in result.output.split()), strict=True))


NETWORK_SERIES = {
    "rx_bytes": "docker_container_network_receive_bytes_total",
    "rx_errors": "docker_container_network_receive_errors_total",
    "rx_dropped": "docker_container_network_receive_packets_dropped_total",
    "tx_bytes": "docker_container_network_transmit_bytes_total",
    "tx_errors": "docker_container_network_transmit_errors_total",
    "tx_dropped": "docker_container_network_transmit_packets_dropped_total",
}


def test_network_counters_are_the_containers_own(
    exporter: RunningExporter, prepared: Prepared
) -> None:
    """What the exporter reads on the host through /proc/<pid>/net/dev is what the
    container sees of its interface from inside; its loopback is left out."""
    key = "nolimit"
    name = prepared.name(key)
    before = interface_statistics(prepared.containers[key], "eth0")
    scrape = exporter.scrape()
    after = interface_statistics(prepared.containers[key], "eth0")
    for field_name, metric in NETWORK_SERIES.items():
        value = series(scrape, metric, name, interface="eth0")
        assert before[field_name] <= value <= after[field_name], field_name
    interfaces = {s.labels["interface"] for s in scrape.find(NETWORK_SERIES["rx_bytes"], name=name)}
    assert interfaces == {"eth0"}


def host_end_of_veth(container: Any) -> str:
    """The host's name of the other end of the container's eth0 (a veth pair)."""
    result = container.exec_run(["cat", "/sys/class/net/eth0/iflink"])
    assert result.exit_code == 0, result.output
    index = int(result.output)
    for name in os.listdir("/sys/class/net"):
        with open(f"/sys/class/net/{name}/ifindex", encoding="ascii") as handle:
            if int(handle.read()) == index:
                return name
    raise AssertionError(f"no interface with index {index} on the host")


def test_network_traffic_and_drops(exporter: RunningExporter, prepared: Prepared) -> None:
    """20 datagrams of 1000 bytes sent to the container, and 5 Ethernet frames of a
    protocol it has no handler for, which its kernel drops (rx_dropped)."""
    key = "nolimit"
    name = prepared.name(key)
    container = prepared.containers[key]
    settings = prepared.client.api.inspect_container(container.id)
    network = settings["NetworkSettings"]["Networks"]["bridge"]
    mac = bytes.fromhex(network["MacAddress"].replace(":", ""))
    first = exporter.scrape()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for _ in range(20):
            udp.sendto(b"x" * 1000, (network["IPAddress"], 9))
    # Straight into the host's end of the container's veth, never through the
    # bridge, which would flood a frame for an address it has not learnt to
    # every other container. A raw socket needs CAP_NET_RAW (root).
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as raw:
        raw.bind((host_end_of_veth(container), 0))
        source = raw.getsockname()[4]
        for _ in range(5):
            raw.send(mac + source + b"\x88\xb5" + b"\0" * 46)  # IEEE local experimental

    def delta(metric: str) -> float:
        return series(exporter.scrape(), metric, name, interface="eth0") - series(
            first, metric, name, interface="eth0"
        )

    # Ethernet, IP and UDP headers on top of each payload; 60-byte frames.
    wanted = 20 * (1000 + 8 + 20 + 14) + 5 * 60
    wait_for(lambda: delta(NETWORK_SERIES["rx_bytes"]) >= wanted, 10, "the datagrams to arrive")
    assert delta(NETWORK_SERIES["rx_dropped"]) == 5
    assert delta(NETWORK_SERIES["rx_errors"]) == 0
    assert delta(NETWORK_SERIES["tx_bytes"]) > 0  # its ICMP "port unreachable" answers


def test_network_per_interface_and_shared_namespaces(
    exporter: RunningExporter, prepared: Prepared
) -> None:
    scrape = exporter.scrape()
    metric = NETWORK_SERIES["rx_bytes"]
    twonets = {s.labels["interface"] for s in scrape.find(metric, name=prepared.name("twonets"))}
    assert twonets == {"eth0", "eth1"}
    # The host's network: its interfaces are not the container's. CPU still is.
    assert not scrape.find(metric, name=prepared.name("hostnet"))
    assert series(scrape, "docker_container_cpu_usage_seconds_total", prepared.name("hostnet")) > 0
