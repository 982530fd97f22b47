"""Filters that turn the blackbox_exporter role's probe lists into checks, modules and a job.

A *probe* is what an operator writes (or what the inventory implies): an HTTP
endpoint, a TLS endpoint, a notification destination, a DNS name. A *check*
is one request the blackbox exporter makes for it, one Prometheus target:

- ``http``: an HTTP(S) request to ``url`` (status, optional body match);
- ``connect``: a TCP connection to ``address``;
- ``tls``: a TLS handshake at ``address`` (direct, or SMTP's STARTTLS), the
  certificate checked against ``server_name``. A TLS endpoint gets a
  ``connect`` check too: a handshake that fails where the connection works
  is a TLS problem, not an endpoint that is down;
- ``dns``: a query for ``name`` to the resolver ``dns_server``.

- ``blackbox_dragonflydb_probes``: TLS probes of the DragonflyDB addresses the
  inventory names (``rediss://`` in dragonflydb_exporter_targets);
- ``blackbox_notification_probes``: probes of where Alertmanager's receivers
  and the alert relay send notifications;
- ``blackbox_dns_probes``: the host names the other probes need resolved;
- ``blackbox_checks``: every probe list, validated, as checks;
- ``blackbox_modules``: the exporter's ``modules:``, the checks' and the operator's;
- ``blackbox_scrape_configs``: Prometheus' job for the checks (multi-target).
"""

import ipaddress
import re
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.plain_data import (
    plain as _plain,
)
from ansible_collections.prometheus_alerting.stack.plugins.plugin_utils.addresses import (
    DEFAULT_PORTS,
    host_port,
    url_parts,
)

PURPOSES = ("service", "dragonflydb", "notification", "dns")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
TLS_MODES = ("none", "tls", "starttls")

# Modules every exporter has; a probe with settings of its own gets a module
# of its own (`<check>_<probe name>`).
BASE_MODULES = {
    "http_2xx": {"prober": "http", "http": {"preferred_ip_protocol": "ip4"}},
    "tcp_connect": {"prober": "tcp", "tcp": {"preferred_ip_protocol": "ip4"}},
    "tcp_tls": {"prober": "tcp", "tcp": {"preferred_ip_protocol": "ip4", "tls": True}},
    # SMTP submission: the server must offer STARTTLS and complete the handshake.
    "smtp_starttls": {
        "prober": "tcp",
        "tcp": {
            "preferred_ip_protocol": "ip4",
            "query_response": [
                {"expect": "^220"},
                {"send": "EHLO prometheus-alerting.invalid\r"},
                {"expect": "^250[ -]STARTTLS"},
                {"send": "STARTTLS\r"},
                {"expect": "^220"},
                {"starttls": True},
                {"send": "QUIT\r"},
            ],
        },
    },
}
COMMON_KEYS = {"name", "timeout", "module", "labels"}
KEYS = {
    "service": COMMON_KEYS | {"url", "status", "body", "method", "ca_file"},
    "dragonflydb": COMMON_KEYS | {"address", "server_name", "ca_file"},
    "notification": COMMON_KEYS | {"url", "address", "tls", "server_name", "ca_file"},
    "dns": COMMON_KEYS | {"type"},
}


