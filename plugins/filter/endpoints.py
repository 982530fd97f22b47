"""Where a service's own HTTP API is reached from the host it runs on."""

from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError

# A service listening on every address is reached on loopback, in the same
# address family (:: may be IPv6 only).
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}


def api_url(address, port, external_url="", scheme="http"):
    """The base URL of a service's API from its listen address and port.

    ``0.0.0.0`` (or an empty address) gives 127.0.0.1 and ``::`` gives
    ``[::1]``; IPv6 literals are bracketed. A path in ``external_url`` is
    appended: Prometheus and Alertmanager serve their API under it.

        '0.0.0.0' | api_url(9090)                           -> http://127.0.0.1:9090
        '::' | api_url(9093, 'https://am.example.com/am/')  -> http://[::1]:9093/am
    """
    if port in (None, "") or not str(port).isdigit():
        raise AnsibleFilterError(f"api_url needs a port number, got {port!r}")
    host = str(address or "").strip()
    host = _WILDCARDS.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    path = urlsplit(str(external_url or "")).path.rstrip("/")
    return f"{scheme}://{host}:{port}{path}"


class FilterModule:
    def filters(self):
        return {"api_url": api_url}
