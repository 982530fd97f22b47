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
