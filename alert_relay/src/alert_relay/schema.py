"""The configuration file's keys (in the order the relay's documentation gives them) and
its rule for names, in one place.

The relay checks its file against these (alert_relay.config), and so does the
collection's filter alert_relay_config (plugins/filter/relay_config.py) when
it writes the file from the inventory, so that the controller refuses what the
host would. The filter loads this file by its path, beside it in the
collection: standard library only, nothing imported from the package.
"""

import re

# Receiver, destination and hook names: one URL path segment, one label value.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
NAME_RULE = "letters, digits, '_', '.', '-'; up to 63"

TOP_KEYS = ("global", "receivers", "destinations", "hooks")
GLOBAL_KEYS = (
    "max_request_bytes",
    "history_retention",
    "prune_interval",
    "forward_repeats",
    "repeat_min_interval",
    "timeout",
    "max_concurrency",
    "retry",
    "hook_timeout",
    "hook_concurrency",
)
RECEIVER_KEYS = ("bearer_token_file", "destinations", "forward_repeats", "repeat_min_interval")
DESTINATION_KEYS = (
    "url",
    "url_file",
    "headers",
    "header_files",
    "hmac",
    "basic_auth",
    "bearer_token_file",
    "timeout",
    "max_concurrency",
    "retry",
    "tls_config",
)
HMAC_KEYS = ("key_file", "header")
BASIC_AUTH_KEYS = ("username", "password_file")
HOOK_KEYS = (
    "command",
    "alertnames",
    "receivers",
    "send_resolved",
    "timeout",
    "max_attempts",
    "max_concurrency",
    "retry",
)


def is_name(name: object) -> bool:
    """Whether ``name`` is a name the relay takes for a receiver, destination or hook."""
    return isinstance(name, str) and NAME.fullmatch(name) is not None
