"""Filters of the alert_relay role: the relay's configuration from inventory variables.

The inventory describes receivers, destinations and hooks with their secrets
inline (from a vault); the relay's configuration file names every secret by a
``*_file`` key instead (alert_relay/README.md), so that neither the file nor
any diff of it holds one. ``alert_relay_config`` does that split, the way
``alertmanager_receivers`` does for Alertmanager.
"""

import importlib.util
import os
import re

from ansible.errors import AnsibleFilterError


def _relay_schema():
    """The relay's own keys and rule for names (alert_relay/src/alert_relay/schema.py):
    read from its file, which lies at the same place relative to this one in the
    repository and in the installed collection (the roles build the relay from it)."""
    path = os.path.join(
        os.path.dirname(os.path.abspath(__file__)),
        *("..", "..", "alert_relay", "src", "alert_relay", "schema.py"),
    )
    spec = importlib.util.spec_from_file_location("prometheus_alerting_relay_schema", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCHEMA = _relay_schema()
# The inventory's secret keys of a destination, and the relay's keys they become (files).
SECRET_KEYS = {
    "secret_url": "url_file",
    "secret_headers": "header_files",
    "bearer_token": "bearer_token_file",
    "basic_auth": "basic_auth",
    "hmac_key": "hmac",
    "hmac_header": "hmac",
}
# What a destination may say in the inventory: the relay's keys, the secret ones in
# their inventory form.
DESTINATION_KEYS = (set(SCHEMA.DESTINATION_KEYS) - set(SECRET_KEYS.values())) | set(SECRET_KEYS)
# Copied as they are, in the relay's order (url and headers are checked first).
_AS_IS = [
    k
    for k in SCHEMA.DESTINATION_KEYS
    if k in DESTINATION_KEYS and k not in SECRET_KEYS and k not in ("url", "headers")
]
# A receiver's bearer_token_file is Alertmanager's token, which this filter writes.
RECEIVER_KEYS = set(SCHEMA.RECEIVER_KEYS) - {"bearer_token_file"}
HOOK_KEYS = set(SCHEMA.HOOK_KEYS)
_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


def _mapping(value, what):
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise AnsibleFilterError(f"{what} must be a mapping of names, got a {type(value).__name__}")
    for name in value:
        if not SCHEMA.is_name(name):
            raise AnsibleFilterError(
                f"{what}: {name!r} is not a name the relay takes ({SCHEMA.NAME_RULE}, "
                "starting with a letter or a digit)"
            )
    return value


def _check_keys(spec, allowed, where):
    if not isinstance(spec, dict):
        raise AnsibleFilterError(f"{where} must be a mapping, got a {type(spec).__name__}")
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise AnsibleFilterError(
            f"{where}: unknown keys {unknown}; it takes {', '.join(sorted(allowed))}"
        )


def _destination(name, spec, secrets_dir, secret_files):
    """One destination in the relay's form; its secrets moved to files."""
    where = f"alert_relay_destinations[{name}]"
    _check_keys(spec, DESTINATION_KEYS, where)
    prefix = f"{secrets_dir}/destination.{_UNSAFE_FILE_CHARS.sub('_', name)}"

    def secret(field, value):
        secret_files[f"{prefix.rsplit('/', 1)[1]}.{field}"] = str(value)
        return f"{prefix}.{field}"

    if bool(spec.get("url")) == bool(spec.get("secret_url")):
        raise AnsibleFilterError(
            f"{where}: set exactly one of url and secret_url (a URL that carries a key)"
        )
    url = spec.get("url") or ""
    if url and not re.match(r"^https?://", str(url)):
        raise AnsibleFilterError(f"{where}: url {url!r} must start with http:// or https://")
    result = {"url": url} if url else {"url_file": secret("url", spec["secret_url"])}
    if spec.get("headers"):
        result["headers"] = dict(spec["headers"])
    header_files = {}
    for header, value in (spec.get("secret_headers") or {}).items():
        safe = _UNSAFE_FILE_CHARS.sub("_", str(header))
        header_files[str(header)] = secret(f"header.{safe}", value)
    if header_files:
        result["header_files"] = header_files
    result.update(_credentials(spec, where, secret))
    for key in _AS_IS:
        if spec.get(key) not in (None, "", {}):
            result[key] = spec[key]
    return result


def _credentials(spec, where, secret):
    """A destination's bearer token, basic auth and HMAC key, as files named by `secret`."""
    result = {}
    if spec.get("bearer_token"):
        result["bearer_token_file"] = secret("bearer_token", spec["bearer_token"])
    if spec.get("basic_auth"):
        auth = spec["basic_auth"]
        if not isinstance(auth, dict) or not auth.get("username") or not auth.get("password"):
            raise AnsibleFilterError(f"{where}: basic_auth needs a username and a password")
        result["basic_auth"] = {
            "username": str(auth["username"]),
            "password_file": secret("password", auth["password"]),
        }
    if spec.get("hmac_key"):
        result["hmac"] = {"key_file": secret("hmac_key", spec["hmac_key"])}
        if spec.get("hmac_header"):
            result["hmac"]["header"] = str(spec["hmac_header"])
    elif spec.get("hmac_header"):
        raise AnsibleFilterError(f"{where}: hmac_header without hmac_key")
    return result


def alert_relay_config(receivers, destinations, hooks, global_settings, secrets_dir, token):
    """The relay's configuration and the secret files it names.

    ``receivers`` maps an Alertmanager receiver's name (the relay serves it at
    /webhooks/<name>) to its ``destinations`` and repeat settings;
    ``destinations`` maps a name to its URL, headers and secrets; ``hooks`` is
    the relay's own format. Every receiver takes Alertmanager's bearer
    ``token``, written once to ``<secrets_dir>/alertmanager.token``.

    Returns ``{"config": {...}, "secret_files": {file name: value}}``, the file
    names relative to ``secrets_dir``.
    """
    receivers = _mapping(receivers, "alert_relay_receivers")
    destinations = _mapping(destinations, "alert_relay_destinations")
    hooks = _mapping(hooks, "alert_relay_hooks")
    secret_files = {}
    if receivers and not str(token or "").strip():
        raise AnsibleFilterError(
            "alert_relay_token is not set: Alertmanager authenticates to the relay with it "
            "(keep it in a vault)"
        )
    if receivers:
        secret_files["alertmanager.token"] = str(token).strip()
    config_receivers = {}
    for name, given in receivers.items():
        spec = given or {}
        _check_keys(spec, RECEIVER_KEYS, f"alert_relay_receivers[{name}]")
        missing = [d for d in spec.get("destinations") or [] if d not in destinations]
        if missing:
            raise AnsibleFilterError(
                f"alert_relay_receivers[{name}] forwards to {missing}, which "
                "alert_relay_destinations does not define"
            )
        receiver = {
            "bearer_token_file": f"{secrets_dir}/alertmanager.token",
            "destinations": list(spec.get("destinations") or []),
        }
        for key in ("forward_repeats", "repeat_min_interval"):
            if key in spec:
                receiver[key] = spec[key]
        config_receivers[name] = receiver
    config = {"global": dict(global_settings or {}), "receivers": config_receivers}
    if destinations:
        config["destinations"] = {
            name: _destination(name, spec or {}, secrets_dir, secret_files)
            for name, spec in destinations.items()
        }
    if hooks:
        for name, spec in hooks.items():
            _check_keys(spec or {}, HOOK_KEYS, f"alert_relay_hooks[{name}]")
        config["hooks"] = dict(hooks)
    return {"config": config, "secret_files": secret_files}


class FilterModule:
    def filters(self):
        return {"alert_relay_config": alert_relay_config}
