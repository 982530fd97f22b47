"""Filters for writing systemd unit files."""

import re

from ansible.errors import AnsibleFilterError

_NEEDS_QUOTES = re.compile(r"""[\s"'\\;]""")


def systemd_quote(arg):
    """Quote one command-line argument for a systemd Exec*= line.

    systemd expands ``%`` specifiers and ``$`` variables in Exec lines, so both
    are doubled; an argument with whitespace, quotes, backslashes or a
    semicolon is wrapped in double quotes with C-style escapes.
    """
    text = str(arg).replace("%", "%%").replace("$", "$$")
    if text and not _NEEDS_QUOTES.search(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_command_line(argv, indent=4):
    """Render a command (binary first) as an Exec*= value, one argument per line."""
    if not argv:
        raise AnsibleFilterError("systemd_command_line needs at least the binary")
    separator = " \\\n" + " " * indent
    return separator.join(systemd_quote(arg) for arg in argv)


_ENVIRONMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Inside double quotes, systemd's EnvironmentFile= parser takes a backslash
# before one of these as that character, and expands nothing.
_ENVIRONMENT_ESCAPED = re.compile(r'([\\"`$])')


def systemd_environment(variables):
    """The text of an EnvironmentFile= file: one NAME="value" line per variable, sorted.

    Values are double-quoted with \\, ", ` and $ escaped, so that the service
    gets each value exactly; a value with a line break or another control
    character is refused (the message names the variable, never the value).
    """
    if not isinstance(variables, dict):
        raise AnsibleFilterError("systemd_environment expects a mapping of variable names")
    lines = []
    for name in sorted(variables):
        value = "" if variables[name] is None else str(variables[name])
        if not _ENVIRONMENT_NAME.fullmatch(str(name)):
            raise AnsibleFilterError(f"systemd_environment: {name!r} is not a variable name")
        if any(ord(char) < 32 or ord(char) == 127 for char in value):
            raise AnsibleFilterError(
                f"systemd_environment: the value of {name} holds a line break or control character"
            )
        escaped = _ENVIRONMENT_ESCAPED.sub(r"\\\1", value)
        lines.append(f'{name}="{escaped}"\n')
    return "".join(lines)


class FilterModule:
    def filters(self):
        return {
            "systemd_quote": systemd_quote,
            "systemd_command_line": systemd_command_line,
            "systemd_environment": systemd_environment,
        }
