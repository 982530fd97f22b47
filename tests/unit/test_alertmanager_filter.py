"""alertmanager_receivers: the role's receivers in Alertmanager's form, secrets in files."""

import alertmanager
import pytest
import staged
from ansible.errors import AnsibleFilterError

DEFAULTS = {"email": {"headers": {"Subject": "subject"}, "html": ""}, "webhook": {}}


def convert(receivers):
    return alertmanager.alertmanager_receivers(receivers, DEFAULTS, "/etc/alertmanager/secrets")


def test_channels_become_configs_over_the_defaults():
    result = convert(
        [{"name": "ops", "email": {"to": "ops@example.com", "headers": {"X-Team": "ops"}}}]
    )

    assert result == {
        "receivers": [
            {
                "name": "ops",
                "email_configs": [
                    {
                        "to": "ops@example.com",
                        "headers": {"X-Team": "ops", "Subject": "subject"},
                        "html": "",
                    }
                ],
            }
        ],
        "secret_files": {},
    }


def test_secrets_move_to_files_named_by_the_file_fields():
    result = convert(
        [
            {
                "name": "critical alerts",
                "email": {"to": "a@example.com", "auth_password": "mail-secret"},
                "webhook": [{"url": "https://hooks.example.com", "bearer_token": "token-1"}],
                "slack": {"api_url": "https://hooks.slack.example.com/T/X", "channel": "#ops"},
                "pagerduty": {"routing_key": "pd-key"},
            }
        ]
    )

    (receiver,) = result["receivers"]
    flat = repr(receiver)
    for secret in ("mail-secret", "token-1", "hooks.slack.example.com", "pd-key"):
        assert secret not in flat
    assert receiver["email_configs"][0]["auth_password_file"] == (
        "/etc/alertmanager/secrets/critical_alerts.email.1.auth_password"
    )
    assert receiver["webhook_configs"][0]["http_config"]["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/etc/alertmanager/secrets/critical_alerts.webhook.1.bearer_token",
    }
    assert receiver["slack_configs"][0]["api_url_file"].endswith("critical_alerts.slack.1.api_url")
    assert result["secret_files"] == {
        "critical_alerts.email.1.auth_password": "mail-secret",
        "critical_alerts.webhook.1.bearer_token": "token-1",
        "critical_alerts.slack.1.api_url": "https://hooks.slack.example.com/T/X",
        "critical_alerts.pagerduty.1.routing_key": "pd-key",
    }


def test_a_receiver_without_channels_drops_what_it_gets():
    assert convert([{"name": "watchdog"}])["receivers"] == [{"name": "watchdog"}]


@pytest.mark.parametrize(
    ("receiver", "message"),
    [
        ({"email": {"to": "x@example.com"}}, "a receiver has no name"),
        ({"name": "ops", "mail": {}}, "unknown keys \\['mail'\\]"),
        ({"name": "ops", "webhook": "https://secret.example.com/token"}, "must be a dict"),
    ],
)
def test_mistakes_are_named_without_showing_values(receiver, message):
    with pytest.raises(AnsibleFilterError, match=message) as failure:
        convert([receiver])
    assert "secret.example.com" not in str(failure.value)


def test_secret_files_are_staged_without_diff():
    assert staged.secret_files({"smtp": "p4ss"}, "secrets") == {
        "secrets/smtp": {"content": "p4ss", "diff": False}
    }
    assert staged.secret_files({"a": 1}) == {"a": {"content": "1", "diff": False}}


RELAY = {
    "url": "http://127.0.0.1:9097",
    "token": "relay-token",
    "ca_file": "",
    "receivers": ["critical-alerts"],
}


def test_a_receiver_through_the_relay_posts_there_with_the_token_in_a_file():
    receivers = [
        {"name": "critical-alerts", "email": {"to": "ops@example.com"}, "alert_relay": True}
    ]

    result = alertmanager.alertmanager_receivers(receivers, {}, "secrets", RELAY)

    (receiver,) = result["receivers"]
    assert receiver["email_configs"] == [{"to": "ops@example.com"}]
    assert receiver["webhook_configs"] == [
        {
            "url": "http://127.0.0.1:9097/webhooks/critical-alerts",
            "send_resolved": True,
            "http_config": {
                "authorization": {"type": "Bearer", "credentials_file": "secrets/alert-relay.token"}
            },
        }
    ]
    assert result["secret_files"] == {"alert-relay.token": "relay-token"}
    assert "relay-token" not in repr(result["receivers"])


def test_a_relayed_receiver_the_relay_does_not_serve_or_without_a_token_is_refused():
    receivers = [{"name": "team", "alert_relay": True}]

    with pytest.raises(AnsibleFilterError, match="alert_relay_receivers has no 'team'"):
        alertmanager.alertmanager_receivers(receivers, {}, "secrets", RELAY)
    with pytest.raises(AnsibleFilterError, match="alert_relay_token is not set"):
        alertmanager.alertmanager_receivers(
            receivers, {}, "secrets", {**RELAY, "receivers": ["team"], "token": ""}
        )


