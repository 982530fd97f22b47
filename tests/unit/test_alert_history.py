"""The report's statistics (module_utils/alert_history.py) on small histories worked out by hand.

Times are ms; the period is [0, 1h) unless a test says otherwise, the
evaluation interval 15 s.
"""

from datetime import UTC

import pytest
from ansible_collections.prometheus_alerting.stack.plugins.module_utils import alert_history as ah
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.http_api import parse_time

S = 1000
MIN = 60 * S
HOUR = 60 * MIN
STEP = 15 * S
SETTINGS = {
    "flap_window_ms": 15 * MIN,
    "shift_ms": 8 * HOUR,
    "flapping_min": 2,
    "busy_share": 0.25,
    "top": 10,
    "external_labels": {},
    "default_interval_ms": STEP,
}
RULE = {"group": "g.rules", "interval_ms": STEP, "for_ms": MIN, "labels": {"severity": "warning"}}


def samples(first, last, step=STEP, skip=()):
    return [t for t in range(first, last + 1, step) if t not in skip]


def series(name, times, **labels):
    labels = {"alertname": name, **labels}
    return {ah.series_key(labels): ({**labels, "alertstate": "firing"}, times)}


def build(firing, for_state=None, rules=None, silences=None, relay=None, notifications=None,
          start=0, end=HOUR, settings=None):  # fmt: skip
    builder = ah.ReportBuilder(start, end, UTC, {**SETTINGS, **(settings or {})})
    return builder.build(
        {"A": RULE} if rules is None else rules,
        firing,
        for_state or {},
        silences,
        relay,
        notifications,
    )


# --- Numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 0.5, None),
        ([7], 0.9, 7),
        ([1, 2, 3, 4], 0.5, 2.5),
        ([60, 300, 600, 600], 0.9, 600),
        ([10, 20], 0.9, 19),
        (list(range(1, 101)), 0.99, 99.01),
    ],
)
def test_percentiles_interpolate_between_ranks_as_promql(values, q, expected):
    result = ah.percentile(values, q)

    assert result is None if expected is None else result == pytest.approx(expected)


def test_a_summary_of_nothing_is_none_not_a_division_by_zero():
    assert ah.duration_summary([]) == {"count": 0, "mean": None, "median": None, "p90": None}
    assert ah.share(5, 0) is None
    assert ah.share(1, 3) == 0.3333


@pytest.mark.parametrize(
    ("value", "above", "expected"),
    [
        (99.2, True, 99.2),
        (97.341, True, 97.4),
        (97.341, False, 97.3),
        (0.95123, True, 0.952),
        (1234.5, True, 1240),
        (75.0, False, 75),
        (0.0, True, 0.0),
        (-3.21, True, -3.21),
    ],
)
def test_thresholds_round_outward_to_three_significant_digits(value, above, expected):
    assert ah.round_outward(value, above) == expected


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (45, "45s"), (90, "1m30s"), (720, "12m"), (90061, "1d1h1m1s")]
)
def test_durations_read_as_prometheus_writes_them(seconds, text):
    assert ah.format_duration(seconds) == text


# --- Firings -------------------------------------------------------------------------------


def test_a_firing_runs_from_its_first_sample_to_one_interval_after_its_last():
    report = build(series("A", samples(10 * MIN, 19 * MIN + 45 * S), instance="a"))

    (alert,) = report["alerts"]
    assert (alert["fired"], alert["firing_seconds"], alert["resolved"]) == (1, 600.0, 1)
    assert alert["time_to_resolve"]["mean"] == 600.0


def test_a_gap_splits_without_for_state_and_the_for_state_joins_across_it():
    times = samples(0, 10 * MIN, skip={5 * MIN})
    key = ah.series_key({"alertname": "A"})

    split = build(series("A", times))["alerts"][0]
    joined = build(series("A", times), {key: (times, [0] * len(times))})["alerts"][0]

    assert (split["fired"], split["flaps"]) == (2, 1)
    assert (joined["fired"], joined["flaps"]) == (1, 0)
    assert joined["firing_seconds"] == 615.0


