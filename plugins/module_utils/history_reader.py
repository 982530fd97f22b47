"""Reading a period of alert history for alert_history_info, and its report.

Reads Prometheus' ALERTS and ALERTS_FOR_STATE samples, its rules and rule group
timings, Alertmanager's silences and notification counters, and the alert
relay's history, in parallel; the statistics are computed by alert_history
(ReportBuilder and the functions beside it), from what is read here.
"""

import math
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from ansible_collections.prometheus_alerting.stack.plugins.module_utils.alert_history import (
    QUANTILES_ABOVE,
    QUANTILES_BELOW,
    ReportBuilder,
    active_times_ms,
    alerting_rules,
    counter_increments,
    for_suggestions,
    format_duration,
    format_ms,
    ms_to_seconds,
    parse_matrix,
    percentile,
    prometheus_restarts,
    relay_page,
    rule_table,
    rule_title,
    series_key,
    silence_coverage,
    threshold_candidates,
    threshold_suggestion,
    to_ms,
)
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.http_api import (
    ApiError,
    HttpApi,
    parse_duration,
    parse_time,
    utc_now,
)

SECTIONS = ["alerts", "notifications", "rule_groups"]

# Raw samples are read in parts of the period, in parallel: about one part per
# worker, each between 6 hours and 2 days long (bounded answers; every request
# also costs the HTTP client a TLS context, so not more parts than that).
WORKERS = 4
CHUNK_MIN_MS = 6 * 3600 * 1000
CHUNK_MAX_MS = 2 * 86400 * 1000
# Without any loaded rule to tell, the evaluation interval is Prometheus' default.
DEFAULT_INTERVAL_MS = 60 * 1000
# The relay's history is read this many notifications a page, at most this many pages.
RELAY_PAGE = 10000
RELAY_PAGES = 100
# Prometheus scrapes itself as job `prometheus` (the roles' prometheus_exporter_jobs):
# its own process_start_time_seconds tells when it restarted. Read from this far
# before the alert history, so that a restart near its start is seen whole.
PROMETHEUS_STARTS = 'process_start_time_seconds{job="prometheus"}'
RESTART_LOOKBACK_MS = 3600 * 1000
NOTIFICATIONS_ATTEMPTED = "alertmanager_notifications_total"
NOTIFICATIONS_FAILED = "alertmanager_notifications_failed_total"


class ReportError(Exception):
    """Bad input or an unreadable source: the message is the module's failure."""


class Period:
    def __init__(self, params, now):
        try:
            end = parse_time(params["end"]) if params["end"] else now
            start = parse_time(params["start"]) if params["start"] else None
        except ValueError as err:
            raise ReportError(f"invalid period: {err}") from None
        if start is None:
            try:
                start = end - parse_duration(params["period"])
            except ValueError as err:
                raise ReportError(f"invalid period: {err}") from None
        if start >= end:
            raise ReportError(
                f"invalid period: its start {format_ms(to_ms(start))} is not before its end "
                f"{format_ms(to_ms(end))}"
            )
        self.start_ms, self.end_ms = to_ms(start), to_ms(end)


def _duration_ms(params, name):
    try:
        return round(parse_duration(params[name]).total_seconds() * 1000)
    except ValueError as err:
        raise ReportError(f"invalid {name}: {err}") from None


def _zone(name):
    if name.upper() in ("UTC", "Z", "ETC/UTC"):
        return UTC
    try:
        from zoneinfo import ZoneInfo  # noqa: PLC0415 - only when a zone is asked for

        return ZoneInfo(name)
    except (ImportError, ValueError, OSError, KeyError) as err:
        raise ReportError(
            f"unknown time zone {name!r} on this host ({err.__class__.__name__}): name an "
            "IANA zone such as Europe/Berlin, and install tzdata on the monitoring host"
        ) from None


