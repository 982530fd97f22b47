#!/usr/bin/python
"""Read Alertmanager's alerts (active, silenced, inhibited), silences and notification counts."""

DOCUMENTATION = r"""
---
module: alertmanager_alerts_info
short_description: Read Alertmanager's active, silenced and inhibited alerts and its silences
description:
  - Reads C(/api/v2/alerts) and returns the alerts Alertmanager holds, each with the
    receivers it routes to and whether it is active, silenced (and by which silences) or
    inhibited (and by which alerts).
  - Also returns the active and pending silences (C(/api/v2/silences)) and, from
    C(/metrics), how many notifications each integration sent and how many failed.
  - Uses C(/api/v2) only (Alertmanager 0.27 and later no longer serve C(/api/v1)).
    Changes nothing; check mode returns the same.
options:
  filter:
    description: >-
      Read only the alerts that match all these matchers, in Alertmanager's syntax
      (C(severity="critical"), C(alertname=~"Disk.*")).
    type: list
    elements: str
    default: []
  receiver:
    description: Read only the alerts routed to receivers whose name matches this regex.
    type: str
  active:
    description: Include alerts that are neither silenced nor inhibited.
    type: bool
    default: true
  silenced:
    description: Include silenced alerts.
    type: bool
    default: true
  inhibited:
    description: Include inhibited alerts.
    type: bool
    default: true
  notifications:
    description: Also read the notification counters from C(/metrics).
    type: bool
    default: true
extends_documentation_fragment: [prometheus_alerting.stack.http_api]
author: Prometheus Alerting maintainers (@prometheus-alerting)
"""

EXAMPLES = r"""
- name: Read every alert Alertmanager holds
  prometheus_alerting.stack.alertmanager_alerts_info:
    url: http://127.0.0.1:9093
  register: am

- name: Show what is muted
  ansible.builtin.debug:
    msg: "silenced: {{ am.silenced | map(attribute='name') | join(', ') }}"

- name: Read the critical alerts only
  prometheus_alerting.stack.alertmanager_alerts_info:
    url: http://127.0.0.1:9093
    filter: ['severity="critical"']
    notifications: false
"""

