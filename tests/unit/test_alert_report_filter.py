"""The report playbook's filters: the catalog's thresholds in, HTML, Markdown and a summary out."""

import json
from datetime import UTC
from pathlib import Path
from urllib.parse import urlencode

import alert_report
import pytest
import yaml
from ansible_collections.prometheus_alerting.stack.plugins.module_utils import alert_history as ah
from conftest import ROOT, http_get

CATALOG_DIR = ROOT / "roles" / "prometheus" / "defaults" / "main"


class CatalogLoader(yaml.SafeLoader):
    """Reads the catalog's !unsafe strings (Prometheus templates) as plain strings."""


CatalogLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load(path):
    return yaml.load(Path(path).read_text(), Loader=CatalogLoader)


def catalog():
    groups = []
    for path in sorted(CATALOG_DIR.glob("alerts_*.yml")):
        groups += list(load(path).values())
    defaults = load(CATALOG_DIR / "main.yml")
    return groups, defaults["prometheus_alert_jobs"], defaults["prometheus_trading_bot_metrics"]


# --- The catalog's thresholds ------------------------------------------------------------


def test_every_catalog_alert_gets_an_entry_and_every_threshold_its_compared_value():
    groups, jobs, metrics = catalog()

    entries = {e["alert"]: e for e in alert_report.alert_report_catalog(groups, {}, jobs, metrics)}

    assert sorted(entries) == sorted(r["alert"] for g in groups for r in g["rules"])
    with_threshold = {name: e for name, e in entries.items() if "threshold" in e}
    assert sorted(with_threshold) == sorted(
        r["alert"] for g in groups for r in g["rules"] if "threshold" in (r.get("params") or {})
    )
    assert len(with_threshold) >= 16
    assert all(e.get("compared_value") and "note" not in e for e in with_threshold.values())
    assert entries["HighCPUUsage"] == {
        "alert": "HighCPUUsage",
        "threshold": 80.0,
        "operator": ">",
        "compared_value": (
            '100 * (1 - avg by (job, instance) (rate(node_cpu_seconds_total{mode="idle"}[5m])))'
        ),
    }
    assert entries["LowRejectionRate"]["operator"] == "<"
    assert entries["LowRejectionRate"]["compared_value"] == "trading_bot_rejection_rate"
    # Its `unless` still decides which filesystems count.
    assert entries["CriticalDiskUsage"]["compared_value"].endswith(
        ") unless on (instance, device, mountpoint) node_filesystem_readonly == 1"
    )
    assert entries["TradingBotDown"] == {"alert": "TradingBotDown"}


def test_the_inventorys_overrides_and_names_are_applied():
    groups, jobs, metrics = catalog()
    overrides = {"HighCPUUsage": {"threshold": 90, "for": "10m"}, "OrphanedContainers": {}}
    metrics = {**metrics, "rejection_rate": "bot_rejections_percent"}

    entries = {
        e["alert"]: e for e in alert_report.alert_report_catalog(groups, overrides, jobs, metrics)
    }

    assert entries["HighCPUUsage"]["threshold"] == 90.0
    assert entries["HighRejectionRate"]["compared_value"] == "bot_rejections_percent"


def test_a_critical_twin_gets_an_entry_of_its_own_with_its_own_threshold():
    group = {
        "name": "q.rules",
        "rules": [
            {
                "alert": "Backlog",
                "expr": "depth > {{ threshold }}",
                "params": {"threshold": 100},
                "critical": {"threshold": 500, "for": "1m"},
                "severity": "warning",
            },
            {"alert": "Plain", "expr": "x > {{ threshold }}", "params": {"threshold": 1}},
        ],
    }
    overrides = {"Backlog": {"threshold": 150, "critical": {"threshold": 400}}}

    entries = alert_report.alert_report_catalog([group], overrides, {}, {})

    assert entries == [
        {
            "alert": "Backlog",
            "severity": "warning",
            "threshold": 150.0,
            "operator": ">",
            "compared_value": "depth",
        },
        {
            "alert": "Backlog",
            "severity": "critical",
            "twin": True,
            "threshold": 400.0,
            "operator": ">",
            "compared_value": "depth",
        },
        {"alert": "Plain", "threshold": 1.0, "operator": ">", "compared_value": "x"},
    ]
    groups, jobs, metrics = catalog()
    tls = [
        e
        for e in alert_report.alert_report_catalog(groups, {}, jobs, metrics)
        if e["alert"] == "TLSCertificateExpiring"
    ]
    assert tls == [
        {"alert": "TLSCertificateExpiring", "severity": "warning"},
        {"alert": "TLSCertificateExpiring", "severity": "critical", "twin": True},
    ]


