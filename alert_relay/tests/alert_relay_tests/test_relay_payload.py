"""The webhook payload's checks, times and fingerprints; the backoff schedule."""

from __future__ import annotations

import json
import random

import pytest
from alert_relay.config import Retry
from alert_relay.forwarder import next_attempt_at
from alert_relay.payload import (
    PayloadError,
    format_time,
    label_fingerprint,
    parse_notification,
    parse_time,
)

from .support import alert, notification


def body(document: object) -> bytes:
    return json.dumps(document).encode()


def test_a_notification_is_parsed_and_normalised() -> None:
    first = alert(starts_at="2024-05-01T12:00:00.500+02:00")
    first["fingerprint"] = "0123456789abcdef"
    second = alert("DiskFull", status="resolved")
    parsed = parse_notification(body(notification(first, second)))
    assert parsed.status == "firing" and parsed.receiver == "critical-alerts"
    assert [a.alertname for a in parsed.alerts] == ["TradingBotDown", "DiskFull"]
    assert parsed.alerts[0].starts_at == "2024-05-01T10:00:00.5Z"  # UTC, Go's RFC3339Nano
    assert parsed.alerts[0].fingerprint == "0123456789abcdef"  # Alertmanager's, kept
    # Missing (older Alertmanagers): computed as Alertmanager does, from the labels.
    assert parsed.alerts[1].fingerprint == label_fingerprint(second["labels"])
    assert parsed.alerts[1].ends_at == "2024-05-01T11:00:00Z"
    assert parsed.context()["groupKey"] == '{}:{alertname="TradingBotDown"}'


def test_label_fingerprint() -> None:
    assert label_fingerprint({}) == "cbf29ce484222325"  # FNV-1a's offset basis: no labels
    one = label_fingerprint({"alertname": "A", "job": "x"})
    assert one == label_fingerprint({"job": "x", "alertname": "A"})  # order does not matter
    assert one != label_fingerprint({"alertname": "A", "job": "y"})
    # The separator keeps name and value apart: {a="bc"} is not {ab="c"}.
    assert label_fingerprint({"a": "bc"}) != label_fingerprint({"ab": "c"})


@pytest.mark.parametrize(
    ("text", "nanos", "canonical"),
    [
        ("2024-05-01T10:00:00Z", 1714557600_000000000, "2024-05-01T10:00:00Z"),
        ("2024-05-01T10:00:00.123456789Z", 1714557600_123456789, "2024-05-01T10:00:00.123456789Z"),
        ("2024-05-01T12:00:00.100+02:00", 1714557600_100000000, "2024-05-01T10:00:00.1Z"),
        ("2024-05-01t09:30:00-00:30", 1714557600_000000000, "2024-05-01T10:00:00Z"),
        ("0001-01-01T00:00:00Z", -62135596800_000000000, "0001-01-01T00:00:00Z"),
    ],
)
def test_parse_time(text: str, nanos: int, canonical: str) -> None:
    assert parse_time(text) == (nanos, canonical)


@pytest.mark.parametrize(
    "text", ["2024-05-01", "2024-13-01T00:00:00Z", "yesterday", "2024-05-01T10:00:00"]
)
def test_parse_time_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_format_time() -> None:
    assert format_time(1714557600.1234) == "2024-05-01T10:00:00.123Z"
    assert format_time(None) is None


def _without(document: dict, key: str) -> dict:
    return {k: v for k, v in document.items() if k != key}


def _alert_with(**changes: object) -> dict:
    return notification({**alert(), **changes})


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (body([1, 2]), "not a JSON object"),
        (body({**notification(), "version": "3"}), "version: '3'"),
        (body(_without(notification(), "version")), "version: None"),
        (body({**notification(), "alerts": []}), "alerts: not a non-empty list"),
        (body({**notification(), "alerts": {"a": 1}}), "alerts: not a non-empty list"),
        (body({**notification(), "status": "pending"}), "status: 'pending' is neither"),
        (body(_without(notification(), "groupKey")), "groupKey: missing"),
        (body({**notification(), "receiver": 7}), "receiver: not a string"),
        (body({**notification(), "truncatedAlerts": -1}), "truncatedAlerts: not a count"),
        (body({**notification(), "commonLabels": ["x"]}), "commonLabels: not an object"),
        (body({**notification(), "alerts": ["x"]}), "alerts[0]: not an object"),
        (body(_alert_with(status="ok")), "alerts[0].status: 'ok' is neither"),
        (body(_alert_with(labels=None)), "alerts[0].labels: missing"),
        (body(_alert_with(labels={"a": 1})), "alerts[0].labels.a: not a string"),
        (body(_alert_with(annotations="x")), "alerts[0].annotations: not an object"),
        (body(_alert_with(startsAt="soon")), "alerts[0].startsAt: not an RFC 3339 time"),
        (body(_alert_with(startsAt=None)), "alerts[0].startsAt: missing"),
        (body(_alert_with(endsAt=5)), "alerts[0].endsAt: not a string"),
        (body(_alert_with(fingerprint="xyz")), "fingerprint: not 16 hexadecimal digits"),
    ],
)
def test_what_is_not_a_notification(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_notification(payload)
    assert reason in str(caught.value)


def test_backoff_grows_with_jitter_up_to_its_cap_and_ends_at_max_age() -> None:
    retry = Retry(initial_backoff=1.0, max_backoff=8.0, max_age=100.0)
    rng = random.Random(1)
    for attempts, full in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (40, 8.0), (400, 8.0)):
        delays = [next_attempt_at(retry, attempts, 0.0, 10.0, rng) - 10.0 for _ in range(200)]
        # Half fixed, half random: never sooner than half the delay, never later than it.
        assert min(delays) >= full / 2 and max(delays) <= full
        assert max(delays) - min(delays) > full / 4  # really jittered
    assert next_attempt_at(retry, 4, 0.0, 97.0, rng) == 100.0  # the last try at max_age
    assert next_attempt_at(retry, 4, 0.0, 100.0, rng) is None  # then: a dead letter