# --- alertmanager_time_intervals: named intervals and the routes that use them ---

WORKING_HOURS = {
    "name": "working-hours",
    "time_intervals": [
        {
            "weekdays": ["monday:friday"],
            "times": [{"start_time": "08:00", "end_time": "18:00"}],
            "location": "Europe/Berlin",
        }
    ],
}
MAINTENANCE = {
    "name": "maintenance",
    "time_intervals": [
        {"weekdays": ["sunday"], "times": [{"start_time": "02:00", "end_time": "04:00"}]}
    ],
}


def tree(*routes):
    return {"receiver": "default", "routes": list(routes)}


def test_intervals_and_the_routes_that_use_them_pass_as_they_are():
    route = tree(
        {
            "receiver": "team",
            "matchers": ['severity="warning"'],
            "active_time_intervals": ["working-hours"],
            "mute_time_intervals": ["maintenance"],
        },
        {"receiver": "ops", "routes": [{"receiver": "db", "mute_time_intervals": ["maintenance"]}]},
    )

    result = alertmanager.alertmanager_time_intervals([WORKING_HOURS, MAINTENANCE], route, "0.25.0")

    assert result == [WORKING_HOURS, MAINTENANCE]
    assert alertmanager.alertmanager_time_intervals(None, tree(), "0.25.0") == []


@pytest.mark.parametrize(
    ("intervals", "route", "message"),
    [
        (
            [WORKING_HOURS],
            tree(
                {
                    "receiver": "ops",
                    "routes": [{"receiver": "db", "mute_time_intervals": ["maintenance"]}],
                }
            ),
            "route.routes[0] (receiver ops).routes[0] (receiver db): mute_time_intervals names the "
            "time interval 'maintenance', which alertmanager_time_intervals does not define (it "
            "defines working-hours)",
        ),
        (
            [MAINTENANCE],
            {"receiver": "default", "mute_time_intervals": ["maintenance"]},
            "the top of the routing tree (alertmanager_route) has mute_time_intervals "
            "'maintenance'",
        ),
        (
            [MAINTENANCE, MAINTENANCE],
            tree(),
            "time interval 'maintenance' is defined twice",
        ),
        (
            [
                {
                    "name": "office",
                    "time_intervals": [{"times": [{"start_time": "08:00", "end_time": 1080}]}],
                }
            ],
            tree(),
            "time interval 'office': time_intervals[0]: times[0]: end_time is the number 1080: "
            "YAML reads an unquoted time such as 18:00 as a number (minutes); quote it: '18:00'",
        ),
        (
            [{"name": "office", "time_intervals": [{"weekday": ["monday"]}]}],
            tree(),
            "time interval 'office': time_intervals[0]: unknown keys ['weekday']",
        ),
        (
            [{"name": "office", "intervals": []}],
            tree(),
            "time interval 'office': unknown keys ['intervals']",
        ),
        (
            [{"name": "weekend", "time_intervals": [{"weekdays": ["friday:sunday"]}]}],
            tree(),
            "time interval 'weekend': time_intervals[0]: weekdays 'friday:sunday' ends before it "
            "starts (a range cannot wrap around: write it as ['friday:saturday', 'sunday'])",
        ),
        (
            [{"name": "office", "time_intervals": [{"location": ""}]}],
            tree(),
            "time interval 'office': time_intervals[0]: location must be a time zone name",
        ),
        (
            [{"time_intervals": []}],
            tree(),
            "alertmanager_time_intervals[0] has no name",
        ),
    ],
)
def test_interval_mistakes_are_named(intervals, route, message):
    with pytest.raises(AnsibleFilterError) as failure:
        alertmanager.alertmanager_time_intervals(intervals, route, "0.28.1")
    assert message in str(failure.value)


def test_intervals_need_a_release_that_has_them():
    route = tree({"receiver": "ops", "mute_time_intervals": ["maintenance"]})

    with pytest.raises(
        AnsibleFilterError,
        match=r"need Alertmanager 0\.24\.0 or later, and this host runs Alertmanager 0\.23\.0",
    ):
        alertmanager.alertmanager_time_intervals([MAINTENANCE], route, "0.23.0")
    # Without any, any release does.
    assert alertmanager.alertmanager_time_intervals([], tree(), "0.23.0") == []


def test_the_shorthand_renders_as_before_whatever_the_release():
    receivers = [
        {
            "name": "critical-alerts",
            "email": {"to": "ops@example.com"},
            "webhook": {"url": "http://127.0.0.1:8080/webhooks/critical", "send_resolved": True},
            "slack": {"api_url": "https://hooks.slack.example.com/T/X", "channel": "#ops"},
            "pagerduty": {"routing_key": "pd-key"},
        }
    ]
    before = convert(receivers)

    for version in ("0.25.0", "0.28.1"):
        assert (
            alertmanager.alertmanager_receivers(
                receivers, DEFAULTS, "/etc/alertmanager/secrets", version=version
            )
            == before
        )
    assert list(before["receivers"][0]) == [
        "name",
        "email_configs",
        "webhook_configs",
        "slack_configs",
        "pagerduty_configs",
    ]
