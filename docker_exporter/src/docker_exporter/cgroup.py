"""Container figures read on the engine's host: cgroup files and the container's /proc.

When the exporter runs on the engine's host, what ``docker stats`` (and
cAdvisor) show can be read from the files the kernel keeps per container: a
few small reads instead of a stats call, which on Docker Engine waits for the
daemon's once-a-second stats collector. For one running container:

- ``/proc/<State.Pid>`` is opened once, as a directory handle. Its ``cgroup``
  file names the container's cgroups (so the cgroup driver, cgroup parent and
  cgroup version do not matter); they are used only when their path contains
  the container's full ID, so a recycled PID, or a PID of another PID
  namespace, never lends another process's numbers.
- Memory and OOM kills come from the memory controller: ``memory.usage_in_bytes``,
  ``memory.stat`` and ``memory.oom_control`` on cgroup v1, ``memory.current``,
  ``memory.stat`` and ``memory.events`` on v2.
- CPU from the cpu and cpuacct controllers: ``cpuacct.usage``, ``cpu.stat``,
  ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us`` on v1, ``cpu.stat`` and
  ``cpu.max`` on v2.
- Network from ``net/dev`` read through the same directory handle: the
  interfaces of that process's network namespace, which is the container's.
  A handle on a process that has exited answers ESRCH to every lookup, even
  when its PID has been reused since, so these counters are the container's
  or none at all.

Each figure is read on its own: one that cannot be read is None (and its
series is left out), the others are still sent. On a host with both
hierarchies (systemd's "hybrid" mode) a v1 controller is preferred, as the
engine itself does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from docker_exporter.parsing import memory_usage

log = logging.getLogger(__name__)

# The v1 controllers read here.
V1_CONTROLLERS = ("memory", "cpu", "cpuacct")
# Interfaces left out of the network series: loopback traffic never leaves
# the container (cAdvisor leaves it out too).
IGNORED_INTERFACES = frozenset({"lo"})

_NS_PER_S = 1e9
_US_PER_S = 1e6


@dataclass(frozen=True, slots=True)
class _Mount:
    root: str  # the hierarchy path mounted (usually "/")
    point: str  # where it is mounted


@dataclass(frozen=True, slots=True)
class CgroupMounts:
    """Where the cgroup hierarchies are mounted: v1 by controller, and v2."""

    v1: dict[str, _Mount] = field(default_factory=dict)
    v2: _Mount | None = None


@dataclass(frozen=True, slots=True)
class CpuFigures:
    """A container's CPU time and CFS bandwidth figures; None where unreadable."""

    usage_seconds: float | None = None
    # quota / period; 0.0 when the container has no CFS quota (no --cpus).
    limit_cores: float | None = None
    periods: int | None = None
    throttled_periods: int | None = None
    throttled_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class InterfaceCounters:
    """One line of /proc/<pid>/net/dev."""

    interface: str
    receive_bytes: int
    receive_errors: int
    receive_dropped: int
    transmit_bytes: int
    transmit_errors: int
    transmit_dropped: int


@dataclass(frozen=True, slots=True)
class HostFigures:
    """What the host's files tell about one running container."""

    memory_usage: int | None = None
    oom_kills: int | None = None
    cpu: CpuFigures = CpuFigures()
    # None: not read (no network namespace of its own) or unreadable.
    network: tuple[InterfaceCounters, ...] | None = None


def _unescape(field: str) -> str:
    r"""Undo mountinfo's octal escapes (``\040`` for a space)."""
    if "\\" not in field:
        return field
    return field.encode().decode("unicode_escape")


def parse_mountinfo(text: str) -> CgroupMounts:
    """The cgroup mounts of /proc/self/mountinfo text (the first of each kind)."""
    v1: dict[str, _Mount] = {}
    v2: _Mount | None = None
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        fstype = tail[0]
        if fstype == "cgroup":
            mount = _Mount(root=_unescape(fields[3]), point=_unescape(fields[4]))
            for option in tail[2].split(","):
                if option in V1_CONTROLLERS:
                    v1.setdefault(option, mount)
        elif fstype == "cgroup2" and v2 is None:
            v2 = _Mount(root=_unescape(fields[3]), point=_unescape(fields[4]))
    return CgroupMounts(v1=v1, v2=v2)