def test_every_compared_value_is_promql_that_prometheus_accepts(prometheus):
    groups, jobs, metrics = catalog()
    entries = alert_report.alert_report_catalog(groups, {}, jobs, metrics)

    for entry in entries:
        if "compared_value" not in entry:
            continue
        query = json.loads(
            http_get(
                prometheus.url + "/api/v1/query?" + urlencode({"query": entry["compared_value"]})
            )
        )
        assert query["status"] == "success", entry


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("x > {{ threshold }}", (">", "x")),
        ("x >= bool {{threshold}}", (">=", "x")),
        ("a / (b > 0) > {{ threshold }}", (">", "a / (b > 0)")),
        ("x < {{ threshold }} and on (i) up == 1", ("<", "(x) and on (i) up == 1")),
        ("x > {{ threshold }} or absent(x)", (">", "x")),
        ('rate(a{re=~"(x|y)"}[5m]) > {{ threshold }}', (">", 'rate(a{re=~"(x|y)"}[5m])')),
        ("up == 0", (None, "its expression does not compare anything with {{ threshold }}")),
        (
            "a unless b > {{ threshold }}",
            (None, "the left side of its comparison with the threshold holds or/and/unless"),
        ),
        (
            "(x > {{ threshold }}) * 2",
            (None, "its expression goes on after the threshold () * 2...)"),
        ),
    ],
)
def test_the_compared_value_is_the_left_side_of_the_comparison(template, expected):
    assert alert_report.split_threshold(template) == expected


def test_a_catalog_entry_may_name_its_compared_value_itself():
    group = {
        "name": "x.rules",
        "rules": [
            {
                "alert": "Odd",
                "expr": "clamp_max(v, 100) > {{ threshold }}",
                "params": {"threshold": 5},
                "compared_value": "v{job='{{ job.node }}'}",
            },
            {"alert": "NotANumber", "expr": "v > {{ threshold }}", "params": {"threshold": "hi"}},
        ],
    }

    entries = alert_report.alert_report_catalog([group], {}, {"node": "node-exporter"}, {})

    assert entries[0]["compared_value"] == "v{job='node-exporter'}"
    assert entries[1] == {"alert": "NotANumber", "note": "its threshold 'hi' is not a number"}


# --- Rendering -----------------------------------------------------------------------------

S, MIN, HOUR = 1000, 60000, 3600000


def make_report(firing=None, suggestions=(), notes=("a note",), rule_groups=()):
    builder = ah.ReportBuilder(
        0,
        6 * HOUR,
        UTC,
        {
            "flap_window_ms": 15 * MIN,
            "shift_ms": 12 * HOUR,
            "flapping_min": 2,
            "busy_share": 0.25,
            "top": 10,
            "external_labels": {},
            "default_interval_ms": 15 * S,
        },
    )
    rules = {
        "<script>alert(1)</script>": {
            "group": "a|b.rules",
            "interval_ms": 15 * S,
            "for_ms": 0,
            "labels": {"severity": "critical"},
        },
        "Quiet": {"group": "q.rules", "interval_ms": 15 * S, "for_ms": 0, "labels": {}},
    }
    body = builder.build(rules, firing or {}, {}, None, None, [] if firing else None)
    return {
        "generated_at": "1970-01-01T06:00:00.000Z",
        "period": {
            "start": "1970-01-01T00:00:00.000Z",
            "end": "1970-01-01T06:00:00.000Z",
            "seconds": 21600.0,
            "duration": "6h",
            "timezone": "UTC",
        },
        "sources": {
            "prometheus": "http://127.0.0.1:9090",
            "alertmanager": "http://127.0.0.1:9093",
            "relay": {"url": None, "used": False, "note": "no alert relay configured"},
        },
        "settings": {},
        "notes": list(notes),
        "notifications": {"source": "none", "total": None, "note": "not read"},
        "rule_groups": list(rule_groups),
        "suggestions": list(suggestions),
        "suggestion_notes": [],
        **body,
    }


def hostile_firing():
    labels = {"alertname": "<script>alert(1)</script>", "severity": "critical"}
    times = list(range(HOUR, 2 * HOUR, 15 * S))
    return {ah.series_key(labels): ({**labels, "alertstate": "firing"}, times)}


def test_the_html_is_one_self_contained_page_with_a_timeline_and_escapes_what_it_shows():
    report = make_report(
        hostile_firing(),
        suggestions=[
            {
                "alert": "<script>alert(1)</script>",
                "kind": "for",
                "reason": "because <b>",
                "override": "prometheus_alert_overrides: {X: {for: 5m}}",
            }
        ],
        rule_groups=[
            {
                "name": "a|b.rules",
                "interval": 15.0,
                "rules": 1,
                "evaluation_time": 0.00012,
                "mean_evaluation_time": None,
                "max_evaluation_time": None,
                "iterations_missed": None,
                "share_of_interval": 0.000008,
            }
        ],
    )

    page = alert_report.alert_report_html(report, "mon<1>")

    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "mon&lt;1&gt;" in page
    timeline = page[page.index("<svg") : page.index("</svg>")]
    # One bar of an hour, from 1h to 2h of the 6 hours, red for critical.
    assert 'fill="#c62828"' in timeline
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt;: 1h from +1h</title>" in timeline
    for external in ("src=", "<link", "@import", "url(", "http://www.w3.org"):
        assert external not in page


