"""Faults the relay survives, each against a real relay process and a loopback destination.

One test per fault: the relay killed, its data directory full or read-only, the wall
clock jumping, a month of history, a destination down for longer than every retry. Each
checks that what was accepted (200) is not lost, that nothing reaches the destination
twice (by Idempotency-Key and by body), that there is no storm of attempts while it is
broken, and that the relay recovers by itself, without a restart.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .faults import (
    Ext4Image,
    database_figures,
    faketime_env,
    fill,
    small_tmpfs,
    write_history,
)
from .support import (
    BASE_CONFIG,
    RelayProcess,
    Sink,
    alert,
    notification,
    start_sink,
    wait_for,
)

# Attempts per second at the destination while the relay's storage is broken: none are
# needed (nothing can be recorded); a few may be under way when it breaks.
STORM = 5.0


class Poster:
    """Alertmanager's part: posts a notification of one new alert every ``interval`` from
    a thread of its own, tries each again until it is answered 200 (as Alertmanager does
    after a 5xx) or the poster stops, and records what was accepted."""

    def __init__(self, relay: RelayProcess, prefix: str, interval: float = 0.02) -> None:
        self.relay = relay
        self.prefix = prefix
        self.interval = interval
        self.accepted: list[str] = []  # instance labels of the alerts answered 200
        self.answers: collections.Counter[int] = collections.Counter()
        self.notification_ids: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            instance = f"{self.prefix}-{n}"
            while not self._stop.is_set():
                response = self.relay.post("critical", notification(alert(instance=instance)))
                self.answers[response.status_code] += 1
                if response.status_code == 200:
                    self.accepted.append(instance)
                    self.notification_ids.append(response.json()["notificationId"])
                    break
                time.sleep(self.interval)
            n += 1
            time.sleep(self.interval)

    def __enter__(self) -> Poster:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def instances(bodies: list[Any]) -> list[str]:
    return [b["alert"]["labels"]["instance"] for b in bodies]


def post_until(relay: RelayProcess, status: int, prefix: str, tries: int = 500) -> list[str]:
    """Post new alerts until one is answered ``status``; returns those accepted before."""
    accepted = []
    for n in range(tries):
        response = relay.post("critical", notification(alert(instance=f"{prefix}-{n}")))
        if response.status_code == status:
            return accepted
        assert response.status_code == 200, response.text
        accepted.append(f"{prefix}-{n}")
    raise AssertionError(f"no {status} answer after {tries} notifications")


def assert_no_storm_and_a_short_log(
    relay: RelayProcess, sink: Sink, seconds: float, prefix: str
) -> list[str]:
    """While the storage is broken: webhooks are answered 503 (a full disk may still take a
    small commit now and then: those are returned, to be delivered), the destination gets
    next to nothing, the log a few lines, and the failures are counted."""
    lines = len(relay.lines)
    errors = relay.metric("alert_relay_storage_errors_total")
    accepted, refused = [], 0
    started = time.time()
    while time.time() - started < seconds:
        instance = f"{prefix}-{len(accepted)}-{refused}"
        response = relay.post("critical", notification(alert(instance=instance)))
        assert response.status_code in (200, 503), response.text
        if response.status_code == 200:
            accepted.append(instance)
        else:
            refused += 1
        time.sleep(0.1)
    attempts = sink.attempts_between(started, time.time())
    assert attempts <= STORM * seconds, f"{attempts} attempts in {seconds} s: a storm"
    assert refused >= 2 * len(accepted), (refused, accepted)
    new_lines = relay.lines[lines:]
    assert len(new_lines) <= 10, "".join(new_lines)
    assert "Traceback" not in "".join(new_lines)
    assert relay.metric("alert_relay_storage_errors_total") >= errors + refused
    return accepted


def test_kill_9_with_alerts_queued_and_the_destination_down(
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
        lambda: (
            relay.metric("alert_relay_forward_attempts_total", result="connection_error") >= 120
        ),
        10,
        "every alert's first attempt",
    )
    assert relay.metric("alert_relay_queue_depth", target="sink") == 120
    # No storm: while the destination is down, its 120 alerts are retried one probe at a
    # time (50 ms doubling to 200 ms here), not each at its own backoff (600 a second).
    before = relay.metric("alert_relay_forward_attempts_total", result="connection_error")
    time.sleep(2)
    after = relay.metric("alert_relay_forward_attempts_total", result="connection_error")
    assert after - before <= 30, after - before
    relay.kill()

    back = start_sink(port)  # the destination comes back while the relay is down
    try:
        relay.restart()
        wait_for(lambda: back.count() >= 120, 20, "the queue delivered")
        time.sleep(0.5)  # anything doubled would arrive now
        received = collections.Counter(
            (b["alert"]["labels"]["alertname"], b["alert"]["labels"]["instance"])
            for b in back.assert_each_once()
        )
        assert set(received) == sent
        assert relay.metric("alert_relay_queue_depth", target="sink") == 0
        assert relay.metric("alert_relay_oldest_pending_age_seconds", target="sink") == 0
    finally:
        back.close()


def test_data_directory_full(
    start_relay: Callable[..., RelayProcess], sink: Sink, tmp_path: Path
) -> None:
    with small_tmpfs(tmp_path / "data", "2m") as storage:
        relay = start_relay(BASE_CONFIG.format(url=sink.url))
        try:
            accepted: list[str] = []
            for n in range(5):
                assert relay.post("critical", notification(alert(instance=f"up-{n}"))).ok
                accepted.append(f"up-{n}")
            wait_for(lambda: sink.count() == 5, 10, "the first alerts delivered")
            # The destination fails: what comes next is queued and retried.
            sink.fail_next = 10**9
            for n in range(10):
                assert relay.post("critical", notification(alert(instance=f"queued-{n}"))).ok
                accepted.append(f"queued-{n}")
            wait_for(lambda: len(sink.attempts) > 5, 10, "failed attempts")

            filler = fill(storage)
            # Until the write-ahead log must grow, commits may still find room in it.
            accepted += post_until(relay, 503, "full")
            accepted += assert_no_storm_and_a_short_log(relay, sink, 3.0, "while-full")
            assert "storage failing: cannot" in relay.log

            filler.unlink()
            sink.fail_next = 0
            # Recovery, without a restart: new notifications are taken at once...
            for n in range(5):
                assert relay.post("critical", notification(alert(instance=f"after-{n}"))).ok
                accepted.append(f"after-{n}")
            # ... and the queue drains once the relay's next write succeeds.
            wait_for(lambda: sink.count() >= len(accepted), 40, "everything delivered")
            time.sleep(0.5)  # anything doubled would arrive now
            assert sorted(instances(sink.assert_each_once())) == sorted(accepted)
            assert relay.metric("alert_relay_storage_failing") == 0
            assert relay.metric("alert_relay_queue_depth", target="sink") == 0
            assert "storage works again" in relay.log
        finally:
            relay.stop()


def test_data_directory_read_only(
    start_relay: Callable[..., RelayProcess], sink: Sink, tmp_path: Path
) -> None:
    disk = Ext4Image(tmp_path / "data.img", tmp_path / "data")
    relay: RelayProcess | None = None
    try:
        relay = start_relay(BASE_CONFIG.format(url=sink.url))
        accepted = []
        for n in range(5):
            assert relay.post("critical", notification(alert(instance=f"up-{n}"))).ok
            accepted.append(f"up-{n}")
        wait_for(lambda: sink.count() == 5, 10, "the first alerts delivered")
        # A slow destination: attempts are under way when the disk breaks; they succeed,
        # and their success cannot be recorded.
        sink.delay = 1.0
        for n in range(8):
            assert relay.post("critical", notification(alert(instance=f"slow-{n}"))).ok
            accepted.append(f"slow-{n}")
        wait_for(lambda: len(sink.attempts) > 5, 10, "attempts under way")
        disk.abort()
        time.sleep(1.5)  # the attempts under way end, their outcomes not written
        sink.delay = 0
        assert assert_no_storm_and_a_short_log(relay, sink, 3.0, "while-read-only") == []
        assert relay.metric("alert_relay_storage_failing") == 1

        # The operator's repair, the relay running: it must have let go of its files.
        disk.repair()
        wait_for(
            lambda: relay.post("critical", notification(alert(instance="after-0"))).ok,
            10,
            "a notification accepted after the repair",
        )
        accepted.append("after-0")
        wait_for(lambda: sink.count() >= len(accepted), 40, "everything delivered")
        time.sleep(0.5)  # anything doubled would arrive now
        assert sorted(instances(sink.assert_each_once())) == sorted(accepted)
        assert relay.metric("alert_relay_storage_failing") == 0
        assert relay.metric("alert_relay_queue_depth", target="sink") == 0
    finally:
        if relay is not None:
            relay.stop()
        disk.close()


CLOCK_CONFIG = """
global:
  retry: {{initial_backoff: {backoff}, max_backoff: {max_backoff}, max_age: 10m}}
  history_retention: 1h
