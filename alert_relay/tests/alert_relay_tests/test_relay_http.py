"""The relay's HTTP side, as a process: bad input, bearer tokens, basic auth, TLS,
reloads, health."""

from __future__ import annotations

import ast
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
import requests

from .support import (
    BASE_CONFIG,
    TOKEN,
    RelayProcess,
    Sink,
    alert,
    make_certs,
    notification,
    run_relay,
    wait_for,
)


def test_accepts_stores_and_forwards(relay: RelayProcess, sink: Sink) -> None:
    response = relay.post("critical", notification(alert(), alert("DiskFull")))
    assert response.status_code == 200, response.text
    assert response.json()["queued"] == 2
    wait_for(lambda: sink.count() == 2, 10, "two alerts forwarded")
    by_name = {b["alert"]["labels"]["alertname"]: b for b in sink.bodies()}
    forwarded = by_name["TradingBotDown"]
    sent = alert()
    assert forwarded["alert"]["labels"] == sent["labels"]
    assert forwarded["alert"]["annotations"] == sent["annotations"]
    assert forwarded["alert"]["startsAt"] == sent["startsAt"]
    assert forwarded["receiver"] == "critical"
    assert forwarded["alertmanagerReceiver"] == "critical-alerts"
    assert forwarded["externalURL"] == "http://alertmanager:9093"
    request = sink.received[0]
    assert request.path == "/alerts"
    assert request.headers["Content-Type"] == "application/json"
    keys = {r.headers["Idempotency-Key"] for r in sink.received}
    assert len(keys) == 2


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "not JSON"),
        (json.dumps({**notification(), "version": "3"}).encode(), "version"),
        (json.dumps({**notification(), "alerts": []}).encode(), "alerts"),
        (json.dumps(notification({**alert(), "startsAt": "now"})).encode(), "startsAt"),
    ],
)
def test_not_a_notification_is_400_with_the_reason(
    relay: RelayProcess, body: bytes, reason: str
) -> None:
    response = relay.post("critical", body)
    assert response.status_code == 400
    assert reason in response.text


def test_bad_requests(relay: RelayProcess, sink: Sink) -> None:
    unknown = relay.post("nobody", notification())
    assert unknown.status_code == 404 and "unknown receiver" in unknown.text
    assert relay.post("critical", notification(), token=None).status_code == 401
    wrong = relay.post("critical", notification(), token="wrong")
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    basic = relay.post(
        "critical", notification(), token=None, headers={"Authorization": f"Basic {TOKEN}"}
    )
    assert basic.status_code == 401
    # A token is checked before the body is read: a stranger cannot make it read 1 MiB.
    too_large = relay.post("critical", b"x" * (2 << 20))
    assert too_large.status_code == 413
    # Without Content-Length (chunked): counted while read.
    chunked = relay.post("critical", iter([b"x" * 65536] * 20))
    assert chunked.status_code == 413
    assert relay.get("/webhooks/critical").status_code == 405
    assert relay.metric("alert_relay_notifications_received_total", outcome="unknown_receiver") == 1
    assert relay.metric("alert_relay_notifications_received_total", outcome="unauthorized") == 3
    assert relay.metric("alert_relay_notifications_received_total", outcome="too_large") == 2
    assert relay.history() == [] and sink.count() == 0


def test_the_size_limit_is_a_setting(start_relay: Callable[..., RelayProcess], sink: Sink) -> None:
    config = BASE_CONFIG.format(url=sink.url).replace(
        "global:", "global:\n  max_request_bytes: 2048"
    )
    relay = start_relay(config)
    small = notification()
    assert relay.post("critical", small).status_code == 200
    big = notification(alert(description="x" * 4000))
    assert relay.post("critical", big).status_code == 413


