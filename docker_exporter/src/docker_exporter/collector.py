"""The Prometheus collector: one engine scrape per ``collect()``."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from exporter_web.webconfig import WebConfigWatcher
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from docker_exporter.engine import CALLS, EngineScraper, ScrapeFailed
from docker_exporter.parsing import HEALTH_STATUSES, LABEL_NAMES, STATES, Container

_LABELS = list(LABEL_NAMES)


def _gauge(name: str, documentation: str, extra: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=[*_LABELS, *extra])


def _counter(name: str, documentation: str, extra: Iterable[str] = ()) -> CounterMetricFamily:
    # prometheus_client appends _total to the samples' name.
    return CounterMetricFamily(name, documentation, labels=[*_LABELS, *extra])


# The network counters: (name, HELP, InterfaceCounters field), per interface.
_NETWORK = (
    ("receive_bytes", "Bytes received", "receive_bytes"),
    ("transmit_bytes", "Bytes sent", "transmit_bytes"),
    ("receive_errors", "Packets received with errors", "receive_errors"),
    ("transmit_errors", "Packets that could not be sent for errors", "transmit_errors"),
    (
        "receive_packets_dropped",
        "Received packets dropped (no room, unknown protocol ...)",
        "receive_dropped",
    ),
    ("transmit_packets_dropped", "Packets dropped on the way out", "transmit_dropped"),
)
_NETWORK_SOURCE = (
    " on the interface, in the container's network namespace (/proc/<pid>/net/dev); "
    "running containers with a network namespace of their own only."
)


class _HostFamilies:
    """The families of what the host's files tell (cgroup.HostFigures): OOM kills, CPU, network."""

    def __init__(self) -> None:
        self.oom_kills = _counter(
            "docker_container_memory_oom_kills",
            "Processes the kernel's OOM killer killed in the container's memory cgroup "
            "since this run started (memory.oom_control or memory.events); running only.",
        )
        self.cpu_usage = _counter(
            "docker_container_cpu_usage_seconds",
            "CPU time the container used since this run started (cpuacct.usage or cpu.stat "
            "usage_usec); running only.",
        )
        self.cpu_limit = _gauge(
            "docker_container_cpu_limit_cores",
            "CPU cores the container's CFS quota allows (quota / period), 0 when it has no "
            "quota; running only.",
        )
        self.cpu_periods = _counter(
            "docker_container_cpu_cfs_periods",
            "CFS enforcement periods in which the container could run (cpu.stat nr_periods); "
            "running containers with a CPU quota only.",
        )
        self.cpu_throttled_periods = _counter(
            "docker_container_cpu_cfs_throttled_periods",
            "CFS periods in which the container used up its quota and was throttled "
            "(cpu.stat nr_throttled); running containers with a CPU quota only.",
        )
        self.cpu_throttled_seconds = _counter(
            "docker_container_cpu_cfs_throttled_seconds",
            "Time the container's threads spent throttled (cpu.stat throttled_time or "
            "throttled_usec); running containers with a CPU quota only.",
        )
        self.network = [
            (
                _counter(
                    f"docker_container_network_{name}",
                    help_text + _NETWORK_SOURCE,
                    ["interface"],
                ),
                attribute,
            )
            for name, help_text, attribute in _NETWORK
        ]

    def add(self, labels: list[str], container: Container) -> None:
        """The series of one running container: those of its figures that could be read."""
        if container.oom_kills is not None:
            self.oom_kills.add_metric(labels, container.oom_kills)
        cpu = container.cpu
        if cpu is not None:
            values = [(self.cpu_usage, cpu.usage_seconds), (self.cpu_limit, cpu.limit_cores)]
            # Like cAdvisor, the CFS counters only for a container with a quota
            # (or one it had in this run): without, they stay 0 and cost 3 series.
            if (cpu.limit_cores or 0) > 0 or (cpu.periods or 0) > 0:
                values += [
                    (self.cpu_periods, cpu.periods),
                    (self.cpu_throttled_periods, cpu.throttled_periods),
                    (self.cpu_throttled_seconds, cpu.throttled_seconds),
                ]
            for family, value in values:
                if value is not None:
                    family.add_metric(labels, value)
        for interface in container.network or ():
            for family, attribute in self.network:
                family.add_metric([*labels, interface.interface], getattr(interface, attribute))

    def families(self) -> list[Metric]:
        return [
            self.oom_kills,
            self.cpu_usage,
            self.cpu_limit,
            self.cpu_periods,
            self.cpu_throttled_periods,
            self.cpu_throttled_seconds,
            *(family for family, _attribute in self.network),
        ]


