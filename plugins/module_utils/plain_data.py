"""Ansible's tagged values (templated strings, lazy containers) as plain Python data.

The filters that build files from inventory data work on these copies, so
that what they dump (YAML, JSON) and compare holds no Ansible types.
"""


def plain(value):
    """A deep copy of `value` in plain dicts, lists and strings."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):  # not `list | tuple`: targets may run Python < 3.10
        return [plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value
