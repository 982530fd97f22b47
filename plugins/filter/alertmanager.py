"""Filters of the alertmanager role: receivers and time intervals in Alertmanager's form.

Receivers take every type of notification Alertmanager has through one path:
a receiver lists ``<type>_configs`` entries exactly as Alertmanager's own
configuration writes them, and the role only takes their secrets out (into
the ``*_file`` field Alertmanager reads them from, with the value in a file of
its own). The role's older shorthand (``email``, ``webhook``, ``slack``,
``pagerduty``, laid over the role's defaults for that kind) stays as it was.

Which types and which ``*_file`` fields exist depends on the Alertmanager
release: RECEIVER_TYPES and SECRET_FIELDS say since when, as read from
Alertmanager's config structs (config/config.go, config/notifiers.go) at each
release tag from 0.15 to 0.29, and checked with amtool 0.25 (Debian 12) and
0.28 (Debian 13). ``alertmanager_config_version`` tells the release the role
runs on a host.
"""

import copy
import re

from ansible.errors import AnsibleFilterError

# The role's shorthand keys of a receiver, in the order they are written out:
# a dict (or a list of dicts) of Alertmanager's fields for that kind, laid
# over the role's defaults for it (vars/main.yml, _alertmanager_channel_defaults).
CHANNEL_KINDS = ("email", "webhook", "slack", "pagerduty")

# Every receiver type (``<type>_configs``) and the first release that has it;
# None: every release this role knows (0.15 and later). In the order they are
# written out: the shorthand's kinds first, so that a receiver written with
# the shorthand renders as it did before the other types existed.
RECEIVER_TYPES = {
    "email": None,
    "webhook": None,
    "slack": None,
    "pagerduty": None,
    "discord": "0.25.0",
    "incidentio": "0.29.0",
    "jira": "0.28.0",
    "msteams": "0.26.0",
    "msteamsv2": "0.28.0",
    "opsgenie": None,
    "pushover": None,
    "rocketchat": "0.28.0",
    "sns": "0.23.0",
    "telegram": "0.24.0",
    "victorops": None,
    "webex": "0.25.0",
    "wechat": None,
}

# The secret fields of each type (a dotted path inside one of its configs),
# each with the field Alertmanager reads the secret from a file instead and
# the first release that has that field; (None, None) where no release has
# one. A webhook's `url` is not among them: the role treats it as an address
# (the probes reach its host); a token goes in `bearer_token` (shorthand) or
# `http_config`, and a URL with a secret in it is listed in
# alertmanager_extra_secrets.
SECRET_FIELDS = {
    "email": {
        "auth_password": ("auth_password_file", "0.25.0"),
        "auth_secret": (None, None),
    },
    "webhook": {},
    "slack": {"api_url": ("api_url_file", "0.22.0")},
    "pagerduty": {
        "routing_key": ("routing_key_file", "0.25.0"),
        "service_key": ("service_key_file", "0.25.0"),
    },
    "discord": {"webhook_url": ("webhook_url_file", "0.27.0")},
    "incidentio": {"alert_source_token": ("alert_source_token_file", "0.29.0")},
    "jira": {},
    "msteams": {"webhook_url": ("webhook_url_file", "0.27.0")},
    "msteamsv2": {"webhook_url": ("webhook_url_file", "0.28.0")},
    "opsgenie": {"api_key": ("api_key_file", "0.24.0")},
    "pushover": {
        "user_key": ("user_key_file", "0.26.0"),
        "token": ("token_file", "0.26.0"),
    },
    "rocketchat": {
        "token_id": ("token_id_file", "0.28.0"),
        "token": ("token_file", "0.28.0"),
    },
    "sns": {"sigv4.secret_key": (None, None)},
    "telegram": {"bot_token": ("bot_token_file", "0.26.0")},
    "victorops": {"api_key": ("api_key_file", "0.22.0")},
    "webex": {},
    "wechat": {"api_secret": (None, None)},
}

