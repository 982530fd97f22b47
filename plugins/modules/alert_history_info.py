#!/usr/bin/python
"""Read a period of alert history and compute the alert effectiveness and fatigue report."""

DOCUMENTATION = r"""
---
module: alert_history_info
short_description: Read a period of alert history and compute how the alerts behaved
description:
  - Reads, for a period, Prometheus' C(ALERTS) and C(ALERTS_FOR_STATE) samples (every
    evaluation, raw, not resampled), its loaded alerting rules (C(/api/v1/rules)),
    Alertmanager's silences (C(/api/v2/silences)), the notification counters Prometheus
    scraped from Alertmanager, and, when I(relay_url) answers, the alert relay's history
    (C(GET /api/v1/history?since=&until=)).
  - Returns per alerting rule (an alert name and its severity - a warning/critical pair
    of one name is two rules) the times it fired, total and median time firing, time to resolve
    (mean, median, p90), flaps, notifications (from the relay), share of its firing time
    that was silenced, and the time from its first notification to a silence, which stands
    in for an acknowledgement (Alertmanager has none); overall the alerts and notifications
    per day and per hour of day, the noisiest alerts, the alerts that never fired, the
    notifications per on-call shift, each rule group's evaluation time; and suggestions -
    a longer C(for) for an alert that flaps, and for an alert of the catalog with a
    C(threshold) that fired a large share of the time or never, the distribution of the
    value its threshold is compared with and the override line that would change it.
  - A restart of Prometheus is not a resolve - a firing that went on across one (told by
    Prometheus' own C(process_start_time_seconds) of job C(prometheus), or by Alertmanager
    keeping the alert's C(startsAt) in the relay's history) counts as one firing.
  - The statistics are computed here, on the monitoring host, in pure Python; the
    exact definitions are in the project's C(docs/report.md).
  - Reads only; check mode returns the same.
options:
  alertmanager_url:
    description:
      - Base URL of Alertmanager, for its silences. Without it, nothing is known to be
        silenced. It is called with the same credentials and TLS options as I(url).
    type: str
  alertmanager_retention:
    description:
      - How long that Alertmanager keeps a silence after it ended (its C(--data.retention),
        a Prometheus duration). When the period starts before now minus this, the silences
        before then are unknown - the report says so, and its silenced figures count only
        the firing time from then on. C(120h) is Alertmanager's own default; the
        playbook passes the inventory's C(alertmanager_data_retention).
    type: str
    default: 120h
  relay_url:
    description:
      - Base URL of the alert relay, whose history gives the notifications per alert and
        when each firing was first notified. Optional; when it is not set, does not answer
        or answers something else than a history, the report says so and counts
        notifications from Alertmanager's counters alone.
    type: str
  period:
    description: >-
      Length of the period, a Prometheus duration (C(7d), C(24h), C(1h30m)); it ends at
      I(end). Ignored when I(start) is set.
    type: str
    default: 7d
  start:
    description: Start of the period, RFC 3339 (C(2025-06-01T00:00:00Z)).
    type: str
  end:
    description: End of the period, RFC 3339; now when not set.
    type: str
  flap_window:
    description: A firing that starts this soon after the same series resolved is a flap.
    type: str
    default: 15m
  flapping_min:
    description: An alert with at least this many flaps in the period gets a C(for) suggestion.
    type: int
    default: 2
  busy_share:
    description: >-
      An alert whose busiest series fired this share of the period or more gets a
      threshold suggestion, as does one that never fired.
    type: float
    default: 0.25
  shift_length:
    description: Length of an on-call shift; shifts start at midnight in I(timezone).
    type: str
    default: 12h
  timezone:
    description: IANA time zone of days, hours of day and shifts (C(Europe/Berlin)).
    type: str
    default: UTC
  top:
    description: How many of the noisiest alerts to list.
    type: int
    default: 10
  distribution_points:
    description:
      - For a threshold suggestion, the compared value of each series is sampled at most
        this many times over the period, every whole number of evaluation intervals
        (2016 - every 5 minutes of a week at 15 s); C(0) samples every evaluation, which
        costs Prometheus one evaluation of the expression per interval of the period.
    type: int
    default: 2016
  catalog:
    description:
      - The alert catalog's entries, as the filter C(alert_report_catalog) makes them from
        the prometheus role's catalog and the inventory's overrides. An alert named here
        gets override lines in its suggestions; one with C(threshold) and
        C(compared_value) also gets a threshold suggestion.
    type: list
    elements: dict
    default: []
    suboptions:
      alert:
        description: The alert's name.
        type: str
        required: true
      threshold:
        description: Its threshold (after the inventory's overrides).
        type: float
      operator:
        description: How the compared value is compared with the threshold.
        type: str
        choices: [">", ">=", "<", "<=", "==", "!="]
      compared_value:
        description: PromQL of the value compared with the threshold.
        type: str
      note:
        description: Why no compared value could be derived, when it could not.
        type: str
      severity:
        description: >-
          The severity of the rule this entry is for, where the alert is a warning/critical
          pair (two rules of one name); an entry without one is for every rule of the name.
        type: str
      twin:
        description: >-
          This entry is the critical twin of a catalog alert: its overrides go under
          C(critical:).
        type: bool
        default: false
  external_labels:
    description: >-
      Labels Prometheus adds to the alerts it sends (C(prometheus_external_labels)), which
      silences may match on.
    type: dict
    default: {}
  instance:
    description: >-
      This Prometheus' C(instance) label, to take the rule groups' evaluation history from
      its own series; every instance's when none carries it.
    type: str
  sections:
    description: >-
      What to read: C(alerts) (firings, silences, suggestions), C(notifications),
      C(rule_groups) (evaluation times).
    type: list
    elements: str
    choices: [alerts, notifications, rule_groups]
    default: [alerts, notifications, rule_groups]
extends_documentation_fragment: [prometheus_alerting.stack.http_api]
author: Prometheus Alerting maintainers (@prometheus-alerting)
"""

