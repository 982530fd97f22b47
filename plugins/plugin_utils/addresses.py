"""Addresses and URLs as the filters write and check them (controller side)."""

from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError

DEFAULT_PORTS = {"http": 80, "https": 443, "smtp": 25, "redis": 6379, "rediss": 6379}


def host_port(address, port):
    """Join an address and a port, bracketing IPv6 literals: ``[::1]:9100``."""
    address = str(address)
    if ":" in address and not address.startswith("["):
        address = f"[{address}]"
    return f"{address}:{port}"


def shown_url(url):
    """`url` as a message may show it: a password in it replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def url_parts(url, where, schemes):
    """(scheme, host, port) of `url`; AnsibleFilterError naming `where` for a URL that is
    not one of `schemes` with a host, or whose port is no number."""
    url = str(url)
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise AnsibleFilterError(
            f"{where}: url {shown_url(url)!r} must start with "
            f"{' or '.join(s + '://' for s in schemes)} and name a host"
        )
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError as err:
        raise AnsibleFilterError(f"{where}: url {shown_url(url)!r}: {err}") from err
    return parts.scheme, parts.hostname, port
