"""Forwarding, as a process against a destination stand-in: headers and signature,
retries with backoff, deduplication, repeats, dead letters, order, hooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import stat
import time
from collections.abc import Callable
from pathlib import Path

from .support import BASE_CONFIG, RelayProcess, Sink, alert, notification, wait_for

HMAC_KEY = b"hmac-key-never-logged"


def test_headers_credentials_and_signature(
    start_relay: Callable[..., RelayProcess], sink: Sink, tmp_path: Path
) -> None:
    (tmp_path / "hmac.key").write_bytes(HMAC_KEY + b"\n")
    (tmp_path / "dest.token").write_text("dest-secret\n")
    config = BASE_CONFIG.format(url=sink.url) + (
        "    headers: {X-Source: alert-relay, X-Team: trading}\n"
        "    bearer_token_file: dest.token\n"
        "    hmac: {key_file: hmac.key, header: X-Signature-256}\n"
    )
    relay = start_relay(config, log_level="debug")
    assert relay.post("critical", notification()).status_code == 200
    wait_for(lambda: sink.count() == 1, 10, "the alert forwarded")
    request = sink.received[0]
    assert request.headers["X-Source"] == "alert-relay" and request.headers["X-Team"] == "trading"
    assert request.headers["Authorization"] == "Bearer dest-secret"
    expected = hmac.new(HMAC_KEY, request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Signature-256"] == f"sha256={expected}"
    assert request.headers["User-Agent"].startswith("alert-relay/")
    # Secrets never reach the log, even at debug level.
    assert "dest-secret" not in relay.log and HMAC_KEY.decode() not in relay.log


def test_retries_with_backoff_until_the_destination_answers(
    relay: RelayProcess, sink: Sink
) -> None:
    sink.fail_next = 4
    started = time.time()
    assert relay.post("critical", notification()).status_code == 200
    wait_for(lambda: sink.count() == 1, 15, "delivery after four failures")
    assert sink.fail_next == 0
    (delivery,) = relay.deliveries()
    assert delivery["state"] == "delivered" and delivery["attempts"] == 5
    assert delivery["lastStatus"] == 200 and delivery["lastError"] is None
    # 50 ms doubling to the 200 ms cap, jittered: at least 25+50+100+100 ms of waiting.
    assert sink.received[0].at - started >= 0.27
    assert relay.metric("alert_relay_forward_attempts_total", result="http_error") == 4
    assert relay.metric("alert_relay_forward_attempts_total", result="success") == 1
    time.sleep(0.5)
    assert sink.count() == 1


def test_a_destination_that_answers_again_gets_its_queue_at_once(
    start_relay: Callable[..., RelayProcess], sink: Sink
) -> None:
    config = BASE_CONFIG.format(url=sink.url).replace(
        "initial_backoff: 50ms, max_backoff: 200ms", "initial_backoff: 20s, max_backoff: 20s"
    )
    relay = start_relay(config)
    sink.fail_next = 1
    assert relay.post("critical", notification(alert())).status_code == 200
    wait_for(lambda: relay.deliveries()[0]["attempts"] == 1, 10, "a failed attempt")
    # The next alert goes through: the first one, 10 to 20 s from its next retry, follows.
    assert relay.post("critical", notification(alert("DiskFull"))).status_code == 200
    wait_for(lambda: sink.count() == 2, 5, "both delivered")
    assert "destination sink answers again" in relay.log


def test_a_timeout_is_a_failure_too(start_relay: Callable[..., RelayProcess], sink: Sink) -> None:
    relay = start_relay(BASE_CONFIG.format(url=sink.url).replace("timeout: 2s", "timeout: 200ms"))
    sink.delay = 0.5
    assert relay.post("critical", notification()).status_code == 200
    wait_for(
        lambda: relay.metric("alert_relay_forward_attempts_total", result="timeout") >= 1,
        10,
        "a timed-out attempt",
    )
    sink.delay = 0
    wait_for(lambda: any(d["state"] == "delivered" for d in relay.deliveries()), 10, "the delivery")


def test_each_alert_is_forwarded_once(relay: RelayProcess, sink: Sink) -> None:
    firing = notification(alert(), alert("DiskFull"))
    for _ in range(3):  # Alertmanager sends the group again (group_interval, a retry)
        assert relay.post("critical", firing).status_code == 200
    wait_for(lambda: sink.count() == 2, 10, "two alerts forwarded")
    resolved = notification(alert(status="resolved"), alert("DiskFull"))
    response = relay.post("critical", resolved)
    assert response.json() == {**response.json(), "queued": 1, "duplicates": 1}
    wait_for(lambda: sink.count() == 3, 10, "the resolution forwarded")
    time.sleep(0.3)
    statuses = sorted(
        (b["alert"]["labels"]["alertname"], b["alert"]["status"]) for b in sink.bodies()
    )
    assert statuses == [
        ("DiskFull", "firing"),
        ("TradingBotDown", "firing"),
        ("TradingBotDown", "resolved"),
    ]
    states = [d["state"] for d in relay.deliveries()]
    assert states.count("duplicate") == 5 and states.count("delivered") == 3
    duplicate = next(d for d in relay.deliveries() if d["state"] == "duplicate")
    assert duplicate["duplicateOf"] in {d["id"] for d in relay.deliveries()}
    assert relay.metric("alert_relay_deduplicated_total", target="sink") == 5
    # A new firing of the same alert (a new startsAt) is forwarded again.
    again = notification(alert(starts_at="2024-05-02T10:00:00Z"))
    assert relay.post("critical", again).json()["queued"] == 1
    wait_for(lambda: sink.count() == 4, 10, "the new firing forwarded")


def test_repeats_are_forwarded_when_set(
    start_relay: Callable[..., RelayProcess], sink: Sink
) -> None:
    config = BASE_CONFIG.format(url=sink.url).replace(
        "    bearer_token_file: token\n",
        "    bearer_token_file: token\n    forward_repeats: true\n    repeat_min_interval: 1s\n",
    )
    relay = start_relay(config)
    assert relay.post("critical", notification()).json()["queued"] == 1
    wait_for(lambda: sink.count() == 1, 10, "the first forward")
    # Sooner than repeat_min_interval: a resend or a retry of Alertmanager's, not a repeat.
    assert relay.post("critical", notification()).json()["queued"] == 0
    time.sleep(1.1)
    assert relay.post("critical", notification()).json()["queued"] == 1
    wait_for(lambda: sink.count() == 2, 10, "the repeat forwarded")


def test_a_resolution_never_overtakes_its_firing(relay: RelayProcess, sink: Sink) -> None:
    sink.fail_next = 3
    assert relay.post("critical", notification(alert())).status_code == 200
    assert relay.post("critical", notification(alert(status="resolved"))).status_code == 200
    wait_for(lambda: sink.count() == 2, 10, "both forwarded")
    assert [b["alert"]["status"] for b in sink.bodies()] == ["firing", "resolved"]


def test_dead_letters_after_max_age(start_relay: Callable[..., RelayProcess], sink: Sink) -> None:
    config = BASE_CONFIG.format(url=sink.url).replace("max_age: 30s", "max_age: 1s")
    relay = start_relay(config)
    sink.fail_next = 1000
    sink.fail_status = 500
    assert relay.post("critical", notification()).status_code == 200
    wait_for(
        lambda: relay.metric("alert_relay_dead_letters_total", destination="sink") == 1,
        10,
        "a dead letter",
    )
    (delivery,) = relay.deliveries()
    assert delivery["state"] == "dead" and delivery["lastStatus"] == 500
    assert delivery["attempts"] >= 5  # 50 ms doubling to 200 ms over a second
    letters = relay.get("/api/v1/dead-letters").json()["data"]["deadLetters"]
    assert len(letters) == 1 and letters[0]["target"] == "sink"
    assert "HTTP 500" in letters[0]["reason"]
    assert letters[0]["body"]["alert"]["labels"]["alertname"] == "TradingBotDown"
    assert "dead letter: alert TradingBotDown" in relay.log
    assert relay.metric("alert_relay_queue_depth", target="sink") == 0


def _hook(tmp_path: Path, name: str, script: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def test_hooks_get_the_alert_on_stdin_with_a_bare_environment(
    start_relay: Callable[..., RelayProcess], sink: Sink, tmp_path: Path
) -> None:
    out = tmp_path / "hook-out"
    out.mkdir()
    _hook(tmp_path, "record", f'cat > {out}/stdin.$$\nenv > {out}/env.$$\necho recorded "$1"\n')
    _hook(tmp_path, "slow", "sleep 30\n")
    _hook(tmp_path, "fails", "echo cannot >&2\nexit 3\n")
    config = BASE_CONFIG.format(url=sink.url) + (
        "hooks:\n"
        "  record: {command: [record, first-arg], alertnames: [TradingBotDown]}\n"
        "  slow: {command: [slow], alertnames: [TradingBotDown], timeout: 300ms,"
        " send_resolved: false}\n"
        "  fails: {command: [fails], alertnames: [DiskFull], max_attempts: 2}\n"
    )
    relay = start_relay(config)
    response = relay.post("critical", notification(alert(), alert("DiskFull")))
    assert response.json()["queued"] == 5  # two to the sink, three hook runs
    wait_for(
        lambda: all(d["state"] not in ("pending", "running") for d in relay.deliveries()),
        15,
        "every hook done",
    )
    by_target = {d["target"]: d for d in relay.deliveries()}
    recorded = by_target["hook:record"]
    assert recorded["state"] == "delivered" and recorded["lastStatus"] == 0
    assert recorded["output"] == "recorded first-arg\n"
    (stdin,) = out.glob("stdin.*")
    document = json.loads(stdin.read_text())
    assert document["alert"]["labels"]["alertname"] == "TradingBotDown"
    assert document["receiver"] == "critical"
    (env,) = out.glob("env.*")
    variables = dict(line.split("=", 1) for line in env.read_text().splitlines() if "=" in line)
    assert variables["ALERT_RELAY_ALERTNAME"] == "TradingBotDown"
    assert variables["ALERT_RELAY_STATUS"] == "firing"
    assert variables["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert "PYTHONPATH" not in variables and "HOME" not in variables  # nothing of the relay's
    slow = by_target["hook:slow"]
    assert slow["state"] == "failed" and "killed after 0.3 s" in slow["lastError"]
    failed = by_target["hook:fails"]
    assert failed["state"] == "failed" and failed["attempts"] == 2
    assert failed["lastStatus"] == 3 and failed["output"] == "cannot\n"
    assert relay.metric("alert_relay_hook_runs_total", hook="fails", result="failed") == 2
    assert relay.metric("alert_relay_hook_runs_total", hook="slow", result="timeout") == 1
    assert relay.metric("alert_relay_hooks_failed_total", hook="fails") == 1
    # Hooks are deduplicated like destinations; slow does not run for resolutions.
    resolved = notification(alert(status="resolved"))
    assert relay.post("critical", notification(alert())).json()["queued"] == 0
    assert relay.post("critical", resolved).json()["queued"] == 2  # the sink and record


def test_an_alert_still_firing_is_queued_again_after_its_delivery_died(
    start_relay: Callable[..., RelayProcess], sink: Sink, tmp_path: Path
) -> None:
    _hook(tmp_path, "fails", "exit 3\n")
    config = BASE_CONFIG.format(url=sink.url).replace("max_age: 30s", "max_age: 1s")
    config = config.replace(
        "    bearer_token_file: token\n",
        "    bearer_token_file: token\n    repeat_min_interval: 3s\n",  # forward_repeats: false
    )
    config += "hooks:\n  fails: {command: [fails], alertnames: [DiskFull]}\n"
    relay = start_relay(config)
    sink.fail_next = 1000
    firing = notification(alert(), alert("DiskFull"))
    queued_at = time.monotonic()
    assert relay.post("critical", firing).json()["queued"] == 3  # two to the sink, one hook
    wait_for(
        lambda: relay.metric("alert_relay_hooks_failed_total", hook="fails") == 1, 3, "the hook"
    )
    # Sooner than repeat_min_interval (a resend, a retry): duplicates, the failed hook's too.
    assert relay.post("critical", firing).json()["queued"] == 0
    wait_for(
        lambda: relay.metric("alert_relay_dead_letters_total", destination="sink") == 2,
        10,
        "two dead letters",
    )
    sink.fail_next = 0
    time.sleep(max(0.0, queued_at + 3.1 - time.monotonic()))
    # Alertmanager's reminder (repeat_interval): the alerts still fire and never reached
    # the sink, nor the hook its end: queued again, though repeats are not forwarded.
    queued_at = time.monotonic()
    assert relay.post("critical", firing).json()["queued"] == 3
    wait_for(lambda: sink.count() == 2, 10, "both alerts delivered")
    wait_for(
        lambda: relay.metric("alert_relay_hooks_failed_total", hook="fails") == 2, 10, "the hook"
    )
    # Delivered now: the next reminder is a duplicate again (forward_repeats is false).
    time.sleep(max(0.0, queued_at + 3.1 - time.monotonic()))
    response = relay.post("critical", firing).json()
    assert response["queued"] == 1 and response["duplicates"] == 2  # the failed hook again
    time.sleep(0.3)
    assert sink.count() == 2


def test_a_request_that_cannot_be_built_backs_off_and_dies_at_max_age(
    start_relay: Callable[..., RelayProcess], sink: Sink, tmp_path: Path
) -> None:
    # "€" is not Latin-1: basic auth cannot carry it (aiohttp raises ValueError).
    (tmp_path / "password").write_text("pass€word\n")
    config = BASE_CONFIG.format(url=sink.url).replace("max_age: 30s", "max_age: 1s")
    config += "    basic_auth: {username: relay, password_file: password}\n"
    relay = start_relay(config)
    assert relay.post("critical", notification()).status_code == 200
    wait_for(
        lambda: relay.metric("alert_relay_dead_letters_total", destination="sink") == 1,
        10,
        "a dead letter at max_age",
    )
    # Retried with the backoff (50 ms doubling to 200 ms) for a second, like any failure
    # (not once every 30 s, past max_age).
    assert relay.metric("alert_relay_forward_attempts_total", result="error") >= 3
    (letter,) = relay.get("/api/v1/dead-letters").json()["data"]["deadLetters"]
    assert "cannot build the request: UnicodeEncodeError" in letter["reason"]
    assert "pass€word" not in relay.log and "Traceback" not in relay.log
    assert sink.count() == 0