EXAMPLES = r"""
- name: Read the last week's alert history
  prometheus_alerting.stack.alert_history_info:
    url: http://127.0.0.1:9090
    alertmanager_url: http://127.0.0.1:9093
    alertmanager_retention: 720h
    period: 7d
  register: history

- name: Read a given day, in Berlin's hours, with 8-hour shifts
  prometheus_alerting.stack.alert_history_info:
    url: http://127.0.0.1:9090
    alertmanager_url: http://127.0.0.1:9093
    relay_url: http://127.0.0.1:9095
    start: "2025-06-01T00:00:00+02:00"
    end: "2025-06-02T00:00:00+02:00"
    timezone: Europe/Berlin
    shift_length: 8h

- name: Only the rule groups' evaluation times over the last hour
  prometheus_alerting.stack.alert_history_info:
    url: http://127.0.0.1:9090
    period: 1h
    sections: [rule_groups]
"""

RETURN = r"""
report:
  description: >-
    The report. Durations are in seconds, shares are fractions (0..1), times RFC 3339 in
    UTC; a figure that cannot be computed (nothing to divide by, nothing known) is null.
  returned: always
  type: dict
  contains:
    period:
      description: >-
        C(start), C(end), C(seconds), C(duration), C(timezone), and C(end_date), the date
        of the end in that time zone.
      type: dict
      sample: {start: "2025-06-01T00:00:00.000Z", end: "2025-06-08T00:00:00.000Z",
               seconds: 604800, duration: 7d, timezone: UTC, end_date: "2025-06-08"}
    sources:
      description: The URLs read, and whether the relay's history was used and why not.
      type: dict
    settings:
      description: The flap window, flapping minimum, busy share, shift length and top.
      type: dict
    empty:
      description: True when no alert fired at any time in the period.
      type: bool
    silences:
      description: >-
        What is known of the silences: C(source) (the Alertmanager URL, null without one),
        C(retention) (I(alertmanager_retention)), C(complete) (true when Alertmanager still
        keeps every silence of the period), C(known_from) (null, or the time before which
        silences are unknown; the silenced figures count only the firing time from then
        on) and C(note) (the sentence that says so, null when complete).
      type: dict
      sample: {source: "http://127.0.0.1:9093", retention: 120h, complete: false,
               known_from: "2025-06-03T00:00:00.000Z",
               note: "Silences before 2025-06-03 00:00:00Z are unknown: ..."}
    prometheus_restarts:
      description: >-
        The restarts of Prometheus in the period, each C(down) (its last sample before) and
        C(up) (its first after), from its own C(process_start_time_seconds); null when it
        does not scrape itself.
      type: list
      elements: dict
    counts:
      description: >-
        Loaded alerting rules (a warning/critical pair counts two), rules that were firing
        at some time, rules that fired, rules that never fired, firings, flaps and
        notifications in the period.
      type: dict
      sample: {rules: 41, alerts_firing: 9, alerts_fired: 8, never_fired: 32, firings: 57,
               flaps: 6, notifications: 140}
    alerts:
      description: >-
        Per alerting rule that was firing in the period, noisiest first: C(name) and
        C(severity) (a warning/critical pair is two entries of one name), C(fired) (firings
        that started in it), C(firing_seconds), C(firing_share) (of the period, on any series),
        C(busiest_series_share) (of the period, on its busiest series),
        C(median_firing_seconds), C(time_to_resolve) (C(count), C(mean), C(median),
        C(p90)), C(flaps), C(flapping), C(across_restarts) (gaps of a Prometheus restart its
        firings went on across), C(notifications) (null without the relay),
        C(silenced_seconds) and C(silenced_share) (of its firing time where silences are
        known; null where none is), C(acknowledged) and C(time_to_silence) (C(count),
        C(mean), C(median), C(p90)).
      type: list
      elements: dict
    top_noisy:
      description: >-
        The rules that fired most (C(name), C(severity), C(fired), C(notifications)).
      type: list
      elements: dict
    never_fired:
      description: >-
        Loaded alerting rules (C(name), C(group), C(severity)) that did not fire at any time
        in the period.
      type: list
      elements: dict
    per_day:
      description: Per day (in I(timezone)), firings and notifications.
      type: list
      elements: dict
    per_hour_of_day:
      description: Per hour of day (0-23, in I(timezone)), firings and notifications.
      type: list
      elements: dict
    notifications:
      description: >-
        C(source) (C(alertmanager_counters), C(relay) or C(none)), C(total), and from the
        counters C(attempted), C(failed) and C(by_integration).
      type: dict
    fatigue:
      description: >-
        C(shift_length), C(shifts) in the period, C(per_shift) (notifications per shift,
        the fatigue index) and C(busiest_shift).
      type: dict
    rule_groups:
      description: >-
        Per rule group: C(interval), C(rules), the last C(evaluation_time), and over the
        period C(mean_evaluation_time), C(max_evaluation_time) and C(iterations_missed)
        (null when Prometheus does not scrape itself).
      type: list
      elements: dict
    suggestions:
      description: >-
        C(kind) C(for) or C(threshold), the C(alert) and C(severity) of the rule it changes, a
        C(reason) and the C(override) line (the critical twin of a catalog alert through
        C(critical:)); threshold suggestions also hold C(quantiles), C(threshold) and
        C(proposed).
      type: list
      elements: dict
    suggestion_notes:
      description: Why an alert that qualifies has no suggestion, or that none qualifies.
      type: list
      elements: str
    timeline:
      description: >-
        Per rule, its C(name), C(severity) and C(bars), the intervals in which any of its
        series fired, as [from, to] seconds after the period's start.
      type: list
      elements: dict
    notes:
      description: >-
        What the reader should know about the sources (relay, counters, silences,
        restarts of Prometheus).
      type: list
      elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.history_reader import (
    SECTIONS,
    ReportError,
    build_report,
)
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.http_api import (
    HTTP_API_MUTUALLY_EXCLUSIVE,
    http_api_argument_spec,
)

ARGUMENT_SPEC = http_api_argument_spec(
    alertmanager_url={"type": "str"},
    alertmanager_retention={"type": "str", "default": "120h"},
    relay_url={"type": "str"},
    period={"type": "str", "default": "7d"},
    start={"type": "str"},
    end={"type": "str"},
    flap_window={"type": "str", "default": "15m"},
    flapping_min={"type": "int", "default": 2},
    busy_share={"type": "float", "default": 0.25},
    shift_length={"type": "str", "default": "12h"},
    timezone={"type": "str", "default": "UTC"},
    top={"type": "int", "default": 10},
    distribution_points={"type": "int", "default": 2016},
    catalog={
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {
            "alert": {"type": "str", "required": True},
            "threshold": {"type": "float"},
            "operator": {"type": "str", "choices": [">", ">=", "<", "<=", "==", "!="]},
            "compared_value": {"type": "str"},
            "note": {"type": "str"},
            "severity": {"type": "str"},
            "twin": {"type": "bool", "default": False},
        },
    },
    external_labels={"type": "dict", "default": {}},
    instance={"type": "str"},
    sections={"type": "list", "elements": "str", "choices": SECTIONS, "default": SECTIONS},
)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=HTTP_API_MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    try:
        report = build_report(module.params)
    except ReportError as err:
        module.fail_json(msg=str(err))
    module.exit_json(changed=False, report=report)


if __name__ == "__main__":
    main()
