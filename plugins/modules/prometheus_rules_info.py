#!/usr/bin/python
"""Read Prometheus' loaded rule groups, their health, and its firing and pending alerts."""

DOCUMENTATION = r"""
---
module: prometheus_rules_info
short_description: Read the rule groups Prometheus has loaded, their health, and its active alerts
description:
  - Reads C(/api/v1/rules) and returns every loaded rule group and rule with its health
    (C(ok), C(err), or C(unknown) before its first evaluation), state, last error and
    evaluation time, and the alerts that are firing or pending.
  - Changes nothing; check mode returns the same.
options:
  rule_type:
    description: Which rules to read.
    type: str
    choices: [all, alert, record]
    default: all
  rule_groups:
    description: Read only these rule groups (by name); all when empty.
    type: list
    elements: str
    default: []
extends_documentation_fragment: [prometheus_alerting.stack.http_api]
author: Prometheus Alerting maintainers (@prometheus-alerting)
"""

EXAMPLES = r"""
- name: Read the rules and what fires
  prometheus_alerting.stack.prometheus_rules_info:
    url: http://127.0.0.1:9090
  register: rules

- name: Fail on a rule that does not evaluate
  ansible.builtin.assert:
    that: rules.unhealthy_rules | length == 0
    fail_msg: "{{ rules.unhealthy_rules | map(attribute='name') | join(', ') }} fail to evaluate"

- name: Read one group's alerting rules only
  prometheus_alerting.stack.prometheus_rules_info:
    url: http://127.0.0.1:9090
    rule_type: alert
    rule_groups: [system-resources.rules]
"""

RETURN = r"""
groups:
  description: The rule groups, in Prometheus' order.
  returned: always
  type: list
  elements: dict
  sample:
    - {name: system-resources.rules, file: /etc/prometheus/rules/system-resources.yml,
       interval: 15, rule_count: 9, evaluation_time: 0.0021,
       last_evaluation: "2025-06-01T18:00:00.123Z"}
rules:
  description: >-
    Every rule of those groups. C(type) is C(alerting) or C(recording); C(state) (alerting
    rules only) is C(inactive), C(pending) or C(firing); C(duration) is the rule's C(for:)
    in seconds.
  returned: always
  type: list
  elements: dict
  sample:
    - {group: system-resources.rules, name: HighCPUUsage, type: alerting, health: ok,
       state: inactive, last_error: "", evaluation_time: 0.0004,
       last_evaluation: "2025-06-01T18:00:00.123Z", query: "...", duration: 300,
       labels: {severity: warning, service: system}}
unhealthy_rules:
  description: The rules whose last evaluation failed (health C(err)), with the error.
  returned: always
  type: list
  elements: dict
counts:
  description: Number of groups and rules, and of rules by health.
  returned: always
  type: dict
  sample: {groups: 6, rules: 41, ok: 41, err: 0, unknown: 0}
alerts:
  description: Firing and pending alerts of those rules.
  returned: always
  type: list
  elements: dict
  sample:
    - {name: Watchdog, group: monitoring-pipeline.rules, state: firing,
       labels: {alertname: Watchdog, severity: none}, annotations: {summary: "..."},
       active_at: "2025-06-01T17:00:00.000Z", value: "1e+00"}
missing_groups:
  description: Names in I(rule_groups) that Prometheus has no group of (also a warning).
  returned: always
  type: list
  elements: str
summary:
  description: >-
    Counts of the alerts: firing and pending, and the firing ones by their C(severity)
    and C(service) labels (C(none) for an alert without the label).
  returned: always
  type: dict
  sample: {firing: 2, pending: 1, firing_by_severity: {critical: 1, none: 1},
           firing_by_service: {system: 1, monitoring: 1}}
"""

from collections import Counter

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.http_api import (
    HTTP_API_MUTUALLY_EXCLUSIVE,
    ApiError,
    HttpApi,
    http_api_argument_spec,
)

ARGUMENT_SPEC = http_api_argument_spec(
    rule_type={"type": "str", "choices": ["all", "alert", "record"], "default": "all"},
    rule_groups={"type": "list", "elements": "str", "default": []},
)


def _rule(group_name, rule):
    entry = {
        "group": group_name,
        "name": rule.get("name"),
        "type": rule.get("type"),
        "health": rule.get("health", "unknown"),
        "last_error": rule.get("lastError", ""),
        "evaluation_time": rule.get("evaluationTime"),
        "last_evaluation": rule.get("lastEvaluation"),
        "query": rule.get("query"),
        "labels": rule.get("labels") or {},
    }
    if rule.get("type") == "alerting":
        entry["state"] = rule.get("state")
        entry["duration"] = rule.get("duration")
    return entry


def _alert(group_name, rule, alert):
    return {
        "name": rule.get("name"),
        "group": group_name,
        "state": alert.get("state"),
        "labels": alert.get("labels") or {},
        "annotations": alert.get("annotations") or {},
        "active_at": alert.get("activeAt"),
        "value": alert.get("value"),
    }


def read_rules(api, rule_type, rule_groups):
    """The rules and alerts of Prometheus at `api`, shaped as this module returns them."""
    query = {} if rule_type == "all" else {"type": rule_type}
    data = api.get_json("/api/v1/rules", query=query)
    wanted = set(rule_groups)
    groups, rules, alerts = [], [], []
    for group in data.get("groups") or []:
        if wanted and group.get("name") not in wanted:
            continue
        group_rules = group.get("rules") or []
        groups.append(
            {
                "name": group.get("name"),
                "file": group.get("file"),
                "interval": group.get("interval"),
                "rule_count": len(group_rules),
                "evaluation_time": group.get("evaluationTime"),
                "last_evaluation": group.get("lastEvaluation"),
            }
        )
        for rule in group_rules:
            rules.append(_rule(group.get("name"), rule))
            alerts += [_alert(group.get("name"), rule, a) for a in rule.get("alerts") or []]

    missing = sorted(wanted - {group["name"] for group in groups})
    health = Counter(rule["health"] for rule in rules)
    firing = [alert for alert in alerts if alert["state"] == "firing"]
    return {
        "groups": groups,
        "rules": rules,
        "unhealthy_rules": [rule for rule in rules if rule["health"] == "err"],
        "counts": {
            "groups": len(groups),
            "rules": len(rules),
            "ok": health["ok"],
            "err": health["err"],
            "unknown": health["unknown"],
        },
        "alerts": alerts,
        "summary": {
            "firing": len(firing),
            "pending": sum(alert["state"] == "pending" for alert in alerts),
            "firing_by_severity": _count_by(firing, "severity"),
            "firing_by_service": _count_by(firing, "service"),
        },
    }, missing


def _count_by(alerts, label):
    return dict(sorted(Counter(a["labels"].get(label) or "none" for a in alerts).items()))


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=HTTP_API_MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    api = HttpApi(module.params)
    try:
        result, missing = read_rules(api, module.params["rule_type"], module.params["rule_groups"])
    except ApiError as err:
        module.fail_json(msg=f"cannot read the rules from Prometheus: {err}")
    if missing:
        module.warn(f"Prometheus has no rule group named {', '.join(missing)}")
    module.exit_json(changed=False, missing_groups=missing, **result)


if __name__ == "__main__":
    main()