class HistoryReader:
    """Reads one period from Prometheus, Alertmanager and the relay."""

    def __init__(self, params, period, pool):
        self.params, self.period, self.pool = params, period, pool
        self.prometheus = HttpApi(params)

    # -- Prometheus ---------------------------------------------------------------

    def rules(self):
        """(alerting rules by name, each a list of one rule per severity; rule groups)."""
        try:
            data = self.prometheus.get_json("/api/v1/rules")
        except ApiError as err:
            raise ReportError(_prometheus_failure(err)) from None
        return alerting_rules(data.get("groups"))

    def restarts(self, start_ms, end_ms, instance):
        """Prometheus' restarts (prometheus_restarts) from its own series, this instance's
        where one carries it; None when it has none (it does not scrape itself).

        One request: a series or two, and every request costs the client a TLS context.
        """
        window = f"[{end_ms - start_ms + RESTART_LOOKBACK_MS - 1}ms]"
        found = self.matrix(PROMETHEUS_STARTS + window, end_ms)
        mine = [entry for entry in found if entry[0].get("instance") == instance]
        series = [(times, list(map(float, texts))) for _l, times, texts in (mine or found)]
        return prometheus_restarts(series) if series else None

    def query(self, promql, at_ms):
        try:
            return self.prometheus.get_json(
                "/api/v1/query", query={"query": promql, "time": f"{at_ms / 1000:.3f}"}
            )
        except ApiError as err:
            raise ReportError(_prometheus_failure(err)) from None

    def raw(self, selector, start_ms, end_ms, values=True):
        """Every sample of `selector` in (start, end]: {key: (labels, times_ms, values)}.

        `values`: True for numbers, "text" for the text Prometheus wrote, False for none.
        """
        chunk_ms = max(CHUNK_MIN_MS, min(CHUNK_MAX_MS, math.ceil((end_ms - start_ms) / WORKERS)))
        bounds = []
        low = start_ms
        while low < end_ms:
            high = min(low + chunk_ms, end_ms)
            bounds.append((low, high))
            low = high
        answers = self.pool.map(
            lambda b: self.matrix(f"{selector}[{b[1] - b[0] - 1}ms]", b[1]), bounds
        )
        found = {}
        for answer in answers:
            for labels, times, texts in answer:
                key = series_key(labels)
                entry = found.get(key)
                if entry is None:
                    entry = found[key] = (labels, [], [] if values else None)
                entry[1].extend(times)
                if values == "text":
                    entry[2].extend(texts)
                elif values:
                    entry[2].extend(map(float, texts))
        return found

    def matrix(self, promql, at_ms):
        """The series of an instant query that returns raw samples (a range selector)."""
        query = {"query": promql, "time": f"{at_ms / 1000:.3f}"}
        try:
            _status, text = self.prometheus.request("GET", "/api/v1/query", query=query)
        except ApiError as err:
            raise ReportError(_prometheus_failure(err)) from None
        series = parse_matrix(text)
        if series is not None:
            return series
        # Another shape than the usual one (warnings, native histograms): read it as JSON.
        data = self.query(promql, at_ms)
        return [
            (
                item.get("metric") or {},
                [round(float(t) * 1000) for t, _v in item.get("values") or []],
                [v for _t, v in item.get("values") or []],
            )
            for item in data.get("result") or []
        ]

    def compared_quantiles(self, expression, quantiles, step_ms):
        """Per series of `expression`, its quantiles over the period, sampled every step.

        The samples come back as a subquery's points and the quantiles are taken here:
        one evaluation of the expression gives every quantile (NaN and infinite values
        are left out).
        """
        period = self.period
        window = f"[{period.end_ms - period.start_ms - 1}ms:{step_ms}ms]"
        series = []
        for labels, _times, texts in self.matrix(f"({expression}){window}", period.end_ms):
            values = sorted(v for v in map(float, texts) if math.isfinite(v))
            if values:
                series.append(
                    {
                        "labels": {k: v for k, v in labels.items() if k != "__name__"},
                        "quantiles": {q: percentile(values, q) for q in quantiles},
                    }
                )
        return series

    # -- Alertmanager, the relay ----------------------------------------------------

    def silences(self):
        url = self.params["alertmanager_url"]
        if not url:
            return None
        try:
            answer = HttpApi({**self.params, "url": url}).get_json("/api/v2/silences")
        except ApiError as err:
            raise ReportError(f"cannot read the silences from Alertmanager: {err}") from None
        silences = []
        for silence in answer or []:
            try:
                starts, ends = parse_time(silence["startsAt"]), parse_time(silence["endsAt"])
            except (KeyError, ValueError):
                continue
            silences.append(
                {
                    "id": silence.get("id"),
                    "matchers": silence.get("matchers") or [],
                    "starts_ms": to_ms(starts),
                    "ends_ms": to_ms(ends),
                }
            )
        return silences

    def relay(self):
        """(records, note): the relay's history of the period, or None and why not.

        The relay answers a page at a time (at most 10000 notifications), with the id
        to read on from as `next`.
        """
        url = self.params["relay_url"]
        if not url:
            return None, "no alert relay configured"
        api = HttpApi(dict(self.params, url=url))
        query = {
            "since": format_ms(self.period.start_ms),
            "until": format_ms(self.period.end_ms),
            "limit": RELAY_PAGE,
        }
        records = []
        for _page in range(RELAY_PAGES):
            try:
                document = api.get_json("/api/v1/history", query=query)
            except ApiError as err:
                return None, f"the alert relay did not answer ({err})"
            page = relay_page(document, parse_time)
            if page is None:
                return None, f"the alert relay at {url} answered without a list of notifications"
            records += page[0]
            following = page[1]
            if following is None:
                return records, None
            query["after"] = following
        return None, f"the alert relay at {url} has more than {RELAY_PAGES} pages of history"