def test_markdown_escapes_table_cells_and_states_the_measures():
    markdown = alert_report.alert_report_markdown(make_report(hostile_firing()), "mon1")

    assert markdown.startswith("# Alert report: mon1, 1970-01-01 00:00:00Z to 1970-01-01 06:00:00Z")
    assert "| <script>alert(1)</script> | critical | 1 | 1h | 16.7% |" in markdown
    assert "- Quiet (q.rules, none)" in markdown
    assert "Alertmanager has no acknowledgements" in markdown


def test_an_empty_period_renders_and_says_so():
    report = make_report()

    page = alert_report.alert_report_html(report, "mon1")
    markdown = alert_report.alert_report_markdown(report, "mon1")
    lines = alert_report.alert_report_summary(report, "mon1", "/tmp/r/alert-report-x", False)

    assert report["empty"] is True
    assert "No alert fired in the period" in page and "<svg" in page
    assert "No alert fired in the period: none of the 2 loaded alerting rules" in markdown
    assert lines[1].startswith("No alert fired in the period")
    assert lines[-1] == "Report: /tmp/r/alert-report-x.html, .md and .json"


def test_the_summary_says_when_check_mode_wrote_nothing():
    lines = alert_report.alert_report_summary(make_report(), "mon1", "/r/x", True)

    assert lines[-1] == "Check mode: nothing written (would write /r/x.html, .md and .json)."


def test_the_json_keeps_the_report_as_it_is():
    report = make_report(hostile_firing())

    assert json.loads(alert_report.alert_report_json(report)) == report


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (12, "12s"), (12.5, "12.5s"), (330, "5m 30s"), (3600, "1h"), (183600, "2d 3h")],
)
def test_durations_read_for_people(seconds, text):
    assert alert_report.human(seconds) == text


def test_rule_group_lines_for_verify_name_each_group_and_its_times():
    report = {
        "rule_groups": [
            {
                "name": "system-resources.rules",
                "interval": 15,
                "evaluation_time": 0.0021,
                "mean_evaluation_time": 0.0018,
                "max_evaluation_time": None,
                "iterations_missed": 0,
            }
        ]
    }

    lines = alert_report.alert_report_rule_groups(report, "http://127.0.0.1:9090")

    assert lines[0] == (
        "Rule group evaluation, http://127.0.0.1:9090, last / mean / max, missed evaluations:"
    )
    assert lines[1] == "  system-resources.rules       every 15s: 2.1 ms / 1.8 ms / -, 0 missed"


def test_a_pair_is_named_with_its_severity_and_the_summary_says_what_is_not_known():
    builder = ah.ReportBuilder(
        0,
        6 * HOUR,
        UTC,
        {
            "flap_window_ms": 15 * MIN,
            "shift_ms": 12 * HOUR,
            "flapping_min": 2,
            "busy_share": 0.25,
            "top": 10,
            "external_labels": {},
            "default_interval_ms": 15 * S,
        },
    )
    rule = {"group": "p.rules", "interval_ms": 15 * S, "for_ms": 0}
    rules = {
        "Cert": [
            {**rule, "severity": "warning", "labels": {"severity": "warning"}},
            {**rule, "severity": "critical", "labels": {"severity": "critical"}},
        ]
    }
    firing = {}
    for severity in ("warning", "critical"):
        labels = {"alertname": "Cert", "severity": severity}
        firing[ah.series_key(labels)] = ({**labels, "alertstate": "firing"}, [HOUR, HOUR + 15 * S])
    body = builder.build(rules, firing, {}, None, None, [], [(HOUR, 2 * HOUR, 15 * S)])
    report = make_report()
    report.update(body)
    report["alerts"][0]["across_restarts"] = 1
    report["silences"] = {
        "source": "http://127.0.0.1:9093",
        "retention": "120h",
        "known_from": "1970-01-01T02:00:00.000Z",
        "complete": False,
        "note": "Silences before 1970-01-01 02:00:00Z are unknown: because.",
    }
    report["suggestions"] = [
        {"alert": "Cert", "severity": "critical", "kind": "for", "reason": "r", "override": "o"}
    ]

    page = alert_report.alert_report_html(report, "mon1")
    markdown = alert_report.alert_report_markdown(report, "mon1")
    lines = alert_report.alert_report_summary(report, "mon1")

    timeline = page[page.index("<svg") : page.index("</svg>")]
    assert ">Cert (critical)</text>" in timeline and ">Cert (warning)</text>" in timeline
    assert "<h3>Cert (critical): a longer <code>for</code></h3>" in page
    assert "1. Cert (critical): fired once" in markdown
    assert "Noisiest: Cert (critical) (1), Cert (warning) (1)" in lines
    assert "Suggestions: 1 (for: Cert (critical))" in lines
    restarts = (
        "Prometheus restarted once in the period: a firing that went on across a restart "
        "counts as one firing, not as a resolve and a new firing (1 such gap)."
    )
    unknown = "Silences before 1970-01-01 02:00:00Z are unknown: because."
    for text in (page, markdown, "\n".join(lines)):
        assert restarts in text
        assert unknown in text
