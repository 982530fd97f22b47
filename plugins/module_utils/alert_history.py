"""Statistics of a period of alert history: firings, flaps, silences, notifications.

Pure Python, standard library only: it runs on the monitoring host inside the
module alert_history_info, which reads the history (Prometheus' ALERTS and
ALERTS_FOR_STATE samples, Alertmanager's silences and notification counters,
the alert relay's history) and hands it here. Times are whole milliseconds
since the epoch throughout (Prometheus' own resolution), so that equal
evaluation timestamps compare equal; results are in seconds.

Definitions (docs/report.md says the same for readers of the report):

- A firing interval of one alert series (one label set) is a run of its
  ALERTS{alertstate="firing"} samples with the same ALERTS_FOR_STATE value
  (the time the alert became active); where that value is missing, samples
  further apart than 1.5 evaluation intervals start a new run. It starts at
  its first firing sample and is resolved one evaluation interval after its
  last one (the evaluation that no longer found it firing).
- The period is [start, end). An interval *fired in the period* when its
  first sample is in it; it *resolved in the period* when it also resolved
  by `end`. Firing time counts only the part of an interval inside the period.
- A restart of Prometheus is not a resolve. A rule whose `for` is shorter
  than Prometheus' for-grace-period gets a new ALERTS_FOR_STATE value after a
  restart, and its ALERTS a gap of the downtime plus the `for`: two runs of a
  series are one firing when a restart lies between them (Prometheus' own
  process_start_time_seconds changed) and the series fired up to the
  evaluation before Prometheus went down and became active again at the first
  evaluation after it came back; or when Alertmanager kept the alert's
  startsAt across the gap (the relay's records).
- A flap is a firing that starts at most `flap_window` after the previous
  interval of the same series resolved.
- A report entry is one alerting rule: an alert name and its severity. The
  catalog's warning/critical pairs are two rules of one name; each has its own
  figures, and its suggestions change that rule.
- Percentiles interpolate linearly between the closest ranks (rank
  q * (n - 1)), as PromQL's quantile() and quantile_over_time() do.
"""

import json
import math
import re
from datetime import UTC, datetime, timedelta
from itertools import pairwise

# Samples further apart than this many evaluation intervals are separate
# firings when ALERTS_FOR_STATE cannot tell (a resolve and a new firing are
# at least two intervals apart).
GAP_FACTOR = 1.5
# The timeline is drawn this many slots wide: gaps shorter than one slot are
# merged, so that a week of flapping stays a small file.
TIMELINE_SLOTS = 1200
# Labels of the ALERTS series that are not the alert's own.
NOT_ALERT_LABELS = ("__name__", "alertstate")


# --- Numbers -------------------------------------------------------------------------