def test_a_new_active_time_is_a_new_firing_even_without_a_gap_in_the_samples():
    times = samples(0, 2 * MIN)
    key = ah.series_key({"alertname": "A"})
    active = [0 if t < MIN else MIN for t in times]

    alert = build(series("A", times), {key: (times, active)})["alerts"][0]

    assert alert["fired"] == 2


def test_firings_are_cut_at_the_edges_of_the_period():
    # Firing from 10 min before the start to 5 min in, and from 5 min before the end on.
    firing = series("A", samples(-10 * MIN, 5 * MIN - STEP), instance="a")
    firing.update(series("A", samples(HOUR - 5 * MIN, HOUR + 10 * MIN), instance="b"))

    (alert,) = build(firing)["alerts"]

    assert (alert["fired"], alert["firing_at_start"], alert["firing_at_end"]) == (1, 1, 1)
    assert alert["firing_seconds"] == 600.0
    # Neither started and resolved in the period.
    assert alert["time_to_resolve"]["count"] == 0
    assert alert["firing_share"] == round(600 / 3600, 4)


def test_the_share_of_the_period_counts_overlapping_series_once():
    firing = series("A", samples(0, 30 * MIN - STEP), instance="a")
    firing.update(series("A", samples(15 * MIN, 45 * MIN - STEP), instance="b"))

    (alert,) = build(firing)["alerts"]

    assert alert["firing_seconds"] == 3600.0
    assert alert["firing_share"] == 0.75


def test_a_flap_is_a_refiring_within_the_window_of_the_same_series_only():
    firing = series("A", samples(0, MIN) + samples(10 * MIN, 11 * MIN), instance="a")
    # b fires right after a resolved: another series, no flap.
    firing.update(series("A", samples(MIN + 30 * S, 2 * MIN), instance="b"))
    # 20 min after: outside the 15 min window.
    firing.update(series("A", samples(0, MIN) + samples(21 * MIN + 15 * S, 22 * MIN), instance="c"))

    alert = build(firing)["alerts"][0]

    assert (alert["fired"], alert["flaps"], alert["flapping"]) == (5, 1, False)


def test_an_alert_only_firing_before_the_period_is_not_in_it():
    report = build(series("A", samples(-5 * MIN, -3 * MIN)))

    assert report["alerts"] == [] and report["empty"] is True
    assert [a["name"] for a in report["never_fired"]] == ["A"]


def test_a_rule_no_longer_loaded_uses_the_spacing_of_its_samples():
    report = build(series("Gone", samples(0, MIN, step=30 * S)), rules={})

    (alert,) = report["alerts"]
    assert (alert["loaded"], alert["group"], alert["firing_seconds"]) == (False, None, 90.0)


# --- Silences ------------------------------------------------------------------------------


def silence(starts, ends, *matchers):
    return {"id": "s", "starts_ms": starts, "ends_ms": ends, "matchers": list(matchers)}


def matcher(name, value, regex=False, equal=True):
    return {"name": name, "value": value, "isRegex": regex, "isEqual": equal}


def test_silenced_share_and_the_time_from_firing_to_a_silence():
    firing = series("A", samples(0, 20 * MIN - STEP), instance="a")
    silences = [
        silence(5 * MIN, 10 * MIN, matcher("alertname", "A")),
        silence(8 * MIN, 12 * MIN, matcher("instance", "a|x", regex=True)),
        silence(0, HOUR, matcher("instance", "a", equal=False)),
    ]

    alert = build(firing, silences=silences)["alerts"][0]

    assert alert["silenced_seconds"] == 420.0
    assert alert["silenced_share"] == 0.35
    assert alert["acknowledged"] == 1
    assert alert["time_to_silence"]["median"] == 300.0


def test_a_firing_silenced_from_its_start_was_never_notified_and_is_not_acknowledged():
    firing = series("A", samples(10 * MIN, 15 * MIN), instance="a")

    alert = build(firing, silences=[silence(0, HOUR, matcher("alertname", "A"))])["alerts"][0]

    assert (alert["silenced_share"], alert["acknowledged"]) == (1.0, 0)