# The secrets of the HTTP client settings every type has (`http_config`,
# Prometheus' common HTTP client config), each with its *_file sibling: in
# every release this role knows. Webex takes its bot token here
# (`authorization.credentials`), Jira its password (`basic_auth.password`).
HTTP_CONFIG_SECRETS = {
    "basic_auth.password": "password_file",
    "authorization.credentials": "credentials_file",
    "oauth2.client_secret": "client_secret_file",
    "bearer_token": "bearer_token_file",
    "tls_config.key": "key_file",
}

# What prometheus-alertmanager is in each Debian release the role supports,
# by the major version of Debian (the host's base-files package).
DEBIAN_PACKAGE_VERSIONS = {"12": "0.25.0", "13": "0.28.1"}
# Types Debian's build of a release leaves out, by the release's major.minor:
# Debian 13's 0.28.1+ds has no Jira (its amtool: "field jira_configs not
# found"); the upstream archive of 0.28 has it.
DEBIAN_BUILD_LACKS = {"0.28": ("jira",)}

# Time intervals: where they came in (the top-level `time_intervals` and a
# route's `active_time_intervals`, 0.24; a route's `mute_time_intervals`
# came with the older top-level `mute_time_intervals`, 0.22).
TIME_INTERVALS_SINCE = "0.24.0"
TIME_INTERVAL_KEYS = ("times", "weekdays", "days_of_month", "months", "years", "location")
WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
# Alertmanager's own pattern for a time of day (timeinterval.validTime).
_TIME = re.compile(r"^(?:(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")

_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
# 0.28.1, v0.28.1, or a Debian package's 0.28.1+ds-1 (with an epoch: 1:0.28.1-1).
_VERSION = re.compile(r"^(?:\d+:)?v?(\d+)\.(\d+)(?:\.(\d+))?")


# --- Versions -------------------------------------------------------------------


def _version_tuple(text, what="version"):
    match = _VERSION.match(str(text).strip())
    if not match:
        raise AnsibleFilterError(f"{what} {str(text)!r} is not a version like 0.28.1")
    return tuple(int(part or 0) for part in match.groups())


def _version_text(text):
    return ".".join(str(part) for part in _version_tuple(text))


class _Release:
    """The release a configuration is for, from a version argument (None: not known).

    ``version`` is ``alertmanager_config_version``'s result (``{version,
    source, lacks}``), or a plain version string.
    """

    def __init__(self, version):
        if isinstance(version, dict):
            number, source = version.get("version"), version.get("source")
            self.lacks = frozenset(version.get("lacks") or ())
        else:
            number, source, self.lacks = version, "", frozenset()
        self.known = bool(number)
        self.number = _version_tuple(number) if number else None
        self.text = (
            f"Alertmanager {_version_text(number)}" + (f" ({source})" if source else "")
            if number
            else ""
        )

    def has(self, since):
        """Whether it has what came with release `since` (None: every release)."""
        return _has(self.number, since)

    def has_type(self, kind):
        return self.has(RECEIVER_TYPES[kind]) and kind not in self.lacks


def _has(running, since):
    """Whether the running release (a tuple, None: unknown, i.e. any) has what came in `since`."""
    return since is None or running is None or running >= _version_tuple(since)