def _prometheus_failure(err):
    hint = ""
    if err.status in (401, 403):
        hint = " (check url_username/url_password or bearer_token: Prometheus refused them)"
    return f"cannot read the history from Prometheus: {err}{hint}"


# --- The parts of the report ---------------------------------------------------------


def read_notifications(reader, start_ms, end_ms, lookback_ms):
    """(overall notifications as [(t_ms, count)] or None, the notifications section)."""
    window = f"[{end_ms - start_ms + lookback_ms - 1}ms]"
    present = reader.query(f"count(last_over_time({NOTIFICATIONS_ATTEMPTED}{window}))", end_ms)
    if not present.get("result"):
        return None, {
            "source": "none",
            "total": None,
            "note": (
                f"Prometheus has no {NOTIFICATIONS_ATTEMPTED} in the period: it does not "
                "scrape Alertmanager, so no notification count is known"
            ),
        }
    # Alertmanager exports a zero counter for every integration: read the raw samples
    # of the integrations that notified only.
    used = reader.query(f"increase({NOTIFICATIONS_ATTEMPTED}{window}) > 0", end_ms)
    integrations = sorted(
        {(item.get("metric") or {}).get("integration", "") for item in used.get("result") or []}
    )
    events, by_integration = [], {}
    if integrations:
        matcher = "|".join(_regex_literal(i) for i in integrations)
        for metric, sign in ((NOTIFICATIONS_ATTEMPTED, 1), (NOTIFICATIONS_FAILED, -1)):
            selector = f'{metric}{{integration=~"{matcher}"}}'
            for labels, times, values in reader.raw(
                selector, start_ms - lookback_ms, end_ms
            ).values():
                integration = labels.get("integration", "")
                entry = by_integration.setdefault(integration, {"attempted": 0, "failed": 0})
                for moment, increase in counter_increments(zip(times, values, strict=True)):
                    if start_ms <= moment < end_ms:
                        entry["attempted" if sign > 0 else "failed"] += round(increase)
                        events.append((moment, sign * round(increase)))
    events.sort()
    attempted = sum(e["attempted"] for e in by_integration.values())
    failed = sum(e["failed"] for e in by_integration.values())
    return events, {
        "source": "alertmanager_counters",
        "total": attempted - failed,
        "attempted": attempted,
        "failed": failed,
        "by_integration": dict(sorted(by_integration.items())),
        "note": (
            "notifications are the messages Alertmanager's integrations sent (attempted "
            "minus failed), from its counters as Prometheus scraped them"
        ),
    }


def _regex_literal(text):
    escaped = "".join("\\" + c if c in r".^$*+?()[]{}|\\" else c for c in text)
    return escaped.replace("\\", "\\\\").replace('"', '\\"')