receivers:
  critical:
    bearer_token_file: token
    destinations: [sink]
destinations:
  sink:
    url: {url}/alerts
    timeout: 2s
"""


def _queue_for_a_down_destination(relay: RelayProcess, count: int) -> list[str]:
    queued = []
    for n in range(count):
        assert relay.post("critical", notification(alert(instance=f"bot-{n}"))).ok
        queued.append(f"bot-{n}")
    wait_for(
        lambda: relay.metric("alert_relay_forward_attempts_total", result="http_error") >= count,
        20,
        "every alert's first attempt",
    )
    return queued


def test_the_clock_jumps_forward_a_day(
    start_relay: Callable[..., RelayProcess], sink: Sink, tmp_path: Path
) -> None:
    clock = tmp_path / "faketime"
    config = CLOCK_CONFIG.format(url=sink.url, backoff="100ms", max_backoff="1s")
    relay = start_relay(config, env=faketime_env(clock))
    sink.fail_next = 10**9
    queued = _queue_for_a_down_destination(relay, 20)
    clock.write_text("+1d\n")
    time.sleep(3)  # seen within a second; then each failed retry would make dead letters
    assert relay.metric("alert_relay_dead_letters_total", destination="sink") == 0
    wait_for(lambda: "the wall clock jumped forward by 86400 s" in relay.log, 20, "the jump")
    time.sleep(1)
    assert relay.metric("alert_relay_dead_letters_total", destination="sink") == 0
    assert relay.metric("alert_relay_queue_depth", target="sink") == 20
    assert relay.metric("alert_relay_oldest_pending_age_seconds", target="sink") < 60
    assert "moved 20 queued deliveries by +86400 s" in relay.log
    sink.fail_next = 0
    wait_for(lambda: sink.count() == 20, 20, "the queue delivered")
    time.sleep(0.5)
    assert sorted(instances(sink.assert_each_once())) == sorted(queued)


def test_the_clock_jumps_back_a_day(
    start_relay: Callable[..., RelayProcess], sink: Sink, tmp_path: Path
) -> None:
    clock = tmp_path / "faketime"
    # Retries 2.5 to 5 s apart: when the clock jumps, none is under way.
    config = CLOCK_CONFIG.format(url=sink.url, backoff="5s", max_backoff="5s")
    relay = start_relay(config, env=faketime_env(clock))
    sink.fail_next = 10**9
    queued = _queue_for_a_down_destination(relay, 20)
    clock.write_text("-1d\n")
    time.sleep(2)  # seen within a second
    sink.fail_next = 0
    # The retries were due within 5 s: they must not wait a day.
    wait_for(lambda: sink.count() == 20, 20, "the queue delivered")
    assert "the wall clock jumped back by 86400 s" in relay.log
    time.sleep(0.5)
    assert sorted(instances(sink.assert_each_once())) == sorted(queued)
    assert relay.metric("alert_relay_dead_letters_total", destination="sink") == 0


def test_a_month_of_history(
    start_relay: Callable[..., RelayProcess], sink: Sink, tmp_path: Path
) -> None:
    day = 86400.0
    now = time.time()
    # 30 days of 200 notifications a day, none within two hours of the 7-day boundary.
    received = [now - 30 * day + i * 432.0 for i in range(6000)]
    received = [at for at in received if abs(at - (now - 7 * day)) > 7200 and at < now - 600]
    old = [at for at in received if at < now - 7 * day]
    write_history(tmp_path / "data", received)
    before = database_figures(tmp_path / "data")

    config = BASE_CONFIG.format(url=sink.url).replace(
        "history_retention: 1h", "history_retention: 7d"
    )
    relay = start_relay(config)
    # Webhooks and deliveries are committed while the history is pruned and the space given
    # back (at the start): none of them may be undone by it.
    with Poster(relay, "meanwhile") as poster:
        wait_for(lambda: "pruned" in relay.log or "cannot prune" in relay.log, 60, "pruning")
        time.sleep(1)
    assert f"pruned {len(old)} notifications" in relay.log, relay.log
    assert poster.accepted and set(poster.answers) == {200}, poster.answers
    wait_for(lambda: sink.count() >= len(poster.accepted), 20, "the new alerts delivered")
    time.sleep(0.5)
    assert sorted(instances(sink.assert_each_once())) == sorted(poster.accepted)

    # The space is given back: next to no free pages are left in the file.
    during = database_figures(tmp_path / "data")
    assert during["free_pages"] <= 16, (before, during)
    # Ids keep growing: no notification gets an id that was given before.
    assert min(poster.notification_ids) > len(received)

    # The history across the retention boundary: what is younger than 7 days, only.
    kept = relay.history(since=now - 9 * day, until=now - 5 * day, limit=10000)
    expected = [at for at in received if now - 7 * day <= at < now - 5 * day]
    assert len(kept) == len(expected)
    assert [n["receivedAt"] for n in kept] == sorted(n["receivedAt"] for n in kept)
    assert all(len(n["alerts"]) == 2 for n in kept)
    assert relay.history(until=now - 7 * day) == []

    relay.stop()
    after = database_figures(tmp_path / "data")
    assert after["bytes"] < 0.5 * before["bytes"], (before, after)


def test_a_destination_down_longer_than_every_retry(
    start_relay: Callable[..., RelayProcess], sink: Sink
) -> None:
    port = sink.server.server_address[1]
    url = sink.url
    sink.close()  # the destination is down
    config = BASE_CONFIG.format(url=url).replace("max_age: 30s", "max_age: 1s")
    config = config.replace(
        "    bearer_token_file: token\n",
        "    bearer_token_file: token\n    forward_repeats: false\n    repeat_min_interval: 1s\n",
    )
    relay = start_relay(config)
    firing = notification(alert(instance="a"), alert(instance="b"), alert(instance="c"))
    assert relay.post("critical", firing).json()["queued"] == 3
    wait_for(
        lambda: relay.metric("alert_relay_dead_letters_total", destination="sink") == 3,
        10,
        "three dead letters",
    )
    # A second of retries, 50 ms doubling to 200 ms: a probe at a time, not three.
    attempts = relay.metric("alert_relay_forward_attempts_total", result="connection_error")
    assert 3 < attempts <= 20, attempts
    letters = relay.get("/api/v1/dead-letters").json()["data"]["deadLetters"]
    assert sorted(letter["body"]["alert"]["labels"]["instance"] for letter in letters) == [
        "a",
        "b",
        "c",
    ]

    back = start_sink(port)
    try:
        # Alertmanager sends the alerts that still fire again (its repeat_interval): they
        # are queued again, though they were forwarded before, and delivered.
        assert relay.post("critical", firing).json()["queued"] == 3
        # A resend seconds later (another Alertmanager of the cluster) is a duplicate.
        resend = relay.post("critical", firing).json()
        assert resend["queued"] == 0 and resend["duplicates"] == 3
        wait_for(lambda: back.count() == 3, 10, "the alerts delivered")
        time.sleep(0.5)
        assert sorted(instances(back.assert_each_once())) == ["a", "b", "c"]
        assert relay.metric("alert_relay_dead_letters_total", destination="sink") == 3
    finally:
        back.close()