def alertmanager_config_version(
    install_method, version, package="prometheus-alertmanager", host=None
):
    """The Alertmanager release the role's configuration is for, on one host.

    ``archive``: ``version`` (alertmanager_version). ``package``: the version
    of ``package`` when the host has it installed (``host`` is the
    monitoring_host_facts look at the host), else what Debian's release of the
    host ships (DEBIAN_PACKAGE_VERSIONS, from its base-files version). Without
    a look at the host (the render entry point, or a run whose tags skipped
    it), or on a release the role does not know, the oldest Debian release's:
    a configuration for it is read by the later ones too.

    Returns ``{version, source, lacks}``: ``source`` says where the version
    comes from, for messages; ``lacks`` lists the types Debian's build of the
    release leaves out (DEBIAN_BUILD_LACKS).
    """
    if install_method == "archive":
        return {
            "version": _version_text(version),
            "source": "alertmanager_version, from the release archive",
            "lacks": [],
        }
    packages = (host or {}).get("packages") or {}
    if package in packages:
        return _debian_build(
            _version_text(packages[package]), f"the host's package {package} {packages[package]}"
        )
    oldest = min(DEBIAN_PACKAGE_VERSIONS, key=int)
    release = re.match(r"^(\d+)", str(packages.get("base-files", "")))
    if release and release.group(1) in DEBIAN_PACKAGE_VERSIONS:
        debian = release.group(1)
        return _debian_build(
            DEBIAN_PACKAGE_VERSIONS[debian], f"Debian {debian}'s package {package}"
        )
    why = (
        f"the host runs Debian {release.group(1)}, which the role does not know"
        if release
        else "the host was not looked at"
    )
    return _debian_build(
        DEBIAN_PACKAGE_VERSIONS[oldest],
        f"Debian {oldest}'s package {package}: {why}, and later releases read its "
        "configuration too",
    )


def _debian_build(version, source):
    minor = ".".join(version.split(".")[:2])
    return {"version": version, "source": source, "lacks": list(DEBIAN_BUILD_LACKS.get(minor, ()))}


# --- Receivers ------------------------------------------------------------------


def _merged(defaults, own):
    """Deep-merge `own` over `defaults`; the channel's own keys come first."""
    result = dict(own)
    for key, value in defaults.items():
        if key not in result:
            result[key] = value
        elif isinstance(value, dict) and isinstance(result[key], dict):
            result[key] = _merged(value, result[key])
    return result


def _channels(receiver_name, key, spec, list_only=False):
    if isinstance(spec, dict) and not list_only:
        return [spec]
    if isinstance(spec, list) and all(isinstance(item, dict) for item in spec):
        return spec
    # The value itself is not shown: it may be a secret put in the wrong place.
    shape = "a list of dicts" if list_only else "a dict or a list of dicts"
    raise AnsibleFilterError(
        f"receiver {receiver_name!r}: {key} must be {shape}, got {type(spec).__name__}"
    )


def _receiver_keys(receiver, name, release):
    """Check a receiver's keys; return the types it uses, in RECEIVER_TYPES order."""
    allowed = {"name", "alert_relay", *CHANNEL_KINDS}
    allowed.update(f"{kind}_configs" for kind in RECEIVER_TYPES)
    unknown = sorted(key for key in receiver if key not in allowed)
    supported = [kind for kind in RECEIVER_TYPES if release.has_type(kind)]
    of = release.text or "any Alertmanager release this role knows"
    if unknown:
        hints = [f"{key!r} -> {key}_configs" for key in unknown if key in RECEIVER_TYPES]
        raise AnsibleFilterError(
            f"receiver {name!r}: unknown keys {unknown}; a receiver has a name, any of "
            f"{', '.join(CHANNEL_KINDS)} (the role's shorthand), <type>_configs as "
            f"Alertmanager writes them, for the types of {of}: {', '.join(supported)}, "
            "and alert_relay" + (f" (did you mean {', '.join(hints)}?)" if hints else "")
        )
    used = []
    for kind, since in RECEIVER_TYPES.items():
        if receiver.get(f"{kind}_configs") is None and receiver.get(kind) is None:
            continue
        if not release.has(since):
            raise AnsibleFilterError(
                f"receiver {name!r}: {kind}_configs needs Alertmanager {since} or later, and "
                f"this host runs {release.text}; its types are {', '.join(supported)}. Remove "
                f"it, or install a later release (alertmanager_install_method: archive, "
                "alertmanager_version)"
            )
        if kind in release.lacks:
            raise AnsibleFilterError(
                f"receiver {name!r}: {kind}_configs is a type that this host's "
                f"{release.text} leaves out (Debian builds it without); its types are "
                f"{', '.join(supported)}. Remove it, or install the upstream release "
                "(alertmanager_install_method: archive)"
            )
        used.append(kind)
    return used


