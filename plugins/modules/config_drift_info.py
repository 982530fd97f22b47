#!/usr/bin/python
"""Compare what Prometheus or Alertmanager runs with its configuration on disk."""

DOCUMENTATION = r"""
---
module: config_drift_info
short_description: Tell whether Prometheus or Alertmanager runs the configuration that is on disk
description:
  - Compares what the running service has loaded with the files on disk, and lists every
    difference. A service whose running configuration is not the one on disk is a silent
    failure, as every rollout reports no change and the next restart changes its behaviour.
  - Drift is about content, never about modification times alone. For both services, the
    differences are a reload that a run left owed (the I(reload_marker) of C(staged_config) is
    still there), a last reload that failed, and the content on disk that is not what the
    service loaded; files among those that were modified after the last successful reload are
    named too. A file whose modification time moved without a change of content (C(touch), a
    backup tool, a restore of the same file) is no difference.
  - For Prometheus, the loaded rule groups (C(/api/v1/rules)) against the rule files that
    C(prometheus.yml) names, group by group and rule by rule (name, expression, C(for),
    labels, annotations, interval), and the loaded configuration (C(/api/v1/status/config))
    against C(prometheus.yml), setting by setting. Expressions are compared as Prometheus
    parses them (C(/api/v1/format_query)), so formatting alone is no difference.
  - For Alertmanager, the hash of the loaded configuration (C(alertmanager_config_hash))
    against the file, and the loaded configuration (C(/api/v2/status)) against the file,
    setting by setting, so that the difference can be named (values either service hides as
    C(<secret>) are never compared nor shown). As Alertmanager does not show the notification
    templates it loaded, a template modified after the last successful reload is a
    difference unless its content is the one recorded in I(reload_record) when the roles
    last reloaded Alertmanager.
  - The host only gathers (files, metrics, the APIs' answers); the comparison is made on the
    controller by the action plugin of the same name, which returns only the differences, so
    that no file's content reaches Ansible's output. The host needs no YAML library.
  - Changes nothing; check mode returns the same.
options:
  service:
    description: Which service answers at I(url).
    type: str
    choices: [prometheus, alertmanager]
    required: true
  config_file:
    description: The configuration file the service was started with (C(--config.file)).
    type: path
    required: true
  read:
    description:
      - Files to read besides I(config_file), as glob patterns relative to its directory, for
        the rule files (Prometheus) or templates (Alertmanager) it may name. Set by the action
        plugin; there is no need to set it.
    type: list
    elements: str
    default: []
  reload_marker:
    description: The I(reload_marker) C(staged_config) and C(config_reload) keep for the service.
    type: path
  reload_record:
    description:
      - The SHA-256 checksums of the files the service loaded, as the roles' reload handlers
        record them after a confirmed reload (C(sha256sum) output, paths relative to the
        directory of I(config_file)). Without it, or for a file it does not list, a file
        Alertmanager cannot show (a template) modified after the last reload is a difference.
    type: path
  format:
    description:
      - Expressions to have Prometheus format, instead of gathering anything (the action
        plugin's second step, for expressions whose text differs from the loaded one).
    type: list
    elements: str
extends_documentation_fragment: [prometheus_alerting.stack.http_api]
notes:
  - Run it with become when the files are readable by the service's group only.
author: Prometheus Alerting maintainers (@prometheus-alerting)
"""

EXAMPLES = r"""
- name: Check that Prometheus runs what is on disk
  prometheus_alerting.stack.config_drift_info:
    service: prometheus
    url: http://127.0.0.1:9090
    config_file: /etc/prometheus/prometheus.yml
    reload_marker: /var/lib/prometheus-alerting/reload-pending/prometheus
  become: true
  register: prometheus_drift
  failed_when: not prometheus_drift.in_sync

- name: Check that Alertmanager runs what is on disk
  prometheus_alerting.stack.config_drift_info:
    service: alertmanager
    url: http://127.0.0.1:9093
    config_file: /etc/alertmanager/alertmanager.yml
    reload_record: /var/lib/prometheus-alerting/reloaded/prometheus-alertmanager
  become: true
  register: alertmanager_drift
"""

RETURN = r"""
in_sync:
  description: Whether the service runs exactly the configuration on disk.
  returned: always
  type: bool
summary:
  description: One line for a report, naming the service and, when it drifts, every difference.
  returned: always
  type: str
  sample: >-
    Alertmanager runs another configuration than the one on disk:
    route.group_wait: 17s on disk, 10s running
differences:
  description: Each difference, in words that name the file, group, rule or setting.
  returned: always
  type: list
  elements: str
  sample: ["route.group_wait: 17s on disk, 10s running"]
reloaded_at:
  description: When the service last loaded its configuration (seconds since the epoch).
  returned: always
  type: float
compared:
  description: What was compared (files, rule groups or settings), for the report.
  returned: always
  type: dict
  sample: {files: 7, rule_groups: 6, rules: 41}
"""

