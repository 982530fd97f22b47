"""One scrape of the Docker Engine, bounded in concurrency and in time.

A scrape is one ``GET /containers/json?all=1``, one inspect per container and,
for running containers, their memory: read from cgroupfs when the exporter
runs on the engine's host (``auto``/``cgroup``), or one one-shot stats call
per running container (``stats``, and ``auto`` when cgroupfs cannot give it).
CPU, OOM kills and network come from the host's files only, read with the
memory (see cgroup.py): with ``stats`` they are not sent.
Inspect and stats calls run in bounded thread pools; the scrape as a whole has
a deadline after which it gives up, and it never blocks past that deadline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any, TypeVar

import docker
from docker.constants import DEFAULT_DOCKER_API_VERSION, MINIMUM_DOCKER_API_VERSION
from docker.errors import NotFound
from docker.utils import version_lt

from docker_exporter import __version__
from docker_exporter.cgroup import CgroupReader
from docker_exporter.parsing import (
    Container,
    container_from_inspect,
    container_from_list,
    memory_usage,
)
from docker_exporter.transport import is_unix_socket, make_client

log = logging.getLogger(__name__)

MEMORY_SOURCES = ("auto", "cgroup", "stats")
CALLS = ("list", "inspect", "stats")
USER_AGENT = f"docker-exporter/{__version__}"

T = TypeVar("T")


class ScrapeFailed(Exception):
    """The engine did not answer the list call, or not before the deadline."""


def check_docker_host(base_url: str) -> None:
    """Raise docker.errors.DockerException when ``base_url`` is not usable."""
    docker.APIClient(base_url=base_url, version=MINIMUM_DOCKER_API_VERSION).close()


class EngineScraper:
    """Collects a list of Containers per call of :meth:`scrape`."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 3.0,
        max_concurrency: int = 16,
        stats_concurrency: int = 128,
        deadline: float = 8.0,
        memory_source: str = "auto",
        cgroup_reader: CgroupReader | None = None,
    ) -> None:
        if memory_source not in MEMORY_SOURCES:
            raise ValueError(f"memory source must be one of {MEMORY_SOURCES}")
        self.base_url = base_url
        self.timeout = timeout
        self.deadline = deadline
        self.max_concurrency = max_concurrency
        self.stats_concurrency = stats_concurrency
        # Threads start on demand: the stats pool stays empty while cgroupfs
        # gives the memory figures.
        self._pool = ThreadPoolExecutor(
            max_workers=max_concurrency, thread_name_prefix="docker-api"
        )
        self._stats_pool = ThreadPoolExecutor(
            max_workers=stats_concurrency, thread_name_prefix="docker-stats"
        )
        self._lock = threading.Lock()
        self._client: docker.APIClient | None = None
        self._one_shot = True
        self._errors = dict.fromkeys(CALLS, 0)
        self._engine_ok: bool | None = None
        self._warned_cgroup = False

        local = is_unix_socket(base_url)
        use_cgroup = memory_source == "cgroup" or (memory_source == "auto" and local)
        self._cgroup = (cgroup_reader or CgroupReader()) if use_cgroup else None
        if self._cgroup is not None and not self._cgroup.available:
            if memory_source == "cgroup":
                log.warning("no cgroup hierarchy with memory figures is mounted: no memory usage")
            self._cgroup = None
        # A stats call per running container, sent right after the list call
        # (stats, or auto without cgroupfs), or only for the containers whose
        # cgroup could not be read (auto).
        self._stats_first = memory_source == "stats" or (
            memory_source == "auto" and self._cgroup is None
        )
        self._stats_fallback = memory_source == "auto" and self._cgroup is not None
        log.info(
            "memory usage from %s",
            " then ".join(
                s
                for s, on in (
                    ("cgroupfs", self._cgroup is not None),
                    ("stats calls", self._stats_first or self._stats_fallback),
                )
                if on
            )
            or "nowhere",
        )

    # Errors ---------------------------------------------------------------

    def _count_error(self, call: str) -> None:
        with self._lock:
            self._errors[call] += 1

    def api_errors(self) -> dict[str, int]:
        """Engine API calls that failed or timed out, by call, since start."""
        with self._lock:
            return dict(self._errors)

    # Engine API calls, run in the pool -----------------------------------

    def _negotiate(self) -> docker.APIClient:
        """Ask the engine for its API version and build the client for it."""
        probe = docker.APIClient(
            base_url=self.base_url,
            version=MINIMUM_DOCKER_API_VERSION,
            timeout=self.timeout,
            user_agent=USER_AGENT,
        )
        try:
            server = probe.version(api_version=False)["ApiVersion"]
        except Exception:
            self._count_error("list")  # the list call cannot be made without it
            raise
        finally:
            probe.close()
        version = server if version_lt(server, DEFAULT_DOCKER_API_VERSION) else None
        version = version or DEFAULT_DOCKER_API_VERSION
        client = make_client(
            self.base_url,
            version=version,
            timeout=self.timeout,
            user_agent=USER_AGENT,
            max_pool_size=self.max_concurrency + self.stats_concurrency,
        )
        log.debug("engine API version %s, using %s", server, version)
        return client

    def _list(self, client: docker.APIClient) -> list[dict[str, Any]]:
        try:
            return client.containers(all=True)
        except Exception:
            self._count_error("list")
            raise

    def _inspect(self, client: docker.APIClient, container_id: str) -> Container | Exception | None:
        """The container; None when it is gone; the exception when the call failed."""
        try:
            payload = client.inspect_container(container_id)
        except NotFound:
            return None  # removed since the list call: not an error
        except Exception as err:
            self._count_error("inspect")
            log.debug("inspect %s failed: %s", container_id[:12], err)
            return err
        container = container_from_inspect(payload)
        if container.running and self._cgroup is not None:
            figures = self._cgroup.read(
                container.pid, container.full_id, network=container.own_network_namespace
            )
            if figures is not None:
                container.memory_usage = figures.memory_usage
                container.oom_kills = figures.oom_kills
                container.cpu = figures.cpu
                container.network = figures.network
            if container.memory_usage is None:
                self._warn_cgroup_once(container)
        return container

    def _warn_cgroup_once(self, container: Container) -> None:
        with self._lock:
            if self._warned_cgroup:
                return
            self._warned_cgroup = True
        log.warning(
            "cannot read the memory of running container %s from /proc/%d/cgroup and "
            "cgroupfs (other PID namespace, or /proc mounted with hidepid / a systemd unit "
            "with ProtectProc=invisible?): %s; said once",
            container.name,
            container.pid,
            "using a stats call instead" if self._stats_fallback else "no memory usage",
        )

    def _stats(self, client: docker.APIClient, container_id: str) -> int | None:
        kwargs = {"one_shot": True} if self._one_shot else {}
        try:
            payload = client.stats(container_id, stream=False, **kwargs)
        except NotFound:
            return None
        except Exception as err:
            self._count_error("stats")
            log.debug("stats %s failed: %s", container_id[:12], err)
            return None
        return memory_usage(payload.get("memory_stats"))

    # The scrape ----------------------------------------------------------

    def _await(self, fn: Callable[..., T], deadline: float, *args: Any) -> T:
        future = self._pool.submit(fn, *args)
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeoutError as err:
            future.cancel()
            raise ScrapeFailed(f"no answer within the {self.deadline:g} s deadline") from err
        except Exception as err:
            raise ScrapeFailed(f"{type(err).__name__}: {err}") from err

    def _get_client(self, deadline: float) -> docker.APIClient:
        with self._lock:
            client = self._client
        if client is not None:
            return client
        client = self._await(self._negotiate, deadline)
        with self._lock:
            if self._client is None:
                self._client = client
                self._one_shot = not version_lt(client.api_version, "1.41")
            else:  # a concurrent scrape was quicker
                client.close()
            return self._client

    def _forget_client(self, client: docker.APIClient) -> None:
        """Negotiate again on the next scrape (the engine may have been replaced)."""
        with self._lock:
            if self._client is client:
                self._client = None

    def scrape(self) -> list[Container]:
        """Return every container's state; raise ScrapeFailed when the engine fails us."""
        deadline = time.monotonic() + self.deadline
        try:
            containers = self._scrape(deadline)
        except ScrapeFailed as err:
            if self._engine_ok is not False:
                log.warning("Docker engine at %s not answering: %s", self.base_url, err)
            else:
                log.debug("scrape failed: %s", err)
            self._engine_ok = False
            raise
        if self._engine_ok is False:
            log.info("Docker engine at %s answers again", self.base_url)
        self._engine_ok = True
        return containers

    def _scrape(self, deadline: float) -> list[Container]:
        client = self._get_client(deadline)
        try:
            listed = self._await(self._list, deadline, client)
        except ScrapeFailed:
            self._forget_client(client)
            raise
        return self._inspect_all(client, listed, deadline)

    def _completed(self, pending: set[Future[Any]], deadline: float) -> Iterator[Future[Any]]:
        """Yield the futures of ``pending`` as they finish; ``pending`` may grow meanwhile.

        Raises ScrapeFailed at the deadline, after cancelling what has not started.
        """
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                for future in pending:
                    future.cancel()
                raise ScrapeFailed(
                    f"{len(pending)} inspect/stats calls unanswered at the "
                    f"{self.deadline:g} s deadline"
                )
            done, _not_done = wait(pending, timeout=remaining, return_when=FIRST_COMPLETED)
            pending -= done
            yield from done

    def _inspect_all(
        self, client: docker.APIClient, listed: list[dict[str, Any]], deadline: float
    ) -> list[Container]:
        """Inspect the listed containers and get the running ones' memory.

        A container whose inspect call fails stays in the scrape with what
        the list call told about it (``inspect_failed``): it never vanishes
        from the metrics without a trace.
        """
        inspect_calls: dict[Future[Any], dict[str, Any]] = {
            self._pool.submit(self._inspect, client, entry["Id"]): entry for entry in listed
        }
        pending: set[Future[Any]] = set(inspect_calls)
        stats_calls: dict[Future[Any], str] = {}

        def request_stats(container_id: str) -> None:
            future = self._stats_pool.submit(self._stats, client, container_id)
            stats_calls[future] = container_id
            pending.add(future)

        if self._stats_first:
            # Stats calls wait for the daemon's stats collector (once a
            # second): they go out at once, not after the inspects.
            for entry in listed:
                if entry.get("State") == "running":
                    request_stats(entry["Id"])
        memory: dict[str, int | None] = {}
        containers: list[Container] = []
        failed: list[tuple[dict[str, Any], Exception]] = []
        for future in self._completed(pending, deadline):
            if future in stats_calls:
                memory[stats_calls.pop(future)] = future.result()
                continue
            container = future.result()
            if isinstance(container, Exception):
                failed.append((inspect_calls[future], container))
            elif container is not None:
                containers.append(container)
                if container.running and container.memory_usage is None and self._stats_fallback:
                    request_stats(container.full_id)
        if failed and not containers:
            # Not one answer: the engine is not really there (a partial
            # failure only leaves out the details of the containers concerned).
            raise ScrapeFailed(f"every inspect call failed, e.g. {failed[0][1]}")
        for container in containers:
            if container.running and container.memory_usage is None:
                container.memory_usage = memory.get(container.full_id)
        containers.extend(container_from_list(entry) for entry, _err in failed)
        return containers

    def close(self) -> None:
        """Stop the pool (calls in flight end by their own timeout) and the client."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._stats_pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
