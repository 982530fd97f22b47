"""Filters of the alertmanager role: the role's receivers as Alertmanager's."""

import re

from ansible.errors import AnsibleFilterError

CHANNEL_KINDS = ("email", "webhook", "slack", "pagerduty")

# Secret fields of each channel kind, and the Alertmanager field that names a
# file holding the value instead. The value goes to that file, so the config
# file (and any diff of it) never holds a secret.
SECRET_FILE_FIELDS = {
    "email": {"auth_password": "auth_password_file"},
    "webhook": {},
    "slack": {"api_url": "api_url_file"},
    "pagerduty": {"routing_key": "routing_key_file", "service_key": "service_key_file"},
}

_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


def _merged(defaults, own):
    """Deep-merge `own` over `defaults`; the channel's own keys come first."""
    result = dict(own)
    for key, value in defaults.items():
        if key not in result:
            result[key] = value
        elif isinstance(value, dict) and isinstance(result[key], dict):
            result[key] = _merged(value, result[key])
    return result


def _channels(receiver_name, kind, spec):
    if isinstance(spec, dict):
        return [spec]
    if isinstance(spec, list) and all(isinstance(item, dict) for item in spec):
        return spec
    # The value itself is not shown: it may be a secret put in the wrong place.
    raise AnsibleFilterError(
        f"receiver {receiver_name!r}: {kind} must be a dict or a list of dicts, "
        f"got {type(spec).__name__}"
    )


def alertmanager_receivers(receivers, channel_defaults, secrets_dir, relay=None):
    """Turn the role's receiver list into Alertmanager's ``receivers``.

    Each receiver is ``{name, email, webhook, slack, pagerduty, alert_relay}``
    where a channel is a dict (or a list of dicts) of Alertmanager's own
    fields for that kind, laid over ``channel_defaults[kind]``. Secret fields
    (see SECRET_FILE_FIELDS, and a webhook's ``bearer_token``) are replaced by
    the ``*_file`` field that names a file under ``secrets_dir``.

    ``alert_relay: true`` adds a webhook to the alert relay: ``relay`` gives
    its ``url``, the bearer ``token`` Alertmanager sends (written once to
    ``alert-relay.token``), the ``ca_file`` that verifies it over https (or
    ''), and the names of the ``receivers`` the relay serves.

    Returns ``{"receivers": [...], "secret_files": {file name: value}}``
    (names relative to ``secrets_dir``); empty secrets are left out.
    """
    converted, secret_files = [], {}
    for receiver in receivers:
        name = receiver.get("name")
        if not name:
            raise AnsibleFilterError(f"a receiver has no name: {receiver!r}")
        unknown = sorted(set(receiver) - {"name", "alert_relay", *CHANNEL_KINDS})
        if unknown:
            raise AnsibleFilterError(
                f"receiver {name!r}: unknown keys {unknown}; "
                f"a receiver has a name, any of {', '.join(CHANNEL_KINDS)}, and alert_relay"
            )
        result = {"name": name}
        for kind in CHANNEL_KINDS:
            if receiver.get(kind) is None:
                continue
            configs = []
            for index, channel in enumerate(_channels(name, kind, receiver[kind]), start=1):
                config = _merged(channel_defaults.get(kind, {}), channel)
                prefix = f"{_UNSAFE_FILE_CHARS.sub('_', name)}.{kind}.{index}"
                for field, file_field in SECRET_FILE_FIELDS[kind].items():
                    value = config.pop(field, None)
                    if value not in (None, ""):
                        secret_files[f"{prefix}.{field}"] = str(value)
                        config[file_field] = f"{secrets_dir}/{prefix}.{field}"
                token = config.pop("bearer_token", None) if kind == "webhook" else None
                if token not in (None, ""):
                    secret_files[f"{prefix}.bearer_token"] = str(token)
                    http_config = dict(config.get("http_config") or {})
                    http_config["authorization"] = {
                        "type": "Bearer",
                        "credentials_file": f"{secrets_dir}/{prefix}.bearer_token",
                    }
                    config["http_config"] = http_config
                configs.append(config)
            result[f"{kind}_configs"] = configs
        if receiver.get("alert_relay"):
            webhook = _relay_webhook(name, relay or {}, secrets_dir)
            result.setdefault("webhook_configs", []).append(webhook)
            secret_files["alert-relay.token"] = str(relay["token"]).strip()
        converted.append(result)
    return {"receivers": converted, "secret_files": secret_files}


def _relay_webhook(name, relay, secrets_dir):
    """The webhook config of a receiver that forwards through the alert relay."""
    if name not in (relay.get("receivers") or []):
        raise AnsibleFilterError(
            f"receiver {name!r} forwards through the alert relay (alert_relay: true), but "
            f"alert_relay_receivers has no {name!r}: say there where its alerts go"
        )
    if not str(relay.get("token") or "").strip():
        raise AnsibleFilterError(
            f"receiver {name!r} forwards through the alert relay, but alert_relay_token is not "
            "set: Alertmanager authenticates to the relay with it (keep it in a vault)"
        )
    http_config = {
        "authorization": {
            "type": "Bearer",
            "credentials_file": f"{secrets_dir}/alert-relay.token",
        }
    }
    if relay.get("ca_file"):
        http_config["tls_config"] = {"ca_file": relay["ca_file"]}
    return {
        "url": f"{str(relay['url']).rstrip('/')}/webhooks/{name}",
        "send_resolved": True,
        "http_config": http_config,
    }


class FilterModule:
    def filters(self):
        return {"alertmanager_receivers": alertmanager_receivers}
