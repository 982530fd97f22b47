"""Filters of playbooks/report.yml: the catalog's thresholds in, the report's files out.

- ``alert_report_catalog``: the prometheus role's alert catalog plus the
  inventory's overrides become the entries the module alert_history_info
  takes: per alert, its threshold and the PromQL of the value compared with it.
- ``alert_report_markdown``, ``alert_report_html``: the module's report as
  Markdown, and as one self-contained HTML file (inline CSS and SVG, nothing
  fetched from anywhere) with a timeline of the firings.
- ``alert_report_summary``: the few lines the playbook prints.

They run on the controller: the module computes, these only render.
"""

import html
import json
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from ansible.errors import AnsibleFilterError
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.plain_data import (
    plain as _plain,
)
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

_ENV = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False)

# `<left side> <comparison> {{ threshold }} <rest>` in an expression template.
_THRESHOLD = re.compile(
    r"^(?P<left>.*?)\s*(?P<operator>>=|<=|==|!=|>|<)\s*(?:bool\s+)?"
    r"\{\{-?\s*threshold\s*-?\}\}(?P<rest>.*)$",
    re.DOTALL,
)
_SET_OPERATOR = re.compile(r"\b(or|and|unless)\b")


def _top_level(text):
    """`text` with quoted strings, {label matchers} and (parenthesised) parts blanked out."""
    out, depth, quote, escaped = [], 0, None, False
    for char in text:
        if quote:
            escaped = char == "\\" and not escaped
            if char == quote and not escaped:
                quote = None
            out.append(" ")
            continue
        if char in "\"'`":
            quote = char
        elif char in "({[":
            depth += 1
        elif char in ")}]":
            depth -= 1
        out.append(char if depth == 0 and char not in ")}]" else " ")
    return "".join(out)


def split_threshold(template):
    """(operator, compared-value template) of an expression template, or (None, why not).

    The comparison binds tighter than `and`/`unless`/`or`, so a trailing
    `unless ...` or `and ...` still filters the compared series and is kept;
    a trailing `or ...` adds series that are not compared and is left out.
    """
    match = _THRESHOLD.match(template.strip())
    if not match:
        return None, "its expression does not compare anything with {{ threshold }}"
    left, operator, rest = match.group("left").strip(), match.group("operator"), match.group("rest")
    if _SET_OPERATOR.search(_top_level(left)):
        return None, "the left side of its comparison with the threshold holds or/and/unless"
    rest = rest.strip()
    head = rest.split(None, 1)[0] if rest else ""
    if not rest or head == "or":
        return operator, left
    if head in ("and", "unless"):
        return operator, f"({left}) {rest}"
    return None, f"its expression goes on after the threshold ({rest[:40]}...)"


def _render(template, context):
    return " ".join(_ENV.from_string(template).render(context).split())


def alert_report_catalog(groups, overrides=None, jobs=None, metrics=None):
    """Per alert of the catalog: its threshold and the value compared with it.

    `groups` is the catalog (the prometheus role's prometheus_alerts_* groups and
    prometheus_alert_extra_groups), `overrides` prometheus_alert_overrides, `jobs`
    and `metrics` prometheus_alert_jobs and prometheus_trading_bot_metrics. Every
    alert gets an entry (so that suggestions can name its override); one with a
    `threshold` parameter also gets `threshold`, `operator` and `compared_value`,
    or a `note` saying why the compared value cannot be derived. An entry's own
    `compared_value` key, if the catalog has one, is used as it is written.

    An alert with a critical twin (`critical:`, rendered as a second rule of the same
    name with `severity: critical` and its own params) gets two entries, each with
    its `severity`, the twin's marked `twin` and holding its own threshold: the
    report tells the two rules apart and changes the twin through `critical:`.
    """
    groups, overrides = _plain(groups or []), _plain(overrides or {})
    context = {"job": _plain(jobs or {}), "metric": _plain(metrics or {})}
    entries = []
    for group in groups:
        if not isinstance(group, dict):
            raise AnsibleFilterError(
                f"alert_report_catalog: a rule group is not a mapping: {group!r}"
            )
        for rule in group.get("rules") or []:
            name = rule.get("alert")
            if not name:
                continue
            override = overrides.get(name) or {}
            params = {**(rule.get("params") or {})}
            params.update({k: v for k, v in override.items() if k in params})
            expr = override.get("expr", rule.get("expr", ""))
            entry = {"alert": name}
            critical = rule.get("critical")
            if isinstance(critical, dict):
                entry["severity"] = override.get("severity", rule.get("severity", "warning"))
            if "threshold" in params:
                entry.update(_threshold_entry(expr, rule, params, context))
            entries.append(entry)
            if isinstance(critical, dict):
                twin_params = {**params, **critical, **(override.get("critical") or {})}
                twin_params.pop("for", None)
                twin = {"alert": name, "severity": "critical", "twin": True}
                if "threshold" in twin_params:
                    twin.update(_threshold_entry(expr, rule, twin_params, context))
                entries.append(twin)
    return entries