import glob
import hashlib
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.http_api import (
    HTTP_API_ARGUMENT_SPEC,
    HTTP_API_MUTUALLY_EXCLUSIVE,
    ApiError,
    HttpApi,
)

# What the comparison needs of each loaded rule.
RULE_FIELDS = ("name", "type", "query", "duration", "labels", "annotations")

# Gathered here, read by the action plugin (plugins/action/config_drift_info.py).
METRICS = {
    "prometheus": (
        "prometheus_config_last_reload_successful",
        "prometheus_config_last_reload_success_timestamp_seconds",
    ),
    "alertmanager": (
        "alertmanager_config_last_reload_successful",
        "alertmanager_config_last_reload_success_timestamp_seconds",
        "alertmanager_config_hash",
    ),
}


def read_files(config_file, patterns):
    """{path: {mtime, text, md5, sha256}} of the config file and the files matching `patterns`."""
    directory = os.path.dirname(config_file)
    paths = {config_file}
    for pattern in patterns:
        paths.update(glob.glob(os.path.join(directory, pattern)))
    files = {}
    for path in sorted(paths):
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as handle:
            data = handle.read()
            files[path] = {
                "mtime": os.fstat(handle.fileno()).st_mtime,
                "text": data.decode("utf-8", "replace"),
                "md5": hashlib.md5(data).hexdigest(),  # as Alertmanager's config hash
                "sha256": hashlib.sha256(data).hexdigest(),  # as the reload record
            }
    return files


def loaded_state(api, service):
    """What the running service has loaded: its configuration, and Prometheus' rule groups."""
    if service == "prometheus":
        groups = api.get_json("/api/v1/rules")["groups"]
        return {
            "config": (api.get_json("/api/v1/status/config") or {}).get("yaml", ""),
            "rule_groups": [
                {
                    "name": group["name"],
                    "file": group["file"],
                    "interval": group.get("interval"),
                    "rules": [
                        {key: rule.get(key) for key in RULE_FIELDS} for rule in group["rules"]
                    ],
                }
                for group in groups
            ],
        }
    status = api.get_json("/api/v2/status")
    return {"config": (status.get("config") or {}).get("original", "")}


def read_record(path, directory):
    """{absolute path: sha256} of a reload record (`sha256sum` output); None without one."""
    if not path or not os.path.isfile(path):
        return None
    record = {}
    with open(path, errors="replace") as handle:
        for line in handle:
            checksum, _sep, name = line.rstrip("\n").partition("  ")
            if len(checksum) == 64 and name:
                record[os.path.normpath(os.path.join(directory, name.lstrip("*")))] = checksum
    return record


def format_expressions(api, expressions):
    """Each expression as Prometheus formats it, or None where it cannot (too old, or invalid)."""
    formatted = []
    for expression in expressions:
        try:
            formatted.append(api.get_json("/api/v1/format_query", {"query": expression}))
        except ApiError:
            formatted.append(None)
    return formatted


def main():
    argument_spec = dict(HTTP_API_ARGUMENT_SPEC)
    argument_spec.update(
        service={"type": "str", "required": True, "choices": ["prometheus", "alertmanager"]},
        config_file={"type": "path", "required": True},
        read={"type": "list", "elements": "str", "default": []},
        reload_marker={"type": "path"},
        reload_record={"type": "path"},
        format={"type": "list", "elements": "str"},
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=HTTP_API_MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    params = module.params
    api = HttpApi(params)
    try:
        if params["format"] is not None:
            module.exit_json(changed=False, formatted=format_expressions(api, params["format"]))
        metrics = api.metrics(METRICS[params["service"]])
        loaded = loaded_state(api, params["service"])
    except (ApiError, KeyError, TypeError) as err:
        module.fail_json(msg=f"cannot read what {params['service']} runs at {params['url']}: {err}")
    marker = None
    if params["reload_marker"] and os.path.exists(params["reload_marker"]):
        with open(params["reload_marker"], errors="replace") as handle:
            marker = handle.read()
    module.exit_json(
        changed=False,
        files=read_files(params["config_file"], params["read"]),
        metrics=metrics,
        loaded=loaded,
        marker=marker,
        record=read_record(params["reload_record"], os.path.dirname(params["config_file"])),
    )


if __name__ == "__main__":
    main()