def test_tokens_rotate_without_a_reload(relay: RelayProcess, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(f"{TOKEN}\nnew-token\n")  # both during the rotation
    assert relay.post("critical", notification(), token="new-token").status_code == 200
    assert relay.post("critical", notification(), token=TOKEN).status_code == 200
    token.write_text("new-token\n")
    assert relay.post("critical", notification(), token=TOKEN).status_code == 401
    assert TOKEN not in relay.log and "new-token" not in relay.log


def _web_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(text)
    return path


HASH = bcrypt.hashpw(b"scrape-pw", bcrypt.gensalt(rounds=4)).decode()


def test_basic_auth_from_the_web_config(
    start_relay: Callable[..., RelayProcess], sink: Sink, tmp_path: Path
) -> None:
    web = _web_config(tmp_path, f"basic_auth_users:\n  prometheus: {HASH}\n")
    config = BASE_CONFIG.format(url=sink.url).replace(
        "receivers:\n", "receivers:\n  open:\n    destinations: [sink]\n", 1
    )
    relay = start_relay(config, f"--web.config.file={web}")
    assert relay.get("/metrics").status_code == 401
    assert relay.get("/metrics", auth=("prometheus", "wrong")).status_code == 401
    assert relay.get("/metrics", auth=("prometheus", "scrape-pw")).status_code == 200
    assert relay.get("/api/v1/history").status_code == 401
    assert relay.get("/-/healthy", auth=("prometheus", "scrape-pw")).status_code == 200
    # The webhook of a receiver with a token takes the token (Alertmanager sends one
    # Authorization header): no basic auth there.
    assert relay.post("critical", notification()).status_code == 200
    # A receiver without a token falls back to basic auth.
    assert relay.post("open", notification(), token=None).status_code == 401
    response = relay.post("open", notification(), token=None, auth=("prometheus", "scrape-pw"))
    assert response.status_code == 200


# Clients that send wrong passwords as fast as they are answered, until stdin closes; then
# print how the relay answered. A process of its own: its threads must not slow the test's
# own requests (they share nothing, not even the GIL).
FLOOD = """
import collections, sys, threading, requests
url, clients = sys.argv[1], int(sys.argv[2])
stop = threading.Event()
answers = collections.Counter()
def flood(n):
    with requests.Session() as session:
        tries = 0
        while not stop.is_set():
            tries += 1
            wrong = ("prometheus", f"wrong-{n}-{tries}")
            answers[session.get(url, auth=wrong, timeout=60).status_code] += 1
threads = [threading.Thread(target=flood, args=(n,)) for n in range(clients)]
for thread in threads:
    thread.start()
sys.stdin.read()
stop.set()
for thread in threads:
    thread.join()
print(dict(answers))
"""


def test_a_flood_of_wrong_passwords_stalls_neither_metrics_nor_webhooks(
    start_relay: Callable[..., RelayProcess], sink: Sink, tmp_path: Path
) -> None:
    # exporter-toolkit's cost, 10: tens of milliseconds a check, by design.
    hashed = bcrypt.hashpw(b"scrape-pw", bcrypt.gensalt(rounds=10)).decode()
    web = _web_config(tmp_path, f"basic_auth_users:\n  prometheus: {hashed}\n")
    config = BASE_CONFIG.format(url=sink.url).replace(
        "receivers:\n", "receivers:\n  open:\n    destinations: [sink]\n", 1
    )
    relay = start_relay(config, f"--web.config.file={web}")
    good = ("prometheus", "scrape-pw")
    assert relay.get("/metrics", auth=good).status_code == 200  # checked, then remembered
    flood = subprocess.Popen(
        [sys.executable, "-c", FLOOD, relay.url + "/metrics", "24"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1)  # the flood builds up
        for n in range(5):
            started = time.monotonic()
            assert relay.get("/metrics", auth=good).status_code == 200
            assert time.monotonic() - started < 1.0
            started = time.monotonic()
            body = notification(alert(instance=f"during-flood-{n}"))
            assert relay.post("open", body, token=None, auth=good).status_code == 200
            assert time.monotonic() - started < 1.0
    finally:
        answers, _ = flood.communicate(timeout=60)
    refused = ast.literal_eval(answers)
    assert set(refused) <= {401, 503} and refused[401] > 0, refused
    checks = "alert_relay_basic_auth_checks_total"
    assert relay.metric(checks, auth=good, result="denied") > 0
    assert relay.metric(checks, auth=good, result="cached") >= 10
    wait_for(lambda: sink.count() == 5, 10, "the webhooks' alerts forwarded")


def test_tls_client_certificates_and_a_certificate_swap(
    start_relay: Callable[..., RelayProcess], sink: Sink, tmp_path: Path
) -> None:
    certs = make_certs(tmp_path / "tls")
    web = _web_config(
        tmp_path,
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {certs.ca}\n",
    )
    relay = start_relay(BASE_CONFIG.format(url=sink.url), f"--web.config.file={web}")
    assert relay.url.startswith("https://")
    client = (str(certs.client_cert), str(certs.client_key))
    ok = relay.post("critical", notification(), verify=str(certs.ca), cert=client)
    assert ok.status_code == 200
    with pytest.raises(requests.exceptions.RequestException):
        relay.post("critical", notification(), verify=str(certs.ca))  # no client certificate
    with pytest.raises(requests.exceptions.SSLError):
        relay.post("critical", notification(), cert=client)  # the relay's CA is not trusted

    # New certificates from another CA, written in place: the next connection gets them.
    renewed = make_certs(tmp_path / "renewed", prefix="renewed-")
    for source, target in (
        (renewed.server_cert, certs.server_cert),
        (renewed.server_key, certs.server_key),
        (renewed.ca, certs.ca),
    ):
        target.write_bytes(source.read_bytes())
    new_client = (str(renewed.client_cert), str(renewed.client_key))

    def accepted() -> bool:
        try:
            response = relay.post("critical", notification(), verify=str(certs.ca), cert=new_client)
        except requests.exceptions.RequestException:
            return False
        return response.status_code == 200

    wait_for(accepted, 10, "the renewed certificates in use")
    assert "reloaded --web.config.file" in relay.log
    metrics = relay.get("/metrics", verify=str(certs.ca), cert=new_client).text
    assert "alert_relay_web_config_last_reload_successful 1.0" in metrics


def test_reload_on_sighup_and_on_post(start_relay: Callable[..., RelayProcess], sink: Sink) -> None:
    relay = start_relay(BASE_CONFIG.format(url=sink.url))
    assert relay.post("second", notification()).status_code == 404
    relay.config_path.write_text(
        BASE_CONFIG.format(url=sink.url).replace(
            "receivers:\n", "receivers:\n  second:\n    destinations: [sink]\n", 1
        )
    )
    relay.signal(signal.SIGHUP)
    wait_for(lambda: "reloaded --config.file" in relay.log, 10, "the reload")
    assert relay.post("second", notification(), token=None).status_code == 200
    assert relay.metric("alert_relay_config_last_reload_successful") == 1

    relay.config_path.write_text("receivers: {}\n")
    failed = requests.post(relay.url + "/-/reload", timeout=10)
    assert failed.status_code == 500 and "none configured" in failed.text
    assert relay.metric("alert_relay_config_last_reload_successful") == 0
    assert relay.post("second", notification(), token=None).status_code == 200  # still in force
    assert requests.get(relay.url + "/-/reload", timeout=10).status_code == 405

    relay.config_path.write_text(BASE_CONFIG.format(url=sink.url))
    assert requests.put(relay.url + "/-/reload", timeout=10).status_code == 200
    assert relay.post("second", notification(), token=None).status_code == 404


def test_health_readiness_and_a_graceful_stop(relay: RelayProcess) -> None:
    assert relay.get("/-/healthy").status_code == 200
    assert relay.get("/-/ready").status_code == 200
    landing = relay.get("/")
    assert landing.status_code == 200 and "/webhooks/critical" in landing.text
    assert landing.headers["Server"] == "alert-relay"
    assert relay.get("/nothing").status_code == 404
    assert relay.stop() == 0
    assert "stopped" in relay.log


def test_config_check(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t\n")
    good = run_relay(tmp_path, BASE_CONFIG.format(url="http://127.0.0.1:9"), "--config.check")
    assert good.returncode == 0 and "OK (1 receivers, 1 destinations, 0 hooks)" in good.stdout
    bad = run_relay(tmp_path, "receivers: {a: {bearer_token_file: nope}}\n", "--config.check")
    assert bad.returncode == 2 and "receivers.a.bearer_token_file: cannot read" in bad.stderr
    assert not (tmp_path / "data").exists()  # a check touches no database


@pytest.mark.parametrize(
    ("config", "flags", "code", "message"),
    [
        ("receivers: {}\n", (), 2, "receivers: none configured"),
        ("receivers: {a: {}}\n", ("--web.config.file=/nonexistent.yml",), 2, "cannot read"),
        ("receivers: {a: {}}\n", ("--web.listen-address=nowhere",), 1, "cannot listen"),
    ],
)
def test_refuses_to_start(
    tmp_path: Path, config: str, flags: tuple[str, ...], code: int, message: str
) -> None:
    result = run_relay(tmp_path, config, *flags)
    assert result.returncode == code
    assert message in result.stderr
