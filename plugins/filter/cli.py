"""Filters that build command lines for the stack's Go binaries."""

from ansible.errors import AnsibleFilterError
from ansible_collections.prometheus_alerting.stack.plugins.plugin_utils.addresses import host_port


def cli_flags(flags):
    """Turn ``{name: value}`` into ``["--name=value", ...]``, sorted by name.

    ``True`` gives a bare ``--name``; ``False``, ``None`` and ``""`` leave the
    flag out; a list repeats the flag once per item (Prometheus' style for
    repeatable flags such as ``--cluster.peer``).
    """
    if not isinstance(flags, dict):
        raise AnsibleFilterError(f"cli_flags expects a mapping of flag names, got {flags!r}")
    argv = []
    for name in sorted(flags):
        value = flags[name]
        if value is True:
            argv.append(f"--{name}")
        elif value is False or value is None or value == "":
            continue
        elif isinstance(value, list | tuple):
            argv.extend(f"--{name}={item}" for item in value)
        else:
            argv.append(f"--{name}={value}")
    return argv


class FilterModule:
    def filters(self):
        return {"cli_flags": cli_flags, "host_port": host_port}