def container_metrics(containers: list[Container]) -> list[Metric]:
    """The per-container metric families for one scrape's containers."""
    state = _gauge(
        "docker_container_state",
        "1 for the container's current state, 0 for the Engine's other states.",
        ["state"],
    )
    health = _gauge(
        "docker_container_health_status",
        "1 for the container's current health status (none: no healthcheck), 0 for the others.",
        ["health"],
    )
    exit_code = _gauge("docker_container_exit_code", "State.ExitCode of the last run.")
    oom_killed = _gauge(
        "docker_container_oom_killed", "1 if the last run was killed for lack of memory."
    )
    # Not ..._count: promtool reserves that suffix for summaries and histograms.
    restarts = _gauge(
        "docker_container_restarts",
        "Restarts done by the Engine's restart policy (inspect's RestartCount).",
    )
    started = _gauge(
        "docker_container_start_time_seconds",
        "When the container last started, Unix seconds; absent if it never started.",
    )
    finished = _gauge(
        "docker_container_finish_time_seconds",
        "When the container last stopped, Unix seconds; absent if it never stopped.",
    )
    mounts = _gauge("docker_container_mounts", "Number of mounts (volumes, binds, tmpfs).")
    mem_usage = _gauge(
        "docker_container_memory_usage_bytes",
        "Memory in use without inactive file cache, as docker stats shows it; running only.",
    )
    mem_limit = _gauge(
        "docker_container_memory_limit_bytes",
        "HostConfig.Memory, 0 when the container has no memory limit; running only.",
    )
    inspect_failed = _gauge(
        "docker_container_inspect_failed",
        "1 when this scrape's inspect call for the container failed: only its state "
        "(from the list call) is sent, 0 otherwise.",
    )
    host = _HostFamilies()
    for container in containers:
        labels = list(container.labels)
        for value in STATES:
            state.add_metric([*labels, value], 1.0 if container.state == value else 0.0)
        inspect_failed.add_metric(labels, 1.0 if container.inspect_failed else 0.0)
        if container.inspect_failed:
            continue  # the rest is inspect's: unknown, so not sent
        for value in HEALTH_STATUSES:
            health.add_metric([*labels, value], 1.0 if container.health == value else 0.0)
        exit_code.add_metric(labels, container.exit_code)
        oom_killed.add_metric(labels, 1.0 if container.oom_killed else 0.0)
        restarts.add_metric(labels, container.restart_count)
        if container.started_at is not None:
            started.add_metric(labels, container.started_at)
        if container.finished_at is not None:
            finished.add_metric(labels, container.finished_at)
        mounts.add_metric(labels, container.mounts)
        if not container.running:
            continue
        if container.memory_usage is not None:
            mem_usage.add_metric(labels, container.memory_usage)
        mem_limit.add_metric(labels, container.memory_limit)
        host.add(labels, container)
    return [
        state,
        health,
        exit_code,
        oom_killed,
        restarts,
        started,
        finished,
        mounts,
        mem_usage,
        mem_limit,
        inspect_failed,
        *host.families(),
    ]


class DockerCollector(Collector):
    """Queries the engine on every scrape; keeps nothing between scrapes."""

    def __init__(self, scraper: EngineScraper) -> None:
        self._scraper = scraper

    def describe(self) -> Iterator[Metric]:
        # Registering must not query the engine, which collect() would do.
        return iter(())

    def collect(self) -> Iterator[Metric]:
        start = time.perf_counter()
        try:
            containers = self._scraper.scrape()
        except ScrapeFailed:
            up, families = 0.0, []
        else:
            up, families = 1.0, container_metrics(containers)
        yield GaugeMetricFamily(
            "docker_engine_up",
            "1 if the last scrape got answers from the Docker engine within the deadline.",
            value=up,
        )
        yield from families
        yield GaugeMetricFamily(
            "docker_exporter_scrape_duration_seconds",
            "Time the last scrape of the Docker engine took.",
            value=time.perf_counter() - start,
        )
        errors = CounterMetricFamily(
            "docker_exporter_api_errors",
            "Docker Engine API calls that failed or timed out, by call.",
            labels=["call"],
        )
        counts = self._scraper.api_errors()
        for call in CALLS:
            errors.add_metric([call], counts[call])
        yield errors


class WebConfigCollector(Collector):
    """Whether the web config file in force is the one on disk."""

    def __init__(self, watcher: WebConfigWatcher) -> None:
        self._watcher = watcher

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        # The request that asks for the metrics has just looked at the files.
        yield GaugeMetricFamily(
            "docker_exporter_web_config_last_reload_successful",
            "0 when the web config file (or a file it names) changed and did not load: "
            "the previous config stays in force. 1 otherwise, also without a web config.",
            value=1.0 if self._watcher.last_reload_successful else 0.0,
        )
