"""What survives: kill -9 with a full queue, the history API, retention, metrics."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

from .support import (
    BASE_CONFIG,
    RelayProcess,
    Sink,
    alert,
    assert_promtool_clean,
    notification,
    start_sink,
    wait_for,
)


def test_kill_9_with_a_full_queue_loses_nothing_and_doubles_nothing(
    start_relay: Callable[..., RelayProcess], sink: Sink
) -> None:
    port = sink.server.server_address[1]
    url = sink.url
    sink.close()  # the destination is down
    relay = start_relay(BASE_CONFIG.format(url=url))
    sent = set()
    for n in range(60):
        first, second = alert(instance=f"bot-{n}"), alert("DiskFull", instance=f"bot-{n}")
        assert relay.post("critical", notification(first, second)).status_code == 200
        sent |= {("TradingBotDown", f"bot-{n}"), ("DiskFull", f"bot-{n}")}
    wait_for(
        lambda: relay.metric("alert_relay_forward_attempts_total", result="connection_error") > 0,
        10,
        "failed attempts",
    )
    assert relay.metric("alert_relay_queue_depth", target="sink") == 120
    relay.kill()

    back = start_sink(port)  # the destination comes back while the relay is down
    try:
        relay.restart()
        wait_for(lambda: back.count() >= 120, 20, "the queue delivered")
        time.sleep(0.5)  # anything doubled would arrive now
        received = collections.Counter(
            (b["alert"]["labels"]["alertname"], b["alert"]["labels"]["instance"])
            for b in back.bodies()
        )
        assert set(received) == sent
        assert max(received.values()) == 1
        assert relay.metric("alert_relay_queue_depth", target="sink") == 0
        assert relay.metric("alert_relay_oldest_pending_age_seconds", target="sink") == 0
    finally:
        back.close()


def test_history_api(relay: RelayProcess, sink: Sink) -> None:
    before = time.time()
    relay.post("critical", notification(alert()))
    middle = time.time()
    time.sleep(0.01)
    relay.post("critical", notification(alert("DiskFull")))
    wait_for(lambda: sink.count() == 2, 10, "both forwarded")
    every = relay.history()
    assert [n["alerts"][0]["labels"]["alertname"] for n in every] == ["TradingBotDown", "DiskFull"]
    entry = every[0]
    assert entry["receiver"] == "critical" and entry["status"] == "firing"
    assert entry["receivedAt"].endswith("Z")
    item = entry["alerts"][0]
    assert set(item) >= {"labels", "annotations", "fingerprint", "startsAt", "endsAt", "status"}
    wait_for(lambda: relay.history()[0]["alerts"][0]["deliveries"][0]["deliveredAt"], 10, "done")
    (delivery,) = relay.history()[0]["alerts"][0]["deliveries"]
    assert delivery["target"] == "sink" and delivery["state"] == "delivered"
    assert delivery["queuedAt"] <= delivery["deliveredAt"]

    assert len(relay.history(since=before, until=middle)) == 1
    assert len(relay.history(since=middle)) == 1
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before - 60))
    assert len(relay.history(since=iso)) == 2
    assert relay.history(receiver="other") == []
    page = relay.get("/api/v1/history", params={"limit": 1}).json()["data"]
    assert len(page["notifications"]) == 1 and page["next"] == every[0]["id"]
    rest = relay.history(after=page["next"])
    assert [n["id"] for n in rest] == [every[1]["id"]]
    for params in ({"since": "yesterday"}, {"limit": 0}, {"limit": "x"}, {"until": "nan"}):
        bad = relay.get("/api/v1/history", params=params)
        assert bad.status_code == 400 and bad.json()["status"] == "error"


def test_history_older_than_the_retention_is_pruned(
    start_relay: Callable[..., RelayProcess], sink: Sink
) -> None:
    config = BASE_CONFIG.format(url=sink.url).replace("max_age: 30s", "max_age: 500ms")
    config = config.replace(
        "history_retention: 1h", "history_retention: 1s\n  prune_interval: 200ms"
    )
    relay = start_relay(config)
    relay.post("critical", notification())
    wait_for(lambda: sink.count() == 1, 10, "the forward")
    assert len(relay.history()) == 1
    wait_for(lambda: relay.history() == [], 10, "the history pruned")
    assert "pruned 1 notifications" in relay.log
    # Pruned with its forwarded key: the same alert, long after, is forwarded again.
    assert relay.post("critical", notification()).json()["queued"] == 1


def test_metrics_pass_promtool(start_relay: Callable[..., RelayProcess], sink: Sink) -> None:
    config = BASE_CONFIG.format(url=sink.url).replace("max_age: 30s", "max_age: 300ms")
    relay = start_relay(config)
    sink.fail_next = 1
    relay.post("critical", notification())
    relay.post("critical", notification())  # a duplicate
    relay.post("critical", b"{")
    relay.post("critical", notification(), token="wrong")
    relay.post("nobody", notification())
    wait_for(lambda: sink.count() == 1, 10, "the forward")
    sink.fail_next = 100
    relay.post("critical", notification(alert("DiskFull")))
    wait_for(lambda: relay.metric("alert_relay_dead_letters_total") == 1, 10, "a dead letter")
    text = relay.get("/metrics").text
    for name in (
        "alert_relay_notifications_received_total",
        "alert_relay_alerts_received_total",
        "alert_relay_accept_duration_seconds_bucket",
        "alert_relay_forward_attempts_total",
        "alert_relay_forward_duration_seconds_bucket",
        "alert_relay_deduplicated_total",
        "alert_relay_dead_letters_total",
        "alert_relay_queue_depth",
        "alert_relay_oldest_pending_age_seconds",
        "alert_relay_config_last_reload_successful",
        "alert_relay_web_config_last_reload_successful",
        "alert_relay_build_info",
        "process_resident_memory_bytes",
    ):
        assert f"\n{name}" in text, name
    assert_promtool_clean(text)
    openmetrics = relay.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert openmetrics.text.endswith("# EOF\n")