def test_silences_match_the_labels_prometheus_adds_when_it_sends_alerts():
    firing = series("A", samples(0, 10 * MIN - STEP))
    silences = [silence(0, HOUR, matcher("cluster", "eu"))]

    without = build(firing, silences=silences)["alerts"][0]
    labelled = build(firing, silences=silences, settings={"external_labels": {"cluster": "eu"}})

    assert without["silenced_share"] == 0.0
    assert labelled["alerts"][0]["silenced_share"] == 1.0


def test_a_regex_python_cannot_read_matches_nothing():
    firing = series("A", samples(0, 10 * MIN - STEP))

    alert = build(firing, silences=[silence(0, HOUR, matcher("alertname", "(?P<", True))])

    assert alert["alerts"][0]["silenced_share"] == 0.0


def test_the_relays_first_notification_starts_the_time_to_a_silence():
    firing = series("A", samples(0, 20 * MIN - STEP), instance="a")
    relay = {
        "A": [
            {"time_ms": 2 * MIN, "labels": {"alertname": "A", "instance": "a"}, "status": "firing"},
            {"time_ms": 3 * MIN, "labels": {"alertname": "A", "instance": "a"}, "status": "firing"},
            {"time_ms": 2 * HOUR, "labels": {"alertname": "A"}, "status": "firing"},
        ]
    }

    alert = build(firing, silences=[silence(5 * MIN, HOUR, matcher("alertname", "A"))], relay=relay)

    assert alert["alerts"][0]["notifications"] == 2
    assert alert["alerts"][0]["time_to_silence"]["median"] == 180.0


# --- Notifications, days, hours, shifts -----------------------------------------------------


def test_counter_increments_count_a_reset_from_zero():
    assert ah.counter_increments([(0, 10), (1, 10), (2, 15), (3, 2), (4, 3), (5, 0)]) == [
        (2, 5),
        (3, 2),
        (4, 1),
    ]


def test_per_day_per_hour_and_the_fatigue_index_in_a_time_zone():
    zoneinfo = pytest.importorskip("zoneinfo")
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    start = int(parse_time("2025-06-01T22:00:00Z").timestamp() * 1000)  # 00:00 in Berlin
    end = start + 24 * HOUR
    firing = series("A", samples(start + HOUR, start + HOUR + MIN))
    notifications = [(start + HOUR, 2), (start + 9 * HOUR, 1), (start + 9 * HOUR + MIN, 3)]
    builder = ah.ReportBuilder(start, end, berlin, SETTINGS)

    report = builder.build({"A": RULE}, firing, {}, None, None, notifications)

    assert [d["date"] for d in report["per_day"]] == ["2025-06-02"]
    hours = {h["hour"]: (h["alerts"], h["notifications"]) for h in report["per_hour_of_day"]}
    assert hours[1] == (1, 2) and hours[9] == (0, 4) and hours[0] == (0, 0)
    assert report["fatigue"] == {
        "shift_length": "8h",
        "shifts": 3.0,
        "per_shift": 2.0,
        "busiest_shift": {"start": "2025-06-02T08:00:00+02:00", "notifications": 4},
    }


def test_without_notifications_the_fatigue_index_is_unknown_not_zero():
    report = build({}, notifications=None)

    assert report["fatigue"]["per_shift"] is None
    assert report["counts"]["notifications"] is None
    assert all(d["notifications"] is None for d in report["per_day"])


def test_a_period_with_no_notifications_has_an_index_of_zero():
    report = build({}, notifications=[])

    assert report["fatigue"]["per_shift"] == 0.0
    assert report["fatigue"]["busiest_shift"] is None


# --- Suggestions ---------------------------------------------------------------------------


def test_a_flapping_alert_gets_a_for_just_longer_than_its_flapping_conditions():
    key = ah.series_key({"alertname": "A"})
    runs = [(0, 2 * MIN), (5 * MIN, 6 * MIN), (9 * MIN, 9 * MIN + 30 * S), (40 * MIN, 55 * MIN)]
    times, active = [], []
    for first, last in runs:
        run = samples(first, last)
        times += run
        active += [first - MIN] * len(run)  # pending for the rule's 1m first
    stats = build(series("A", times), {key: (times, active)})["alerts"][0]

    suggestion = ah.for_suggestion(stats, MIN, in_catalog=True)

    # The flapping firings' conditions held 3m15s and 2m15s: 4m is just longer.
    assert suggestion["proposed"] == "4m"
    assert suggestion["override"] == "prometheus_alert_overrides: {A: {for: 4m}}"
    assert "3 of its 4 resolved firings would not have fired" in suggestion["reason"]


