"""The configuration file: every key read, every mistake named."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from alert_relay.config import ConfigError, SecretFile, parse_config, parse_duration


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "token").write_text("one\n\ntwo\n")
    (tmp_path / "hmac.key").write_text("k3y\n")
    (tmp_path / "ops.auth").write_text("Bearer dest-token\n")
    (tmp_path / "slack.url").write_text("https://hooks.example/services/T0/B0/XYZ\n")
    (tmp_path / "password").write_text("pw\n")
    hook = tmp_path / "restart-bot"
    hook.write_text("#!/bin/sh\ncat >/dev/null\n")
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    return tmp_path


FULL = """
global:
  max_request_bytes: 65536
  history_retention: 14d
  prune_interval: 30m
  forward_repeats: true
  repeat_min_interval: 2h
  timeout: 5s
  max_concurrency: 2
  retry: {initial_backoff: 2s, max_backoff: 1m, max_age: 6h}
  hook_timeout: 20s
  hook_concurrency: 3
receivers:
  critical:
    bearer_token_file: token
    destinations: [ops, slack]
    forward_repeats: false
  warning:
    destinations: [ops]
    repeat_min_interval: 4h
destinations:
  ops:
    url: https://ops.example/alerts
    headers: {X-Source: alert-relay}
    header_files: {Authorization: ops.auth}
    hmac: {key_file: hmac.key, header: X-Signature}
    timeout: 3s
    max_concurrency: 8
    retry: {max_age: 1d}
    tls_config: {insecure_skip_verify: true}
  slack:
    url_file: slack.url
    basic_auth: {username: relay, password_file: password}
hooks:
  restart:
    command: [restart-bot, --quiet]
    alertnames: [TradingBotDown]
    receivers: [critical]
    send_resolved: false
    timeout: 5s
    max_attempts: 2