def _get_path(config, path):
    """(parent dict, last key) of a dotted path in `config`, or (None, None)."""
    *parents, last = path.split(".")
    node = config
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return None, None
    return node, last


class _Secrets:
    """Moves the secrets of one receiver's configs into files; keeps the rest."""

    def __init__(self, secrets_dir, release, extra_secrets):
        self.secrets_dir = secrets_dir
        self.release = release
        # None: the release is not known, nothing is checked against it.
        self.extra_secrets = None if not release.known else {str(s) for s in extra_secrets or ()}
        self.files = {}

    def to_file(self, parent, file_field, name, value):
        self.files[name] = str(value)
        parent[file_field] = f"{self.secrets_dir}/{name}"

    def move(self, config, kind, where, prefix):
        fields = [(path, *spec) for path, spec in SECRET_FIELDS[kind].items()]
        fields += [
            (f"http_config.{path}", file_field, None)
            for path, file_field in HTTP_CONFIG_SECRETS.items()
        ]
        for path, file_field, since in fields:
            parent, field = _get_path(config, path)
            if parent is None or field not in parent:
                continue
            value = parent[field]
            if value in (None, ""):
                parent.pop(field)
                continue
            if file_field and file_field in parent:
                raise AnsibleFilterError(
                    f"{where}: set either {path} or its {file_field}, not both"
                )
            if file_field and self.release.has(since):
                parent.pop(field)
                self.to_file(parent, file_field, f"{prefix}.{path}", value)
            else:
                self._stays_inline(where, path, file_field, since, value)
        self._check_file_fields(config, kind, where)

    def _stays_inline(self, where, path, file_field, since, value):
        """A secret Alertmanager reads from its config only: allowed when listed."""
        if self.extra_secrets is None or str(value) in self.extra_secrets:
            return
        if file_field:
            why = (
                f"{self.release.text} reads it from alertmanager.yml only ({file_field} came "
                f"with {since})"
            )
            way_out = f"Install {since} or later (alertmanager_install_method: archive), or list"
        else:
            why = "Alertmanager reads it from alertmanager.yml only (no release has a file for it)"
            way_out = "List"
        raise AnsibleFilterError(
            f"{where}: {path} is a secret, and {why}, where the role keeps no secret. "
            f"{way_out} the same value in alertmanager_extra_secrets to accept it there "
            "(masked in Ansible's output)"
        )

    def _check_file_fields(self, config, kind, where):
        """A *_file field written by hand must exist in the running release."""
        for path, (file_field, since) in SECRET_FIELDS[kind].items():
            if not file_field:
                continue
            parent = _get_path(config, path)[0]
            if parent is not None and file_field in parent and not self.release.has(since):
                raise AnsibleFilterError(
                    f"{where}: {file_field} came with Alertmanager {since}, and this host runs "
                    f"{self.release.text}"
                )


