"""alert_relay_config (filter relay_config.py): the relay's configuration, secrets in files."""

import pytest
import relay_config
from ansible.errors import AnsibleFilterError

SECRETS = "/etc/alert-relay/secrets"
DESTINATIONS = {
    "ops": {
        "url": "https://ops.example.com/alerts",
        "headers": {"X-Source": "alert-relay"},
        "secret_headers": {"X-Api-Key": "api-key-1"},
        "hmac_key": "hmac-key-1",
        "timeout": "5s",
    },
    "chat": {"secret_url": "https://hooks.example.com/T000/B000/XXXX", "bearer_token": "tok-2"},
}


def config(receivers, destinations=DESTINATIONS, hooks=None, token="am-token"):
    return relay_config.alert_relay_config(receivers, destinations, hooks, {}, SECRETS, token)


def test_receivers_take_alertmanagers_token_and_destinations_their_secrets_from_files():
    result = config({"critical-alerts": {"destinations": ["ops", "chat"]}})

    assert result["config"]["receivers"] == {
        "critical-alerts": {
            "bearer_token_file": f"{SECRETS}/alertmanager.token",
            "destinations": ["ops", "chat"],
        }
    }
    ops = result["config"]["destinations"]["ops"]
    assert ops == {
        "url": "https://ops.example.com/alerts",
        "headers": {"X-Source": "alert-relay"},
        "header_files": {"X-Api-Key": f"{SECRETS}/destination.ops.header.X-Api-Key"},
        "hmac": {"key_file": f"{SECRETS}/destination.ops.hmac_key"},
        "timeout": "5s",
    }
    chat = result["config"]["destinations"]["chat"]
    assert chat == {
        "url_file": f"{SECRETS}/destination.chat.url",
        "bearer_token_file": f"{SECRETS}/destination.chat.bearer_token",
    }
    assert result["secret_files"] == {
        "alertmanager.token": "am-token",
        "destination.ops.header.X-Api-Key": "api-key-1",
        "destination.ops.hmac_key": "hmac-key-1",
        "destination.chat.url": "https://hooks.example.com/T000/B000/XXXX",
        "destination.chat.bearer_token": "tok-2",
    }
    # No secret is left in the configuration itself.
    text = repr(result["config"])
    for secret in result["secret_files"].values():
        assert secret not in text


@pytest.mark.parametrize(
    ("receivers", "destinations", "token", "message"),
    [
        ({"r": {"destinations": ["nowhere"]}}, {}, "t", "forwards to ['nowhere']"),
        ({"r": {}}, {}, "", "alert_relay_token is not set"),
        ({"r": {"destinatons": []}}, {}, "t", "unknown keys ['destinatons']"),
        ({"bad name!": {}}, {}, "t", "is not a name the relay takes"),
        ({}, {"d": {"url": "ftp://x"}}, "t", "must start with http:// or https://"),
        ({}, {"d": {}}, "t", "set exactly one of url and secret_url"),
        ({}, {"d": {"url": "http://x", "basic_auth": {"username": "u"}}}, "t", "basic_auth needs"),
    ],
)
def test_mistakes_are_named_without_showing_a_secret(receivers, destinations, token, message):
    with pytest.raises(AnsibleFilterError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config(receivers, destinations, token=token)


def test_hooks_pass_through_and_are_checked():
    hooks = {"restart": {"command": ["/usr/local/bin/restart"], "alertnames": ["TradingBotDown"]}}

    assert config({}, {}, hooks)["config"]["hooks"] == hooks
    with pytest.raises(AnsibleFilterError, match="unknown keys"):
        config({}, {}, {"restart": {"comand": ["/x"]}})