def read_rule_groups(reader, groups, period, instance):
    """The rule groups with their evaluation time over the period, where Prometheus has it."""
    window = f"[{period.end_ms - period.start_ms - 1}ms]"
    figures = {}
    for field, promql in (
        (
            "mean_evaluation_time",
            f"avg_over_time(prometheus_rule_group_last_duration_seconds{window})",
        ),
        (
            "max_evaluation_time",
            f"max_over_time(prometheus_rule_group_last_duration_seconds{window})",
        ),
        ("iterations_missed", f"increase(prometheus_rule_group_iterations_missed_total{window})"),
    ):
        for item in reader.query(promql, period.end_ms).get("result") or []:
            labels = item.get("metric") or {}
            value = float(item["value"][1])
            key = labels.get("rule_group", "")
            figures.setdefault(key, {}).setdefault(labels.get("instance", ""), {})[field] = value
    result = []
    for group in groups:
        per_instance = figures.get(f"{group['file']};{group['name']}", {})
        if instance and instance in per_instance:
            per_instance = {instance: per_instance[instance]}
        entry = dict(group)
        values = list(per_instance.values())
        entry["mean_evaluation_time"] = _combine(values, "mean_evaluation_time", max)
        entry["max_evaluation_time"] = _combine(values, "max_evaluation_time", max)
        missed = _combine(values, "iterations_missed", sum)
        entry["iterations_missed"] = None if missed is None else round(missed)
        peak = entry["max_evaluation_time"] or entry["evaluation_time"]
        entry["share_of_interval"] = (
            round(peak / entry["interval"], 4) if peak is not None and entry["interval"] else None
        )
        result.append(entry)
    return result


def _combine(values, field, how):
    found = [v[field] for v in values if field in v and math.isfinite(v[field])]
    return how(found) if found else None


def suggestions(reader, report, rules, catalog, settings, conditions):
    """Suggestions for flapping, busy and never-firing rules, and notes where none can be."""
    table = rule_table(rules)
    found = for_suggestions(report["alerts"], table, catalog, conditions)
    candidates, notes, paired = threshold_candidates(report, table, catalog, settings["busy_share"])
    # One read per compared value: the two rules of a pair compare the same one.
    jobs, reads = [], {}
    for name, severity, why, entry in candidates:
        quantiles = QUANTILES_ABOVE if entry["operator"] in (">", ">=") else QUANTILES_BELOW
        step_ms = distribution_step(
            table[(name, severity)]["interval_ms"], reader.period, settings["distribution_points"]
        )
        read = (entry["compared_value"], quantiles, step_ms)
        if read not in reads:
            reads[read] = reader.pool.submit(_quantiles_or_error, reader, *read)
        jobs.append((name, severity, why, entry, step_ms, reads[read]))
    for name, severity, why, entry, step_ms, future in jobs:
        series, error = future.result()
        suggestion = (
            threshold_suggestion(entry, why, series, step_ms, severity, paired) if series else None
        )
        title = rule_title(name, severity, paired)
        if suggestion:
            found.append(suggestion)
        elif error:
            notes.append(f"{title} {why}, but its compared value could not be read: {error}.")
        else:
            notes.append(
                f"{title} {why}, but its compared value ({entry['compared_value']}) has no "
                "samples in the period: no threshold can be suggested."
            )
    if not jobs and not notes:
        notes.append(
            "No threshold suggestion: no alert of the catalog with a threshold fired "
            f"{settings['busy_share'] * 100:g}% of the time or more, or never."
        )
    return found, notes


def distribution_step(interval_ms, period, points):
    """Every how many ms a compared value is sampled: a whole number of evaluation
    intervals, so that at most `points` samples fall in the period (every one for 0)."""
    if points <= 0:
        return interval_ms
    evaluations = (period.end_ms - period.start_ms) / interval_ms
    return interval_ms * max(1, math.ceil(evaluations / points))


def _quantiles_or_error(reader, expression, quantiles, step_ms):
    try:
        return reader.compared_quantiles(expression, quantiles, step_ms), None
    except ReportError as err:
        return [], str(err)


