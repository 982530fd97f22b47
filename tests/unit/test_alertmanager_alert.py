"""alertmanager_alert against a real Alertmanager (and a real webhook receiver)."""

import json
import uuid
from datetime import timedelta

import alertmanager_alert
import pytest
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.http_api import (
    parse_time,
    utc_now,
)
from conftest import ModuleFailed, assert_documented, free_port, http_get, run_module, wait_for

LABELS = {"alertname": "OpsTest", "severity": "info", "instance": "mon1"}

WEBHOOK_CONFIG = """\
route:
  receiver: hook
  group_wait: 0s
  group_interval: 1s
receivers:
  - name: hook
    webhook_configs:
      - url: {url}
"""


def post(alertmanager, check_mode=False, **args):
    return run_module(alertmanager_alert, {"url": alertmanager.url, **args}, check_mode=check_mode)


def held_alerts(alertmanager):
    return json.loads(http_get(alertmanager.url + "/api/v2/alerts"))


def test_posts_a_firing_alert_and_reads_back_how_it_is_routed(alertmanager):
    result = post(alertmanager, labels=LABELS, annotations={"summary": "Test alert"})

    assert result["changed"] is True
    (held,) = held_alerts(alertmanager)
    assert held["labels"] == LABELS
    assert held["annotations"] == {"summary": "Test alert"}
    assert result["fingerprint"] == held["fingerprint"]
    assert result["receivers"] == ["initial"]
    assert result["status"] == {"state": "active", "silenced_by": [], "inhibited_by": []}


def test_a_posted_alert_reaches_the_receiver(alertmanager, webhook_receiver):
    alertmanager.reload(WEBHOOK_CONFIG.format(url=webhook_receiver.url))
    labels = dict(LABELS, test_id=uuid.uuid4().hex)

    post(alertmanager, labels=labels)

    (delivered,) = wait_for(
        lambda: [a for a in webhook_receiver.alerts() if a["labels"] == labels],
        what="the alert at the receiver",
    )
    assert delivered["status"] == "firing"


def test_duration_or_ends_at_set_when_the_alert_ends(alertmanager):
    before = utc_now()
    post(alertmanager, labels=LABELS, duration="10m")
    post(alertmanager, labels=dict(LABELS, alertname="Fixed"), ends_at="2999-01-01T00:00:00Z")

    held = {a["labels"]["alertname"]: a for a in held_alerts(alertmanager)}
    lasts = parse_time(held["OpsTest"]["endsAt"]) - before
    assert timedelta(minutes=10) - timedelta(seconds=1) <= lasts <= timedelta(minutes=10, seconds=5)
    assert held["Fixed"]["endsAt"] == "2999-01-01T00:00:00.000Z"


def test_state_resolved_ends_a_firing_alert(alertmanager):
    post(alertmanager, labels=LABELS)

    result = post(alertmanager, labels=LABELS, state="resolved")

    assert result["changed"] is True
    assert "status" not in result
    assert held_alerts(alertmanager) == []


def test_check_mode_posts_nothing(alertmanager):
    result = post(alertmanager, check_mode=True, labels=LABELS)

    assert result["changed"] is True
    assert result["alert"]["labels"] == LABELS
    assert held_alerts(alertmanager) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"labels": {"severity": "info"}}, "labels must include alertname"),
        (
            {"labels": LABELS, "ends_at": "2020-01-01T00:00:00Z"},
            "ends_at 2020-01-01T00:00:00.000Z is past: it would resolve the alert",
        ),
        ({"labels": LABELS, "duration": "soon"}, "'soon' is not a duration"),
        ({"labels": LABELS, "starts_at": "tomorrow"}, "'tomorrow' is not a timestamp"),
    ],
)
def test_wrong_options_fail_before_anything_is_sent(alertmanager, args, message):
    with pytest.raises(ModuleFailed) as failure:
        post(alertmanager, **args)

    assert message in failure.value.result["msg"]
    assert held_alerts(alertmanager) == []


def test_an_alert_alertmanager_rejects_fails_with_its_reason(alertmanager):
    with pytest.raises(ModuleFailed) as failure:
        post(
            alertmanager,
            labels=LABELS,
            starts_at="2999-01-02T00:00:00Z",
            ends_at="2999-01-01T00:00:00Z",
        )

    message = failure.value.result["msg"]
    assert message.startswith("cannot post the alert to Alertmanager: POST ")
    assert "HTTP 400" in message
    assert "start time must be before end time" in message
    assert held_alerts(alertmanager) == []


def test_an_unreachable_alertmanager_fails_with_the_url_and_reason():
    url = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(ModuleFailed) as failure:
        run_module(alertmanager_alert, {"url": url, "labels": LABELS, "timeout": 2})

    message = failure.value.result["msg"]
    assert f"POST {url}/api/v2/alerts failed" in message
    assert "Connection refused" in message


def test_documentation_matches_the_options():
    assert_documented(alertmanager_alert)