def alertmanager_receivers(
    receivers, channel_defaults, secrets_dir, relay=None, version=None, extra_secrets=None
):
    """Turn the role's receiver list into Alertmanager's ``receivers``.

    A receiver is ``{name, <type>_configs..., email, webhook, slack,
    pagerduty, alert_relay}``. ``<type>_configs`` is a list of configs of
    that type as Alertmanager writes them (any type of RECEIVER_TYPES). The
    shorthand ``email``, ``webhook``, ``slack`` and ``pagerduty`` is a dict
    (or a list of dicts) of Alertmanager's fields for that kind, laid over
    ``channel_defaults[kind]``; a shorthand webhook's ``bearer_token`` becomes
    its ``http_config`` authorization. A type's shorthand configs come before
    its ``<type>_configs``.

    Secrets (SECRET_FIELDS, HTTP_CONFIG_SECRETS) are replaced by the
    ``*_file`` field that names a file under ``secrets_dir``, where the
    running release (``version``, from ``alertmanager_config_version``) has
    that field. Where it has none, the secret stays in the config only when
    its value is in ``extra_secrets`` (alertmanager_extra_secrets), and the
    run fails otherwise. Without ``version`` nothing is checked against a
    release, and every secret that any release can read from a file is put in
    one: the role stages those files, a superset of what any release uses.

    ``alert_relay: true`` adds a webhook to the alert relay: ``relay`` gives
    its ``url``, the bearer ``token`` Alertmanager sends (written once to
    ``alert-relay.token``), the ``ca_file`` that verifies it over https (or
    ''), and the names of the ``receivers`` the relay serves.

    Returns ``{"receivers": [...], "secret_files": {file name: value}}``
    (names relative to ``secrets_dir``); empty secrets are left out.
    """
    release = _Release(version)
    secrets = _Secrets(secrets_dir, release, extra_secrets)
    converted = []
    for receiver in receivers:
        if not isinstance(receiver, dict):
            raise AnsibleFilterError(f"a receiver must be a dict, got {type(receiver).__name__}")
        name = receiver.get("name")
        if not name:
            raise AnsibleFilterError(f"a receiver has no name: {sorted(receiver)}")
        result = {"name": name}
        safe_name = _UNSAFE_FILE_CHARS.sub("_", name)
        for kind in _receiver_keys(receiver, name, release):
            entries = []
            if receiver.get(kind) is not None:
                for index, channel in enumerate(_channels(name, kind, receiver[kind])):
                    config = copy.deepcopy(_merged(channel_defaults.get(kind, {}), channel))
                    entries.append((f"receiver {name!r}: {kind}[{index}]", config, True))
            key = f"{kind}_configs"
            if receiver.get(key) is not None:
                for index, config in enumerate(_channels(name, key, receiver[key], True)):
                    entries.append(
                        (f"receiver {name!r}: {key}[{index}]", copy.deepcopy(config), False)
                    )
            configs = []
            for number, (where, config, shorthand) in enumerate(entries, start=1):
                prefix = f"{safe_name}.{kind}.{number}"
                if shorthand and kind == "webhook":
                    _shorthand_bearer_token(config, secrets, prefix)
                secrets.move(config, kind, where, prefix)
                configs.append(config)
            result[key] = configs
        if receiver.get("alert_relay"):
            webhook = _relay_webhook(name, relay or {}, secrets_dir)
            result.setdefault("webhook_configs", []).append(webhook)
            secrets.files["alert-relay.token"] = str(relay["token"]).strip()
        converted.append(result)
    return {"receivers": converted, "secret_files": secrets.files}


def _shorthand_bearer_token(config, secrets, prefix):
    """The shorthand webhook's `bearer_token`: a file for http_config's authorization."""
    token = config.pop("bearer_token", None)
    if token in (None, ""):
        return
    http_config = dict(config.get("http_config") or {})
    http_config["authorization"] = {"type": "Bearer"}
    secrets.to_file(
        http_config["authorization"], "credentials_file", f"{prefix}.bearer_token", token
    )
    config["http_config"] = http_config


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


# --- Time intervals ---------------------------------------------------------------


def _range(where, field, text, member):
    """(begin, end) of `a:b` or `a`, each member mapped by `member` (raises ValueError)."""
    parts = str(text).lower().split(":")
    if len(parts) > 2:
        raise AnsibleFilterError(f"{where}: {field} {text!r} is not a value or a range a:b")
    try:
        values = [member(part.strip()) for part in parts]
    except ValueError as err:
        raise AnsibleFilterError(f"{where}: {field} {text!r}: {err}") from None
    return values[0], values[-1]


def _weekday(text):
    if text not in WEEKDAYS:
        raise ValueError(f"{text!r} is not a weekday (sunday ... saturday)")
    return WEEKDAYS.index(text)


