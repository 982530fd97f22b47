"""Filters that turn the prometheus role's data into Prometheus files.

- ``prometheus_rule_files``: the alert catalog plus the operator's overrides
  become one rule file per group.
- ``prometheus_scrape_configs``: the exporter job specs plus the inventory
  become scrape jobs, one target per host.
"""

import copy
import re
from urllib.parse import urlsplit

import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.plain_data import (
    plain as _plain,
)
from ansible_collections.prometheus_alerting.stack.plugins.plugin_utils.addresses import (
    host_port,
    url_parts,
)
from ansible_collections.prometheus_alerting.stack.plugins.plugin_utils.postgres_targets import (
    postgres_static_configs,
)
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

# Keys of an alert that are not expression parameters.
RULE_KEYS = {
    "alert",
    "expr",
    "for",
    "keep_firing_for",
    "severity",
    "service",
    "summary",
    "description",
    "runbook_url",
    "labels",
    "annotations",
    "params",
    "critical",
    "enabled",
    "param_ranges",
}
# What an override may set besides expression parameters.
OVERRIDE_KEYS = RULE_KEYS - {"alert", "params", "param_ranges"}
# What `critical` (the critical twin of a warning alert) may change.
CRITICAL_KEYS = {"for"}
GROUP_OVERRIDE_KEYS = {"enabled", "interval"}

_EXPR_ENV = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False)


class _BlockDumper(yaml.SafeDumper):
    """Indented lists, and multi-line strings as literal blocks."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def _represent_str(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def _render_expr(alert, template, context):
    try:
        return _EXPR_ENV.from_string(template).render(context).strip()
    except TemplateError as err:
        raise AnsibleFilterError(f"alert {alert}: cannot render its expression: {err}") from err


def _check_critical(rule, critical, where):
    """`critical` sets params (and `for`) of the alert's critical twin."""
    if not isinstance(critical, dict):
        raise AnsibleFilterError(f"{where}: critical must be a mapping, got {critical!r}")
    unknown = set(critical) - CRITICAL_KEYS - set(rule.get("params", {}))
    if unknown:
        known = sorted(CRITICAL_KEYS | set(rule.get("params", {})))
        raise AnsibleFilterError(
            f"{where}: critical sets {', '.join(sorted(unknown))}, which alert "
            f"{rule['alert']} does not have; it takes: {', '.join(known)}"
        )


def _apply_override(rule, override, where):
    for key, value in override.items():
        if key == "critical":
            if "critical" not in rule:
                raise AnsibleFilterError(
                    f"{where} sets 'critical', but alert {rule['alert']} has no critical twin"
                )
            _check_critical(rule, value, where)
            rule["critical"] = {**rule["critical"], **value}
        elif key in OVERRIDE_KEYS:
            if key in ("labels", "annotations"):
                rule[key] = {**rule.get(key, {}), **value}
            else:
                rule[key] = value
        elif key in rule.get("params", {}):
            rule["params"][key] = value
        else:
            known = sorted(OVERRIDE_KEYS | set(rule.get("params", {})))
            raise AnsibleFilterError(
                f"{where} sets '{key}', which alert {rule['alert']} does not have; "
                f"it takes: {', '.join(known)}"
            )
    if "critical" in rule and rule["severity"] != "warning":
        raise AnsibleFilterError(
            f"{where} sets severity {rule['severity']}, but alert {rule['alert']} has a critical "
            f"twin: it must stay a warning (change the twin through 'critical')"
        )


def _build_rules(rule, context, runbook_base_url):
    """The alert's rule, and its critical twin where it has one.

    The twin has the same name and labels but `severity: critical` and its
    own params (`critical`), so that Alertmanager's warning/critical
    inhibition mutes the warning while the critical one fires.
    """
    built = [_build_rule(rule, context, runbook_base_url)]
    if "critical" in rule:
        critical = dict(rule["critical"])
        twin_for = critical.pop("for", rule.get("for"))
        twin = {
            **rule,
            "severity": "critical",
            "params": {**rule.get("params", {}), **critical},
            "for": twin_for,
        }
        built.append(_build_rule(twin, context, runbook_base_url))
    return built


def _build_rule(rule, context, runbook_base_url):
    params = rule.get("params", {})
    expr = _render_expr(rule["alert"], rule["expr"], {**context, **params})
    labels = {"severity": rule["severity"], "service": rule["service"], **rule.get("labels", {})}
    annotations = {
        "summary": rule["summary"],
        "description": rule["description"],
        "runbook_url": rule.get("runbook_url")
        or f"{runbook_base_url.rstrip('/')}#{rule['alert'].lower()}",
        **rule.get("annotations", {}),
    }
    built = {"alert": rule["alert"], "expr": expr}
    if rule.get("for"):
        built["for"] = rule["for"]
    if rule.get("keep_firing_for"):
        built["keep_firing_for"] = rule["keep_firing_for"]
    built["labels"] = labels
    built["annotations"] = annotations
    return built