def _settings(params):
    return {
        "flap_window_ms": _duration_ms(params, "flap_window"),
        "shift_ms": _duration_ms(params, "shift_length"),
        "flapping_min": params["flapping_min"],
        "busy_share": params["busy_share"],
        "top": params["top"],
        "distribution_points": params["distribution_points"],
        "external_labels": {str(k): str(v) for k, v in params["external_labels"].items()},
    }


def _frame(params, period, now, zone):
    """The report's head: the period, the sources and the settings."""
    local = datetime.fromtimestamp(period.end_ms / 1000, zone)
    return {
        "generated_at": format_ms(to_ms(now)),
        "period": {
            "start": format_ms(period.start_ms),
            "end": format_ms(period.end_ms),
            "seconds": ms_to_seconds(period.end_ms - period.start_ms),
            "duration": format_duration((period.end_ms - period.start_ms) / 1000),
            "timezone": params["timezone"],
            # The end's date where the report's days are counted: the files' names.
            "end_date": local.date().isoformat(),
        },
        "sources": {
            "prometheus": params["url"],
            "alertmanager": params["alertmanager_url"],
            "relay": {"url": params["relay_url"], "used": False, "note": None},
        },
        "settings": {
            "flap_window": params["flap_window"],
            "flapping_min": params["flapping_min"],
            "busy_share": params["busy_share"],
            "shift_length": params["shift_length"],
            "top": params["top"],
        },
        "notes": [],
    }


def read_notification_sources(reader, sections, lookback_ms, report):
    """(relay records by alert or None, overall notifications or None, notifications section).

    Overall counts come from Alertmanager's counters (every integration), else from the
    relay; per alert only the relay knows.
    """
    period = reader.period
    relay_future = reader.pool.submit(reader.relay)
    overall, notifications = None, {"source": "none", "total": None}
    if "notifications" in sections:
        overall, notifications = read_notifications(
            reader, period.start_ms, period.end_ms, lookback_ms
        )
    relay, relay_note = relay_future.result()
    report["sources"]["relay"].update(used=relay is not None, note=relay_note)
    if relay is None:
        report["notes"].append(
            f"Notifications per alert are not known ({relay_note}): Alertmanager counts "
            "notifications per integration only. The time to a silence counts from the "
            "moment the alert started firing."
        )
        return None, overall, notifications

    by_alert = {}
    for record in sorted(relay, key=lambda r: r["time_ms"]):
        by_alert.setdefault(record["name"], []).append(record)
    if overall is None and "notifications" in sections:
        overall = [
            (r["time_ms"], 1) for r in relay if period.start_ms <= r["time_ms"] < period.end_ms
        ]
        notifications = {
            "source": "relay",
            "total": len(overall),
            "note": "notifications are the alerts the relay received in notifications",
        }
    report["notes"].append(
        "Notifications per alert are the alert relay's records of it (its receivers only); "
        "the time to a silence counts from the relay's first notification of the firing."
    )
    return by_alert, overall, notifications


def read_alert_history(reader, parts, lookback_ms, instance):
    """(firing samples by series, ALERTS_FOR_STATE samples by series, silences, Prometheus'
    restarts or None when unknown).

    When a restart of Prometheus began before the look-back and ended in it, the history
    from before it is read too, so that a firing it interrupted is seen whole.
    """
    period = reader.period
    query_start = period.start_ms - lookback_ms
    firing_part = parts.submit(
        reader.raw, 'ALERTS{alertstate="firing"}', query_start, period.end_ms, False
    )
    state_part = parts.submit(reader.raw, "ALERTS_FOR_STATE", query_start, period.end_ms, "text")
    restarts_part = parts.submit(reader.restarts, query_start, period.end_ms, instance)
    silences = reader.silences()
    state = state_part.result()
    firing = {key: (labels, times) for key, (labels, times, _v) in firing_part.result().items()}
    restarts = restarts_part.result()
    earlier = [d for d, u, _s in restarts or () if d < query_start < u + lookback_ms]
    if earlier:
        before = min(earlier) - lookback_ms
        selector = 'ALERTS{alertstate="firing"}'
        for key, (labels, times, _v) in reader.raw(selector, before, query_start, False).items():
            firing[key] = (labels, times + firing.get(key, (labels, []))[1])
        for key, (labels, times, values) in reader.raw(
            "ALERTS_FOR_STATE", before, query_start, "text"
        ).items():
            later = state.get(key, (labels, [], []))
            state[key] = (labels, times + later[1], values + later[2])
    # ALERTS_FOR_STATE's value is the time the alert became active, in seconds.
    for_state = {
        key: (times, active_times_ms(values)) for key, (_l, times, values) in state.items()
    }
    return firing, for_state, silences, restarts