def parse_proc_cgroup(text: str) -> tuple[dict[str, str], str | None]:
    """The v1 paths by controller, and the v2 path, of /proc/<pid>/cgroup text."""
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2 = path
        else:
            for controller in controllers.split(","):
                v1[controller] = path
    return v1, v2


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (memory.stat, cpu.stat, memory.events ...) as integers."""
    stats = {}
    for line in text.splitlines():
        key, _separator, value = line.partition(" ")
        value = value.strip()
        if value.isdigit():
            stats[key] = int(value)
    return stats


def parse_cpu_max(text: str) -> float:
    """Cores allowed by a v2 ``cpu.max`` (``"max 100000"`` or ``"50000 100000"``); 0.0: no limit.

    Raises ValueError on anything else.
    """
    quota, period = text.split()[:2]
    if quota == "max":
        return 0.0
    return _cores(int(quota), int(period))


def _cores(quota_us: int, period_us: int) -> float:
    """Cores a CFS quota allows in its period; 0.0 for no quota (v1 writes -1)."""
    if quota_us < 0:
        return 0.0
    if period_us <= 0:
        raise ValueError(f"CFS period {period_us}")
    return quota_us / period_us


def parse_net_dev(text: str) -> tuple[InterfaceCounters, ...]:
    """The interfaces of /proc/<pid>/net/dev text, loopback left out, sorted by name.

    After two header lines, each line is ``name: `` and 16 numbers: bytes,
    packets, errs, drop, fifo, frame, compressed, multicast received, then
    bytes, packets, errs, drop, fifo, colls, carrier, compressed sent. The
    kernel's ``drop`` column of received packets also counts those missed
    for lack of room (``rx_missed_errors``). An interface name cannot hold a
    colon, but the first number may follow it without a space.
    """
    found = []
    for line in text.splitlines()[2:]:
        name, sep, numbers = line.partition(":")
        values = numbers.split()
        name = name.strip()
        if not sep or len(values) < 16 or name in IGNORED_INTERFACES:
            continue
        try:
            rx_bytes, _rx_packets, rx_errs, rx_drop = (int(v) for v in values[0:4])
            tx_bytes, _tx_packets, tx_errs, tx_drop = (int(v) for v in values[8:12])
        except ValueError:
            continue
        found.append(
            InterfaceCounters(name, rx_bytes, rx_errs, rx_drop, tx_bytes, tx_errs, tx_drop)
        )
    return tuple(sorted(found, key=lambda c: c.interface))


def _join(mount: _Mount, path: str) -> str | None:
    root = mount.root.rstrip("/")
    if root and not (path == root or path.startswith(root + "/")):
        return None  # the cgroup is outside what this mount shows
    return mount.point + path[len(root) :]


def _read(path: str, dir_fd: int | None = None) -> str:
    """A whole small file, with raw system calls (cheaper than open() for procfs)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


