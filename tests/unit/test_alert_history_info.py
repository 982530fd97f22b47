"""alert_history_info and playbooks/report.yml on history whose answer is known.

The history is synthetic and lies a few hours in the future: Alertmanager
starts a silence no earlier than now, so that silences over the history can
only be made in the future. Its series are backfilled into a real Prometheus
(promtool), its silences made in a real Alertmanager, and the report runs
through ansible-playbook on this machine, as an operator runs it.

The period is [T0, T0 + 6h), T0 a whole hour; rules are evaluated every 15 s
at g(k) = T0 + 7.25 s + k * 15 s (Prometheus' evaluations are not on whole
seconds). What each series holds, and what the report must say of it, is
written beside it below.
"""

import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import alert_history_info
import pytest
from ansible_collections.prometheus_alerting.stack.plugins.module_utils import alert_history as ah
from conftest import (
    ROOT,
    ModuleFailed,
    assert_documented,
    free_port,
    run_module,
    start_alertmanager,
)

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
from synthetic_history import History, HistoryPrometheus, backfill, rule_file

HOST = "mon-test"
HOUR = 3600 * 1000
T0 = (int(time.time()) // 3600 + 2) * HOUR
END = T0 + 6 * HOUR
RULES_FOR = {"DiskFlaps": "1m", "HighRejectionRate": "5m", "LowRejectionRate": "10m"}


def g(k):
    """The k-th evaluation of the rule groups, in ms."""
    return T0 + 7250 + 15000 * k


def at(offset_seconds):
    return T0 + round(offset_seconds * 1000)


def rfc3339(ms):
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def scrape(m):
    """Alertmanager scraped every minute, 3 s past the minute."""
    return T0 + 3000 + 60000 * m


def rejection_rates():
    """trading_bot_rejection_rate per instance, one value per 15 s of the period.

    Sorted, app1's 1440 values are 700 x 90, 650 x 96, 70 x 97.5, 20 x 99.2:
    p50 (rank 719.5) 96, p95 (rank 1367.05) 97.5, p99 (rank 1424.61) 99.2.
    app2's are 10 x 70, 60 x 75, 1370 x 85: p50 85, p5 (rank 71.95) 85, p1
    (rank 14.39) 75.
    """
    app1 = [90.0] * 700 + [96.0] * 650 + [97.5] * 70 + [99.2] * 20
    app2 = [70.0] * 10 + [75.0] * 60 + [85.0] * 1370
    # Spread over time in a fixed shuffled order: the quantiles do not depend on it.
    order = sorted(range(1440), key=lambda i: (i * 7919) % 1440)
    return {name: [values[i] for i in order] for name, values in (("app1", app1), ("app2", app2))}


def build_history(rules_path):
    history = History()
    flaps = {
        "alertname": "DiskFlaps",
        "instance": "app1",
        "severity": "warning",
        "service": "system",
    }
    # Four firings of 600, 300, 60 and 600 s; the 2nd and 3rd start 300 s after
    # the one before resolved: 2 flaps. The 4th misses one evaluation (k=1020)
    # but keeps its active time: one firing, not two.
    history.alert(flaps, 100, 139, g, active_at_k=96)
    history.alert(flaps, 160, 179, g, active_at_k=156)
    history.alert(flaps, 200, 203, g, active_at_k=196)
    history.alert(flaps, 1000, 1039, g, active_at_k=996, missing={1020})
    # No ALERTS_FOR_STATE: the gap at k=320 (30 s, more than 1.5 intervals)
    # splits it into 300 s and 285 s, the second one a flap.
    gap = {"alertname": "GapOnly", "instance": "app2", "severity": "info"}
    history.alert(gap, 300, 339, g, missing={320}, for_state=False)
    # app1 fires from before the period (not counted as fired) until g(800);
    # app2 from g(400) to g(1200). Any series fires [T0, g(1200)): 83.37%.
    busy = {"alertname": "HighRejectionRate", "job": "trading-bot", "severity": "warning"}
    history.alert({**busy, "instance": "app1"}, -100, 799, g, active_at_k=-120)
    history.alert({**busy, "instance": "app2"}, 400, 1199, g, active_at_k=380)
    # Two firings: 3600 s, of which a silence made 592.75 s in covers 1200 s,
    # and 300 s under a silence made before it began.
    silenced = {"alertname": "Silenced", "instance": "db1", "severity": "critical"}
    history.alert(silenced, 600, 839, g)
    history.alert(silenced, 1300, 1319, g)
    # A rule that is no longer loaded.
    history.alert(
        {"alertname": "RetiredAlert", "instance": "app3", "severity": "warning"}, 50, 59, g
    )

    for instance, values in rejection_rates().items():
        samples = [(T0 + 15000 * j, v) for j, v in enumerate(values, start=1)]
        history.add(
            "trading_bot_rejection_rate", {"instance": instance, "job": "trading-bot"}, samples
        )

    # Alertmanager's counters: +5 at 1h30m, +3 (1 failed) at 3h10m, a restart
    # with 2 sent at 4h05m, +1 at 5h20m: 11 attempted, 1 failed, 10 sent.
    def counter(steps):
        values, current = [], steps[0][1]
        for m in range(-20, 366):
            for first_m, value in steps:
                if m >= first_m:
                    current = value
            values.append((scrape(m), current))
        return values

    am = {"instance": "am1", "job": "alertmanager"}
    history.add(
        "alertmanager_notifications_total",
        {**am, "integration": "webhook"},
        counter([(-20, 10), (90, 15), (190, 18), (245, 2), (320, 3)]),
    )
    history.add(
        "alertmanager_notifications_failed_total",
        {**am, "integration": "webhook"},
        counter([(-20, 0), (190, 1), (245, 0)]),
    )
    for name in ("alertmanager_notifications_total", "alertmanager_notifications_failed_total"):
        history.add(name, {**am, "integration": "email"}, counter([(-20, 0)]))

    # test.rules took 2 and 4 ms in turn on this Prometheus (mean 3, max 4);
    # another instance's series must not count.
    group = f"{rules_path};test.rules"
    for instance, (low, high) in ((HOST, (0.002, 0.004)), ("other", (0.5, 0.9))):
        labels = {"instance": instance, "job": "prometheus", "rule_group": group}
        history.add(
            "prometheus_rule_group_last_duration_seconds",
            labels,
            [(T0 + 30000 + 60000 * m, high if m % 2 else low) for m in range(360)],
        )
        history.add(
            "prometheus_rule_group_iterations_missed_total",
            labels,
            [(T0 + 30000 + 60000 * m, 0) for m in range(360)],
        )
    return history


RULES = rule_file(
    {
        "test.rules": (
            "15s",
            [
                ("DiskFlaps", "1m", {"severity": "warning", "service": "system"}),
                ("GapOnly", None, {"severity": "info"}),
                ("NeverFires", None, {"severity": "info"}),
                ("Silenced", None, {"severity": "critical"}),
            ],
        ),
        "trading-bot.rules": (
            "15s",
            [
                ("HighRejectionRate", "5m", {"severity": "warning", "service": "trading-bot"}),
                ("LowRejectionRate", "10m", {"severity": "warning", "service": "trading-bot"}),
                ("TradingBotDown", "1m", {"severity": "critical", "service": "trading-bot"}),
            ],
        ),
        "system-resources.rules": (
            "30s",
            [("HighMemoryUsage", "5m", {"severity": "warning", "service": "system"})],
        ),
    }
)

SILENCES = [
    # Made 592.75 s into Silenced's first firing, for 1200 s of it.
    ({"alertname": "Silenced"}, at(9600), at(10800)),
    # Silenced's second firing [g(1300), g(1320)) entirely, from before it began.
    ({"instance": "db1", "severity": ("=~", "crit.*")}, at(19500), at(19900)),
    # Matches nothing that fires.
    ({"alertname": "Other"}, at(9000), at(20000)),
    # Every series but db1's: 100 s of each HighRejectionRate series.
    ({"instance": ("!=", "db1")}, at(9000), at(9100)),
]


def relay_alert(status, **labels):
    return {"status": status, "labels": labels, "annotations": {}, "deliveries": []}


def notification(number, received, *alerts):
    return {
        "id": number,
        "receiver": "critical",
        "receivedAt": rfc3339(received),
        "status": alerts[0]["status"],
        "groupKey": "{}:{}",
        "alerts": list(alerts),
    }


SILENCED = {"alertname": "Silenced", "instance": "db1", "severity": "critical"}
FLAPS = {"alertname": "DiskFlaps", "instance": "app1"}
# The relay's history as its API pages it: {"notifications": [...], "next": id}.
RELAY_PAGES = [
    [
        # Silenced's first firing was first notified 30 s after it began.
        notification(1, g(600) + 30000, relay_alert("firing", **SILENCED, env="x")),
        notification(2, g(600) + 330000, relay_alert("firing", **SILENCED)),
        notification(3, g(840) + 1000, relay_alert("resolved", **SILENCED)),
    ],
    [
        notification(4, g(100) + 20000, relay_alert("firing", **FLAPS)),
        notification(
            5,
            g(160) + 20000,
            relay_alert("firing", **FLAPS),
            relay_alert("firing", alertname="RetiredAlert", instance="app3"),
        ),
        notification(6, g(200) + 20000, relay_alert("firing", **FLAPS)),
        # Before the period: not counted.
        notification(7, T0 - 60000, relay_alert("firing", **FLAPS)),
    ],
]


def relay_page(query):
    page = 1 if query.get("after") == ["3"] else 0
    following = 3 if page == 0 else None
    return {"status": "success", "data": {"notifications": RELAY_PAGES[page], "next": following}}


class RelayStandIn:
    """The alert relay's history API: GET /api/v1/history?since=&until= -> `document`."""

    def __init__(self):
        self.document = None  # None: the pages above
        self.queries = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                stand_in.queries.append((url.path, query))
                document = stand_in.document or relay_page(query)
                body = json.dumps(document).encode()
                status = 200 if url.path == "/api/v1/history" else 404
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def post_silence(url, matchers, starts, ends):
    body = {
        "matchers": [
            {
                "name": name,
                "value": value[1] if isinstance(value, tuple) else value,
                "isRegex": isinstance(value, tuple) and value[0] in ("=~", "!~"),
                "isEqual": not (isinstance(value, tuple) and value[0] in ("!=", "!~")),
            }
            for name, value in matchers.items()
        ],
        "startsAt": rfc3339(starts),
        "endsAt": rfc3339(ends),
        "createdBy": "test",
        "comment": "report test",
    }
    request = urllib.request.Request(
        url + "/api/v2/silences",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["silenceID"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Prometheus on the synthetic history, Alertmanager with the silences, the relay."""
    directory = tmp_path_factory.mktemp("report-prometheus")
    backfill(build_history(directory / "rules.yml"), directory)
    prometheus = HistoryPrometheus(directory, RULES)
    am_directory = tmp_path_factory.mktemp("report-alertmanager")
    alertmanager = start_alertmanager(
        am_directory, "route: {receiver: r}\nreceivers: [{name: r}]\n"
    )
    relay = RelayStandIn()
    try:
        for matchers, starts, ends in SILENCES:
            post_silence(alertmanager.url, matchers, starts, ends)
        yield {"prometheus": prometheus, "alertmanager": alertmanager, "relay": relay}
    finally:
        relay.stop()
        alertmanager.stop()
        prometheus.stop()


def run_report(tmp_path, stack, extra=None, check=False, host_vars=None):
    """Run playbooks/report.yml on this machine as the monitoring host `mon-test`."""
    inventory = tmp_path / "inventory.json"
    prometheus_port = urlsplit(stack["prometheus"].url).port
    alertmanager_port = urlsplit(stack["alertmanager"].url).port
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "prometheus_port": prometheus_port,
        "alertmanager_port": alertmanager_port,
        **(host_vars or {}),
    }
    inventory.write_text(json.dumps({"monitoring": {"hosts": {HOST: host}}}))
    extra_vars = {
        "report_start": rfc3339(T0),
        "report_end": rfc3339(END),
        "report_shift_length": "2h",
        "report_dir": str(tmp_path / "reports"),
        **(extra or {}),
    }
    argv = ["ansible-playbook", "-i", str(inventory), str(ROOT / "playbooks" / "report.yml")]
    argv += ["-e", json.dumps(extra_vars)] + (["--check"] if check else [])
    environment = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.run(argv, capture_output=True, text=True, env=environment, check=False)


def report_files(tmp_path):
    name = "alert-report-" + datetime.fromtimestamp(END / 1000, UTC).strftime("%Y-%m-%d")
    base = tmp_path / "reports" / HOST / name
    return {suffix: base.with_suffix(f".{suffix}") for suffix in ("html", "md", "json")}


@pytest.fixture(scope="module")
def report(stack, tmp_path_factory):
    """The report of the period, with the relay, as the playbook writes it."""
    tmp_path = tmp_path_factory.mktemp("report-run")
    completed = run_report(tmp_path, stack, {"report_relay_url": stack["relay"].url})
    assert completed.returncode == 0, completed.stdout + completed.stderr
    files = report_files(tmp_path)
    return {
        "data": json.loads(files["json"].read_text()),
        "files": files,
        "stdout": completed.stdout,
    }


def by_name(items):
    return {item["name"]: item for item in items}


# --- The numbers ------------------------------------------------------------------------


def test_firings_time_firing_and_time_to_resolve(report):
    alerts = by_name(report["data"]["alerts"])

    flaps = alerts["DiskFlaps"]
    assert flaps["fired"] == 4
    assert flaps["firing_seconds"] == 1560.0
    assert flaps["median_firing_seconds"] == 450.0
    assert flaps["time_to_resolve"] == {"count": 4, "mean": 390.0, "median": 450.0, "p90": 600.0}
    assert flaps["firing_share"] == round(1560 / 21600, 4)
    assert (flaps["group"], flaps["severity"], flaps["for"], flaps["series"]) == (
        "test.rules",
        "warning",
        60.0,
        1,
    )

    gap = alerts["GapOnly"]
    assert (gap["fired"], gap["firing_seconds"]) == (2, 585.0)
    assert gap["time_to_resolve"] == {"count": 2, "mean": 292.5, "median": 292.5, "p90": 298.5}

    busy = alerts["HighRejectionRate"]
    # app1 was firing at the start: its part counts as firing time, not as a firing.
    assert (busy["fired"], busy["firing_at_start"], busy["series"]) == (1, 1, 2)
    assert busy["firing_seconds"] == 24007.25
    assert busy["median_firing_seconds"] == 12003.625
    assert busy["firing_share"] == round(18007.25 / 21600, 4)
    assert busy["busiest_series_share"] == round(12007.25 / 21600, 4)
    assert busy["time_to_resolve"] == {
        "count": 1,
        "mean": 12000.0,
        "median": 12000.0,
        "p90": 12000.0,
    }

    retired = alerts["RetiredAlert"]
    assert (retired["fired"], retired["firing_seconds"], retired["loaded"]) == (1, 150.0, False)


def test_flapping_counts_refirings_within_the_window(report):
    alerts = by_name(report["data"]["alerts"])

    assert (alerts["DiskFlaps"]["flaps"], alerts["DiskFlaps"]["flapping"]) == (2, True)
    # One flap is below report_flapping_min (2).
    assert (alerts["GapOnly"]["flaps"], alerts["GapOnly"]["flapping"]) == (1, False)
    assert alerts["Silenced"]["flaps"] == 0
    assert report["data"]["counts"]["flaps"] == 3


def test_counts_noisy_and_never_fired(report):
    data = report["data"]

    assert data["counts"] == {
        "rules": 8,
        "alerts_firing": 5,
        "alerts_fired": 5,
        "never_fired": 4,
        "firings": 10,
        "flaps": 3,
        "notifications": 10,
    }
    assert [a["name"] for a in data["never_fired"]] == [
        "HighMemoryUsage",
        "LowRejectionRate",
        "NeverFires",
        "TradingBotDown",
    ]
    assert [a["name"] for a in data["top_noisy"]] == [
        "DiskFlaps",
        "Silenced",
        "GapOnly",
        # Fired once each: the one with more notifications first.
        "RetiredAlert",
        "HighRejectionRate",
    ]
    assert data["empty"] is False


def test_silenced_share_and_time_from_first_notification_to_a_silence(report):
    alerts = by_name(report["data"]["alerts"])

    silenced = alerts["Silenced"]
    assert (silenced["fired"], silenced["firing_seconds"]) == (2, 3900.0)
    assert silenced["silenced_seconds"] == 1500.0
    assert silenced["silenced_share"] == round(1500 / 3900, 4)
    # The second firing was silenced before it began: nobody was notified.
    assert silenced["acknowledged"] == 1
    # From the relay's first notification (30 s after it fired) to the silence.
    assert silenced["time_to_silence"]["median"] == 562.75
    busy = alerts["HighRejectionRate"]
    # The instance!="db1" silence: 100 s of each of its two series.
    assert (busy["silenced_seconds"], busy["silenced_share"]) == (200.0, round(200 / 24007.25, 4))
    # Only app2's firing began in the period; the relay has no record of it.
    assert busy["time_to_silence"]["median"] == at(9000) / 1000 - g(400) / 1000
    assert alerts["DiskFlaps"]["silenced_share"] == 0.0


def test_notifications_from_the_relay_per_alert_and_the_counters_overall(report, stack):
    data = report["data"]
    alerts = by_name(data["alerts"])

    assert alerts["Silenced"]["notifications"] == 3
    assert alerts["DiskFlaps"]["notifications"] == 3
    assert alerts["GapOnly"]["notifications"] == 0
    assert data["sources"]["relay"] == {"url": stack["relay"].url, "used": True, "note": None}
    assert alerts["RetiredAlert"]["notifications"] == 1
    # Both pages were read: the second from where the first ended.
    (first, second) = stack["relay"].queries[:2]
    period = {"since": [rfc3339(T0)], "until": [rfc3339(END)], "limit": ["10000"]}
    assert first == ("/api/v1/history", period)
    assert second == ("/api/v1/history", {**period, "after": ["3"]})
    notifications = data["notifications"]
    assert notifications["source"] == "alertmanager_counters"
    assert (notifications["attempted"], notifications["failed"], notifications["total"]) == (
        11,
        1,
        10,
    )
    assert notifications["by_integration"] == {"webhook": {"attempted": 11, "failed": 1}}


def test_per_day_per_hour_of_day_and_fatigue_per_shift(report):
    data = report["data"]
    hour0 = datetime.fromtimestamp(T0 / 1000, UTC).hour
    hours = {h["hour"]: h for h in data["per_hour_of_day"]}

    notified = {(hour0 + 1) % 24: 5, (hour0 + 3) % 24: 2, (hour0 + 4) % 24: 2, (hour0 + 5) % 24: 1}
    assert {h: v["notifications"] for h, v in hours.items() if v["notifications"]} == notified
    starts = [g(k) for k in (100, 160, 200, 1000, 300, 321, 400, 600, 1300, 50)]
    expected = {}
    for moment in starts:
        hour = datetime.fromtimestamp(moment / 1000, UTC).hour
        expected[hour] = expected.get(hour, 0) + 1
    assert {h: v["alerts"] for h, v in hours.items() if v["alerts"]} == expected
    assert sum(d["alerts"] for d in data["per_day"]) == 10
    assert sum(d["notifications"] for d in data["per_day"]) == 10

    fatigue = data["fatigue"]
    assert (fatigue["shift_length"], fatigue["shifts"], fatigue["per_shift"]) == ("2h", 3.0, 3.33)
    # Shifts start at midnight every 2 h: the busiest holds the 5 of 1h30m.
    busiest_start = T0 if hour0 % 2 == 0 else T0 + HOUR
    assert fatigue["busiest_shift"] == {
        "start": datetime.fromtimestamp(busiest_start / 1000, UTC).isoformat(),
        "notifications": 5,
    }


def test_rule_groups_evaluation_time(report, stack):
    groups = by_name(report["data"]["rule_groups"])

    assert set(groups) == {"test.rules", "trading-bot.rules", "system-resources.rules"}
    test_rules = groups["test.rules"]
    assert (test_rules["interval"], test_rules["rules"]) == (15.0, 4)
    assert test_rules["mean_evaluation_time"] == pytest.approx(0.003)
    assert test_rules["max_evaluation_time"] == 0.004
    assert test_rules["iterations_missed"] == 0
    assert test_rules["share_of_interval"] == round(0.004 / 15, 4)
    assert groups["system-resources.rules"]["interval"] == 30.0
    # No history of its own: the last evaluation only.
    assert groups["trading-bot.rules"]["mean_evaluation_time"] is None


def test_suggestions_a_longer_for_and_thresholds_from_the_compared_values(report):
    data = report["data"]
    suggestions = {(s["alert"], s["kind"]): s for s in data["suggestions"]}

    assert set(suggestions) == {
        ("DiskFlaps", "for"),
        ("HighRejectionRate", "threshold"),
        ("LowRejectionRate", "threshold"),
    }
    longer = suggestions[("DiskFlaps", "for")]
    # Its flapping firings' conditions held 660.25 s and 360.25 s (from the active time).
    assert (longer["current"], longer["proposed"]) == ("1m", "12m")
    assert longer["override"] == "for: 12m  # in the rule's own file"
    assert "4 of its 4 resolved firings would not have fired" in longer["reason"]

    busy = suggestions[("HighRejectionRate", "threshold")]
    assert (busy["threshold"], busy["operator"], busy["series"]) == (95.0, ">", 2)
    assert busy["quantiles"] == {"p50": 96.0, "p95": 97.5, "p99": 99.2}
    assert busy["worst_series"] == 'instance="app1", job="trading-bot"'
    assert busy["compared_value"] == "trading_bot_rejection_rate"
    # app1 fired [T0, g(800)): 12007.25 s of the 6 hours.
    assert busy["why"] == "fired 55.6% of the time on its busiest series"
    assert busy["override"] == "prometheus_alert_overrides: {HighRejectionRate: {threshold: 99.2}}"

    never = suggestions[("LowRejectionRate", "threshold")]
    assert (never["threshold"], never["operator"], never["why"]) == (80.0, "<", "never fired")
    assert never["quantiles"] == {"p50": 85.0, "p5": 85.0, "p1": 75.0}
    assert never["worst_series"] == 'instance="app2", job="trading-bot"'
    assert never["override"] == "prometheus_alert_overrides: {LowRejectionRate: {threshold: 75}}"

    # A catalog alert with a threshold whose value has no samples says so.
    (note,) = data["suggestion_notes"]
    assert note.startswith("HighMemoryUsage never fired, but its compared value (100 * (1 - ")
    assert note.endswith("has no samples in the period: no threshold can be suggested.")


def test_files_are_written_and_the_html_is_self_contained(report):
    files = report["files"]
    html = files["html"].read_text()
    markdown = files["md"].read_text()

    assert all(path.is_file() for path in files.values())
    assert html.startswith("<!DOCTYPE html>")
    assert "<svg" in html and "</svg>" in html
    for external in ("<script", "src=", "<link", "@import", "url(", "@font-face"):
        assert external not in html
    # One timeline row per alert that fired, its bars coloured by severity.
    for name in ("DiskFlaps", "GapOnly", "HighRejectionRate", "Silenced", "RetiredAlert"):
        assert f">{name}</text>" in html
    assert 'fill="#c62828"' in html  # Silenced is critical
    assert "prometheus_alert_overrides: {HighRejectionRate: {threshold: 99.2}}" in markdown
    assert "Alertmanager has no acknowledgements" in markdown
    assert "## Never fired: candidates for a test or for removal" in markdown


def test_the_playbook_prints_a_short_summary(report):
    stdout = report["stdout"]

    assert f"Alert report: {HOST}, " in stdout
    assert "5 of 8 loaded alerting rules fired, 10 times in all (3 of them flaps)" in stdout
    assert "Notifications: 10 (from Alertmanager's counters); fatigue index 3.33" in stdout
    assert "Noisiest: DiskFlaps (4), Silenced (2), GapOnly (2)" in stdout
    assert "Report: " in stdout and "alert-report-" in stdout


# --- Without the relay, an empty period, check mode ---------------------------------------


def test_without_a_relay_notifications_come_from_the_counters_and_acks_from_firing(tmp_path, stack):
    closed = f"http://127.0.0.1:{free_port()}"

    completed = run_report(tmp_path, stack, {"report_relay_url": closed})

    assert completed.returncode == 0, completed.stdout + completed.stderr
    data = json.loads(report_files(tmp_path)["json"].read_text())
    alerts = by_name(data["alerts"])
    assert data["sources"]["relay"]["used"] is False
    assert data["sources"]["relay"]["note"].startswith("the alert relay did not answer (GET ")
    assert alerts["Silenced"]["notifications"] is None
    # From the moment it fired: 592.75 s.
    assert alerts["Silenced"]["time_to_silence"]["median"] == 592.75
    assert data["notifications"]["total"] == 10
    assert any("Notifications per alert are not known" in note for note in data["notes"])


def test_a_relay_answering_something_else_is_left_out(stack):
    stack["relay"].document = {"error": "no such thing"}
    try:
        result = read_module(stack, relay_url=stack["relay"].url)
    finally:
        stack["relay"].document = None

    relay = result["report"]["sources"]["relay"]
    assert relay["used"] is False
    assert relay["note"].endswith("answered without a list of notifications")


def test_a_period_without_alerts_says_so_and_divides_by_nothing(tmp_path, stack):
    completed = run_report(
        tmp_path,
        stack,
        {"report_start": rfc3339(T0 - 72 * HOUR), "report_end": rfc3339(T0 - 48 * HOUR)},
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    name = "alert-report-" + datetime.fromtimestamp((T0 - 48 * HOUR) / 1000, UTC).strftime(
        "%Y-%m-%d"
    )
    data = json.loads((tmp_path / "reports" / HOST / f"{name}.json").read_text())
    assert data["empty"] is True
    assert data["alerts"] == [] and data["top_noisy"] == [] and data["timeline"] == []
    assert len(data["never_fired"]) == 8
    assert data["counts"]["firings"] == 0
    assert data["notifications"]["total"] is None
    assert data["fatigue"]["per_shift"] is None
    html = (tmp_path / "reports" / HOST / f"{name}.html").read_text()
    assert "No alert fired in the period" in html and "<svg" in html
    assert "No alert fired in the period" in completed.stdout


def test_check_mode_reads_and_summarises_but_writes_nothing(tmp_path, stack):
    completed = run_report(tmp_path, stack, check=True)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert not (tmp_path / "reports").exists()
    assert "Check mode: nothing written (would write " in completed.stdout
    assert "5 of 8 loaded alerting rules fired" in completed.stdout


# --- Bad input ---------------------------------------------------------------------------


def read_module(stack, **args):
    return run_module(
        alert_history_info,
        {
            "url": stack["prometheus"].url,
            "alertmanager_url": stack["alertmanager"].url,
            "start": rfc3339(T0),
            "end": rfc3339(END),
            **args,
        },
    )


def test_a_period_that_is_not_a_duration_fails_through_the_playbook(tmp_path, stack):
    completed = run_report(
        tmp_path, stack, {"report_start": "", "report_end": "", "report_period": "7days"}
    )

    assert completed.returncode != 0
    assert "invalid period: '7days' is not a duration: write e.g. 30m, 2h, 1h30m or 1d" in (
        completed.stdout
    )
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            {"start": None, "end": None, "period": "7days"},
            "invalid period: '7days' is not a duration",
        ),
        ({"start": None, "period": "0s"}, "invalid period: '0s' is not a positive duration"),
        (
            {"start": "2025-06-02T00:00:00Z", "end": "2025-06-01T00:00:00Z"},
            "invalid period: its start 2025-06-02T00:00:00.000Z is not before its end "
            "2025-06-01T00:00:00.000Z",
        ),
        ({"start": "yesterday"}, "invalid period: 'yesterday' is not a timestamp"),
        ({"flap_window": "soon"}, "invalid flap_window: 'soon' is not a duration"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus' on this host"),
    ],
)
def test_bad_input_fails_with_a_clear_message(stack, args, message):
    with pytest.raises(ModuleFailed) as failure:
        read_module(stack, **args)

    assert failure.value.result["msg"].startswith(message)


def test_an_unreachable_prometheus_fails_naming_it(stack):
    url = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(ModuleFailed) as failure:
        read_module(stack, url=url)

    assert failure.value.result["msg"] == (
        f"cannot read the history from Prometheus: GET {url}/api/v1/rules failed: "
        "[Errno 111] Connection refused"
    )


def test_an_unreachable_alertmanager_fails_naming_it(stack):
    url = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(ModuleFailed) as failure:
        read_module(stack, alertmanager_url=url)

    assert failure.value.result["msg"].startswith(
        f"cannot read the silences from Alertmanager: GET {url}/api/v2/silences failed"
    )


@pytest.fixture(scope="module")
def guarded_prometheus(tmp_path_factory):
    """A Prometheus behind basic auth (user prometheus, password right-password)."""
    bcrypt = pytest.importorskip("bcrypt")
    directory = tmp_path_factory.mktemp("guarded-prometheus")
    hashed = bcrypt.hashpw(b"right-password", bcrypt.gensalt(rounds=4)).decode()
    (directory / "web.yml").write_text(f"basic_auth_users:\n  prometheus: {hashed}\n")
    (directory / "data").mkdir()
    service = HistoryPrometheus(
        directory, RULES, extra_flags=[f"--web.config.file={directory / 'web.yml'}"]
    )
    yield service
    service.stop()


def test_an_unauthorised_request_fails_saying_prometheus_refused_it(guarded_prometheus, stack):
    with pytest.raises(ModuleFailed) as failure:
        read_module(
            stack, url=guarded_prometheus.url, url_username="prometheus", url_password="wrong"
        )

    message = failure.value.result["msg"]
    assert message.startswith(
        f"cannot read the history from Prometheus: GET {guarded_prometheus.url}/api/v1/rules "
        "answered HTTP 401"
    )
    assert message.endswith(
        "(check url_username/url_password or bearer_token: Prometheus refused them)"
    )


def test_the_right_password_reads_the_guarded_prometheus(guarded_prometheus, stack):
    result = read_module(
        stack,
        url=guarded_prometheus.url,
        url_username="prometheus",
        url_password="right-password",
        sections=["rule_groups"],
    )

    assert {g["name"] for g in result["report"]["rule_groups"]} == {
        "test.rules",
        "trading-bot.rules",
        "system-resources.rules",
    }


# --- The module's conventions ---------------------------------------------------------------


def test_check_mode_returns_the_same_report_and_changes_nothing(stack):
    normal = read_module(stack, sections=["alerts"])
    checked = run_module(
        alert_history_info,
        {
            "url": stack["prometheus"].url,
            "alertmanager_url": stack["alertmanager"].url,
            "start": rfc3339(T0),
            "end": rfc3339(END),
            "sections": ["alerts"],
        },
        check_mode=True,
    )

    assert checked["changed"] is False
    for report in (normal["report"], checked["report"]):
        report.pop("generated_at")
    assert checked["report"] == normal["report"]


def test_rule_groups_only_reads_no_alert_history(stack):
    result = read_module(stack, sections=["rule_groups"], period="6h", start=None)

    report = result["report"]
    assert report["alerts"] == [] and report["suggestions"] == []
    assert report["notifications"]["source"] == "none"
    assert len(report["rule_groups"]) == 3


def test_every_option_is_documented():
    assert_documented(alert_history_info)


def test_shares_are_fractions_and_durations_finite(report):
    for alert in report["data"]["alerts"]:
        assert 0 <= alert["firing_share"] <= 1
        assert math.isfinite(alert["firing_seconds"])


def test_prometheus_answers_are_read_on_the_fast_path(stack):
    query = urlencode({"query": "ALERTS_FOR_STATE[6h]", "time": f"{END / 1000:.3f}"})
    with urllib.request.urlopen(f"{stack['prometheus'].url}/api/v1/query?{query}") as answer:
        text = answer.read().decode()

    fast = ah.parse_matrix(text)

    assert fast is not None and len(fast) == 5
    decoded = json.loads(text)["data"]["result"]
    assert [(s["metric"], [v for _t, v in s["values"]]) for s in decoded] == [
        (labels, values) for labels, _times, values in fast
    ]
    assert [[round(t * 1000) for t, _v in s["values"]] for s in decoded] == [
        times for _labels, times, _values in fast
    ]


def test_the_files_are_named_after_the_end_date_in_the_reports_time_zone(stack):
    zoneinfo = pytest.importorskip("zoneinfo")
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")

    result = read_module(stack, timezone="Europe/Berlin", sections=["rule_groups"])

    period = result["report"]["period"]
    assert period["end_date"] == datetime.fromtimestamp(END / 1000, berlin).date().isoformat()
    assert period["end"] == rfc3339(END)