def _month(text):
    if text in MONTHS:
        return MONTHS.index(text) + 1
    if text.isdigit() and 1 <= int(text) <= 12:
        return int(text)
    raise ValueError(f"{text!r} is not a month (january ... december, or 1 ... 12)")


def _day_of_month(text):
    if not re.fullmatch(r"-?\d+", text) or int(text) == 0 or abs(int(text)) > 31:
        raise ValueError(
            f"{text!r} is not a day of the month (1 ... 31, or -31 ... -1 from its end)"
        )
    return int(text)


def _year(text):
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a year")
    return int(text)


def _times(where, times):
    if not isinstance(times, list):
        raise AnsibleFilterError(f"{where}: times must be a list of {{start_time, end_time}}")
    for index, time_range in enumerate(times):
        here = f"{where}: times[{index}]"
        if not isinstance(time_range, dict) or set(time_range) != {"start_time", "end_time"}:
            raise AnsibleFilterError(f"{here} must have exactly start_time and end_time")
        for field in ("start_time", "end_time"):
            value = time_range[field]
            if isinstance(value, int) and not isinstance(value, bool):
                raise AnsibleFilterError(
                    f"{here}: {field} is the number {value}: YAML reads an unquoted time such as "
                    f"18:00 as a number (minutes); quote it: '{value // 60:02d}:{value % 60:02d}'"
                )
            if not isinstance(value, str) or not _TIME.match(value):
                raise AnsibleFilterError(
                    f"{here}: {field} {value!r} is not a time of day as HH:MM (00:00 ... 24:00)"
                )
        if time_range["start_time"] >= time_range["end_time"]:
            raise AnsibleFilterError(
                f"{here}: start_time {time_range['start_time']} is not before end_time "
                f"{time_range['end_time']} (a range cannot cross midnight: split it in two, "
                "... to 24:00 and 00:00 to ...)"
            )


def _ranges(where, field, values, member):
    if not isinstance(values, list):
        raise AnsibleFilterError(f"{where}: {field} must be a list")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise AnsibleFilterError(f"{where}: {field} {value!r} is not a value or a range a:b")
        begin, end = _range(where, field, value, member)
        if field == "days_of_month":
            if begin < 0 < end:
                raise AnsibleFilterError(
                    f"{where}: days_of_month {value!r}: a range that starts counting from the "
                    "month's end must end so too (both negative)"
                )
            # Alertmanager's own check, on a 28-day month.
            begin, end = (day + 28 if day < 0 else day for day in (begin, end))
        if begin > end:
            hint = ""
            wrap = {"weekdays": ("saturday", "sunday"), "months": ("december", "january")}
            if field in wrap:
                first, last = str(value).lower().split(":")
                end, start = wrap[field]
                parts = [
                    first if first == end else f"{first}:{end}",
                    last if last == start else f"{start}:{last}",
                ]
                hint = f" (a range cannot wrap around: write it as {parts})"
            raise AnsibleFilterError(f"{where}: {field} {value!r} ends before it starts{hint}")


def _interval_spec(where, spec):
    if not isinstance(spec, dict):
        raise AnsibleFilterError(f"{where} must be a dict of {', '.join(TIME_INTERVAL_KEYS)}")
    unknown = sorted(set(spec) - set(TIME_INTERVAL_KEYS))
    if unknown:
        raise AnsibleFilterError(
            f"{where}: unknown keys {unknown}; an interval has any of "
            f"{', '.join(TIME_INTERVAL_KEYS)}"
        )
    if spec.get("times") is not None:
        _times(where, spec["times"])
    members = {
        "weekdays": _weekday,
        "days_of_month": _day_of_month,
        "months": _month,
        "years": _year,
    }
    for field, member in members.items():
        if spec.get(field) is not None:
            _ranges(where, field, spec[field], member)
    location = spec.get("location")
    # Whether the zone exists is the host's to say (its time zone database):
    # amtool checks that on the staged file there.
    if location is not None and (not isinstance(location, str) or not location.strip()):
        raise AnsibleFilterError(
            f"{where}: location must be a time zone name such as Europe/Berlin, UTC or Local"
        )


