"""Addresses as the filters write them (controller side)."""


def host_port(address, port):
    """Join an address and a port, bracketing IPv6 literals: ``[::1]:9100``."""
    address = str(address)
    if ":" in address and not address.startswith("["):
        address = f"[{address}]"
    return f"{address}:{port}"