class CgroupReader:
    """Reads running containers' memory, CPU and network figures on the engine's host."""

    def __init__(self, proc: str = "/proc") -> None:
        self._proc = proc
        try:
            mountinfo = _read(os.path.join(proc, "self", "mountinfo"))
        except OSError as err:
            log.debug("cannot read mountinfo: %s", err)
            mountinfo = ""
        self._mounts = parse_mountinfo(mountinfo)

    @property
    def available(self) -> bool:
        """True when a cgroup hierarchy with memory figures is mounted here."""
        return "memory" in self._mounts.v1 or self._mounts.v2 is not None

    def _directories(
        self, controller: str, v1_paths: dict[str, str], v2_path: str | None, container_id: str
    ) -> Iterator[tuple[str, int]]:
        """(directory, version) of the container's cgroup for ``controller``, v1 first."""
        mount = self._mounts.v1.get(controller)
        path = v1_paths.get(controller)
        if mount is not None and path and container_id in path:
            directory = _join(mount, path)
            if directory is not None:
                yield directory, 1
        if self._mounts.v2 is not None and v2_path and container_id in v2_path:
            directory = _join(self._mounts.v2, v2_path)
            if directory is not None:
                yield directory, 2

    def read(self, pid: int, container_id: str, *, network: bool = True) -> HostFigures | None:
        """The container's figures; None when ``pid`` is not (or no longer) its process.

        ``container_id`` must be the full 64-hex ID: a cgroup path has to
        contain it. ``network``: read the interfaces of the process's network
        namespace (leave it False for a container that shares the host's or
        another container's).
        """
        if pid <= 0 or not container_id:
            return None
        try:
            proc_dir = os.open(
                os.path.join(self._proc, str(pid)), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
            )
        except OSError:
            return None  # the process is gone, or /proc is not the engine's
        try:
            try:
                v1_paths, v2_path = parse_proc_cgroup(_read("cgroup", dir_fd=proc_dir))
            except OSError:
                return None
            if not any(container_id in path for path in (*v1_paths.values(), v2_path or "")):
                return None  # not in the container's cgroups: not its process
            stats_cache: dict[str, dict[str, int] | None] = {}
            memory, oom_kills = self._memory(v1_paths, v2_path, container_id)
            cpu = self._cpu(v1_paths, v2_path, container_id, stats_cache)
            interfaces = self._network(proc_dir, container_id) if network else None
        finally:
            os.close(proc_dir)
        return HostFigures(memory_usage=memory, oom_kills=oom_kills, cpu=cpu, network=interfaces)

    def _memory(
        self, v1_paths: dict[str, str], v2_path: str | None, container_id: str
    ) -> tuple[int | None, int | None]:
        for directory, version in self._directories("memory", v1_paths, v2_path, container_id):
            usage_file, events_file = (
                ("memory.usage_in_bytes", "memory.oom_control")
                if version == 1
                else ("memory.current", "memory.events")
            )
            try:
                usage = int(_read(os.path.join(directory, usage_file)))
                stats = parse_flat_keyed(_read(os.path.join(directory, "memory.stat")))
            except (OSError, ValueError) as err:
                log.debug("memory of %s from %s: %s", container_id[:12], directory, err)
                continue
            try:
                # oom_kill: since Linux 4.13 in v1's memory.oom_control.
                events = parse_flat_keyed(_read(os.path.join(directory, events_file)))
                oom_kills = events.get("oom_kill")
            except OSError as err:
                log.debug("OOM kills of %s from %s: %s", container_id[:12], directory, err)
                oom_kills = None
            return memory_usage({"usage": usage, "stats": stats}), oom_kills
        return None, None

    @staticmethod
    def _cpu_stat(directory: str, cache: dict[str, dict[str, int] | None]) -> dict[str, int] | None:
        """cpu.stat of ``directory`` (v2 reads it for usage and for throttling: once)."""
        if directory not in cache:
            try:
                cache[directory] = parse_flat_keyed(_read(os.path.join(directory, "cpu.stat")))
            except OSError:
                cache[directory] = None
        return cache[directory]

    def _cpu(
        self,
        v1_paths: dict[str, str],
        v2_path: str | None,
        container_id: str,
        cache: dict[str, dict[str, int] | None],
    ) -> CpuFigures:
        usage: float | None = None
        for directory, version in self._directories("cpuacct", v1_paths, v2_path, container_id):
            if version == 1:
                try:
                    usage = int(_read(os.path.join(directory, "cpuacct.usage"))) / _NS_PER_S
                except (OSError, ValueError):
                    continue
            else:
                stat = self._cpu_stat(directory, cache)
                if stat is None or "usage_usec" not in stat:
                    continue
                usage = stat["usage_usec"] / _US_PER_S
            break

        limit: float | None = None
        periods = throttled = None
        throttled_seconds: float | None = None
        for directory, version in self._directories("cpu", v1_paths, v2_path, container_id):
            stat = self._cpu_stat(directory, cache)
            if stat is None:
                continue
            periods, throttled = stat.get("nr_periods"), stat.get("nr_throttled")
            if version == 1:
                time_ns = stat.get("throttled_time")
                throttled_seconds = None if time_ns is None else time_ns / _NS_PER_S
            else:
                time_us = stat.get("throttled_usec")
                throttled_seconds = None if time_us is None else time_us / _US_PER_S
            limit = self._cpu_limit(directory, version)
            break
        return CpuFigures(usage, limit, periods, throttled, throttled_seconds)

    @staticmethod
    def _cpu_limit(directory: str, version: int) -> float | None:
        try:
            if version == 2:
                # Absent where the cpu controller is not enabled for the cgroup.
                return parse_cpu_max(_read(os.path.join(directory, "cpu.max")))
            quota = int(_read(os.path.join(directory, "cpu.cfs_quota_us")))
            if quota < 0:
                return 0.0  # no quota: the period is not needed
            return _cores(quota, int(_read(os.path.join(directory, "cpu.cfs_period_us"))))
        except (OSError, ValueError):
            return None

    @staticmethod
    def _network(proc_dir: int, container_id: str) -> tuple[InterfaceCounters, ...] | None:
        try:
            return parse_net_dev(_read("net/dev", dir_fd=proc_dir))
        except OSError as err:
            log.debug("network of %s: %s", container_id[:12], err)
            return None