def _check_rule(rule, group):
    missing = [
        k
        for k in ("alert", "expr", "severity", "service", "summary", "description")
        if not rule.get(k)
    ]
    if missing:
        name = rule.get("alert", "<unnamed>")
        raise AnsibleFilterError(f"alert {name} in group {group} lacks {', '.join(missing)}")
    unknown = set(rule) - RULE_KEYS
    if unknown:
        raise AnsibleFilterError(
            f"alert {rule['alert']} in group {group} has unknown keys: {', '.join(sorted(unknown))}"
        )
    if "critical" in rule:
        if rule["severity"] != "warning":
            raise AnsibleFilterError(
                f"alert {rule['alert']} in group {group} has a critical twin: it must be a warning"
            )
        _check_critical(rule, rule["critical"], f"alert {rule['alert']} in group {group}")


def merge_alert_groups(groups, overrides=None, group_overrides=None):
    """Apply per-alert and per-group overrides to the catalog; drop what is disabled.

    Returns the merged groups (the rules still hold their expression templates).
    Every override must name an existing alert or group and existing keys.
    """
    groups = _plain(groups or [])
    overrides = _plain(overrides or {})
    group_overrides = _plain(group_overrides or {})

    seen_alerts, seen_groups = set(), set()
    merged = []
    for group in copy.deepcopy(groups):
        name = group.get("name")
        if not name or not isinstance(group.get("rules"), list):
            raise AnsibleFilterError(f"a rule group needs a name and a list of rules: {group!r}")
        if name in seen_groups:
            raise AnsibleFilterError(f"rule group {name} is defined twice")
        seen_groups.add(name)
        settings = group_overrides.get(name, {})
        unknown = set(settings) - GROUP_OVERRIDE_KEYS
        if unknown:
            raise AnsibleFilterError(
                f"prometheus_alert_group_overrides[{name}] has unknown keys: "
                f"{', '.join(sorted(unknown))}; it takes: enabled, interval"
            )
        rules = []
        for rule in group["rules"]:
            _check_rule(rule, name)
            if rule["alert"] in seen_alerts:
                raise AnsibleFilterError(f"alert {rule['alert']} is defined twice")
            seen_alerts.add(rule["alert"])
            override = overrides.get(rule["alert"], {})
            if not isinstance(override, dict):
                raise AnsibleFilterError(
                    f"prometheus_alert_overrides[{rule['alert']}] must be a mapping, "
                    f"got {override!r}"
                )
            where = f"prometheus_alert_overrides[{rule['alert']}]"
            _apply_override(rule, override, where)
            _check_ranges(rule, where if override else f"alert {rule['alert']}")
            if rule.get("enabled", True):
                rules.append(rule)
        if settings.get("enabled", True) and rules:
            merged.append({**group, "rules": rules, **_interval(settings, group)})

    unknown_alerts = set(overrides) - seen_alerts
    if unknown_alerts:
        raise AnsibleFilterError(
            f"prometheus_alert_overrides names alerts that do not exist: "
            f"{', '.join(sorted(unknown_alerts))}"
        )
    unknown_groups = set(group_overrides) - seen_groups
    if unknown_groups:
        raise AnsibleFilterError(
            f"prometheus_alert_group_overrides names groups that do not exist: "
            f"{', '.join(sorted(unknown_groups))}; groups: {', '.join(sorted(seen_groups))}"
        )
    return merged


def _check_ranges(rule, where):
    """Params with a range (`param_ranges: {offset_ms: [1, 60000]}`) must be whole numbers
    in it, the critical twin's too: a threshold given in the wrong unit (seconds where
    milliseconds are meant) is refused before anything is rendered."""
    ranges = rule.get("param_ranges") or {}
    unknown = set(ranges) - set(rule.get("params", {}))
    if unknown:
        raise AnsibleFilterError(
            f"alert {rule['alert']}: param_ranges names params it does not have: "
            f"{', '.join(sorted(unknown))}"
        )
    sources = [("", rule.get("params", {})), ("critical.", rule.get("critical") or {})]
    for prefix, params in sources:
        for name, (low, high) in ranges.items():
            if name not in params:
                continue
            value = params[name]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                unit = f" ({name.rsplit('_', 1)[1]})" if "_" in name else ""
                raise AnsibleFilterError(
                    f"{where}: {prefix}{name} must be a whole number from {low} to "
                    f"{high}{unit}, got {value!r}"
                )


def _interval(settings, group):
    interval = settings.get("interval", group.get("interval"))
    return {"interval": interval} if interval else {}