RETURN = r"""
alerts:
  description: >-
    The alerts. C(state) is C(active), C(suppressed) or C(unprocessed); C(silenced_by)
    lists silence ids and C(inhibited_by) the fingerprints of the alerts that inhibit it.
  returned: always
  type: list
  elements: dict
  sample:
    - {name: NodeExporterDown, fingerprint: c62f23f5e7a9168e, state: suppressed,
       silenced_by: [4877197e-beed-4111-a132-9e2771a6d577], inhibited_by: [],
       receivers: [critical-alerts], labels: {alertname: NodeExporterDown, severity: critical},
       annotations: {summary: node_exporter is down}, starts_at: "2025-06-01T18:00:00.000Z",
       ends_at: "2025-06-01T18:05:00.000Z", updated_at: "2025-06-01T18:01:00.000Z",
       generator_url: "http://mon1:9090/graph?..."}
active:
  description: The alerts that are neither silenced nor inhibited.
  returned: always
  type: list
  elements: dict
silenced:
  description: The alerts a silence mutes.
  returned: always
  type: list
  elements: dict
inhibited:
  description: The alerts an inhibition mutes (an alert can be both silenced and inhibited).
  returned: always
  type: list
  elements: dict
counts:
  description: Number of alerts, and of active, silenced, inhibited and unprocessed ones.
  returned: always
  type: dict
  sample: {alerts: 3, active: 1, silenced: 1, inhibited: 1, unprocessed: 0}
silences:
  description: The active and pending silences.
  returned: always
  type: list
  elements: dict
  sample:
    - {id: 4877197e-beed-4111-a132-9e2771a6d577, state: active, matchers: ['instance="app1"'],
       starts_at: "2025-06-01T18:00:00.000Z", ends_at: "2025-06-01T20:00:00.000Z",
       created_by: ansible, comment: Kernel upgrade}
notifications:
  description: >-
    Per integration (C(email), C(webhook), C(slack), ...), the notifications Alertmanager
    attempted (C(total)) and those that failed (C(failed)) since it started.
  returned: when I(notifications) is true
  type: dict
  sample: {webhook: {total: 12, failed: 1}, email: {total: 0, failed: 0}}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.http_api import (
    HTTP_API_MUTUALLY_EXCLUSIVE,
    ApiError,
    HttpApi,
    describe_silence,
    format_matcher,
    http_api_argument_spec,
    parse_matcher,
)

ARGUMENT_SPEC = http_api_argument_spec(
    filter={"type": "list", "elements": "str", "default": []},
    receiver={"type": "str"},
    active={"type": "bool", "default": True},
    silenced={"type": "bool", "default": True},
    inhibited={"type": "bool", "default": True},
    notifications={"type": "bool", "default": True},
)
NOTIFICATION_METRICS = {
    "alertmanager_notifications_total": "total",
    "alertmanager_notifications_failed_total": "failed",
}


def _alert(alert):
    status = alert.get("status") or {}
    labels = alert.get("labels") or {}
    return {
        "name": labels.get("alertname"),
        "fingerprint": alert.get("fingerprint"),
        "state": status.get("state"),
        "silenced_by": status.get("silencedBy") or [],
        "inhibited_by": status.get("inhibitedBy") or [],
        "receivers": [r.get("name") for r in alert.get("receivers") or []],
        "labels": labels,
        "annotations": alert.get("annotations") or {},
        "starts_at": alert.get("startsAt"),
        "ends_at": alert.get("endsAt"),
        "updated_at": alert.get("updatedAt"),
        "generator_url": alert.get("generatorURL"),
    }


def read_notifications(api):
    """{integration: {"total", "failed"}} summed over any other label."""
    counters = {}
    for name, labels, value in api.series(NOTIFICATION_METRICS):
        integration = labels.get("integration", "")
        entry = counters.setdefault(integration, {"total": 0, "failed": 0})
        entry[NOTIFICATION_METRICS[name]] += int(value)
    return dict(sorted(counters.items()))


def read_alerts(api, params, matchers):
    query = {
        "active": str(params["active"]).lower(),
        "silenced": str(params["silenced"]).lower(),
        "inhibited": str(params["inhibited"]).lower(),
    }
    if matchers:
        query["filter"] = matchers
    if params["receiver"]:
        query["receiver"] = params["receiver"]
    alerts = [_alert(a) for a in api.get_json("/api/v2/alerts", query=query)]
    alerts.sort(key=lambda a: (a["name"] or "", a["starts_at"] or "", a["fingerprint"] or ""))
    silenced = [a for a in alerts if a["silenced_by"]]
    inhibited = [a for a in alerts if a["inhibited_by"]]
    active = [a for a in alerts if a["state"] == "active"]
    silences = [
        describe_silence(s)
        for s in api.get_json("/api/v2/silences")
        if (s.get("status") or {}).get("state") in ("active", "pending")
    ]
    result = {
        "alerts": alerts,
        "active": active,
        "silenced": silenced,
        "inhibited": inhibited,
        "counts": {
            "alerts": len(alerts),
            "active": len(active),
            "silenced": len(silenced),
            "inhibited": len(inhibited),
            "unprocessed": sum(a["state"] == "unprocessed" for a in alerts),
        },
        "silences": sorted(silences, key=lambda s: s["ends_at"] or ""),
    }
    if params["notifications"]:
        result["notifications"] = read_notifications(api)
    return result


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=HTTP_API_MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    try:
        # Checked here so that a typo reads the same as in alertmanager_silence.
        matchers = [format_matcher(parse_matcher(m)) for m in module.params["filter"]]
    except ValueError as err:
        module.fail_json(msg=f"invalid filter: {err}")
    try:
        result = read_alerts(HttpApi(module.params), module.params, matchers)
    except ApiError as err:
        module.fail_json(msg=f"cannot read the alerts from Alertmanager: {err}")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