def _threshold_entry(expr, rule, params, context):
    try:
        threshold = float(params["threshold"])
    except (TypeError, ValueError):
        return {"note": f"its threshold {params['threshold']!r} is not a number"}
    entry = {"threshold": threshold}
    operator, compared = split_threshold(str(expr))
    if operator is None:
        entry["note"] = compared
        return entry
    template = rule.get("compared_value") or compared
    try:
        entry.update(operator=operator, compared_value=_render(template, {**context, **params}))
    except TemplateError as err:
        entry["note"] = f"its compared value cannot be rendered: {err}"
    return entry


# --- Rendering ----------------------------------------------------------------------

SEVERITY_COLOURS = {
    "critical": "#c62828",
    "error": "#c62828",
    "warning": "#ef6c00",
    "info": "#1565c0",
    "none": "#757575",
}
OTHER_COLOUR = "#6a1b9a"
SEVERITY_ORDER = {"critical": 0, "error": 0, "warning": 1, "info": 2, "none": 3}


def human(value):
    """Seconds for a reader: 42s, 12.5s, 5m 30s, 3h 12m, 2d 3h; '-' for nothing."""
    if value is None:
        return "-"
    value = float(value)
    if value < 60:
        return f"{value:.0f}s" if value == int(value) else f"{value:.1f}s"
    total = round(value)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m {secs}s" if secs else f"{minutes}m"


def percent(value):
    if value is None:
        return "-"
    if 0 < value < 0.001:
        return f"{value * 100:.2g}%"
    return f"{value * 100:.1f}%"


def _times(count):
    return "once" if count == 1 else f"{count} times"


def _notified(count):
    if count is None:
        return ""
    return f", {count} notification" + ("" if count == 1 else "s")


def number(value):
    if value is None:
        return "-"
    if isinstance(value, float) and value != int(value):
        return f"{value:.2f}"
    return str(int(value))


def _stamp(text):
    """2025-06-01T18:00:00.000Z -> 2025-06-01 18:00:00Z."""
    return str(text or "").replace("T", " ").replace(".000Z", "Z")


def _headline(report, host):
    period = report["period"]
    return (
        f"Alert report: {host}, {_stamp(period['start'])} to {_stamp(period['end'])} "
        f"({period['duration']}, days and hours in {period['timezone']})"
    )


def _paired(report):
    """The alert names with several rules (a warning/critical pair) in the report."""
    seen, paired = {}, set()
    for entry in [*report.get("alerts", []), *report.get("never_fired", [])]:
        severities = seen.setdefault(entry["name"], set())
        severities.add(entry.get("severity"))
        if len(severities) > 1:
            paired.add(entry["name"])
    return paired


def _title(entry, paired, key="name"):
    """A rule as the report names it: its alert name, with its severity where the name
    has several rules."""
    name = entry[key]
    return f"{name} ({entry.get('severity')})" if name in paired else name


