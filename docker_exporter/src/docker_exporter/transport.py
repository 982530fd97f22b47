"""The Engine API client, with its connection pool actually shared.

docker-py's Unix-socket adapter keys its connection pools by the request's
full URL, so every call to a different path (each container's inspect and
stats) opens a new connection to the daemon and another pool evicts an old
one. The adapter below keys them all to one pool of ``max_pool_size``
connections, which are then reused from scrape to scrape.
"""

from __future__ import annotations

from typing import Any

import docker
from docker.transport import UnixHTTPAdapter
from docker.utils import parse_host

_POOL_KEY = "http+docker://localhost"


class SharedPoolUnixAdapter(UnixHTTPAdapter):
    """A UnixHTTPAdapter with one connection pool for every URL."""

    def get_connection(self, url: str, proxies: Any = None) -> Any:
        return super().get_connection(_POOL_KEY, proxies)


def is_unix_socket(base_url: str) -> bool:
    return parse_host(base_url).startswith("http+unix://")


def make_client(
    base_url: str,
    *,
    version: str,
    timeout: float,
    max_pool_size: int,
    user_agent: str,
) -> docker.APIClient:
    """A low-level APIClient for ``base_url`` that reuses its connections."""
    client = docker.APIClient(
        base_url=base_url,
        version=version,
        timeout=timeout,
        user_agent=user_agent,
        max_pool_size=max_pool_size,
    )
    if is_unix_socket(base_url):
        adapter = SharedPoolUnixAdapter(
            parse_host(base_url), timeout, pool_connections=1, max_pool_size=max_pool_size
        )
        client.mount("http+docker://", adapter)
        # Proxy variables do not apply to a Unix socket, and requests would
        # otherwise scan the whole environment for them on every call.
        client.trust_env = False
    return client
