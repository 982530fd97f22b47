"""alert_relay_config (filter relay_config.py): the relay's configuration, secrets in files."""

import sys

import pytest
import relay_config
import yaml
from ansible.errors import AnsibleFilterError
from conftest import ROOT

sys.path.insert(0, str(ROOT / "alert_relay" / "src"))
from alert_relay.config import ConfigError, parse_config

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


@pytest.mark.parametrize(
    "name",
    ["_leading", "-leading", ".leading", "x" * 64, "a b", "trailing\n", "ok", "ok_1.2-3", "9"],
)
def test_the_controller_refuses_the_names_the_relay_refuses(name):
    try:
        parse_config(yaml.safe_dump({"receivers": {name: {}}}))
        relay_takes = True
    except ConfigError:
        relay_takes = False
    try:
        config({name: {}}, {})
        controller_takes = True
    except AnsibleFilterError:
        controller_takes = False

    assert controller_takes == relay_takes
    if name[0] in "_-.":
        assert not controller_takes


def test_what_the_controller_writes_is_what_the_relay_reads(tmp_path):
    """Every key the filter takes ends up as a key the relay takes."""
    (tmp_path / "hook").write_text("#!/bin/sh\n")
    (tmp_path / "hook").chmod(0o755)
    destinations = {
        "all": {
            "url": "https://ops.example.com/alerts",
            "headers": {"X-Source": "alert-relay"},
            "secret_headers": {"X-Api-Key": "k"},
            "basic_auth": {"username": "u", "password": "p"},
            "hmac_key": "h",
            "hmac_header": "X-Signature",
            "timeout": "5s",
            "max_concurrency": 2,
            "retry": {"max_age": "1h"},
        },
        "secret": {"secret_url": "https://hooks.example.com/T0", "bearer_token": "t"},
    }
    receivers = {
        "r": {
            "destinations": ["all", "secret"],
            "forward_repeats": True,
            "repeat_min_interval": "1h",
        }
    }
    hooks = {"h": {"command": ["hook"], "alertnames": ["A"], "receivers": ["r"], "timeout": "5s"}}
    written = set(destinations["all"]) | set(destinations["secret"])
    assert written == relay_config.DESTINATION_KEYS - {"tls_config"}
    result = relay_config.alert_relay_config(receivers, destinations, hooks, {}, str(tmp_path), "t")
    for name, value in result["secret_files"].items():
        (tmp_path / name).write_text(value)

    parsed = parse_config(yaml.safe_dump(result["config"]), str(tmp_path))

    assert sorted(parsed.destinations) == ["all", "secret"]
    assert parsed.receivers["r"].destinations == ("all", "secret")
