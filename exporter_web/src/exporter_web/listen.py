"""Listen addresses as Prometheus' exporters take them: ``host:port``, ``[v6]:port``, ``:port``."""

from __future__ import annotations

import socket
from typing import Any


def parse_listen_address(address: str) -> tuple[str, int]:
    """Split ``host:port``, ``[v6]:port`` or ``:port`` (all interfaces)."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"listen address {address!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"put an IPv6 address in brackets: {address!r}")
    return host, int(port_text)


def resolve_listen_address(address: str) -> tuple[socket.AddressFamily, tuple[Any, ...]]:
    """Return the socket family and bind address for a listen address."""
    host, port = parse_listen_address(address)
    if not host:
        if socket.has_dualstack_ipv6():
            return socket.AF_INET6, ("::", port)
        return socket.AF_INET, ("0.0.0.0", port)
    try:
        infos = socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except socket.gaierror as err:
        raise ValueError(f"cannot resolve listen address {address!r}: {err}") from err
    family, _type, _proto, _canonname, sockaddr = infos[0]
    return socket.AddressFamily(family), sockaddr


def listening_socket(address: str, backlog: int = 128) -> socket.socket:
    """A bound, listening TCP socket; ``:port`` takes IPv4 and IPv6 where the host has both.

    Raises ValueError for an address that does not parse or resolve, OSError
    when it cannot be bound.
    """
    family, sockaddr = resolve_listen_address(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and sockaddr[0] == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def url_host(sock: socket.socket) -> str:
    """``host:port`` of a bound socket, IPv6 in brackets, for URLs and log lines."""
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"{host}:{port}"