def _notes(report, sections, silences, restarts):
    """What the reader should know about silences, acknowledgements and restarts."""
    notes = report["notes"]
    if "alerts" not in sections:
        return
    if silences is not None:
        notes.append(
            report["silences"]["note"]
            or "Silenced shares use every silence Alertmanager still keeps: an expired one "
            f"for its retention ({report['silences']['retention']}) after it ended, which "
            "covers the period."
        )
    else:
        notes.append("No Alertmanager URL given: nothing counts as silenced.")
    notes.append(
        "Alertmanager has no acknowledgements: the time from the first notification to "
        "a silence that covers the alert stands in for the time to acknowledge."
    )
    if restarts is None:
        notes.append(
            "Prometheus does not scrape itself (no process_start_time_seconds of job "
            "prometheus in the period): a restart of Prometheus cannot be told from a resolve, "
            "but where the relay shows that Alertmanager kept the alert's start."
        )


def build_report(params, now=None):
    """The whole report for the module's parameters."""
    now = now or utc_now()
    period = Period(params, now)
    zone = _zone(params["timezone"])
    settings = _settings(params)
    sections = set(params["sections"])
    report = _frame(params, period, now, zone)
    known_from, report["silences"] = silence_coverage(
        period.start_ms,
        to_ms(now),
        _duration_ms(params, "alertmanager_retention"),
        params["alertmanager_retention"],
        params["alertmanager_url"],
    )
    settings["silences_known_from_ms"] = known_from
    # Requests run in one pool, the parts of the report that wait for them in another,
    # so that no worker waits for work queued behind it.
    with ThreadPoolExecutor(WORKERS) as requests, ThreadPoolExecutor(5) as parts:
        reader = HistoryReader(params, period, requests)
        rules, groups = reader.rules()
        intervals = [r["interval_ms"] for same in rules.values() for r in same]
        max_interval = max(intervals or [DEFAULT_INTERVAL_MS])
        settings["default_interval_ms"] = max_interval
        # Far enough back to see whether a firing began before the period, and the
        # resolve before a flap at its start.
        lookback_ms = settings["flap_window_ms"] + 2 * max_interval

        sources = None
        if sections & {"alerts", "notifications"}:
            sources = parts.submit(read_notification_sources, reader, sections, lookback_ms, report)
        timings = None
        if "rule_groups" in sections:
            timings = parts.submit(read_rule_groups, reader, groups, period, params["instance"])
        firing, for_state, silences, restarts = {}, {}, None, None
        if "alerts" in sections:
            firing, for_state, silences, restarts = read_alert_history(
                reader, parts, lookback_ms, params["instance"]
            )
        relay, overall, notifications = None, None, {"source": "none", "total": None}
        if sources is not None:
            relay, overall, notifications = sources.result()

        builder = ReportBuilder(period.start_ms, period.end_ms, zone, settings)
        report.update(
            builder.build(
                rules if "alerts" in sections else {},
                firing,
                for_state,
                silences,
                relay,
                overall,
                restarts,
            )
        )
        report["notifications"] = notifications
        _notes(report, sections, silences, restarts)
        found, notes = [], []
        if "alerts" in sections:
            found, notes = suggestions(
                reader, report, rules, params["catalog"], settings, builder.conditions
            )
        report["suggestions"], report["suggestion_notes"] = found, notes
        report["rule_groups"] = timings.result() if timings is not None else []
    return report