def _route_uses(route, where, found):
    """(where, key, name) of every time interval a route and its children use."""
    if not isinstance(route, dict):
        return found
    for key in ("mute_time_intervals", "active_time_intervals"):
        names = route.get(key)
        if names is None:
            continue
        if not isinstance(names, list):
            raise AnsibleFilterError(f"{where}: {key} must be a list of time interval names")
        found += [(where, key, name) for name in names]
    for index, child in enumerate(route.get("routes") or []):
        receiver = child.get("receiver") if isinstance(child, dict) else None
        label = f"{where}.routes[{index}]" + (f" (receiver {receiver})" if receiver else "")
        _route_uses(child, label, found)
    return found


def alertmanager_time_intervals(intervals, route=None, version=None):
    """Check alertmanager_time_intervals and the routes that use them.

    ``intervals`` is Alertmanager's ``time_intervals``: a list of ``{name,
    time_intervals: [{times, weekdays, days_of_month, months, years,
    location}]}``. Every field is checked as Alertmanager parses it (times as
    quoted HH:MM, start before end; weekday, month, day-of-month and year
    ranges), except whether a ``location`` is a time zone the host knows,
    which amtool checks there. Every name that a route of ``route`` (the whole
    tree, alertmanager_route) mutes or is active in must be defined, and the
    top of the tree may use none. ``version`` (alertmanager_config_version)
    must be 0.24 or later when any is used.

    Returns ``intervals`` as Alertmanager's ``time_intervals``.
    """
    intervals = intervals or []
    if not isinstance(intervals, list):
        raise AnsibleFilterError(
            "alertmanager_time_intervals must be a list of {name, time_intervals}"
        )
    names = []
    for index, interval in enumerate(intervals):
        if not isinstance(interval, dict) or not interval.get("name"):
            raise AnsibleFilterError(f"alertmanager_time_intervals[{index}] has no name")
        name = interval["name"]
        where = f"time interval {name!r}"
        if name in names:
            raise AnsibleFilterError(f"{where} is defined twice in alertmanager_time_intervals")
        names.append(name)
        unknown = sorted(set(interval) - {"name", "time_intervals"})
        if unknown:
            raise AnsibleFilterError(
                f"{where}: unknown keys {unknown}; it has a name and time_intervals, a list of "
                f"intervals of {', '.join(TIME_INTERVAL_KEYS)}"
            )
        specs = interval.get("time_intervals")
        if not isinstance(specs, list):
            raise AnsibleFilterError(f"{where}: time_intervals must be a list of intervals")
        for number, spec in enumerate(specs):
            _interval_spec(f"{where}: time_intervals[{number}]", spec)

    uses = _route_uses(route or {}, "route", [])
    for where, key, name in uses:
        if where == "route":
            raise AnsibleFilterError(
                f"the top of the routing tree (alertmanager_route) has {key} {name!r}: "
                "Alertmanager allows time intervals on the routes below it only"
            )
        if name not in names:
            defined = f"it defines {', '.join(names)}" if names else "it defines none"
            raise AnsibleFilterError(
                f"{where}: {key} names the time interval {name!r}, which "
                f"alertmanager_time_intervals does not define ({defined})"
            )
    release = _Release(version)
    if (intervals or uses) and not release.has(TIME_INTERVALS_SINCE):
        raise AnsibleFilterError(
            f"time intervals (alertmanager_time_intervals, a route's mute_time_intervals and "
            f"active_time_intervals) need Alertmanager {TIME_INTERVALS_SINCE} or later, and this "
            f"host runs {release.text}"
        )
    return intervals


class FilterModule:
    def filters(self):
        return {
            "alertmanager_receivers": alertmanager_receivers,
            "alertmanager_config_version": alertmanager_config_version,
            "alertmanager_time_intervals": alertmanager_time_intervals,
        }
