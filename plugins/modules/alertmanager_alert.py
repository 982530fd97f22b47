#!/usr/bin/python
"""Post an alert to Alertmanager (a test alert, or the end of one) and read it back."""

DOCUMENTATION = r"""
---
module: alertmanager_alert
short_description: Post an alert to Alertmanager and read back how it is routed and muted
description:
  - Posts one alert with the given labels and annotations to Alertmanager's
    C(/api/v2/alerts), as Prometheus would, for example to test that notifications reach
    their receivers.
  - A firing alert is then read back from Alertmanager, which returns its fingerprint, the
    receivers it routes to, and whether a silence or an inhibition mutes it.
  - I(state=resolved) posts the alert with its end time set to now, which resolves it.
  - Every call sends the alert, so it always reports a change. In check mode nothing is sent.
options:
  labels:
    description: The alert's labels; C(alertname) is required. Values are sent as strings.
    type: dict
    required: true
  annotations:
    description: The alert's annotations, such as C(summary) and C(description).
    type: dict
    default: {}
  state:
    description: C(firing) posts the alert; C(resolved) posts it with an end time of now.
    type: str
    choices: [firing, resolved]
    default: firing
  starts_at:
    description: Start of the alert, RFC 3339 (C(2025-06-01T18:00:00Z)); now when omitted.
    type: str
  ends_at:
    description: >-
      End of a firing alert, RFC 3339. When neither this nor I(duration) is set,
      Alertmanager resolves the alert after its C(resolve_timeout) (5m by default) unless
      it is posted again.
    type: str
  duration:
    description: End the firing alert this long after now, as a Prometheus duration (C(10m)).
    type: str
  generator_url:
    description: Link back to what produced the alert.
    type: str
extends_documentation_fragment: [prometheus_alerting.stack.http_api]
author: Prometheus Alerting maintainers (@prometheus-alerting)
"""

EXAMPLES = r"""
- name: Send a test alert that ends by itself after ten minutes
  prometheus_alerting.stack.alertmanager_alert:
    url: http://127.0.0.1:9093
    labels:
      alertname: PrometheusAlertingTest
      severity: info
      instance: "{{ inventory_hostname }}"
    annotations:
      summary: Test alert notification
      description: A test alert to verify that notifications are delivered.
    duration: 10m
  register: test_alert

- name: Resolve it again
  prometheus_alerting.stack.alertmanager_alert:
    url: http://127.0.0.1:9093
    labels: "{{ test_alert.alert.labels }}"
    state: resolved
"""

RETURN = r"""
alert:
  description: The alert as it was posted.
  returned: always
  type: dict
  sample: {labels: {alertname: PrometheusAlertingTest, severity: info},
           annotations: {summary: Test alert notification},
           startsAt: "2025-06-01T18:00:00.000Z", endsAt: "2025-06-01T18:10:00.000Z"}
fingerprint:
  description: Alertmanager's fingerprint of the alert.
  returned: when a firing alert was posted, not in check mode
  type: str
  sample: c62f23f5e7a9168e
receivers:
  description: Names of the receivers the alert routes to.
  returned: when a firing alert was posted, not in check mode
  type: list
  elements: str
  sample: [default-receiver]
status:
  description: >-
    How Alertmanager handles the alert: C(state) is C(active), C(suppressed) (by a silence
    or an inhibition) or C(unprocessed); C(silenced_by) lists silence ids,
    C(inhibited_by) the fingerprints of the alerts that inhibit it.
  returned: when a firing alert was posted, not in check mode
  type: dict
  sample: {state: active, silenced_by: [], inhibited_by: []}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.http_api import (
    HTTP_API_MUTUALLY_EXCLUSIVE,
    ApiError,
    HttpApi,
    format_matcher,
    format_time,
    http_api_argument_spec,
    parse_duration,
    parse_time,
    utc_now,
)

ARGUMENT_SPEC = http_api_argument_spec(
    labels={"type": "dict", "required": True},
    annotations={"type": "dict", "default": {}},
    state={"type": "str", "choices": ["firing", "resolved"], "default": "firing"},
    starts_at={"type": "str"},
    ends_at={"type": "str"},
    duration={"type": "str"},
    generator_url={"type": "str"},
)


def build_alert(params, now):
    """The alert to post, in the API's form; ValueError for a wrong option."""
    labels = {str(k): str(v) for k, v in params["labels"].items()}
    if not labels.get("alertname"):
        raise ValueError("labels must include alertname")
    alert = {
        "labels": labels,
        "annotations": {str(k): str(v) for k, v in params["annotations"].items()},
    }
    starts_at = parse_time(params["starts_at"]) if params["starts_at"] else now
    alert["startsAt"] = format_time(starts_at)
    if params["state"] == "resolved":
        alert["endsAt"] = format_time(now)
    elif params["ends_at"]:
        alert["endsAt"] = format_time(parse_time(params["ends_at"]))
    elif params["duration"]:
        alert["endsAt"] = format_time(now + parse_duration(params["duration"]))
    if "endsAt" in alert and params["state"] == "firing" and parse_time(alert["endsAt"]) <= now:
        raise ValueError(f"ends_at {alert['endsAt']} is past: it would resolve the alert")
    if params["generator_url"]:
        alert["generatorURL"] = params["generator_url"]
    return alert


def read_back(api, labels):
    """The alert Alertmanager now holds with exactly these labels."""
    matchers = [
        format_matcher({"name": k, "value": v, "isRegex": False, "isEqual": True})
        for k, v in sorted(labels.items())
    ]
    found = api.get_json("/api/v2/alerts", query={"filter": matchers})
    for alert in found:
        if alert.get("labels") == labels:
            return alert
    raise ApiError(f"Alertmanager accepted the alert but does not list it: {labels}")


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[*HTTP_API_MUTUALLY_EXCLUSIVE, ("ends_at", "duration")],
        supports_check_mode=True,
    )
    try:
        alert = build_alert(module.params, utc_now())
    except ValueError as err:
        module.fail_json(msg=str(err))
    result = {"changed": True, "alert": alert}
    if module.check_mode:
        module.exit_json(**result)

    api = HttpApi(module.params)
    try:
        api.send_json("POST", "/api/v2/alerts", body=[alert])
        if module.params["state"] == "firing":
            held = read_back(api, alert["labels"])
            status = held.get("status") or {}
            result.update(
                fingerprint=held.get("fingerprint"),
                receivers=[r.get("name") for r in held.get("receivers") or []],
                status={
                    "state": status.get("state"),
                    "silenced_by": status.get("silencedBy") or [],
                    "inhibited_by": status.get("inhibitedBy") or [],
                },
            )
    except ApiError as err:
        module.fail_json(msg=f"cannot post the alert to Alertmanager: {err}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
