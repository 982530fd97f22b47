"""Pure functions that turn Engine API payloads into plain values.

Nothing here talks to the engine, so everything here is unit-tested on
hand-written payloads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from docker_exporter.cgroup import CpuFigures, InterfaceCounters

# The states the Engine reports in State.Status, and the health statuses in
# State.Health.Status plus "none" for a container without a healthcheck.
STATES = ("created", "running", "paused", "restarting", "removing", "exited", "dead")
HEALTH_STATUSES = ("healthy", "unhealthy", "starting", "none")

COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"

# RFC 3339 as Go's time.RFC3339Nano writes it: any number of fraction digits,
# "Z" or a numeric offset.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})"
)


def parse_docker_time(value: str | None) -> float | None:
    """Return an RFC 3339 timestamp as Unix seconds, or None for "never".

    The Engine writes Go's zero time (``0001-01-01T00:00:00Z``) for events
    that did not happen (a container that never started or never finished);
    that, an empty string and None all mean "never". Fractions of any length
    (Docker writes nanoseconds) are kept. A malformed value raises ValueError.
    """
    if not value:
        return None
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7), match.group(8)
    if year <= 1:
        return None
    # datetime validates the fields (month 13, February 30 ...).
    whole = datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        whole -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    if fraction:
        whole += int(fraction) / 10 ** len(fraction)
    return whole


def memory_usage(memory_stats: dict[str, Any] | None) -> int | None:
    """Memory in use as ``docker stats`` computes it, or None when unknown.

    ``usage`` minus the inactive file cache: ``total_inactive_file`` on
    cgroup v1, ``inactive_file`` on cgroup v2, plain ``usage`` when neither
    is present. Same order and guards as the Docker CLI
    (calculateMemUsageUnixNoCache). The Engine sends an empty object for a
    container that is not running or whose stats it could not collect.
    """
    if not memory_stats or "usage" not in memory_stats:
        return None
    usage = int(memory_stats["usage"])
    stats = memory_stats.get("stats") or {}
    inactive_v1 = stats.get("total_inactive_file")
    if inactive_v1 is not None and int(inactive_v1) < usage:
        return usage - int(inactive_v1)
    inactive_v2 = int(stats.get("inactive_file", 0))
    if inactive_v2 < usage:
        return usage - inactive_v2
    return usage


@dataclass(slots=True)
class Container:
    """What one scrape keeps of one container: a few numbers and labels."""

    name: str
    full_id: str
    image: str
    compose_project: str
    compose_service: str
    state: str
    health: str
    exit_code: int
    oom_killed: bool
    restart_count: int
    started_at: float | None
    finished_at: float | None
    mounts: int
    memory_limit: int
    pid: int
    # HostConfig.NetworkMode: "bridge", "default", a network's name, "host",
    # "none" or "container:<id>".
    network_mode: str = ""
    memory_usage: int | None = None
    # From the host's files (cgroup.HostFigures), running containers only.
    oom_kills: int | None = None
    cpu: CpuFigures | None = None
    network: tuple[InterfaceCounters, ...] | None = None
    # Known only from the list call: its inspect failed in this scrape.
    inspect_failed: bool = False

    @property
    def id(self) -> str:
        """The short ID (12 hex digits) that ``docker ps`` shows."""
        return self.full_id[:12]

    @property
    def labels(self) -> tuple[str, str, str, str, str]:
        """Values of the labels every per-container metric carries."""
        return (self.name, self.id, self.image, self.compose_project, self.compose_service)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def own_network_namespace(self) -> bool:
        """False when the container uses the host's network, another container's, or none.

        Its main process's interfaces are then the host's (every other
        container's veth among them), the other container's (counted there),
        or only loopback: nothing of its own to report.
        """
        mode = self.network_mode
        return mode not in ("host", "none") and not mode.startswith("container:")


LABEL_NAMES = ("name", "id", "image", "compose_project", "compose_service")


def _time_or_none(value: Any) -> float | None:
    try:
        return parse_docker_time(value)
    except (TypeError, ValueError):
        return None


def container_from_inspect(inspect: dict[str, Any]) -> Container:
    """Build a Container from a ``GET /containers/{id}/json`` payload.

    Missing or null fields give neutral values, so an unexpected payload
    never aborts a scrape.
    """
    state = inspect.get("State") or {}
    config = inspect.get("Config") or {}
    host_config = inspect.get("HostConfig") or {}
    labels = config.get("Labels") or {}
    health = (state.get("Health") or {}).get("Status") or "none"
    return Container(
        name=(inspect.get("Name") or "").lstrip("/"),
        full_id=inspect.get("Id") or "",
        image=config.get("Image") or "",
        compose_project=labels.get(COMPOSE_PROJECT_LABEL, ""),
        compose_service=labels.get(COMPOSE_SERVICE_LABEL, ""),
        state=state.get("Status") or "",
        health=health,
        exit_code=int(state.get("ExitCode") or 0),
        oom_killed=bool(state.get("OOMKilled")),
        restart_count=int(inspect.get("RestartCount") or 0),
        started_at=_time_or_none(state.get("StartedAt")),
        finished_at=_time_or_none(state.get("FinishedAt")),
        mounts=len(inspect.get("Mounts") or ()),
        memory_limit=int(host_config.get("Memory") or 0),
        pid=int(state.get("Pid") or 0),
        network_mode=host_config.get("NetworkMode") or "",
    )


def container_from_list(entry: dict[str, Any]) -> Container:
    """A Container from a ``GET /containers/json`` entry, for one whose inspect failed.

    The list call knows the name, ID, image, labels and state; everything
    that only inspect gives (health, exit code, restarts, times, mounts,
    memory) is left neutral and ``inspect_failed`` is set, so that the
    collector sends only what is known.
    """
    names = entry.get("Names") or [""]
    labels = entry.get("Labels") or {}
    return Container(
        name=(names[0] or "").lstrip("/"),
        full_id=entry.get("Id") or "",
        image=entry.get("Image") or "",
        compose_project=labels.get(COMPOSE_PROJECT_LABEL, ""),
        compose_service=labels.get(COMPOSE_SERVICE_LABEL, ""),
        state=entry.get("State") or "",
        health="none",
        exit_code=0,
        oom_killed=False,
        restart_count=0,
        started_at=None,
        finished_at=None,
        mounts=0,
        memory_limit=0,
        pid=0,
        inspect_failed=True,
    )
