"""http_api's readers of what the APIs speak: samples, matchers, durations, timestamps."""

from datetime import UTC, datetime, timedelta

import pytest
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.http_api import (
    duration_seconds,
    format_matcher,
    format_time,
    parse_duration,
    parse_matcher,
    parse_samples,
    parse_series,
    parse_time,
)

EXPOSITION = """\
# HELP alertmanager_notifications_total The total number of attempted notifications.
# TYPE alertmanager_notifications_total counter
alertmanager_notifications_total{integration="email"} 0
alertmanager_notifications_total{integration="webhook",receiver_name="a \\"b\\", c\\\\d"} 12
alertmanager_notifications_failed_total{integration="webhook",reason="other"} 1 1700000000000
alertmanager_config_last_reload_successful 1
alertmanager_notifications_total_extra 5
"""


def test_series_with_labels_escapes_and_timestamps():
    assert parse_series(
        EXPOSITION, ["alertmanager_notifications_total", "alertmanager_notifications_failed_total"]
    ) == [
        ("alertmanager_notifications_total", {"integration": "email"}, 0.0),
        (
            "alertmanager_notifications_total",
            {"integration": "webhook", "receiver_name": 'a "b", c\\d'},
            12.0,
        ),
        (
            "alertmanager_notifications_failed_total",
            {"integration": "webhook", "reason": "other"},
            1.0,
        ),
    ]


def test_samples_are_the_unlabelled_series():
    assert parse_samples(
        EXPOSITION,
        ["alertmanager_config_last_reload_successful", "alertmanager_notifications_total"],
    ) == {"alertmanager_config_last_reload_successful": 1.0}


@pytest.mark.parametrize(
    ("text", "matcher"),
    [
        ('instance="app1"', ("instance", "app1", False, True)),
        ("instance=app1", ("instance", "app1", False, True)),
        ('service!="trading-bot"', ("service", "trading-bot", False, False)),
        ('alertname=~"Disk.*"', ("alertname", "Disk.*", True, True)),
        (' job !~ "test.*" ', ("job", "test.*", True, False)),
        ('path=~"/var/\\d+"', ("path", "/var/\\d+", True, True)),
        ('msg="say \\"hi\\"\\n"', ("msg", 'say "hi"\n', False, True)),
        ('empty=""', ("empty", "", False, True)),
    ],
)
def test_matchers_in_alertmanagers_syntax(text, matcher):
    parsed = parse_matcher(text)

    assert (parsed["name"], parsed["value"], parsed["isRegex"], parsed["isEqual"]) == matcher
    assert parse_matcher(format_matcher(parsed)) == parsed


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("instance", "is not a matcher: write name="),
        ('1abc="x"', "is not a matcher: write name="),
        ('instance="app1', "its value has no closing quote"),
        ('instance="a"b"', 'escape a " inside the value'),
        ("instance=a,b", "quote a value that holds"),
    ],
)
def test_malformed_matchers_say_what_is_wrong(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_matcher(text)


def test_format_matcher_writes_each_operator():
    assert [
        format_matcher({"name": "a", "value": "b", "isRegex": regex, "isEqual": equal})
        for regex, equal in ((False, True), (False, False), (True, True), (True, False))
    ] == ['a="b"', 'a!="b"', 'a=~"b"', 'a!~"b"']


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("2h", 7200), ("1h30m", 5400), ("1d", 86400), ("1w", 604800), ("500ms", 0.5)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_durations_or_numbers_in_seconds_as_config_drift_info_compares_them():
    assert duration_seconds("1h30m") == 5400
    assert duration_seconds("90s") == 90
    assert duration_seconds("0s") == 0
    assert duration_seconds(300) == 300
    assert duration_seconds("soon") is None
    assert duration_seconds(True) is None


@pytest.mark.parametrize("text", ["", "2 hours", "h", "0s", "1m2h", "-5m"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_timestamps_as_the_apis_write_them():
    moment = parse_time("2025-06-01T18:00:00.123456789Z")

    assert moment == datetime(2025, 6, 1, 18, 0, 0, 123456, tzinfo=UTC)
    assert parse_time("2025-06-01T20:00:00+02:00") == datetime(2025, 6, 1, 18, tzinfo=UTC)
    assert format_time(moment) == "2025-06-01T18:00:00.123Z"


@pytest.mark.parametrize(
    ("text", "reason"),
    [("tomorrow", "is not a timestamp"), ("2025-06-01T18:00:00", "has no time zone")],
)
def test_bad_timestamps(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_time(text)