def rule_file_name(group_name):
    """`trading-bot.rules` is written to `trading-bot.yml`."""
    base = re.sub(r"\.rules$", "", group_name)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", base):
        raise AnsibleFilterError(f"rule group name {group_name!r} cannot name a file")
    return f"{base}.yml"


def prometheus_rule_files(
    groups,
    overrides=None,
    group_overrides=None,
    context=None,
    runbook_base_url="",
    header="",
    directory="rules",
):
    """Render the catalog into {"<directory>/<group>.yml": YAML text}."""
    context = _plain(context or {})
    files = {}
    for group in merge_alert_groups(groups, overrides, group_overrides):
        document = {"name": group["name"]}
        if group.get("interval"):
            document["interval"] = group["interval"]
        document["rules"] = [
            built
            for rule in group["rules"]
            for built in _build_rules(rule, context, runbook_base_url)
        ]
        body = yaml.dump(
            {"groups": [document]},
            Dumper=_BlockDumper,
            sort_keys=False,
            width=float("inf"),
            allow_unicode=True,
        )
        files[f"{directory}/{rule_file_name(group['name'])}"] = header + body
    return files


def prometheus_alert_names(groups, overrides=None, group_overrides=None):
    """Names of the enabled alerts, for checks and reports."""
    return [
        rule["alert"]
        for group in merge_alert_groups(groups, overrides, group_overrides)
        for rule in group["rules"]
    ]


def _redis_endpoint(target):
    parts = urlsplit(target["address"])
    return host_port(parts.hostname or "", parts.port or 6379)


def _redis_instance(host, target, single):
    if target.get("instance"):
        return target["instance"]
    if single:
        return host
    port = urlsplit(target["address"]).port or 6379
    return f"{host}:{port}"


def _enabled(spec):
    return str(spec.get("enabled", True)).lower() not in ("false", "0", "no", "")


def _check_reachable(spec, host, address, local_host):
    if local_host and host != local_host and str(address).startswith(("127.", "::1", "localhost")):
        raise AnsibleFilterError(
            f"{host} is scraped by {local_host} for job {spec['job_name']}, but its "
            f"monitoring_address is {address}: set monitoring_address for {host} "
            f"to an address {local_host} can reach"
        )


def _host_static_configs(spec, host, host_vars, address):
    """The static_configs entries of one host for one job spec."""
    labels = {**_plain(host_vars.get("monitoring_labels", {})), "instance": host}
    exporter = host_port(address, host_vars.get(spec.get("port_variable"), spec.get("port")))
    if "targets_variable" not in spec:
        return [{"targets": [exporter], "labels": labels}]
    targets = _plain(host_vars.get(spec["targets_variable"], spec["default_targets"]))
    if spec.get("targets_kind") == "postgres":
        # One exporter per database, each on its own port: the role's own
        # reading of its targets (plugins/plugin_utils/postgres_targets.py).
        return postgres_static_configs(
            targets,
            host,
            address,
            host_vars.get(spec.get("port_variable"), spec.get("port")),
            host_vars.get("monitoring_labels", {}),
        )
    entries = []
    for index, target in enumerate(targets):
        target_labels = {
            **labels,
            "instance": _redis_instance(host, target, len(targets) == 1),
            # The database's own host:port, which its blackbox probes carry
            # too: what inhibit rules match when one DragonflyDB fault shows
            # in several alerts.
            "endpoint": _redis_endpoint(target),
        }
        if spec.get("scrape_database"):
            port = urlsplit(target["address"]).port or 6379
            entries.append({"targets": [host_port(address, port)], "labels": target_labels})
        elif index == 0:
            # The exporter's own target, on its /metrics: only there does
            # redis_exporter report the real scrape error (a WRONGPASS, a TLS
            # failure), which the DragonflyDB alerts read.
            entries.append({"targets": [exporter], "labels": target_labels})
        else:
            extra = {
                "__metrics_path__": spec["multi_target_path"],
                "__param_target": target["address"],
            }
            entries.append({"targets": [exporter], "labels": {**target_labels, **extra}})
    return entries


# --- TLS and basic auth of the stack's own components (README "Security") ---------


def _serves_web_config(spec):
    """Whether the job's targets are served by a role of the stack, with its web settings.

    A DragonflyDB scraped at its own port (`scrape_database`) is not; a spec
    can say so itself with `web_config: false`.
    """
    if spec.get("scrape_database"):
        return False
    return str(spec.get("web_config", True)).lower() not in ("false", "0", "no", "")


def _serves_tls(host_vars):
    """A host with a certificate (monitoring_tls_cert) serves every component over TLS."""
    return bool(str(host_vars.get("monitoring_tls_cert") or "").strip())


def _client_settings(client, tls):
    """scheme, tls_config and basic_auth of a job whose targets are protected."""
    settings = {}
    if tls:
        settings["scheme"] = "https"
        if client.get("ca_file"):
            settings["tls_config"] = {"ca_file": client["ca_file"]}
    if client.get("username"):
        settings["basic_auth"] = {
            "username": client["username"],
            "password_file": client["password_file"],
        }
    return settings