"""


def test_every_key(files: Path) -> None:
    config = parse_config(FULL, str(files))
    assert config.max_request_bytes == 65536
    assert config.history_retention == 14 * 86400 and config.prune_interval == 1800
    assert config.hook_concurrency == 3
    critical, warning = config.receivers["critical"], config.receivers["warning"]
    assert critical.token_file is not None and critical.token_file.lines() == [b"one", b"two"]
    assert critical.destinations == ("ops", "slack")
    assert (critical.forward_repeats, critical.repeat_min_interval) == (False, 7200)
    assert (warning.forward_repeats, warning.repeat_min_interval) == (True, 4 * 3600)
    assert warning.token_file is None
    ops, slack = config.destinations["ops"], config.destinations["slack"]
    assert ops.resolve_url() == "https://ops.example/alerts"
    assert ops.headers == {"X-Source": "alert-relay"}
    assert ops.header_files["Authorization"].text() == "Bearer dest-token"
    assert ops.hmac_key_file is not None and ops.hmac_key_file.read() == b"k3y"
    assert ops.hmac_header == "X-Signature"
    assert (ops.timeout, ops.max_concurrency) == (3, 8)
    assert (ops.retry.initial_backoff, ops.retry.max_backoff, ops.retry.max_age) == (2, 60, 86400)
    assert ops.ssl_context is not None and not ops.ssl_context.check_hostname
    assert slack.resolve_url() == "https://hooks.example/services/T0/B0/XYZ"
    assert slack.basic_auth_username == "relay"
    assert (slack.timeout, slack.max_concurrency, slack.retry.max_age) == (5, 2, 6 * 3600)
    assert slack.hmac_header == "X-Alert-Relay-Signature" and slack.ssl_context is None
    hook = config.hooks["restart"]
    assert hook.command == (str(files / "restart-bot"), "--quiet")
    assert hook.applies("critical", "TradingBotDown", "firing")
    assert not hook.applies("critical", "TradingBotDown", "resolved")  # send_resolved: false
    assert not hook.applies("warning", "TradingBotDown", "firing")
    assert (hook.timeout, hook.max_attempts, hook.max_concurrency) == (5, 2, 1)
    assert config.targets(critical, "TradingBotDown", "firing") == ["ops", "slack", "hook:restart"]
    assert config.targets(warning, "TradingBotDown", "firing") == ["ops"]


def test_defaults(files: Path) -> None:
    config = parse_config("receivers: {critical: {}}\n", str(files))
    assert config.max_request_bytes == 1 << 20 and config.history_retention == 30 * 86400
    receiver = config.receivers["critical"]
    assert receiver.destinations == () and not receiver.forward_repeats
    assert receiver.repeat_min_interval == 3600


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "the configuration: must be a mapping"),
        ("receivers: {}\n", "receivers: none configured"),
        ("routes: {}\nreceivers: {a: {}}\n", "unknown field 'routes'"),
        ("receivers: {a: {destination: [x]}}\n", "receivers.a: unknown field 'destination'"),
        ("receivers: {a: {destinations: [x]}}\n", "no destination 'x'"),
        ("receivers: {'a/b': {}}\n", "is not a name"),
        ("receivers: {a: {bearer_token_file: missing}}\n", "cannot read"),
        ("receivers: {a: {repeat_min_interval: soon}}\n", "not a duration"),
        ("global: {timeout: 0s}\nreceivers: {a: {}}\n", "global.timeout: must be above 0"),
        ("global: {max_request_bytes: 10}\nreceivers: {a: {}}\n", "at least 1024"),
        (
            "global: {history_retention: 1h, retry: {max_age: 2h}}\n"
            "receivers: {a: {destinations: [d]}}\ndestinations: {d: {url: 'http://x'}}\n",
            "history_retention: must be longer than every retry.max_age",
        ),
        (
            "global: {retry: {initial_backoff: 1m, max_backoff: 1s}}\nreceivers: {a: {}}\n",
            "max_backoff is below initial_backoff",
        ),
        (
            "receivers: {a: {}}\ndestinations: {d: {url: 'http://x', url_file: slack.url}}\n",
            "set one of url and url_file",
        ),
        ("receivers: {a: {}}\ndestinations: {d: {}}\n", "set one of url and url_file"),
        ("receivers: {a: {}}\ndestinations: {d: {url: 'ftp://x'}}\n", "not an http"),
        (
            "receivers: {a: {}}\n"
            "destinations: {d: {url: 'http://x', headers: {Authorization: x}}}\n",
            "credentials go in files",
        ),
        (
            "receivers: {a: {}}\n"
            "destinations: {d: {url: 'http://x', headers: {Content-Length: 1}}}\n",
            "set by the relay itself",
        ),
        (
            "receivers: {a: {}}\ndestinations: {d: {url: 'http://x', hmac: {header: X}}}\n",
            "hmac.key_file: missing",
        ),
        (
            "receivers: {a: {}}\ndestinations: {d: {url: 'http://x', bearer_token_file: token,"
            " basic_auth: {username: u, password_file: password}}}\n",
            "one of basic_auth, bearer_token_file",
        ),
        (
            "receivers: {a: {}}\n"
            "destinations: {d: {url: 'http://x', tls_config: {ca_file: nope}}}\n",
            "tls_config: cannot load",
        ),
        (
            "receivers: {a: {}}\ndestinations: {d: {url: 'http://x',"
            " basic_auth: {username: 'ops:relay', password_file: password}}}\n",
            "basic_auth.username: must not contain ':'",
        ),
        (
            "receivers: {a: {}}\nhooks: {h: {command: [token], alertnames: [A]}}\n",
            "is not an executable file",
        ),
        (
            "receivers: {a: {}}\nhooks: {h: {command: [restart-bot], alertnames: []}}\n",
            "alertnames: a list of alert names",
        ),
        (
            "receivers: {a: {}}\nhooks: {h: {command: [restart-bot], alertnames: [A],"
            " receivers: [b]}}\n",
            "no receiver 'b'",
        ),
        ("receivers: [\n", "invalid YAML"),
    ],
)
def test_mistakes_are_named(files: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, str(files))
    assert message in str(caught.value)


def test_secrets_are_not_in_error_messages(files: Path) -> None:
    (files / "bad.url").write_text("not-a-url-but-a-secret\n")
    text = "receivers: {a: {}}\ndestinations: {d: {url_file: bad.url}}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, str(files))
    assert "secret" not in str(caught.value)


def test_a_secret_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    secret = SecretFile(str(path))
    assert secret.read() == b"first"
    replacement = tmp_path / "token.new"
    replacement.write_text("second\n")
    replacement.replace(path)  # as Ansible and editors write files: a new inode
    assert secret.read() == b"second"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h30m", 5400), ("7d", 604800), ("1w", 604800)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text, "x") == seconds


@pytest.mark.parametrize("text", ["", "5", "1.5h", "h", "5 m", 5])
def test_parse_duration_refuses(text: object) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text, "x")
