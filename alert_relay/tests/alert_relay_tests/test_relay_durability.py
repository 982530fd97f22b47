"""What is kept and for how long: the history API, retention, ids, the database's schema
migration, metrics. (kill -9 and other faults: test_relay_faults.py.)"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from .support import (
    BASE_CONFIG,
    RelayProcess,
    Sink,
    alert,
    assert_promtool_clean,
    notification,
    wait_for,
)


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


def test_ids_are_never_given_twice_even_after_pruning_emptied_the_tables(
    start_relay: Callable[..., RelayProcess], sink: Sink
) -> None:
    config = BASE_CONFIG.format(url=sink.url).replace("max_age: 30s", "max_age: 500ms")
    config = config.replace(
        "history_retention: 1h", "history_retention: 1s\n  prune_interval: 200ms"
    )
    relay = start_relay(config)
    first = relay.post("critical", notification(alert())).json()["notificationId"]
    wait_for(lambda: sink.count() == 1, 10, "the first forward")
    wait_for(lambda: relay.history() == [], 10, "every table emptied by pruning")
    second = relay.post("critical", notification(alert("DiskFull"))).json()["notificationId"]
    wait_for(lambda: sink.count() == 2, 10, "the second forward")
    # The delivery id is the Idempotency-Key's tail: a repeated one makes a destination
    # drop a new alert as one it has seen.
    keys = [r.headers["Idempotency-Key"] for r in sink.received]
    instance = keys[0].rsplit("-", 1)[0]
    assert [key.rsplit("-", 1)[0] for key in keys] == [instance, instance]
    assert int(keys[1].rsplit("-", 1)[1]) > int(keys[0].rsplit("-", 1)[1])
    assert second > first


# The schema of version 1 of the relay, as it created databases.
SCHEMA_VERSION_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE notifications (
  id INTEGER PRIMARY KEY,
  receiver TEXT NOT NULL,
  received_at REAL NOT NULL,
  status TEXT NOT NULL,
  group_key TEXT NOT NULL,
  context TEXT NOT NULL
);
CREATE INDEX notifications_received ON notifications (received_at);
CREATE TABLE alerts (
  id INTEGER PRIMARY KEY,
  notification_id INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
  alertname TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  status TEXT NOT NULL,
  starts_at TEXT NOT NULL,
  ends_at TEXT NOT NULL,
  alert TEXT NOT NULL
);
CREATE INDEX alerts_notification ON alerts (notification_id);
CREATE TABLE deliveries (
  id INTEGER PRIMARY KEY,
  alert_id INTEGER NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
  target TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  state TEXT NOT NULL,
  duplicate_of INTEGER,
  attempts INTEGER NOT NULL DEFAULT 0,
  created_at REAL NOT NULL,
  next_attempt_at REAL,
  last_attempt_at REAL,
  done_at REAL,
  last_status INTEGER,
  last_error TEXT,
  output TEXT
);
CREATE INDEX deliveries_alert ON deliveries (alert_id);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_queue ON deliveries (target, created_at) WHERE state = 'pending';
CREATE INDEX deliveries_order ON deliveries (target, fingerprint, id) WHERE state = 'pending';
CREATE INDEX deliveries_running ON deliveries (target) WHERE state = 'running';
CREATE TABLE forwarded_keys (
  target TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  status TEXT NOT NULL,
  starts_at TEXT NOT NULL,
  delivery_id INTEGER NOT NULL,
  queued_at REAL NOT NULL,
  last_seen_at REAL NOT NULL,
  PRIMARY KEY (target, fingerprint, status, starts_at)
) WITHOUT ROWID;
CREATE INDEX forwarded_keys_seen ON forwarded_keys (last_seen_at);
CREATE TABLE dead_letters (
  delivery_id INTEGER PRIMARY KEY REFERENCES deliveries (id) ON DELETE CASCADE,
  target TEXT NOT NULL,
  died_at REAL NOT NULL,
  reason TEXT NOT NULL,
  body TEXT NOT NULL
);
CREATE INDEX dead_letters_died ON dead_letters (died_at);
"""


def _version_1_database(path: Path, now: float) -> None:
    """A database written by version 1: a delivered alert, a pending one, and a forwarded
    key whose delivery (id 7) was pruned."""
    path.parent.mkdir()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(SCHEMA_VERSION_1)
    context = json.dumps({"groupLabels": {}, "commonLabels": {}, "externalURL": "http://am"})
    rows = [
        (1, "TradingBotDown", "0000000000000001", "delivered", None),
        (2, "DiskFull", "0000000000000002", "pending", now),
    ]
    for number, name, fingerprint, state, next_attempt_at in rows:
        document = alert(name, instance=f"v1-{number}")
        document["fingerprint"] = fingerprint
        conn.execute(
            "INSERT INTO notifications VALUES (?, 'critical', ?, 'firing', 'g', ?)",
            (number, now - 60, context),
        )
        conn.execute(
            "INSERT INTO alerts VALUES (?, ?, ?, ?, 'firing', ?, ?, ?)",
            (
                number,
                number,
                name,
                fingerprint,
                document["startsAt"],
                document["endsAt"],
                json.dumps(document),
            ),
        )
        conn.execute(
            "INSERT INTO deliveries (id, alert_id, target, fingerprint, state, attempts,"
            " created_at, next_attempt_at) VALUES (?, ?, 'sink', ?, ?, 0, ?, ?)",
            (number, number, fingerprint, state, now - 60, next_attempt_at),
        )
    conn.execute(
        "INSERT INTO forwarded_keys VALUES ('sink', 'ffffffffffffffff', 'firing', 'x', 7, ?, ?)",
        (now - 60, now - 60),
    )
    conn.execute("INSERT INTO meta VALUES ('instance_id', 'feedfacecafebeef')")
    conn.execute("PRAGMA user_version = 1")
    conn.close()


def test_a_version_1_database_is_migrated_with_its_data(
    start_relay: Callable[..., RelayProcess], sink: Sink, tmp_path: Path
) -> None:
    _version_1_database(tmp_path / "data" / "relay.db", time.time())
    relay = start_relay(BASE_CONFIG.format(url=sink.url))
    assert "migrated from schema version 1 to 2" in relay.log
    # Its pending alert is delivered, under the idempotency key it had.
    wait_for(lambda: sink.count() == 1, 10, "the queued alert delivered")
    assert sink.received[0].headers["Idempotency-Key"] == "feedfacecafebeef-2"
    history = relay.history()
    assert [n["alerts"][0]["labels"]["instance"] for n in history] == ["v1-1", "v1-2"]
    assert [n["alerts"][0]["deliveries"][0]["state"] for n in history] == ["delivered"] * 2
    # New ids start above every id version 1 gave, the pruned delivery's included.
    assert relay.post("critical", notification(alert("New"))).json()["notificationId"] == 3
    wait_for(lambda: sink.count() == 2, 10, "the new alert delivered")
    assert sink.received[1].headers["Idempotency-Key"] == "feedfacecafebeef-8"
    relay.stop()
    conn = sqlite3.connect(tmp_path / "data" / "relay.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        tables = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    finally:
        conn.close()
    for table in ("notifications", "alerts", "deliveries"):
        assert "AUTOINCREMENT" in tables[table]
