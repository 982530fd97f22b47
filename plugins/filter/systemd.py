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


class FilterModule:
    def filters(self):
        return {
            "systemd_quote": systemd_quote,
            "systemd_command_line": systemd_command_line,
        }