def test_threshold_suggestions_take_the_worst_series_tail():
    entry = {"alert": "Hot", "operator": ">", "threshold": 80.0, "compared_value": "temp"}
    series_quantiles = [
        {"labels": {"instance": "a"}, "quantiles": {0.5: 50.0, 0.95: 70.0, 0.99: 88.123}},
        {"labels": {"instance": "b"}, "quantiles": {0.5: 60.0, 0.95: 90.0, 0.99: 95.01}},
        {"labels": {"instance": "c"}, "quantiles": {0.5: float("nan"), 0.95: 1.0, 0.99: 1.0}},
    ]

    suggestion = ah.threshold_suggestion(entry, "never fired", series_quantiles, 300000)

    assert suggestion["series"] == 2
    assert suggestion["worst_series"] == 'instance="b"'
    assert suggestion["quantiles"] == {"p50": 60.0, "p95": 90.0, "p99": 95.01}
    assert suggestion["proposed"] == 95.1
    assert suggestion["override"] == "prometheus_alert_overrides: {Hot: {threshold: 95.1}}"
    assert suggestion["sampled_every"] == "5m"
    assert ah.threshold_suggestion(entry, "never fired", series_quantiles[2:], 15000) is None


# --- The relay's history -------------------------------------------------------------------


def test_relay_records_are_read_whatever_their_field_names():
    document = {
        "data": {
            "history": [
                {"alertname": "A", "received_at": "2025-06-01T00:00:01Z", "status": "FIRING"},
                {"alert_name": "B", "receivedAt": 1748736001.5, "labels": {"x": "1"}},
                {"labels": {"alertname": "C"}, "time": 1748736001500},
                {"alertname": "D"},
                "not a record",
            ]
        }
    }

    records = ah.relay_records(document, parse_time)

    assert [(r["name"], r["time_ms"], r["status"]) for r in records] == [
        ("A", 1748736001000, "firing"),
        ("B", 1748736001500, "firing"),
        ("C", 1748736001500, "firing"),
    ]
    assert records[1]["labels"] == {"x": "1"}
    assert ah.relay_records({"error": "nope"}, parse_time) is None
    assert ah.relay_records([], parse_time) == []


# --- Prometheus' answers -------------------------------------------------------------------


def test_a_matrix_is_read_fast_and_the_same_as_json_would_read_it():
    text = (
        '{"status":"success","data":{"resultType":"matrix","result":['
        '{"metric":{"__name__":"ALERTS","odd":"a]]},\\"values\\":[[1,\\"2\\"]]"},'
        '"values":[[1764547207.25,"1"],[1764547222.25,"1"]]},'
        '{"metric":{},"values":[[1764547200,"NaN"],[1764547215.001,"+Inf"]]}]}}'
    )

    assert ah.parse_matrix(text) == [
        (
            {"__name__": "ALERTS", "odd": 'a]]},"values":[[1,"2"]]'},
            [1764547207250, 1764547222250],
            ["1", "1"],
        ),
        ({}, [1764547200000, 1764547215001], ["NaN", "+Inf"]),
    ]


@pytest.mark.parametrize(
    "text",
    [
        '{"status":"success","data":{"resultType":"vector","result":[]}}',
        '{"status":"error","errorType":"bad_data","error":"parse error"}',
        '{"status":"success","data":{"resultType":"matrix","result":[]},"warnings":["w"]}',
        '{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},'
        '"histograms":[[1,{"count":"1"}]]}]}}',
    ],
)
def test_any_other_answer_is_left_to_the_json_decoder(text):
    assert ah.parse_matrix(text) is None


def test_an_empty_matrix_is_empty():
    assert ah.parse_matrix('{"status":"success","data":{"resultType":"matrix","result":[]}}') == []