def _summary_facts(report):
    """The report's main figures as sentences, shared by every format."""
    counts, fatigue = report["counts"], report["fatigue"]
    notifications = report.get("notifications") or {}
    facts = []
    if report["empty"]:
        facts.append(
            f"No alert fired in the period: none of the {counts['rules']} loaded alerting "
            "rules was firing at any time in it."
        )
    else:
        facts.append(
            f"{counts['alerts_fired']} of {counts['rules']} loaded alerting rules fired, "
            f"{counts['firings']} times in all ({counts['flaps']} of them flaps); "
            f"{counts['alerts_firing']} were firing at some time; {counts['never_fired']} "
            "never fired."
        )
    if notifications.get("total") is None:
        facts.append(f"Notifications: not known ({notifications.get('note') or 'not read'}).")
    else:
        source = {
            "alertmanager_counters": "Alertmanager's counters",
            "relay": "the alert relay's history",
        }.get(notifications.get("source"), notifications.get("source"))
        busiest = fatigue.get("busiest_shift")
        facts.append(
            f"Notifications: {notifications['total']} (from {source}); fatigue index "
            f"{number(fatigue['per_shift'])} notifications per {fatigue['shift_length']} shift"
            + (
                f", busiest shift from {busiest['start']} with {busiest['notifications']}."
                if busiest
                else "."
            )
        )
    restarts = report.get("prometheus_restarts")
    if restarts:
        bridged = sum(a.get("across_restarts") or 0 for a in report["alerts"])
        facts.append(
            f"Prometheus restarted {_times(len(restarts))} in the period: a firing that went "
            f"on across a restart counts as one firing, not as a resolve and a new firing "
            f"({bridged} such {'gap' if bridged == 1 else 'gaps'})."
        )
    silences = report.get("silences") or {}
    if silences.get("known_from") and silences.get("note"):
        facts.append(silences["note"])
    return facts


def _alert_rows(report):
    rows = []
    for a in report["alerts"]:
        resolve, silence = a["time_to_resolve"], a["time_to_silence"]
        rows.append(
            [
                a["name"],
                a["severity"],
                number(a["fired"]),
                human(a["firing_seconds"]),
                percent(a["firing_share"]),
                percent(a.get("busiest_series_share")),
                human(a["median_firing_seconds"]),
                human(resolve["mean"]),
                human(resolve["median"]),
                human(resolve["p90"]),
                number(a["flaps"]),
                number(a["notifications"]),
                percent(a["silenced_share"]),
                f"{human(silence['median'])} ({silence['count']})" if silence["count"] else "-",
            ]
        )
    return rows


ALERT_COLUMNS = [
    "Alert",
    "Severity",
    "Fired",
    "Firing, total",
    "Share of period",
    "Busiest series",
    "Firing, median",
    "To resolve, mean",
    "median",
    "p90",
    "Flaps",
    "Notifications",
    "Silenced",
    "To a silence, median (n)",
]
GROUP_COLUMNS = [
    "Rule group",
    "Interval",
    "Rules",
    "Last evaluation",
    "Mean",
    "Max",
    "Max / interval",
    "Missed",
]


def _group_rows(report):
    return [
        [
            g["name"],
            human(g["interval"]),
            number(g["rules"]),
            _ms(g["evaluation_time"]),
            _ms(g.get("mean_evaluation_time")),
            _ms(g.get("max_evaluation_time")),
            percent(g.get("share_of_interval")),
            number(g.get("iterations_missed")),
        ]
        for g in report.get("rule_groups") or []
    ]


def _ms(value):
    return "-" if value is None else f"{float(value) * 1000:.3g} ms"


