"""Warning/critical pairs: one alert name, two rules, reported apart.

The catalog renders an alert with `critical:` as two rules of the same name
that differ in `severity` (and their own params and `for`):
TLSCertificateExpiring (days 14 / 3) is one. Both rules' history is
backfilled into a real Prometheus that loads both rules, and the report runs
through the playbook, the catalog's twin of a threshold alert coming from
prometheus_alert_extra_groups.

The period is [T0, T0 + 6h), evaluations every 15 s at g(k) = T0 + 7.25 s + k * 15 s.

- TLSCertificateExpiring warning (for 10m) fires once, g(100) to g(1299).
- TLSCertificateExpiring critical (for 5m) fires three times, 5 minutes apart:
  two flaps. Its conditions held 20m, 10m and 10m: `for: 21m`, for the
  critical rule, through the catalog's `critical:`.
- QueueBacklog warning (threshold 100) fires half of the period; its critical
  twin (threshold 500) never fires. queue_depth is 100 but 20 times 300 in the
  1440 samples: p99 300. Each rule gets its own threshold suggestion.
"""

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
from synthetic_history import History, HistoryPrometheus, backfill, rule_file

HOST = "mon-pairs"
HOUR = 3600 * 1000
T0 = (int(time.time()) // 3600 - 8) * HOUR
END = T0 + 6 * HOUR
TLS = {
    "alertname": "TLSCertificateExpiring",
    "instance": "https://api.example",
    "service": "probes",
}
QUEUE = {"alertname": "QueueBacklog", "instance": "q1", "service": "queue"}

INVENTORY = """\
monitoring:
  hosts:
    {host}:
      ansible_connection: local
      ansible_python_interpreter: {python}
      prometheus_port: {port}
      prometheus_alert_extra_groups:
        - name: queue.rules
          rules:
            - alert: QueueBacklog
              expr: !unsafe 'queue_depth{{job="queue"}} > {{{{ threshold }}}}'
              params: {{threshold: 100}}
              critical: {{threshold: 500}}
              for: 2m
              severity: warning
              service: queue
              summary: The queue is backed up
              description: The queue is backed up
"""


def g(k):
    return T0 + 7250 + 15000 * k


def rfc3339(ms):
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def build_history():
    history = History()
    history.alert({**TLS, "severity": "warning"}, 100, 1299, g, active_at_k=60)
    for first, last in ((400, 459), (480, 499), (520, 539)):
        history.alert({**TLS, "severity": "critical"}, first, last, g, active_at_k=first - 20)
    history.alert({**QUEUE, "severity": "warning"}, 0, 719, g, active_at_k=-8)
    values = [100.0] * 1420 + [300.0] * 20
    order = sorted(range(1440), key=lambda i: (i * 7919) % 1440)
    history.add(
        "queue_depth",
        {"instance": "q1", "job": "queue"},
        [(T0 + 15000 * j, values[i]) for j, i in enumerate(order, start=1)],
    )
    return history


RULES = rule_file(
    {
        "probes.rules": (
            "15s",
            [
                ("TLSCertificateExpiring", "10m", {"severity": "warning", "service": "probes"}),
                ("TLSCertificateExpiring", "5m", {"severity": "critical", "service": "probes"}),
            ],
        ),
        "queue.rules": (
            "15s",
            [
                ("QueueBacklog", "2m", {"severity": "warning", "service": "queue"}),
                ("QueueBacklog", "2m", {"severity": "critical", "service": "queue"}),
            ],
        ),
    }
)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pairs-prometheus")
    backfill(build_history(), directory)
    prometheus = HistoryPrometheus(directory, RULES)
    try:
        tmp_path = tmp_path_factory.mktemp("pairs-report")
        inventory = tmp_path / "inventory.yml"
        inventory.write_text(
            INVENTORY.format(host=HOST, python=sys.executable, port=urlsplit(prometheus.url).port)
        )
        extra = {
            "report_start": rfc3339(T0),
            "report_end": rfc3339(END),
            "report_dir": str(tmp_path / "reports"),
            "operations_alertmanager_url": "",
        }
        argv = ["ansible-playbook", "-i", str(inventory), str(ROOT / "playbooks" / "report.yml")]
        argv += ["-e", json.dumps(extra)]
        environment = dict(
            os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1"
        )
        completed = subprocess.run(
            argv, capture_output=True, text=True, env=environment, check=False
        )
        assert completed.returncode == 0, completed.stdout + completed.stderr
        (json_file,) = (tmp_path / "reports" / HOST).glob("*.json")
        yield {
            "data": json.loads(json_file.read_text()),
            "html": json_file.with_suffix(".html").read_text(),
            "md": json_file.with_suffix(".md").read_text(),
            "stdout": completed.stdout,
        }
    finally:
        prometheus.stop()


def test_each_rule_of_a_warning_critical_pair_has_its_own_figures(report):
    data = report["data"]
    rows = {(a["name"], a["severity"]): a for a in data["alerts"]}

    assert set(rows) == {
        ("TLSCertificateExpiring", "warning"),
        ("TLSCertificateExpiring", "critical"),
        ("QueueBacklog", "warning"),
    }
    warning = rows[("TLSCertificateExpiring", "warning")]
    critical = rows[("TLSCertificateExpiring", "critical")]
    assert (warning["fired"], warning["flaps"], warning["for"]) == (1, 0, 600.0)
    assert warning["firing_seconds"] == 18000.0
    assert (critical["fired"], critical["flaps"], critical["for"]) == (3, 2, 300.0)
    assert critical["firing_seconds"] == 1500.0
    assert [(a["name"], a["severity"]) for a in data["never_fired"]] == [
        ("QueueBacklog", "critical")
    ]
    assert data["counts"]["rules"] == 4
    assert data["counts"]["never_fired"] == 1
    assert {(a["name"], a["severity"]) for a in data["top_noisy"]} == set(rows)
    timeline = {(r["name"], r["severity"]) for r in data["timeline"]}
    assert timeline == set(rows)
    # Both rules of the pair, named apart wherever the report lists them.
    for text in (report["html"], report["md"]):
        assert "TLSCertificateExpiring (critical)" in text
        assert "TLSCertificateExpiring (warning)" in text
    assert "TLSCertificateExpiring (critical) (3)" in report["stdout"]


def test_suggestions_name_the_rule_of_the_pair_they_change(report):
    overrides = {s["override"] for s in report["data"]["suggestions"]}
    assert overrides == {
        # The critical rule flaps: its `for`, through the catalog's `critical:`.
        "prometheus_alert_overrides: {TLSCertificateExpiring: {critical: {for: 21m}}}",
        "prometheus_alert_overrides: {QueueBacklog: {threshold: 300}}",
        "prometheus_alert_overrides: {QueueBacklog: {critical: {threshold: 300}}}",
    }
    suggestions = {(s["alert"], s["severity"], s["kind"]): s for s in report["data"]["suggestions"]}

    assert set(suggestions) == {
        ("TLSCertificateExpiring", "critical", "for"),
        ("QueueBacklog", "warning", "threshold"),
        ("QueueBacklog", "critical", "threshold"),
    }
    longer = suggestions[("TLSCertificateExpiring", "critical", "for")]
    assert (longer["current"], longer["proposed"]) == ("5m", "21m")
    assert longer["override"] == (
        "prometheus_alert_overrides: {TLSCertificateExpiring: {critical: {for: 21m}}}"
    )
    assert longer["reason"].startswith("TLSCertificateExpiring (critical) fired again")
    assert "3 of its 3 resolved firings would not have fired" in longer["reason"]

    busy = suggestions[("QueueBacklog", "warning", "threshold")]
    assert busy["threshold"] == 100.0
    assert busy["why"] == "fired 50.0% of the time on its busiest series"
    assert busy["quantiles"] == {"p50": 100.0, "p95": 100.0, "p99": 300.0}
    assert busy["override"] == "prometheus_alert_overrides: {QueueBacklog: {threshold: 300}}"
    never = suggestions[("QueueBacklog", "critical", "threshold")]
    assert (never["threshold"], never["why"]) == (500.0, "never fired")
    assert never["override"] == (
        "prometheus_alert_overrides: {QueueBacklog: {critical: {threshold: 300}}}"
    )
    assert "Suggestions: 3 (for: TLSCertificateExpiring (critical); threshold: " in report["stdout"]
