"""alertmanager_alerts_info against a real Alertmanager with active, silenced and inhibited
alerts, and its notification counters with a real webhook receiver."""

import json
import urllib.request

import alertmanager_alerts_info
import pytest
from conftest import (
    ModuleFailed,
    assert_documented,
    free_port,
    run_module,
    wait_for,
)

# A critical alert inhibits a warning on the same instance (the project's own
# critical -> warning rule, reduced to one label).
INHIBITING_CONFIG = """\
route:
  receiver: initial
receivers:
  - name: initial
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [instance]
"""

# Alerts labelled target=broken go to a URL the receiver answers with 404,
# which Alertmanager counts as a failed notification at once (no retry).
WEBHOOK_CONFIG = """\
route:
  receiver: hook
  group_wait: 0s
  group_interval: 1s
  routes:
    - receiver: broken
      matchers: ['target="broken"']
receivers:
  - name: hook
    webhook_configs: [{{url: "{url}"}}]
  - name: broken
    webhook_configs: [{{url: "{broken_url}"}}]
"""


def post_json(alertmanager, path, body):
    request = urllib.request.Request(
        alertmanager.url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    return json.loads(text) if text.strip() else None


def post_alerts(alertmanager, *label_sets):
    post_json(alertmanager, "/api/v2/alerts", [{"labels": labels} for labels in label_sets])


def read(alertmanager, **args):
    return run_module(alertmanager_alerts_info, {"url": alertmanager.url, **args})


def names(alerts):
    return sorted(alert["name"] for alert in alerts)


@pytest.fixture
def muted(alertmanager):
    """Three alerts: one active, one inhibited by it, one silenced; returns the silence id."""
    alertmanager.reload(INHIBITING_CONFIG)
    post_alerts(
        alertmanager,
        {"alertname": "SourceCritical", "severity": "critical", "instance": "app1"},
        {"alertname": "TargetWarning", "severity": "warning", "instance": "app1"},
        {"alertname": "Muted", "severity": "info", "instance": "app2"},
    )
    answer = post_json(
        alertmanager,
        "/api/v2/silences",
        {
            "matchers": [{"name": "alertname", "value": "Muted", "isRegex": False}],
            "startsAt": "2020-01-01T00:00:00Z",
            "endsAt": "2999-01-01T00:00:00Z",
            "createdBy": "test",
            "comment": "maintenance",
        },
    )
    return answer["silenceID"]


def test_reports_active_silenced_and_inhibited_alerts(alertmanager, muted):
    result = read(alertmanager, notifications=False)

    assert result["changed"] is False
    assert names(result["alerts"]) == ["Muted", "SourceCritical", "TargetWarning"]
    assert names(result["active"]) == ["SourceCritical"]
    assert names(result["silenced"]) == ["Muted"]
    assert names(result["inhibited"]) == ["TargetWarning"]
    (source,) = result["active"]
    (silenced,) = result["silenced"]
    (inhibited,) = result["inhibited"]
    assert silenced["silenced_by"] == [muted]
    assert silenced["state"] == "suppressed"
    assert inhibited["inhibited_by"] == [source["fingerprint"]]
    assert inhibited["state"] == "suppressed"
    assert source["receivers"] == ["initial"]
    assert source["labels"]["instance"] == "app1"
    assert result["counts"] == {
        "alerts": 3,
        "active": 1,
        "silenced": 1,
        "inhibited": 1,
        "unprocessed": 0,
    }
    (listed,) = result["silences"]
    assert listed["id"] == muted
    assert listed["matchers"] == ['alertname="Muted"']
    assert listed["state"] == "active"
    assert "notifications" not in result


def test_reads_the_alerts_that_match_a_filter_or_a_state(alertmanager, muted):
    critical = read(alertmanager, filter=['severity="critical"'])
    app1 = read(alertmanager, filter=['instance=~"app1"', 'severity!="critical"'])
    unmuted = read(alertmanager, silenced=False, inhibited=False)

    assert names(critical["alerts"]) == ["SourceCritical"]
    assert names(app1["alerts"]) == ["TargetWarning"]
    assert names(unmuted["alerts"]) == ["SourceCritical"]


def test_counts_sent_and_failed_notifications_per_integration(alertmanager, webhook_receiver):
    broken_url = webhook_receiver.url.replace("/webhooks/", "/elsewhere/")
    alertmanager.reload(WEBHOOK_CONFIG.format(url=webhook_receiver.url, broken_url=broken_url))
    before = read(alertmanager)["notifications"]

    post_alerts(alertmanager, {"alertname": "Delivered"}, {"alertname": "Lost", "target": "broken"})

    wait_for(
        lambda: [a for a in webhook_receiver.alerts() if a["labels"]["alertname"] == "Delivered"],
        what="the notification at the receiver",
    )
    after = wait_for(
        lambda: (n := read(alertmanager)["notifications"])["webhook"]["failed"] > 0 and n,
        what="the failed notification",
    )
    assert before["webhook"] == {"total": 0, "failed": 0}
    assert after["webhook"] == {"total": 2, "failed": 1}
    assert after["email"] == {"total": 0, "failed": 0}


def test_a_malformed_filter_fails_before_anything_is_read(alertmanager):
    with pytest.raises(ModuleFailed) as failure:
        read(alertmanager, filter=["severity critical"])

    assert failure.value.result["msg"].startswith(
        "invalid filter: 'severity critical' is not a matcher: write name=\"value\""
    )


def test_an_unreachable_alertmanager_fails_with_the_url_and_reason():
    url = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(ModuleFailed) as failure:
        run_module(alertmanager_alerts_info, {"url": url, "timeout": 2})

    message = failure.value.result["msg"]
    assert message.startswith("cannot read the alerts from Alertmanager: GET ")
    assert f"{url}/api/v2/alerts" in message
    assert "Connection refused" in message


def test_check_mode_reads_the_same(alertmanager, muted):
    result = run_module(alertmanager_alerts_info, {"url": alertmanager.url}, check_mode=True)

    assert result["changed"] is False
    assert result["counts"]["alerts"] == 3


def test_documentation_matches_the_options():
    assert_documented(alertmanager_alerts_info)