DEFINITIONS = [
    'A firing is a run of an alert series\' ALERTS{alertstate="firing"} samples with one '
    "ALERTS_FOR_STATE value; it starts at its first sample and is resolved one evaluation "
    "interval after its last. A restart of Prometheus does not end it: the gap a restart "
    "leaves (the downtime plus the rule's `for`) is part of the firing.",
    "Each row is one alerting rule: a warning/critical pair of one alert name is two rules, "
    "each with its own figures and suggestions.",
    "Fired counts firings that started in the period; firing time counts only the part "
    "inside it; time to resolve counts firings that started and resolved in it.",
    "Share of period: the part of the period in which any series of the alert fired; "
    "busiest series: the part in which its busiest series fired.",
    "A flap is a firing that starts within the flap window after the same series resolved.",
    "Silenced is the share of an alert's firing time that a silence matching it covered; "
    "where Alertmanager no longer keeps the silences of the period's start, of the firing "
    "time since the summary's date.",
    "Alertmanager has no acknowledgements: the time from the first notification of a "
    "firing to the first silence that covers it stands in for the time to acknowledge "
    "(n: firings silenced that way).",
    "The fatigue index is the notifications per on-call shift: all notifications of the "
    "period divided by the number of shifts in it.",
    "Percentiles interpolate between ranks as PromQL's quantile() does.",
]


# --- Markdown -------------------------------------------------------------------------


def _md_cell(value):
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_table(columns, rows):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def alert_report_markdown(report, host="monitoring host"):
    """The report as Markdown."""
    report = _plain(report)
    out = [f"# {_headline(report, host)}", ""]
    out += [*_sources(report), ""]
    out += ["## Summary", ""] + [f"- {fact}" for fact in _summary_facts(report)] + [""]
    if report["alerts"]:
        out += ["## Per alert", "", *_md_table(ALERT_COLUMNS, _alert_rows(report)), ""]
    out += ["## Noisiest alerts", ""]
    paired = _paired(report)
    out += [
        f"{n}. {_title(a, paired)}: fired {_times(a['fired'])}" + _notified(a["notifications"])
        for n, a in enumerate(report["top_noisy"], 1)
    ] or ["No alert fired in the period."]
    out += ["", "## Never fired: candidates for a test or for removal", ""]
    out += [f"- {a['name']} ({a['group']}, {a['severity']})" for a in report["never_fired"]] or [
        "Every loaded alerting rule fired."
    ]
    out += ["", "## Alerts and notifications per day", ""]
    out += _md_table(
        ["Day", "Alerts", "Notifications"],
        [[d["date"], d["alerts"], number(d["notifications"])] for d in report["per_day"]],
    )
    out += ["", "## Per hour of day", ""]
    out += _md_table(
        ["Hour", "Alerts", "Notifications"],
        [
            [f"{h['hour']:02d}:00", h["alerts"], number(h["notifications"])]
            for h in report["per_hour_of_day"]
        ],
    )
    if report.get("rule_groups"):
        out += ["", "## Rule groups: evaluation time", ""]
        out += _md_table(GROUP_COLUMNS, _group_rows(report))
    out += ["", "## Suggestions", ""]
    for suggestion in report["suggestions"]:
        title = "a longer `for`" if suggestion["kind"] == "for" else "its threshold"
        out += [f"### {_title(suggestion, paired, 'alert')}: {title}", "", suggestion["reason"], ""]
        out += ["```yaml", suggestion["override"], "```", ""]
    out += [f"- {note}" for note in report["suggestion_notes"]]
    if not report["suggestions"] and not report["suggestion_notes"]:
        out += ["None."]
    out += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]]
    out += ["", "## Definitions", ""] + [f"- {d}" for d in DEFINITIONS]
    return "\n".join(out) + "\n"


def _sources(report):
    sources = report["sources"]
    relay = sources["relay"]
    relay_text = (
        f"the alert relay at {relay['url']}" if relay["used"] else f"no relay ({relay['note']})"
    )
    return [
        f"From Prometheus at {sources['prometheus']}, Alertmanager at "
        f"{sources['alertmanager'] or '(none)'} and {relay_text}; generated "
        f"{_stamp(report['generated_at'])}."
    ]