def _is_ip(host):
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _split_address(address, where):
    """host, port of `host:port` (IPv6 in brackets)."""
    parts = urlsplit(f"//{address}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or not port:
        raise AnsibleFilterError(f"{where}: address {address!r} must be host:port")
    return parts.hostname, port


def _derived_name(kind, host, port):
    """`<kind>-<host>-<port>`, in the characters a probe name may hold (IPv6: ':' -> '.')."""
    return f"{kind}-{host.replace(':', '.')}-{port}"


# --- Probes the inventory implies ---------------------------------------------------


def blackbox_dragonflydb_probes(groups, hostvars, group="dragonflydb_hosts"):
    """A TLS probe per `rediss://` address in the hosts' dragonflydb_exporter_targets.

    The certificate is checked against the address's host name, or against
    the target's `tls_server_name` where it sets one.
    """
    probes, seen = [], set()
    for host in groups.get(group, []):
        for target in _plain(hostvars[host].get("dragonflydb_exporter_targets", [])):
            parts = urlsplit(str(target.get("address", "")))
            if parts.scheme != "rediss" or not parts.hostname:
                continue
            address = host_port(parts.hostname, parts.port or DEFAULT_PORTS["rediss"])
            if address in seen:
                continue
            seen.add(address)
            probes.append(
                {
                    "name": _derived_name("dragonflydb", parts.hostname, parts.port or 6379),
                    "address": address,
                    "server_name": target.get("tls_server_name") or parts.hostname,
                }
            )
    return probes


def _url_probe(url, name):
    scheme, host, port = url_parts(url, name, ("http", "https"))
    return {
        "name": name,
        "address": host_port(host, port),
        "tls": "tls" if scheme == "https" else "none",
    }


def _secret_url_probe(url, where):
    """_url_probe of a URL that may hold a secret: an error does not show it."""
    try:
        return _url_probe(url, where)
    except AnsibleFilterError:
        raise AnsibleFilterError(
            f"{where}: the url must start with http:// or https:// and name a host "
            f"(not shown: it may hold a secret)"
        ) from None


def blackbox_notification_probes(receivers, smtp=None, relay_destinations=None, relay_used=False):
    """Probes of every place a notification goes to: one per distinct address.

    `receivers` are Alertmanager's (the alertmanager role's format): an email
    channel reaches `smtp` ({smarthost, port, require_tls}), a webhook its
    URL's host, Slack and PagerDuty their API hosts. With `relay_used`, the
    relay's destinations too. Only host and port are taken from a URL, so a
    secret in its path or query never reaches a probe.
    """
    smtp = _plain(smtp or {})
    found = {}

    def add(kind, probe):
        host, port = _split_address(probe["address"], kind)
        found.setdefault(probe["address"], {**probe, "name": _derived_name(kind, host, port)})

    for receiver in _plain(receivers or []):
        where = f"receiver {receiver.get('name')}:"
        for kind in ("email", "webhook", "slack", "pagerduty"):
            channels = receiver.get(kind) or []
            for channel in channels if isinstance(channels, list) else [channels]:
                if kind == "email" and smtp.get("smarthost"):
                    host = str(smtp["smarthost"])
                    port = int(smtp.get("port") or 25)
                    tls = (
                        "tls"
                        if port == 465
                        else "starttls"
                        if smtp.get("require_tls", True)
                        else "none"
                    )
                    add("smtp", {"address": host_port(host, port), "tls": tls})
                elif kind == "webhook" and channel.get("url"):
                    add("webhook", _secret_url_probe(channel["url"], f"{where} webhook"))
                elif kind == "slack" and channel.get("api_url"):
                    add("slack", _secret_url_probe(channel["api_url"], f"{where} slack"))
                elif kind == "pagerduty":
                    url = channel.get("url") or "https://events.pagerduty.com/v2/enqueue"
                    add("pagerduty", _secret_url_probe(url, f"{where} pagerduty"))
    if relay_used:
        for name, destination in _plain(relay_destinations or {}).items():
            url = destination.get("url") or destination.get("secret_url")
            if url:
                add("relay", _secret_url_probe(url, f"alert relay destination {name}"))
    return list(found.values())


def blackbox_dns_probes(*probe_lists):
    """The host names (not addresses) the probes reach, each once."""
    names = []
    for probe in (p for probes in probe_lists for p in _plain(probes or [])):
        if probe.get("url"):
            host = urlsplit(probe["url"]).hostname
        elif probe.get("address"):
            host = urlsplit(f"//{probe['address']}").hostname
        else:
            continue
        if host and not _is_ip(host) and host != "localhost" and host not in names:
            names.append(host)
    return [{"name": name} for name in names]


# --- Probes to checks -----------------------------------------------------------------


def _check(probe, purpose, kind, target, module, settings, instance=None):
    return {
        "probe": probe["name"],
        "purpose": purpose,
        "check": kind,
        "target": target,
        "instance": instance or target,
        "module": module,
        "settings": settings,
        "labels": probe.get("labels", {}),
    }


def _tls_settings(probe, host, where):
    settings = {}
    server_name = probe.get("server_name")
    if not server_name and _is_ip(host):
        raise AnsibleFilterError(
            f"{where}: {host} is an IP address, so the certificate cannot be checked against a "
            f"name: set server_name to the name the certificate is for"
        )
    if server_name:
        settings["server_name"] = server_name
    if probe.get("ca_file"):
        settings["ca_file"] = probe["ca_file"]
    return settings


def _http_checks(probe, where):
    scheme = url_parts(probe.get("url", ""), where, ("http", "https"))[0]
    http = {"preferred_ip_protocol": "ip4"}
    if probe.get("status"):
        statuses = probe["status"] if isinstance(probe["status"], list) else [probe["status"]]
        http["valid_status_codes"] = [int(s) for s in statuses]
    if probe.get("body"):
        http["fail_if_body_not_matches_regexp"] = [probe["body"]]
    if probe.get("method"):
        http["method"] = str(probe["method"]).upper()
    if scheme == "https" and probe.get("ca_file"):
        http["tls_config"] = {"ca_file": probe["ca_file"]}
    module = f"http_{probe['name']}" if len(http) > 1 else "http_2xx"
    return [
        _check(probe, "service", "http", probe["url"], module, {"prober": "http", "http": http})
    ]


def _endpoint_checks(probe, purpose, where, default_tls):
    if probe.get("url"):
        url_probe = _url_probe(probe["url"], where)
        address, tls = url_probe["address"], probe.get("tls", url_probe["tls"])
    else:
        address, tls = probe.get("address"), probe.get("tls", default_tls)
        if not address:
            raise AnsibleFilterError(f"{where} needs an address (host:port)")
    if tls not in TLS_MODES:
        raise AnsibleFilterError(f"{where}: tls must be one of {', '.join(TLS_MODES)}, got {tls!r}")
    host = _split_address(address, where)[0]
    checks = [
        _check(probe, purpose, "connect", address, "tcp_connect", BASE_MODULES["tcp_connect"])
    ]
    if tls == "none":
        return checks
    base = "tcp_tls" if tls == "tls" else "smtp_starttls"
    tls_config = _tls_settings(probe, host, where)
    settings = {"prober": "tcp", "tcp": {**BASE_MODULES[base]["tcp"]}}
    if tls_config:
        settings["tcp"]["tls_config"] = tls_config
    module = f"tls_{probe['name']}" if tls_config else base
    checks.append(_check(probe, purpose, "tls", address, module, settings))
    return checks


def _dns_checks(probe, dns_server, where):
    if not dns_server:
        raise AnsibleFilterError(
            f"{where}: no DNS server to ask: set blackbox_exporter_dns_server (host:port)"
        )
    _split_address(dns_server, f"{where}: blackbox_exporter_dns_server")
    query_type = str(probe.get("type", "A")).upper()
    settings = {
        "prober": "dns",
        "dns": {
            "preferred_ip_protocol": "ip4",
            "query_name": probe["name"],
            "query_type": query_type,
            # An answer without a record of the type asked for is a failure too.
            "valid_rcodes": ["NOERROR"],
            "validate_answer_rrs": {"fail_if_none_matches_regexp": [rf".*\t{query_type}\t.*"]},
        },
    }
    return [
        _check(probe, "dns", "dns", dns_server, f"dns_{probe['name']}", settings, probe["name"])
    ]


def _validated(probe, purpose, index, names):
    """The probe's name, after checking its keys; `names` collects the names seen."""
    name = probe.get("name") if isinstance(probe, dict) else None
    where = f"{purpose} probe {index} ({name or probe!r})"
    if not name:
        raise AnsibleFilterError(f"{where} needs a name")
    if not NAME.fullmatch(str(name)):
        raise AnsibleFilterError(
            f"{where}: the name may hold letters, digits, '.', '_' and '-' only"
        )
    unknown = set(probe) - KEYS[purpose]
    if unknown:
        raise AnsibleFilterError(
            f"{where} has unknown keys {', '.join(sorted(unknown))}; "
            f"it takes: {', '.join(sorted(KEYS[purpose]))}"
        )
    if (purpose, name) in names:
        raise AnsibleFilterError(f"{where}: two {purpose} probes are named {name}")
    names.add((purpose, name))
    return where


def _probe_checks(probe, purpose, where, dns_server):
    if purpose == "service":
        checks = _http_checks(probe, where)
    elif purpose == "dns":
        checks = _dns_checks(probe, dns_server, where)
    else:
        default_tls = "tls" if purpose == "dragonflydb" else "none"
        checks = _endpoint_checks(probe, purpose, where, default_tls)
    main = checks[-1]
    if probe.get("timeout"):
        if main["module"] in BASE_MODULES:
            main["module"] = f"{main['check']}_{probe['name']}"
        main["settings"] = {**main["settings"], "timeout": probe["timeout"]}
    if probe.get("module"):
        main["module"], main["settings"] = probe["module"], None
    return checks


def blackbox_checks(http=None, dragonflydb=None, notification=None, dns=None, dns_server=""):
    """Every probe, validated, as a list of checks (see the module docstring).

    A probe may name a `module` of its own (one of blackbox_exporter_modules
    or the built-in ones, checked by blackbox_modules) for its main check.
    """
    checks, names = [], set()
    lists = {"service": http, "dragonflydb": dragonflydb, "notification": notification, "dns": dns}
    for purpose, probes in lists.items():
        if not isinstance(probes or [], list):
            raise AnsibleFilterError(f"the {purpose} probes must be a list, got {probes!r}")
        for index, probe in enumerate(_plain(probes or [])):
            where = _validated(probe, purpose, index, names)
            checks.extend(_probe_checks(probe, purpose, where, dns_server))
    return checks


def blackbox_modules(checks, extra_modules=None):
    """The exporter's modules: the built-in ones, the checks' own and `extra_modules`.

    Fails, naming the probe, when a check names a module that none of them defines.
    """
    extra = _plain(extra_modules or {})
    modules = {**BASE_MODULES, **extra}
    own, owners = {}, {}
    for check in _plain(checks or []):
        if check["settings"] is None:
            if check["module"] not in modules:
                raise AnsibleFilterError(
                    f"probe {check['probe']} names module {check['module']!r}, which is not "
                    f"defined: known modules are {', '.join(sorted(modules | own))} "
                    f"(add one in blackbox_exporter_modules)"
                )
        elif check["module"] not in BASE_MODULES or check["settings"] != BASE_MODULES.get(
            check["module"]
        ):
            # Two probes of different lists may share a name, and so a module name.
            name = check["module"]
            if name in extra or own.get(name, check["settings"]) != check["settings"]:
                other = "blackbox_exporter_modules" if name in extra else f"probe {owners[name]}"
                raise AnsibleFilterError(
                    f"probe {check['probe']} ({check['purpose']}) needs a module {name} of its "
                    f"own, but {other} defines one by that name too: rename one of them"
                )
            own[name], owners[name] = check["settings"], f"{check['probe']} ({check['purpose']})"
    return {**modules, **own}


def blackbox_scrape_configs(checks, exporter, job_name="blackbox", client=None):
    """Prometheus' job for the checks: each a target, probed through `exporter` (host:port).

    The multi-target pattern: the check's target goes to the exporter as
    `?target=`, its module as `?module=`; the series are labelled `probe`,
    `purpose`, `check` and `instance` (the target; the name, for DNS), and a
    DragonflyDB probe's also `endpoint` (host:port, as its exporter's series).
    `client` holds the job's scheme, tls_config and basic_auth, for an
    exporter behind TLS and basic auth. No checks, no job.
    """
    checks = _plain(checks or [])
    if not checks:
        return []
    static_configs = [
        {
            "targets": [check["target"]],
            "labels": {
                **check.get("labels", {}),
                "__param_module": check["module"],
                "probe": check["probe"],
                "purpose": check["purpose"],
                "check": check["check"],
                "instance": check["instance"],
                # DragonflyDB's host:port, as its exporter's series have it:
                # inhibit rules pair the probe's alerts with the exporter's.
                **({"endpoint": check["instance"]} if check["purpose"] == "dragonflydb" else {}),
            },
        }
        for check in checks
    ]
    config = {"job_name": job_name, "metrics_path": "/probe", **_plain(client or {})}
    config["static_configs"] = static_configs
    config["relabel_configs"] = [
        {"source_labels": ["__address__"], "target_label": "__param_target"},
        {"target_label": "__address__", "replacement": exporter},
    ]
    return [config]


class FilterModule:
    def filters(self):
        return {
            "blackbox_dragonflydb_probes": blackbox_dragonflydb_probes,
            "blackbox_notification_probes": blackbox_notification_probes,
            "blackbox_dns_probes": blackbox_dns_probes,
            "blackbox_checks": blackbox_checks,
            "blackbox_modules": blackbox_modules,
            "blackbox_scrape_configs": blackbox_scrape_configs,
        }