def percentile(sorted_values, q):
    """The q-quantile (0..1) of sorted values, interpolated as PromQL does; None if empty."""
    if not sorted_values:
        return None
    rank = q * (len(sorted_values) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def ms_to_seconds(milliseconds):
    """Milliseconds as seconds, to the millisecond; None stays None."""
    return None if milliseconds is None else round(milliseconds / 1000.0, 3)


def duration_summary(durations_ms):
    """Count, mean, median and p90 of durations (ms) in seconds; the figures None when empty."""
    ordered = sorted(durations_ms)
    if not ordered:
        return {"count": 0, "mean": None, "median": None, "p90": None}
    return {
        "count": len(ordered),
        "mean": ms_to_seconds(sum(ordered) / len(ordered)),
        "median": ms_to_seconds(percentile(ordered, 0.5)),
        "p90": ms_to_seconds(percentile(ordered, 0.9)),
    }


def share(part, whole):
    """part / whole to four decimals, or None when there is no whole (nothing to divide)."""
    return round(part / whole, 4) if whole else None


def format_duration(total_seconds):
    """Seconds as a Prometheus duration: 90 -> 1m30s, 3600 -> 1h, 0 -> 0s."""
    remaining = round(total_seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def format_ms(milliseconds):
    """A time in ms since the epoch as the APIs write it: 2025-06-01T18:00:00.000Z."""
    moment = datetime.fromtimestamp(milliseconds / 1000.0, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def to_ms(moment):
    """An aware datetime as ms since the epoch."""
    return round(moment.timestamp() * 1000)


# --- Prometheus' answers ---------------------------------------------------------------

_MATRIX_HEAD = '{"status":"success","data":{"resultType":"matrix","result":['
_POINT = re.compile(r'\[(-?[0-9.eE+]+),"([^"]*)"\]')


def parse_matrix(text):
    """[(labels, times_ms, values as text)] of an instant query's matrix, read fast.

    Prometheus writes each series as {"metric":{...},"values":[[t,"v"],...]}: the
    labels are decoded as JSON and the points matched as text, about three times
    faster than decoding a week of points as JSON. None when the answer is shaped
    otherwise (an error, warnings, native histograms): decode it as JSON then.
    """
    if not text.startswith(_MATRIX_HEAD):
        return None
    decoder, found, position = json.JSONDecoder(), [], len(_MATRIX_HEAD)
    while not text.startswith("]}}", position):
        if not text.startswith('{"metric":', position):
            return None
        try:
            labels, position = decoder.raw_decode(text, position + 10)
        except ValueError:
            return None
        if not text.startswith(',"values":[', position):
            return None
        first = position + 11
        last = first if text.startswith("]", first) else text.find("]]", first) + 1
        if last <= 0 or not text.startswith("]}", last):
            return None
        points = _POINT.findall(text, first, last)
        found.append(
            (labels, [round(float(t) * 1000) for t, _v in points], [v for _t, v in points])
        )
        position = last + 2
        if text.startswith(",", position):
            position += 1
    return found if not text[position + 3 :].strip() else None


# --- Intervals ------------------------------------------------------------------------


def overlap(first, last, start, end):
    """Length of [first, last) inside [start, end)."""
    return max(0, min(last, end) - max(first, start))


def merge(spans, gap=0):
    """Sorted union of [a, b) spans; spans closer than `gap` become one."""
    merged = []
    for first, last in sorted(spans):
        if merged and first - merged[-1][1] <= gap:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return merged


def covered(spans, first, last):
    """How much of [first, last) the merged spans cover."""
    return sum(overlap(first, last, a, b) for a, b in spans)


def align_active_at(times, state_times, state_values):
    """ALERTS_FOR_STATE's value at each firing sample's timestamp (None where it has none).

    The rule manager writes both series in the same evaluation, with the same
    timestamp: a lookup by timestamp (in C, a week of samples takes a moment).
    """
    at = dict(zip(state_times, state_values, strict=True))
    return list(map(at.get, times))


def active_times_ms(texts):
    """ALERTS_FOR_STATE's values as Prometheus writes them (the time the alert became
    active, seconds as text) in ms. One series holds a few values, each repeated at
    every evaluation: each is converted once."""
    converted = {text: round(float(text) * 1000) for text in set(texts)}
    return list(map(converted.__getitem__, texts))


def firing_runs(times, active_ats, interval_ms):
    """Split one series' firing sample times into runs: [(first, last, active_at)]."""
    if not times:
        return []
    runs = []
    first = previous = times[0]
    active = active_ats[0]
    for moment, active_at in zip(times[1:], active_ats[1:], strict=True):
        if active is not None and active_at is not None:
            same = active_at == active
        else:
            same = moment - previous <= GAP_FACTOR * interval_ms
        if not same:
            runs.append((first, previous, active))
            first, active = moment, active_at
        elif active is None:
            active = active_at
        previous = moment
    runs.append((first, previous, active))
    return runs


# --- Alertmanager ------------------------------------------------------------------------


def _matcher_test(matcher):
    name, value = matcher.get("name"), str(matcher.get("value", ""))
    equal = matcher.get("isEqual", True)
    if matcher.get("isRegex"):
        try:
            pattern = re.compile(value)
        except re.error:
            # A regex Python cannot read (Go's RE2 syntax differs in corners)
            # matches nothing here rather than everything.
            return lambda labels: False
        return lambda labels: bool(pattern.fullmatch(labels.get(name, ""))) == equal
    return lambda labels: (labels.get(name, "") == value) == equal


def silence_spans(silences):
    """Silences as (id, match(labels) -> bool, starts_ms, ends_ms), from /api/v2/silences."""
    spans = []
    for silence in silences:
        tests = [_matcher_test(m) for m in silence.get("matchers") or []]
        if not tests:
            continue
        starts, ends = silence.get("starts_ms"), silence.get("ends_ms")
        if starts is None or ends is None or ends <= starts:
            continue
        spans.append(
            (silence.get("id"), lambda labels, t=tests: all(m(labels) for m in t), starts, ends)
        )
    return spans


# --- Counters and buckets -------------------------------------------------------------


def counter_increments(samples):
    """[(t_ms, increase)] between consecutive samples of a counter; a reset counts from 0."""
    increments, previous = [], None
    for moment, value in samples:
        if previous is not None:
            increase = value - previous if value >= previous else value
            if increase > 0:
                increments.append((moment, increase))
        previous = value
    return increments


class Calendar:
    """Days, hours of day and on-call shifts of a period, in the report's time zone."""

    def __init__(self, start_ms, end_ms, zone, shift_ms):
        self.start_ms, self.end_ms, self.zone, self.shift_ms = start_ms, end_ms, zone, shift_ms
        first_day = self.local(start_ms).date()
        last_day = self.local(end_ms - 1).date()
        self.days = [
            (first_day + timedelta(days=n)).isoformat()
            for n in range((last_day - first_day).days + 1)
        ]
        # Shifts start at local midnight of the first day, one after another.
        midnight = datetime(first_day.year, first_day.month, first_day.day, tzinfo=zone)
        self.shift_anchor_ms = to_ms(midnight)

    def local(self, milliseconds):
        return datetime.fromtimestamp(milliseconds / 1000.0, self.zone)

    def day_and_hour(self, milliseconds):
        moment = self.local(milliseconds)
        return moment.date().isoformat(), moment.hour

    def shift(self, milliseconds):
        return (milliseconds - self.shift_anchor_ms) // self.shift_ms

    def shift_start(self, index):
        moment = self.local(self.shift_anchor_ms + index * self.shift_ms)
        return moment.isoformat()


# --- The report -----------------------------------------------------------------------


class Interval:
    """One firing interval of one series."""

    __slots__ = ("active_at", "first", "key", "labels", "last", "resolved", "restarts")

    def __init__(self, key, labels, first, last, active_at, interval_ms, restarts=0):
        self.key, self.labels = key, labels
        self.first, self.last, self.active_at = first, last, active_at
        self.resolved = last + interval_ms
        # How many gaps of a restart of Prometheus this firing went on across.
        self.restarts = restarts


def series_key(labels):
    return tuple(sorted((k, v) for k, v in labels.items() if k not in NOT_ALERT_LABELS))


def severity_of(labels):
    return labels.get("severity") or "none"


# --- Rules ------------------------------------------------------------------------------


def alerting_rules(groups):
    """The alerting rules of /api/v1/rules' groups: {name: [rule, ...]}, one rule per
    severity (a warning/critical pair is two), each {name, severity, group, interval_ms,
    for_ms, labels}; and the groups, each {name, file, interval, rules, evaluation_time,
    last_evaluation}."""
    rules, found = {}, []
    for group in groups or []:
        interval_ms = round(float(group.get("interval") or 60) * 1000)
        found.append(
            {
                "name": group.get("name"),
                "file": group.get("file"),
                "interval": ms_to_seconds(interval_ms),
                "rules": len(group.get("rules") or []),
                "evaluation_time": group.get("evaluationTime"),
                "last_evaluation": group.get("lastEvaluation"),
            }
        )
        for rule in group.get("rules") or []:
            if rule.get("type") != "alerting" or not rule.get("name"):
                continue
            labels = rule.get("labels") or {}
            same = rules.setdefault(rule["name"], [])
            if any(r["severity"] == severity_of(labels) for r in same):
                continue  # the same name and severity twice: the first decides
            same.append(
                {
                    "name": rule["name"],
                    "severity": severity_of(labels),
                    "group": group.get("name"),
                    "interval_ms": interval_ms,
                    "for_ms": round(float(rule.get("duration") or 0) * 1000),
                    "labels": labels,
                }
            )
    return rules, found


def rule_table(rules):
    """{(name, severity): rule} of {name: rule or [rule, ...]}."""
    table = {}
    for name, found in rules.items():
        for rule in found if isinstance(found, list) else [found]:
            severity = rule.get("severity") or severity_of(rule.get("labels") or {})
            table.setdefault((name, severity), rule)
    return table


def paired_names(keys):
    """The alert names that more than one rule (severity) of `keys` carries."""
    seen, paired = set(), set()
    for name, _severity in keys:
        (paired if name in seen else seen).add(name)
    return paired


def rule_title(name, severity, paired):
    """How the report names a rule: `Name`, or `Name (critical)` where the name has
    several rules."""
    return f"{name} ({severity})" if name in paired else name


# --- Restarts of Prometheus ---------------------------------------------------------------


def prometheus_restarts(series):
    """Restarts of Prometheus, from the samples of its own process_start_time_seconds:
    [(down_ms, up_ms, scrape_ms)], sorted: the last sample of the process that stopped,
    the first of the one that started, and the spacing of the samples.

    `series` is [(times_ms, values)], one entry per series (instance).
    """
    found = []
    for times, values in series:
        step = _spacing(times) or 0
        previous = None
        for moment, value in zip(times, values, strict=True):
            if previous is not None and value != previous[1]:
                found.append((previous[0], moment, step))
            previous = (moment, value)
    return sorted(found)


def _across_restart(last, nxt_first, nxt_active, interval_ms, for_ms, restarts):
    """Whether the gap between a run that ended at `last` and the next one is a restart:
    the series fired up to the evaluation before Prometheus went down, and became active
    again at the first evaluation after it came back."""
    activated = nxt_active if nxt_active is not None else nxt_first - for_ms
    for down, up, step in restarts:
        if (
            down - GAP_FACTOR * interval_ms <= last < up
            and down < nxt_first
            and activated <= up + GAP_FACTOR * (interval_ms + step)
        ):
            return True
    return False


def _start_kept(last, nxt_first, nxt_resolved, records):
    """Whether Alertmanager kept the alert's startsAt across the gap: it notified the
    next run as firing with a start no later than the previous run's last sample, and
    sent no resolve of it in between."""
    for record in records:
        starts = record.get("starts_ms")
        if starts is None or starts > last:
            continue
        if record.get("status") == "resolved" and last < record["time_ms"] <= nxt_first:
            return False
    return any(
        r.get("status", "firing") == "firing"
        and r.get("starts_ms") is not None
        and r["starts_ms"] <= last
        and nxt_first <= r["time_ms"] < nxt_resolved
        for r in records
    )


def join_restarts(runs, interval_ms, for_ms, restarts, records):
    """`runs` of one series (first, last, active_at), those a restart of Prometheus split
    joined again: [(first, last, active_at, restarts bridged)]."""
    joined = []
    for first, last, active in runs:
        if joined:
            p_first, p_last, p_active, bridged = joined[-1]
            if _across_restart(p_last, first, active, interval_ms, for_ms, restarts) or (
                records and _start_kept(p_last, first, last + interval_ms, records)
            ):
                joined[-1] = (p_first, last, p_active, bridged + 1)
                continue
        joined.append((first, last, active, 0))
    return joined


def _series_records(relay, labels):
    """The relay's records of one series (all its labels), or () without the relay."""
    if not relay:
        return ()
    wanted = [(k, v) for k, v in labels.items() if k not in NOT_ALERT_LABELS]
    return [
        r
        for r in relay.get(labels.get("alertname", ""), ())
        if all(r["labels"].get(k) == v for k, v in wanted)
    ]


def build_intervals(firing, for_state, table, default_interval_ms, restarts=(), relay=None):
    """{(alertname, severity): [Interval]} from {key: (labels, times)} and {key: (times,
    values)}.

    `table` maps (name, severity) to the loaded rule; `restarts` are Prometheus' restarts
    (prometheus_restarts) and `relay` the relay's records by alert name, to join the runs
    a restart split.
    """
    # A name with one rule takes all its series, whatever their severity (a templated
    # severity label, a rule whose severity changed); a pair's rules take their own.
    counts = {}
    for name, severity in table:
        counts.setdefault(name, []).append((name, severity))
    single = {name: keys[0] for name, keys in counts.items() if len(keys) == 1}
    by_alert = {}
    for key, (labels, times) in firing.items():
        state_times, state_values = for_state.get(key, ((), ()))
        active_ats = align_active_at(times, state_times, state_values)
        entry = (labels.get("alertname", ""), severity_of(labels))
        if entry not in table:
            entry = single.get(entry[0], entry)
        rule = table.get(entry)
        interval_ms = (rule or {}).get("interval_ms") or _spacing(times) or default_interval_ms
        runs = firing_runs(times, active_ats, interval_ms)
        if len(runs) > 1 and (restarts or relay):
            records = _series_records(relay, labels)
            for_ms = (rule or {}).get("for_ms") or 0
            runs = join_restarts(runs, interval_ms, for_ms, restarts, records)
        else:
            runs = [(first, last, active, 0) for first, last, active in runs]
        intervals = by_alert.setdefault(entry, [])
        for first, last, active_at, bridged in runs:
            intervals.append(Interval(key, labels, first, last, active_at, interval_ms, bridged))
    for intervals in by_alert.values():
        intervals.sort(key=lambda iv: (iv.key, iv.first))
    return by_alert


def _spacing(times):
    """The evaluation interval of a rule that is no longer loaded: the median spacing of
    its samples (gaps are rare, so the median is the interval)."""
    gaps = sorted(b - a for a, b in pairwise(times) if b > a)
    return gaps[len(gaps) // 2] if gaps else None


class ReportBuilder:
    """Computes the report of one period from what alert_history_info read."""

    def __init__(self, start_ms, end_ms, zone, settings):
        self.start, self.end = start_ms, end_ms
        self.period_ms = end_ms - start_ms
        self.settings = settings
        self.calendar = Calendar(start_ms, end_ms, zone, settings["shift_ms"])
        # Per flapping rule (name, severity): how long the conditions held (ms) behind
        # its flapping firings, and behind each of its resolved firings, for for_suggestions.
        self.conditions = {}

    # -- per alert ------------------------------------------------------------------

    def alert_stats(self, entry, intervals, rule, silences, relay, paired=()):
        """The statistics of one rule, (name, severity), over all its series in the period.

        The relay's records of a name in `paired` (several rules) count for the rule of
        their severity."""
        name, severity = entry
        start, end, flap_window = self.start, self.end, self.settings["flap_window_ms"]
        in_period = [iv for iv in intervals if iv.first < end and iv.resolved > start]
        fired = [iv for iv in in_period if iv.first >= start]
        resolved = [iv for iv in fired if iv.resolved <= end]
        clipped = [overlap(iv.first, iv.resolved, start, end) for iv in in_period]

        flaps, flapped_before = 0, []
        for previous, current in pairwise(intervals):
            if previous.key != current.key or not start <= current.first < end:
                continue
            if current.first - previous.resolved <= flap_window:
                flaps += 1
                flapped_before.append(previous)

        silenced_ms, known_ms, acknowledgements = self._silences(in_period, fired, silences, relay)
        firing_ms = sum(clipped)
        per_series = {}
        for iv, part in zip(in_period, clipped, strict=True):
            per_series[iv.key] = per_series.get(iv.key, 0) + part
        union = merge([(max(iv.first, start), min(iv.resolved, end)) for iv in in_period])
        rule_labels = (rule or {}).get("labels", {})
        notifications = None
        if relay is not None:
            notifications = sum(
                1
                for r in relay.get(name, ())
                if start <= r["time_ms"] < end
                and (name not in paired or r["labels"].get("severity", severity) == severity)
            )
        stats = {
            "name": name,
            "group": (rule or {}).get("group"),
            "severity": severity,
            "service": rule_labels.get("service") or _label(in_period, "service"),
            "loaded": rule is not None,
            "for": ms_to_seconds((rule or {}).get("for_ms")),
            "series": len({iv.key for iv in in_period}),
            "fired": len(fired),
            "firing_seconds": ms_to_seconds(firing_ms),
            "firing_share": share(covered(union, start, end), self.period_ms),
            "busiest_series_share": share(max(per_series.values(), default=0), self.period_ms),
            "median_firing_seconds": ms_to_seconds(percentile(sorted(clipped), 0.5)),
            "firing_at_start": sum(1 for iv in in_period if iv.first < start),
            "firing_at_end": sum(1 for iv in in_period if iv.resolved > end),
            "resolved": len(resolved),
            "time_to_resolve": duration_summary([iv.resolved - iv.first for iv in resolved]),
            "flaps": flaps,
            "flapping": flaps >= self.settings["flapping_min"],
            "across_restarts": sum(iv.restarts for iv in in_period),
            "notifications": notifications,
            "silenced_seconds": ms_to_seconds(silenced_ms) if known_ms else None,
            "silenced_share": share(silenced_ms, known_ms),
            "acknowledged": len(acknowledgements),
            "time_to_silence": duration_summary(acknowledgements),
        }
        if stats["flapping"]:
            self.conditions[entry] = (
                [_condition_ms(iv, rule) for iv in flapped_before if iv.resolved <= end],
                [_condition_ms(iv, rule) for iv in resolved],
            )
        return stats, union, fired

    def _silences(self, in_period, fired, silences, relay):
        """(silenced firing time, firing time where silences are known, and per firing the
        delay from notification to silence), in ms.

        Alertmanager forgets a silence its retention after it ended: before
        `silences_known_from_ms` nothing is known, and that firing time is left out.
        """
        start, end = self.start, self.end
        known = max(start, self.settings.get("silences_known_from_ms") or start)
        known_ms = sum(overlap(iv.first, iv.resolved, known, end) for iv in in_period)
        if not silences:
            return 0, known_ms, []
        silenced_ms, delays, spans_of = 0, [], {}
        for iv in in_period:
            if iv.key not in spans_of:
                labels = dict(iv.key)
                labels.update(self.settings["external_labels"])
                spans_of[iv.key] = [(s, e) for _id, match, s, e in silences if match(labels)]
            spans = spans_of[iv.key]
            if not spans or iv.resolved <= known:
                continue
            silenced_ms += covered(merge(spans), max(iv.first, known), min(iv.resolved, end))
        for iv in fired:
            spans = spans_of.get(iv.key) or []
            if iv.first < known or any(s <= iv.first < e for s, e in spans):
                continue  # its silences are not known, or silenced before it fired
            notified = _first_notification(iv, relay)
            later = [s for s, _e in spans if notified <= s < min(iv.resolved, end)]
            if later:
                delays.append(min(later) - notified)
        return silenced_ms, known_ms, delays

    # -- the whole period --------------------------------------------------------------

    def build(self, rules, firing, for_state, silences, relay, notifications, restarts=None):
        """The report: per rule, overall, never fired, per day and hour, fatigue, timeline.

        `rules` maps alert names to their loaded rule ({group, interval_ms, for_ms,
        labels}), or to a list of them where several rules (a warning/critical pair)
        share the name; `relay` maps alert names to their relay records ({time_ms,
        labels, status, starts_ms}) or is None without the relay; `notifications` is a
        list of (t_ms, count) of the overall notifications or None when none are known;
        `restarts` are Prometheus' restarts (prometheus_restarts), None when unknown.
        """
        table = rule_table(rules)
        intervals = build_intervals(
            firing,
            for_state,
            table,
            self.settings["default_interval_ms"],
            restarts or (),
            relay,
        )
        silence_list = silence_spans(silences) if silences is not None else []
        paired = paired_names(set(table) | set(intervals))
        alerts, timeline, firings = [], [], []
        for entry in sorted(intervals):
            stats, union, fired = self.alert_stats(
                entry, intervals[entry], table.get(entry), silence_list, relay, paired
            )
            if not union:
                continue  # only before the period (the look-back)
            alerts.append(stats)
            firings.extend(iv.first for iv in fired)
            timeline.append(self._timeline_row(stats, union))

        fired_keys = {(a["name"], a["severity"]) for a in alerts}
        never = [
            {"name": name, "group": rule["group"], "severity": severity}
            for (name, severity), rule in sorted(table.items())
            if (name, severity) not in fired_keys
        ]
        alerts.sort(
            key=lambda a: (-a["fired"], -(a["notifications"] or 0), a["name"], a["severity"])
        )
        noisy = [a for a in alerts if a["fired"]]
        noisy.sort(
            key=lambda a: (
                -a["fired"],
                -(a["notifications"] or 0),
                -a["firing_seconds"],
                a["name"],
                a["severity"],
            )
        )
        per_day, per_hour = self._buckets(firings, notifications)
        total_notifications = None if notifications is None else sum(c for _t, c in notifications)
        return {
            "empty": not alerts,
            "counts": {
                "rules": len(table),
                "alerts_firing": len(alerts),
                "alerts_fired": sum(1 for a in alerts if a["fired"]),
                "never_fired": len(never),
                "firings": len(firings),
                "flaps": sum(a["flaps"] for a in alerts),
                "notifications": total_notifications,
            },
            "alerts": alerts,
            "top_noisy": [
                {
                    "name": a["name"],
                    "severity": a["severity"],
                    "fired": a["fired"],
                    "notifications": a["notifications"],
                }
                for a in noisy[: self.settings["top"]]
            ],
            "never_fired": never,
            "per_day": per_day,
            "per_hour_of_day": per_hour,
            "fatigue": self._fatigue(notifications),
            "timeline": timeline,
            "prometheus_restarts": self._restarts(restarts),
        }

    def _restarts(self, restarts):
        """The restarts of Prometheus in the period, {down, up}; None when not known."""
        if restarts is None:
            return None
        return [
            {"down": format_ms(down), "up": format_ms(up)}
            for down, up, _step in restarts
            if down < self.end and up > self.start
        ]

    def _timeline_row(self, stats, union):
        slot = self.period_ms / TIMELINE_SLOTS
        bars = [
            [ms_to_seconds(a - self.start), ms_to_seconds(b - self.start)]
            for a, b in merge(union, slot)
        ]
        return {"name": stats["name"], "severity": stats["severity"], "bars": bars}

    def _buckets(self, firings, notifications):
        days = {day: [0, 0] for day in self.calendar.days}
        hours = [[0, 0] for _hour in range(24)]
        for moment in firings:
            day, hour = self.calendar.day_and_hour(moment)
            days[day][0] += 1
            hours[hour][0] += 1
        for moment, count in notifications or ():
            day, hour = self.calendar.day_and_hour(moment)
            days[day][1] += count
            hours[hour][1] += count
        known = notifications is not None
        per_day = [
            {"date": d, "alerts": a, "notifications": n if known else None}
            for d, (a, n) in days.items()
        ]
        per_hour = [
            {"hour": h, "alerts": a, "notifications": n if known else None}
            for h, (a, n) in enumerate(hours)
        ]
        return per_day, per_hour

    def _fatigue(self, notifications):
        shift_ms = self.settings["shift_ms"]
        result = {
            "shift_length": format_duration(shift_ms / 1000),
            "shifts": round(self.period_ms / shift_ms, 2),
            "per_shift": None,
            "busiest_shift": None,
        }
        if notifications is None:
            return result
        total = sum(count for _t, count in notifications)
        result["per_shift"] = round(total / (self.period_ms / shift_ms), 2)
        counts = {}
        for moment, count in notifications:
            index = self.calendar.shift(moment)
            counts[index] = counts.get(index, 0) + count
        if counts:
            busiest = max(sorted(counts), key=lambda i: counts[i])
            result["busiest_shift"] = {
                "start": self.calendar.shift_start(busiest),
                "notifications": counts[busiest],
            }
        return result


def _label(intervals, name):
    for iv in intervals:
        if iv.labels.get(name):
            return iv.labels[name]
    return None


def _condition_ms(iv, rule):
    """How long the alert's condition held: from ALERTS_FOR_STATE's active time, or
    the firing time plus the rule's `for` when that is unknown."""
    if iv.active_at is not None:
        return iv.resolved - iv.active_at
    return iv.resolved - iv.first + ((rule or {}).get("for_ms") or 0)


def _first_notification(iv, relay):
    """When the first notification of this firing went out: the relay's first record of
    it, or the moment it started firing (Prometheus sends it to Alertmanager then)."""
    if relay:
        wanted = iv.key
        times = [
            r["time_ms"]
            for r in relay.get(iv.labels.get("alertname", ""), ())
            if iv.first <= r["time_ms"] < iv.resolved
            and r.get("status", "firing") == "firing"
            and all(r["labels"].get(k) == v for k, v in wanted)
        ]
        if times:
            return min(times)
    return iv.first


# --- Suggestions ----------------------------------------------------------------------


def override_line(name, key, value, twin=False):
    """The inventory line that sets `key` of alert `name`, or of its critical twin."""
    if twin:
        return f"prometheus_alert_overrides: {{{name}: {{critical: {{{key}: {value}}}}}}}"
    return f"prometheus_alert_overrides: {{{name}: {{{key}: {value}}}}}"


def for_suggestion(stats, rule_for_ms, in_catalog, twin=False, paired=(), conditions=((), ())):
    """A longer `for` for a flapping rule: just longer than the longest condition that
    ended in a flap, in whole minutes. None when the rule does not flap.

    `twin`: the rule is the critical twin of a catalog alert (its `for` is set through
    `critical:`); `paired`: the names that have several rules, which the text names
    with their severity; `conditions`: ReportBuilder.conditions of the rule, how long
    the conditions behind its flapping firings and behind each resolved firing held.
    """
    flap_conditions, all_conditions = conditions
    if not stats.get("flapping") or not flap_conditions:
        return None
    longest = max(flap_conditions)
    proposed_s = (longest // 60000 + 1) * 60
    current_s = (rule_for_ms or 0) / 1000
    proposed_s = max(proposed_s, current_s + 60)
    quiet = sum(1 for c in all_conditions if c < proposed_s * 1000)
    proposed = format_duration(proposed_s)
    name, severity = stats["name"], stats.get("severity", "none")
    own_file = f"for: {proposed}  # in the rule's own file"
    if name in paired:
        own_file += f", the one with severity {severity}"
    return {
        "alert": name,
        "severity": severity,
        "kind": "for",
        "current": format_duration(current_s),
        "proposed": proposed,
        "reason": (
            f"{rule_title(name, severity, paired)} fired again within the flap window "
            f"{stats['flaps']} times; the conditions "
            f"behind those firings held at most {format_duration(math.ceil(longest / 1000))} "
            f"(from pending to resolved). With "
            f"`for: {proposed}` (now {format_duration(current_s)}) {quiet} of its "
            f"{stats['resolved']} resolved firings would not have fired."
        ),
        "override": override_line(name, "for", proposed, twin) if in_catalog else own_file,
    }


def catalog_entry(entries, name, severity):
    """The catalog's entry for rule (name, severity): the entry of that severity (a
    warning/critical pair has one each), else the one that names no severity."""
    found = [e for e in entries if e.get("alert") == name]
    for entry in found:
        if entry.get("severity") == severity:
            return entry
    return next((e for e in found if not e.get("severity")), None)


def for_suggestions(alerts, table, catalog, conditions):
    """A longer `for` for each flapping rule of `alerts` (the report's), changing that rule;
    `conditions` is ReportBuilder.conditions."""
    paired = paired_names(set(table) | {(a["name"], a["severity"]) for a in alerts})
    found = []
    for stats in alerts:
        rule = table.get((stats["name"], stats["severity"]))
        entry = catalog_entry(catalog, stats["name"], stats["severity"])
        suggestion = for_suggestion(
            stats,
            (rule or {}).get("for_ms"),
            entry is not None,
            bool((entry or {}).get("twin")),
            paired,
            conditions.get((stats["name"], stats["severity"]), ((), ())),
        )
        if suggestion:
            found.append(suggestion)
    return found


def threshold_candidates(report, table, catalog, busy_share):
    """The rules that qualify for a threshold suggestion, [(name, severity, why, entry)],
    and a note for each that qualifies but cannot have one.

    A loaded rule qualifies when its busiest series fired `busy_share` of the period or
    more (the threshold applies to each series on its own, and twenty series firing now
    and then cover most of a week between them), or when it never fired; and its catalog
    entry has a threshold.
    """
    paired = paired_names(set(table) | {(a["name"], a["severity"]) for a in report["alerts"]})
    candidates = {(a["name"], a["severity"]): "never fired" for a in report["never_fired"]}
    for a in report["alerts"]:
        if a["loaded"] and (a["busiest_series_share"] or 0) >= busy_share:
            candidates[(a["name"], a["severity"])] = (
                f"fired {a['busiest_series_share'] * 100:.1f}% of the time on its busiest series"
            )
    found, notes = [], []
    for (name, severity), why in sorted(candidates.items()):
        entry = catalog_entry(catalog, name, severity)
        if entry is None or entry.get("threshold") is None:
            continue
        if not entry.get("compared_value") or entry.get("operator") not in ("<", "<=", ">", ">="):
            reason = entry.get("note") or "its compared value is not known"
            notes.append(
                f"{rule_title(name, severity, paired)} {why}, but no threshold can be "
                f"suggested: {reason}."
            )
            continue
        found.append((name, severity, why, entry))
    return found, notes, paired


def round_outward(value, above):
    """`value` to three significant digits, rounded up (`above`) or down."""
    if value == 0 or not math.isfinite(value):
        return value
    magnitude = math.floor(math.log10(abs(value))) - 2
    scale = 10.0**magnitude
    steps = value / scale
    # A value already on the grid (after float noise) stays where it is.
    nearest = round(steps)
    if abs(steps - nearest) < 1e-9 * max(1.0, abs(steps)):
        steps = nearest
    steps = math.ceil(steps) if above else math.floor(steps)
    rounded = round(steps * scale, max(0, -magnitude))
    return int(rounded) if rounded == int(rounded) else rounded


QUANTILES_ABOVE = (0.5, 0.95, 0.99)
QUANTILES_BELOW = (0.5, 0.05, 0.01)


def threshold_suggestion(entry, why, series, step_ms, severity=None, paired=()):
    """The distribution of an alert's compared value and the override that would change it.

    `series` holds, per series of the compared value, its labels and its quantiles
    over the period ({q: value}), sampled every `step_ms`; the series whose tail is
    worst (highest for `>`, lowest for `<`) decides: the proposed threshold is its
    p99 (p1 for `<`), rounded outward to three significant digits, which that series
    passed in 1% of the samples. None when no series has the quantiles. The override
    changes the rule of `severity` (the critical twin's through `critical:`).
    """
    name, operator, threshold = entry["alert"], entry["operator"], entry["threshold"]
    above = operator in (">", ">=")
    quantiles = QUANTILES_ABOVE if above else QUANTILES_BELOW
    usable = [s for s in series if all(_finite(s["quantiles"].get(q)) for q in quantiles)]
    if not usable:
        return None
    tail = quantiles[-1]
    # Of series with the same tail, the first by labels: the same choice every run
    # (Prometheus does not answer a subquery's series in a fixed order).
    usable.sort(key=lambda s: sorted(s["labels"].items()))
    usable.sort(key=lambda s: s["quantiles"][tail], reverse=above)
    worst = usable[0]
    proposed = round_outward(worst["quantiles"][tail], above)
    labels = ", ".join(f'{k}="{v}"' for k, v in sorted(worst["labels"].items()))
    figures = ", ".join(f"{_qname(q)} {worst['quantiles'][q]:g}" for q in quantiles)
    every = format_duration(step_ms / 1000)
    severity = severity or entry.get("severity") or "none"
    return {
        "alert": name,
        "severity": severity,
        "kind": "threshold",
        "operator": operator,
        "threshold": threshold,
        "why": why,
        "compared_value": entry["compared_value"],
        "series": len(usable),
        "worst_series": labels,
        "quantiles": {_qname(q): worst["quantiles"][q] for q in quantiles},
        "sampled_every": every,
        "proposed": proposed,
        "reason": (
            f"{rule_title(name, severity, paired)} {why}; it fires when its value {operator} "
            f"{threshold:g}. Over the period, "
            f"the {'highest' if above else 'lowest'} of its {len(usable)} series "
            f"({labels or 'no labels'}), sampled every {every}, had {figures}: a threshold "
            f"of {proposed} is "
            f"{'exceeded' if above else 'undercut'} by that series in about 1% of the "
            "samples."
        ),
        "override": override_line(name, "threshold", proposed, entry.get("twin", False)),
    }


def _finite(value):
    return isinstance(value, (int, float)) and math.isfinite(value)


def _qname(q):
    return f"p{round(q * 100):d}"


# --- Silences Alertmanager still keeps ------------------------------------------------


def stamp(milliseconds):
    """A time for a sentence: 2025-06-01 18:00:00Z."""
    return datetime.fromtimestamp(milliseconds / 1000.0, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def silence_coverage(start_ms, now_ms, retention_ms, retention, source):
    """(from when on silences are known in ms, None for the whole period; the report's
    `silences` section).

    Alertmanager forgets a silence its --data.retention (`retention`, in ms
    `retention_ms`) after the silence ended: from now minus that on (to the next whole
    second), every silence is known; before it, one that ended then is not. When that is
    after the period's start, the firing time before it is left out of the silenced
    figures (ReportBuilder, `silences_known_from_ms`) and the note says so.
    """
    cutoff = -((retention_ms - now_ms) // 1000) * 1000
    known_from = cutoff if source and cutoff > start_ms else None
    return known_from, {
        "source": source or None,
        "retention": retention,
        "known_from": None if known_from is None else format_ms(known_from),
        "complete": bool(source) and known_from is None,
        "note": None
        if known_from is None
        else (
            f"Silences before {stamp(known_from)} are unknown: Alertmanager keeps a silence "
            f"only {retention} after it ended (its --data.retention, the inventory's "
            "alertmanager_data_retention), so the silenced figures count only the firing "
            "time from then on."
        ),
    }


# --- The relay's history --------------------------------------------------------------


def relay_page(data, parse_time):
    """One page of the relay's history API (GET /api/v1/history) as the relay writes it,
    inside Prometheus' envelope, which HttpApi.get_json unwraps: `data` is
    {"notifications": [...], "next": id or null}, each notification with its receiver,
    receivedAt and the alerts it carried (labels, status, startsAt).

    Returns (records, next): one record per alert, {name, time_ms, labels, status,
    receiver, starts_ms}, at the time the relay received it. None when `data` is not
    such a page.
    """
    notifications = data.get("notifications") if isinstance(data, dict) else None
    if not isinstance(notifications, list):
        return None
    records = []
    try:
        for notification in notifications:
            time_ms = to_ms(parse_time(notification["receivedAt"]))
            for alert in notification["alerts"]:
                labels = alert["labels"]
                starts = alert.get("startsAt")
                records.append(
                    {
                        "name": labels["alertname"],
                        "time_ms": time_ms,
                        # When Alertmanager says the alert started: kept across a restart.
                        "starts_ms": to_ms(parse_time(starts)) if starts else None,
                        "labels": labels,
                        "status": alert["status"],
                        "receiver": notification["receiver"],
                    }
                )
    except (KeyError, TypeError, ValueError):
        return None
    return records, data.get("next")