# --- HTML -----------------------------------------------------------------------------

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #212121;
       margin: 2em auto; max-width: 1200px; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f5f5f5; }
code, pre { background: #f5f5f5; padding: 2px 4px; }
pre { padding: .6em; overflow-x: auto; }
.legend span { display: inline-block; margin-right: 1.2em; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 4px;
          vertical-align: -1px; }
.muted { color: #757575; }
svg text { font: 11px system-ui, sans-serif; fill: #424242; }
"""


def _esc(value):
    return html.escape(str(value), quote=True)


def _html_table(columns, rows):
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _colour(severity):
    return SEVERITY_COLOURS.get(str(severity).lower(), OTHER_COLOUR)


def _ticks(period_seconds):
    """Tick spacing in seconds: about 7 to 14 ticks over the period."""
    for step in (300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400):
        if period_seconds / step <= 14:
            return step
    return 30 * 86400


def timeline_svg(report, width=1100, label_width=250, row_height=16):
    """One row per alert, its firing intervals as bars coloured by severity."""
    rows = sorted(
        report["timeline"],
        key=lambda r: (SEVERITY_ORDER.get(str(r["severity"]).lower(), 4), r["name"]),
    )
    period = float(report["period"]["seconds"])
    paired = _paired(report)
    plot = width - label_width - 30
    top, axis = 6, 22
    height = top + row_height * max(1, len(rows)) + axis
    parts = [
        f'<svg role="img" aria-label="Timeline of firing alerts" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">'
    ]
    step = _ticks(period)
    for offset, label in _tick_marks(report["period"], step):
        x = label_width + plot * offset / period
        parts.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - axis + 4}" '
            'stroke="#e0e0e0"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle">{_esc(label)}</text>'
        )
    for index, row in enumerate(rows):
        y = top + index * row_height
        colour = _colour(row["severity"])
        if index % 2:
            parts.append(
                f'<rect x="0" y="{y}" width="{width}" height="{row_height}" fill="#fafafa"/>'
            )
        parts.append(
            f'<text x="{label_width - 6}" y="{y + row_height - 4}" text-anchor="end">'
            f"{_esc(_title(row, paired))}</text>"
        )
        for first, last in row["bars"]:
            x = label_width + plot * first / period
            w = max(1.0, plot * (last - first) / period)
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_height - 6}" '
                f'fill="{colour}"><title>{_esc(_title(row, paired))}: {_esc(human(last - first))} '
                f"from +{_esc(human(first))}</title></rect>"
            )
    if not rows:
        parts.append(
            f'<text x="{label_width}" y="{top + row_height - 4}">No alert fired in the period.'
            "</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _zone(name):
    if str(name).upper() in ("UTC", "Z", "ETC/UTC"):
        return UTC
    try:
        return ZoneInfo(str(name))
    except (ValueError, OSError, KeyError):
        return UTC


def _tick_marks(period, step):
    """(seconds after the start, label) of each tick: on whole steps of the local day."""
    zone = _zone(period["timezone"])
    start = datetime.fromisoformat(str(period["start"]).replace("Z", "+00:00")).astimezone(zone)
    end = start + timedelta(seconds=float(period["seconds"]))
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
    moment = midnight
    while moment < start:
        moment += timedelta(seconds=step)
    marks = []
    while moment <= end:
        if step >= 86400 or (moment.hour, moment.minute) == (0, 0):
            label = moment.strftime("%m-%d")
        else:
            label = moment.strftime("%H:%M")
        marks.append(((moment - start).total_seconds(), label))
        moment += timedelta(seconds=step)
    return marks


BAR_SERIES = (("alerts", "firings", "#ef6c00"), ("notifications", "notifications", "#1565c0"))


def bars_svg(buckets, labels, width=720, height=120):
    """Firings and notifications per bucket (day, hour of day) as grouped bars."""
    series = [(key, name, colour) for key, name, colour in BAR_SERIES if _known(buckets, key)]
    peak = max([b[key] or 0 for b in buckets for key, _n, _c in series] or [0]) or 1
    count = max(1, len(buckets))
    slot = (width - 40) / count
    bar_width = max(1.0, (slot - 2) / max(1, len(series)))
    parts = [f'<svg width="{width}" height="{height + 20}" viewBox="0 0 {width} {height + 20}">']
    parts.append(f'<text x="0" y="10">{_esc(number(peak))}</text>')
    for index, (bucket, label) in enumerate(zip(buckets, labels, strict=True)):
        x = 40 + index * slot
        for offset, (key, name, colour) in enumerate(series):
            value = bucket[key] or 0
            h = (height - 14) * value / peak
            parts.append(
                f'<rect x="{x + 1 + offset * bar_width:.1f}" y="{height - h:.1f}" '
                f'width="{bar_width:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{_esc(label)}: {value} {name}</title>'
                "</rect>"
            )
        if count <= 31 or index % max(1, count // 12) == 0:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{height + 14}" text-anchor="middle">'
                f"{_esc(label)}</text>"
            )
    parts.append("</svg>")
    legend = "".join(
        f'<span><span class="swatch" style="background:{colour}"></span>{name}</span>'
        for _key, name, colour in series
    )
    return f'<p class="legend">{legend}</p>' + "".join(parts)


def _known(buckets, key):
    return any(b.get(key) is not None for b in buckets)


def alert_report_html(report, host="monitoring host"):
    """The report as one self-contained HTML page: inline CSS and SVG, no script."""
    report = _plain(report)
    paired = _paired(report)
    title = _headline(report, host)
    body = [f"<h1>{_esc(title)}</h1>", f"<p class=muted>{_esc(_sources(report)[0])}</p>"]
    body += ["<h2>Summary</h2><ul>"] + [f"<li>{_esc(f)}</li>" for f in _summary_facts(report)]
    body += ["</ul><h2>Timeline</h2>", '<p class="legend">']
    body += [
        f'<span><span class="swatch" style="background:{c}"></span>{_esc(s)}</span>'
        for s, c in (
            ("critical", SEVERITY_COLOURS["critical"]),
            ("warning", SEVERITY_COLOURS["warning"]),
            ("info", SEVERITY_COLOURS["info"]),
            ("none", SEVERITY_COLOURS["none"]),
            ("other", OTHER_COLOUR),
        )
    ]
    body += ["</p>", timeline_svg(report)]
    if report["alerts"]:
        body += ["<h2>Per alert</h2>", _html_table(ALERT_COLUMNS, _alert_rows(report))]
    body.append("<h2>Noisiest alerts</h2>")
    if report["top_noisy"]:
        body.append("<ol>")
        body += [
            f"<li>{_esc(_title(a, paired))}: fired {_times(a['fired'])}"
            + _notified(a["notifications"])
            + "</li>"
            for a in report["top_noisy"]
        ]
        body.append("</ol>")
    else:
        body.append("<p>No alert fired in the period.</p>")
    body.append("<h2>Never fired: candidates for a test or for removal</h2>")
    if report["never_fired"]:
        body.append("<ul>")
        body += [
            f"<li>{_esc(a['name'])} <span class=muted>({_esc(a['group'])}, "
            f"{_esc(a['severity'])})</span></li>"
            for a in report["never_fired"]
        ]
        body.append("</ul>")
    else:
        body.append("<p>Every loaded alerting rule fired.</p>")
    days, hours = report["per_day"], report["per_hour_of_day"]
    body.append("<h2>Alerts and notifications per day</h2>")
    body.append(bars_svg(days, [d["date"][5:] for d in days]))
    body.append(
        _html_table(
            ["Day", "Alerts", "Notifications"],
            [[d["date"], d["alerts"], number(d["notifications"])] for d in days],
        )
    )
    body.append("<h2>Per hour of day</h2>")
    body.append(bars_svg(hours, [f"{h['hour']:02d}" for h in hours]))
    body.append(
        _html_table(
            ["Hour", "Alerts", "Notifications"],
            [[f"{h['hour']:02d}:00", h["alerts"], number(h["notifications"])] for h in hours],
        )
    )
    if report.get("rule_groups"):
        body += [
            "<h2>Rule groups: evaluation time</h2>",
            _html_table(GROUP_COLUMNS, _group_rows(report)),
        ]
    body.append("<h2>Suggestions</h2>")
    for suggestion in report["suggestions"]:
        what = "a longer <code>for</code>" if suggestion["kind"] == "for" else "its threshold"
        body.append(f"<h3>{_esc(_title(suggestion, paired, 'alert'))}: {what}</h3>")
        body.append(f"<p>{_esc(suggestion['reason'])}</p><pre>{_esc(suggestion['override'])}</pre>")
    if report["suggestion_notes"]:
        body.append(
            "<ul>" + "".join(f"<li>{_esc(n)}</li>" for n in report["suggestion_notes"]) + "</ul>"
        )
    if not report["suggestions"] and not report["suggestion_notes"]:
        body.append("<p>None.</p>")
    body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_esc(n)}</li>" for n in report["notes"]))
    body.append(
        "</ul><h2>Definitions</h2><ul>" + "".join(f"<li>{_esc(d)}</li>" for d in DEFINITIONS)
    )
    body.append("</ul>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


# --- Summary --------------------------------------------------------------------------


def alert_report_summary(report, host="monitoring host", files="", check_mode=False):
    """The lines the playbook prints: the headline figures and where the files are."""
    report = _plain(report)
    lines = [_headline(report, host), *_summary_facts(report)]
    paired = _paired(report)
    if report["top_noisy"]:
        lines.append(
            "Noisiest: "
            + ", ".join(f"{_title(a, paired)} ({a['fired']})" for a in report["top_noisy"][:5])
        )
    slow = [g for g in report.get("rule_groups") or [] if (g.get("share_of_interval") or 0) >= 0.5]
    for group in slow:
        peak = group.get("max_evaluation_time") or group["evaluation_time"]
        lines.append(
            f"Rule group {group['name']} takes up to {_ms(peak)} of its "
            f"{human(group['interval'])} interval."
        )
    kinds = {}
    for suggestion in report["suggestions"]:
        kinds.setdefault(suggestion["kind"], []).append(_title(suggestion, paired, "alert"))
    if kinds:
        lines.append(
            f"Suggestions: {len(report['suggestions'])} ("
            + "; ".join(f"{kind}: {', '.join(names)}" for kind, names in sorted(kinds.items()))
            + ")"
        )
    else:
        lines.append("Suggestions: none.")
    if files:
        lines.append(
            f"Check mode: nothing written (would write {files}.html, .md and .json)."
            if check_mode
            else f"Report: {files}.html, .md and .json"
        )
    return lines


def alert_report_rule_groups(report, url=""):
    """Lines for verify.yml's `performance` tag: each rule group's evaluation time."""
    lines = [
        f"Rule group evaluation{', ' + url if url else ''}, last / mean / max, missed evaluations:"
    ]
    for group in report.get("rule_groups") or []:
        times = " / ".join(
            _ms(group.get(key))
            for key in ("evaluation_time", "mean_evaluation_time", "max_evaluation_time")
        )
        lines.append(
            f"  {group['name']:<28} every {human(group['interval'])}: {times}, "
            f"{number(group.get('iterations_missed'))} missed"
        )
    return lines


def alert_report_json(report):
    """The report as indented JSON, keys in the module's order."""
    return json.dumps(_plain(report), indent=2) + "\n"


class FilterModule:
    def filters(self):
        return {
            "alert_report_catalog": alert_report_catalog,
            "alert_report_markdown": alert_report_markdown,
            "alert_report_html": alert_report_html,
            "alert_report_summary": alert_report_summary,
            "alert_report_json": alert_report_json,
            "alert_report_rule_groups": alert_report_rule_groups,
        }