def prometheus_scrape_configs(job_specs, groups, hostvars, local_host=None, client=None):
    """Scrape jobs for the stack's own components, generated from the inventory.

    Each spec names an inventory group and the variable that holds the
    component's port; every host of the group becomes one target at its
    `monitoring_address` (default 127.0.0.1), labelled `instance=<inventory
    hostname>` plus the host's `monitoring_labels`. A spec with
    `targets_variable` scrapes an exporter for each item of that host
    variable: the first on its own /metrics, the others in multi-target mode
    (`multi_target_path`?target=); or, with `scrape_database`, each item
    directly at its own port; or, with `targets_kind: postgres`, each item
    at its own exporter's port (filter postgres_static_configs). A spec whose
    `enabled` is false is left out.

    `client` is how this Prometheus reaches protected components:
    `{"ca_file", "username", "password_file"}`, each optional. A job whose
    hosts set `monitoring_tls_cert` is scraped over https with `ca_file`;
    where only some of them do, the others keep http through their
    `__scheme__` label. With `username`, every job of the stack's own
    components sends it with the password in `password_file`.
    """
    client = _plain(client or {})
    configs = []
    for spec in filter(_enabled, _plain(job_specs)):
        static_configs, plain_http = [], []
        protected = _serves_web_config(spec)
        for host in groups.get(spec["group"], []):
            host_vars = hostvars[host]
            address = host_vars.get("monitoring_address", "127.0.0.1")
            _check_reachable(spec, host, address, local_host)
            entries = _host_static_configs(spec, host, host_vars, address)
            if protected and not _serves_tls(host_vars):
                plain_http += entries
            static_configs += entries
        if not static_configs:
            continue
        config = {"job_name": spec["job_name"]}
        if spec.get("metrics_path"):
            config["metrics_path"] = spec["metrics_path"]
        if protected:
            tls = len(plain_http) < len(static_configs)
            config.update(_client_settings(client, tls))
            if tls:
                for entry in plain_http:
                    entry["labels"]["__scheme__"] = "http"
        config["static_configs"] = static_configs
        configs.append(config)
    return configs


def _secret_to_file(config, path, secrets_dir, prefix, secret_files):
    """Move config[path...] (a secret) into a file; put its *_file field in its place."""
    *parents, field = path
    holder = config
    for key in parents:
        holder = holder.get(key)
        if not isinstance(holder, dict):
            return
    value = holder.get(field)
    if value in (None, ""):
        return
    name = f"{prefix}.{'.'.join(path)}"
    secret_files[name] = str(value)
    del holder[field]
    holder[_FILE_FIELDS[field]] = f"{secrets_dir.rstrip('/')}/{name}"


# Secret fields of a remote_write/remote_read entry and the field that names
# a file holding the value instead (Prometheus reads the file per request).
_SECRET_PATHS = [("basic_auth", "password"), ("authorization", "credentials")]
_FILE_FIELDS = {"password": "password_file", "credentials": "credentials_file"}


def prometheus_remote_endpoints(entries, secrets_dir, kind):
    """remote_write / remote_read entries with every secret moved to a file.

    Entries use Prometheus' own format; `bearer_token` is accepted as a
    shorthand for `authorization: {credentials: ...}`. Returns
    ``{"configs": [...], "secret_files": {file name: value}}`` (names relative
    to ``secrets_dir``), so that prometheus.yml never holds a secret.
    """
    configs, secret_files = [], {}
    for index, entry in enumerate(_plain(entries or [])):
        if not isinstance(entry, dict) or not entry.get("url"):
            raise AnsibleFilterError(f"prometheus_{kind}[{index}] needs a url")
        # promtool accepts any string here; Prometheus would fail on it only when sending.
        url_parts(entry["url"], f"prometheus_{kind}[{index}]", ("http", "https"))
        config = copy.deepcopy(entry)
        token = config.pop("bearer_token", None)
        if token:
            if "authorization" in config or "basic_auth" in config:
                raise AnsibleFilterError(
                    f"prometheus_{kind}[{index}]: bearer_token, authorization and basic_auth "
                    f"exclude each other"
                )
            config["authorization"] = {"credentials": token}
        for path in _SECRET_PATHS:
            _secret_to_file(config, path, secrets_dir, f"{kind}.{index}", secret_files)
        configs.append(config)
    return {"configs": configs, "secret_files": secret_files}


class FilterModule:
    def filters(self):
        return {
            "prometheus_rule_files": prometheus_rule_files,
            "prometheus_alert_names": prometheus_alert_names,
            "prometheus_scrape_configs": prometheus_scrape_configs,
            "prometheus_remote_endpoints": prometheus_remote_endpoints,
        }
