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
          start=0, end=HOUR, settings=None, restarts=None):  # fmt: skip
    builder = ah.ReportBuilder(start, end, UTC, {**SETTINGS, **(settings or {})})
    return builder.build(
        {"A": RULE} if rules is None else rules,
        firing,
        for_state or {},
        silences,
        relay,
        notifications,
        restarts,
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


# --- Restarts of Prometheus ------------------------------------------------------------------

# Prometheus stops after its sample at 10m (the last of the old process) and is back
# with its first sample at 12m; it scrapes itself every 15 s.
RESTART = [(10 * MIN, 12 * MIN, STEP)]


def restarted(name, last, active_after, labels=None, for_ms=MIN):
    """A series firing from 0 (active since -1m) to `last`, and again from the moment it
    became active after the restart plus the rule's `for`, to the end of the hour."""
    labels = {"alertname": name, **(labels or {})}
    before = samples(0, last)
    after = samples(active_after + for_ms, HOUR + 5 * MIN)
    times = before + after
    active = [-MIN] * len(before) + [active_after] * len(after)
    key = ah.series_key(labels)
    return {key: ({**labels, "alertstate": "firing"}, times)}, {key: (times, active)}


def test_prometheus_restarts_are_the_changes_of_its_own_start_time():
    times = [0, STEP, 2 * STEP, 10 * STEP, 11 * STEP, 20 * STEP]
    values = [100.0, 100.0, 100.0, 1000.5, 1000.5, 2000.0]

    assert ah.prometheus_restarts([(times, values)]) == [
        (2 * STEP, 10 * STEP, STEP),
        (11 * STEP, 20 * STEP, STEP),
    ]
    assert ah.prometheus_restarts([([0, STEP], [1.0, 1.0])]) == []


def test_a_restart_of_prometheus_is_not_a_resolve():
    # Firing up to the evaluation before Prometheus stopped, active again at the first
    # evaluation after it came back (10 s after its first scrape): one firing.
    firing, for_state = restarted("A", 10 * MIN, 12 * MIN + 10 * S)

    joined = build(firing, for_state, restarts=RESTART)["alerts"][0]
    unknown = build(firing, for_state, restarts=None)["alerts"][0]

    assert (joined["fired"], joined["flaps"], joined["resolved"]) == (1, 0, 0)
    assert (joined["across_restarts"], joined["firing_at_end"]) == (1, 1)
    assert joined["firing_seconds"] == 3600.0
    # Without Prometheus' own series nothing tells the restart: a resolve and a flap.
    assert (unknown["fired"], unknown["flaps"], unknown["across_restarts"]) == (2, 1, 0)


@pytest.mark.parametrize(
    ("last", "active_after"),
    [
        # Resolved 5 minutes before Prometheus stopped.
        (5 * MIN, 12 * MIN + 10 * S),
        # Became active again 3 minutes after Prometheus came back.
        (10 * MIN, 15 * MIN),
    ],
)
def test_a_resolve_around_a_restart_stays_a_resolve(last, active_after):
    firing, for_state = restarted("A", last, active_after)

    alert = build(firing, for_state, restarts=RESTART)["alerts"][0]

    assert (alert["fired"], alert["flaps"], alert["across_restarts"]) == (2, 1, 0)


def test_without_for_state_the_rules_for_tells_when_it_became_active_again():
    firing, _for_state = restarted("A", 10 * MIN, 12 * MIN + 10 * S)

    alert = build(firing, restarts=RESTART)["alerts"][0]

    assert (alert["fired"], alert["across_restarts"]) == (1, 1)


def test_alertmanager_keeping_the_start_of_the_alert_joins_the_gap():
    firing, for_state = restarted("A", 10 * MIN, 12 * MIN + 10 * S)
    labels = {"alertname": "A"}

    def relay(status, time_ms, starts_ms):
        record = {"time_ms": time_ms, "labels": labels, "status": status, "starts_ms": starts_ms}
        return {"A": [record]}

    kept = build(firing, for_state, relay=relay("firing", 14 * MIN, 0))["alerts"][0]
    new = build(firing, for_state, relay=relay("firing", 14 * MIN, 13 * MIN))["alerts"][0]
    resolved = build(firing, for_state, relay=relay("resolved", 11 * MIN, 0))["alerts"][0]

    assert (kept["fired"], kept["flaps"], kept["across_restarts"]) == (1, 0, 1)
    assert (new["fired"], new["flaps"]) == (2, 1)
    assert (resolved["fired"], resolved["flaps"]) == (2, 1)


def test_the_report_lists_the_restarts_in_the_period():
    report = build({}, restarts=[*RESTART, (2 * HOUR, 2 * HOUR + MIN, STEP)])

    assert report["prometheus_restarts"] == [
        {"down": "1970-01-01T00:10:00.000Z", "up": "1970-01-01T00:12:00.000Z"}
    ]
    assert build({})["prometheus_restarts"] is None


# --- Warning/critical pairs --------------------------------------------------------------------

WARNING = {**RULE, "severity": "warning", "for_ms": 10 * MIN}
CRITICAL = {**RULE, "severity": "critical", "for_ms": 5 * MIN, "labels": {"severity": "critical"}}


def test_each_rule_of_a_pair_is_its_own_entry():
    firing = series("A", samples(0, 30 * MIN - STEP), severity="warning")
    firing.update(series("A", samples(0, MIN) + samples(5 * MIN, 6 * MIN), severity="critical"))
    relay = {
        "A": [
            {"time_ms": MIN, "labels": {"alertname": "A", "severity": "critical"}},
            {"time_ms": 2 * MIN, "labels": {"alertname": "A", "severity": "warning"}},
            {"time_ms": 3 * MIN, "labels": {"alertname": "A", "severity": "critical"}},
        ]
    }

    report = build(firing, rules={"A": [WARNING, CRITICAL], "B": RULE}, relay=relay)

    rows = {(a["name"], a["severity"]): a for a in report["alerts"]}
    assert set(rows) == {("A", "warning"), ("A", "critical")}
    assert (rows[("A", "warning")]["fired"], rows[("A", "warning")]["for"]) == (1, 600.0)
    assert (rows[("A", "critical")]["fired"], rows[("A", "critical")]["for"]) == (2, 300.0)
    assert rows[("A", "critical")]["flaps"] == 1
    assert (rows[("A", "warning")]["notifications"], rows[("A", "critical")]["notifications"]) == (
        1,
        2,
    )
    assert report["never_fired"] == [{"name": "B", "group": "g.rules", "severity": "warning"}]
    assert report["counts"]["rules"] == 3
    assert [(r["name"], r["severity"]) for r in report["timeline"]] == [
        ("A", "critical"),
        ("A", "warning"),
    ]


def test_the_rules_api_gives_each_rule_of_a_pair():
    groups = [
        {
            "name": "probes.rules",
            "file": "/etc/prometheus/rules/probes.rules.yml",
            "interval": 15,
            "rules": [
                {
                    "type": "alerting",
                    "name": "T",
                    "duration": 600,
                    "labels": {"severity": "warning"},
                },
                {
                    "type": "alerting",
                    "name": "T",
                    "duration": 300,
                    "labels": {"severity": "critical"},
                },
                {"type": "recording", "name": "r"},
                {"type": "alerting", "name": "U", "duration": 0},
            ],
        }
    ]

    rules, found = ah.alerting_rules(groups)

    assert [(r["severity"], r["for_ms"]) for r in rules["T"]] == [
        ("warning", 600000),
        ("critical", 300000),
    ]
    assert rules["U"][0]["severity"] == "none"
    assert found[0]["rules"] == 4
    assert set(ah.rule_table(rules)) == {("T", "warning"), ("T", "critical"), ("U", "none")}


def test_suggestions_change_the_rule_of_the_pair_they_are_for():
    catalog = [
        {"alert": "T", "severity": "warning", "threshold": 14.0},
        {"alert": "T", "severity": "critical", "twin": True, "threshold": 3.0},
        {"alert": "V"},
    ]

    assert ah.catalog_entry(catalog, "T", "critical")["threshold"] == 3.0
    assert ah.catalog_entry(catalog, "T", "warning")["threshold"] == 14.0
    assert ah.catalog_entry(catalog, "V", "page") == {"alert": "V"}
    assert ah.catalog_entry(catalog, "W", "warning") is None
    stats = {
        "name": "T",
        "severity": "critical",
        "flaps": 2,
        "flapping": True,
        "resolved": 3,
    }
    conditions = ([4 * MIN], [4 * MIN])
    twin = ah.for_suggestion(stats, MIN, True, twin=True, paired={"T"}, conditions=conditions)
    own = ah.for_suggestion(stats, MIN, False, paired={"T"}, conditions=conditions)
    assert twin["override"] == "prometheus_alert_overrides: {T: {critical: {for: 5m}}}"
    assert twin["severity"] == "critical"
    assert twin["reason"].startswith("T (critical) fired again")
    assert own["override"] == "for: 5m  # in the rule's own file, the one with severity critical"
    entry = {**catalog[1], "operator": "<", "compared_value": "days_left"}
    series_quantiles = [{"labels": {}, "quantiles": {0.5: 9.0, 0.05: 4.0, 0.01: 2.5}}]
    threshold = ah.threshold_suggestion(entry, "never fired", series_quantiles, STEP, "critical")
    assert threshold["override"] == "prometheus_alert_overrides: {T: {critical: {threshold: 2.5}}}"


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


def test_silences_before_alertmanager_keeps_them_are_left_out_not_counted_unsilenced():
    # Firing [0, 20m) and [40m, 50m); silences are known from 30m on.
    firing = series("A", samples(0, 20 * MIN - STEP) + samples(40 * MIN, 50 * MIN - STEP))
    firing.update(series("B", samples(0, 10 * MIN - STEP)))
    silences = [silence(45 * MIN, HOUR, matcher("alertname", "A"))]
    rules = {"A": RULE, "B": RULE}

    report = build(
        firing, rules=rules, silences=silences, settings={"silences_known_from_ms": 30 * MIN}
    )

    alerts = {a["name"]: a for a in report["alerts"]}
    assert alerts["A"]["firing_seconds"] == 1800.0
    assert (alerts["A"]["silenced_seconds"], alerts["A"]["silenced_share"]) == (300.0, 0.5)
    assert alerts["A"]["acknowledged"] == 1
    # Fired only before silences are known: nothing to tell.
    assert (alerts["B"]["silenced_seconds"], alerts["B"]["silenced_share"]) == (None, None)


@pytest.mark.parametrize(
    ("retention", "known_from", "complete"),
    [("720h", None, True), ("120h", "1970-01-03T00:00:01.000Z", False)],
)
def test_silences_are_known_for_as_long_as_alertmanager_keeps_them(retention, known_from, complete):
    now = 7 * 24 * HOUR + 1 * S - 400  # a report of the 7 days to now
    retention_ms = int(retention[:-1]) * HOUR

    known_ms, section = ah.silence_coverage(now - 7 * 24 * HOUR, now, retention_ms, retention, "am")

    assert (section["known_from"], section["complete"], section["retention"]) == (
        known_from,
        complete,
        retention,
    )
    if complete:
        assert known_ms is None and section["note"] is None
    else:
        assert known_ms == 2 * 24 * HOUR + 1 * S  # to the next whole second
        assert section["note"].startswith(
            "Silences before 1970-01-03 00:00:01Z are unknown: Alertmanager keeps a silence "
            "only 120h after it ended"
        )
    assert ah.silence_coverage(0, now, retention_ms, retention, None)[1]["complete"] is False


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
    builder = ah.ReportBuilder(0, HOUR, UTC, SETTINGS)
    firing, for_state = series("A", times), {key: (times, active)}
    report = builder.build({"A": RULE}, firing, for_state, None, None, None)
    stats = report["alerts"][0]
    # What the suggestion is made of stays out of the report: no private keys in it.
    assert not [k for a in report["alerts"] for k in a if k.startswith("_")]

    suggestion = ah.for_suggestion(
        stats, MIN, in_catalog=True, conditions=builder.conditions[("A", "warning")]
    )

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


def test_of_series_with_the_same_tail_the_first_by_labels_is_the_worst():
    entry = {"alert": "Pool", "operator": ">", "threshold": 0.8, "compared_value": "use"}
    tied = [
        {"labels": {"instance": name}, "quantiles": {0.5: p50, 0.95: 0.99, 0.99: 1.0}}
        for name, p50 in (("host17", 0.88), ("host02", 0.91), ("host09", 0.5))
    ]

    for order in (tied, tied[::-1]):
        suggestion = ah.threshold_suggestion(entry, "never fired", order, 300000)
        assert suggestion["worst_series"] == 'instance="host02"'


# --- The relay's history -------------------------------------------------------------------


def test_relay_pages_are_read_as_the_relay_writes_them():
    firing = {
        "status": "firing",
        "labels": {"alertname": "A", "x": "1"},
        "startsAt": "2025-06-01T00:00:00Z",
        "deliveries": [],
    }
    resolved = {"status": "resolved", "labels": {"alertname": "B"}, "deliveries": []}
    # The page's data: HttpApi.get_json takes it out of {"status": "success", "data": ...}.
    document = {
        "notifications": [
            {
                "id": 7,
                "receiver": "critical",
                "receivedAt": "2025-06-01T00:00:01.500Z",
                "status": "firing",
                "alerts": [firing, resolved],
            }
        ],
        "next": 7,
    }

    records, following = ah.relay_page(document, parse_time)

    assert following == 7
    assert records == [
        {
            "name": "A",
            "time_ms": 1748736001500,
            "starts_ms": 1748736000000,
            "labels": {"alertname": "A", "x": "1"},
            "status": "firing",
            "receiver": "critical",
        },
        {
            "name": "B",
            "time_ms": 1748736001500,
            "starts_ms": None,
            "labels": {"alertname": "B"},
            "status": "resolved",
            "receiver": "critical",
        },
    ]
    last = {"notifications": [], "next": None}
    assert ah.relay_page(last, parse_time) == ([], None)
    # Not the relay's history: left out, with a note.
    assert ah.relay_page({"error": "nope"}, parse_time) is None
    assert ah.relay_page([], parse_time) is None
    assert ah.relay_page({"notifications": [{"alerts": []}]}, parse_time) is None


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
