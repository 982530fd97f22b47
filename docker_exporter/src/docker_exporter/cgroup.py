"""Container memory read from the host's cgroup filesystem.

When the exporter runs on the engine's host, a container's memory can be read
from the files that the Engine itself reads for ``docker stats``: a few small
file reads instead of a stats call, which on Docker Engine waits for the
daemon's once-a-second stats collector. The container's cgroup is found
through ``/proc/<State.Pid>/cgroup`` (so the cgroup driver, cgroup parent and
cgroup version do not matter) and accepted only when its path contains the
container's full ID: a recycled PID or another PID namespace can never lend
another process's numbers.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from docker_exporter.parsing import memory_usage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Mount:
    root: str  # the hierarchy path mounted (usually "/")
    point: str  # where it is mounted


def _unescape(field: str) -> str:
    r"""Undo mountinfo's octal escapes (``\040`` for a space)."""
    if "\\" not in field:
        return field
    return field.encode().decode("unicode_escape")


def parse_mountinfo(text: str) -> tuple[_Mount | None, _Mount | None]:
    """Return the (cgroup v1 memory, cgroup v2) mounts found in mountinfo text."""
    v1: _Mount | None = None
    v2: _Mount | None = None
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        mount = _Mount(root=_unescape(fields[3]), point=_unescape(fields[4]))
        fstype, options = tail[0], tail[2].split(",")
        if fstype == "cgroup" and "memory" in options and v1 is None:
            v1 = mount
        elif fstype == "cgroup2" and v2 is None:
            v2 = mount
    return v1, v2


def parse_proc_cgroup(text: str) -> tuple[str | None, str | None]:
    """Return the (v1 memory controller, v2 unified) paths of /proc/<pid>/cgroup."""
    v1: str | None = None
    v2: str | None = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v1, v2


def _join(mount: _Mount, path: str) -> str | None:
    root = mount.root.rstrip("/")
    if root and not (path == root or path.startswith(root + "/")):
        return None  # the cgroup is outside what this mount shows
    return mount.point + path[len(root) :]


def _read(path: str) -> str:
    with open(path, encoding="ascii") as handle:
        return handle.read()


def _parse_stat(text: str) -> dict[str, int]:
    stats = {}
    for line in text.splitlines():
        key, _separator, value = line.partition(" ")
        if value.strip().isdigit():
            stats[key] = int(value)
    return stats


class CgroupMemoryReader:
    """Reads a running container's memory usage from cgroupfs."""

    def __init__(self, proc: str = "/proc") -> None:
        self._proc = proc
        try:
            mountinfo = _read(os.path.join(proc, "self", "mountinfo"))
        except OSError as err:
            log.debug("cannot read mountinfo: %s", err)
            mountinfo = ""
        self._v1, self._v2 = parse_mountinfo(mountinfo)

    @property
    def available(self) -> bool:
        """True when a cgroup hierarchy with memory figures is mounted here."""
        return self._v1 is not None or self._v2 is not None

    def cgroup_dir(self, pid: int, container_id: str) -> tuple[str, int] | None:
        """Return (directory, cgroup version) of the container's memory cgroup."""
        if pid <= 0 or not container_id:
            return None
        try:
            v1_path, v2_path = parse_proc_cgroup(
                _read(os.path.join(self._proc, str(pid), "cgroup"))
            )
        except OSError:
            return None  # the process is gone, or /proc is not the engine's
        candidates = (
            (self._v1, v1_path, 1, "memory.usage_in_bytes"),
            (self._v2, v2_path, 2, "memory.current"),
        )
        for mount, path, version, usage_file in candidates:
            if mount is None or not path or container_id not in path:
                continue
            directory = _join(mount, path)
            if directory is not None and os.path.isfile(os.path.join(directory, usage_file)):
                return directory, version
        return None

    def memory_usage(self, pid: int, container_id: str) -> int | None:
        """Memory in use, computed like ``docker stats``; None when not readable.

        ``container_id`` must be the full 64-hex ID: the cgroup path has to
        contain it.
        """
        found = self.cgroup_dir(pid, container_id)
        if found is None:
            return None
        directory, version = found
        try:
            if version == 1:
                usage = int(_read(os.path.join(directory, "memory.usage_in_bytes")))
            else:
                usage = int(_read(os.path.join(directory, "memory.current")))
            stats = _parse_stat(_read(os.path.join(directory, "memory.stat")))
        except (OSError, ValueError) as err:
            log.debug("cannot read memory of %s from %s: %s", container_id[:12], directory, err)
            return None
        return memory_usage({"usage": usage, "stats": stats})
