"""The relay's metrics (``/metrics``): counters kept in memory, queue figures read from the
database at each scrape, prometheus_client's process, platform and GC metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from exporter_web.webconfig import WebConfigWatcher
from prometheus_client import (
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from alert_relay import __version__
from alert_relay.config import Config
from alert_relay.store import QueueStats, StorageError

# Outcomes of a webhook call (label ``outcome``).
OUTCOMES = (
    "accepted",
    "bad_request",
    "too_large",
    "unauthorized",
    "unknown_receiver",
    "storage_error",
)
# Results of one attempt to forward (label ``result``).
FORWARD_RESULTS = ("success", "http_error", "timeout", "connection_error", "error")
HOOK_RESULTS = ("success", "failed", "timeout", "error", "interrupted")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class RelayMetrics:
    """Everything ``/metrics`` shows; counters are created per receiver, destination and hook
    at zero, so that ``increase()`` sees their first event."""

    def __init__(
        self,
        queue_stats: Callable[[], QueueStats],
        config: Callable[[], Config],
        web: WebConfigWatcher,
        storage: Callable[[], StorageHealth],
        password_checks: Callable[[], dict[str, int]],
    ) -> None:
        # No *_created series: twice the series for a time Prometheus does not use.
        disable_created_metrics()
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "alert_relay_notifications_received_total",
            "Webhook calls by receiver (empty for an unknown one) and outcome.",
            ["receiver", "outcome"],
            registry=r,
        )
        self.alerts_received = Counter(
            "alert_relay_alerts_received_total",
            "Alerts in accepted notifications, by receiver and status.",
            ["receiver", "status"],
            registry=r,
        )
        self.accept_duration = Histogram(
            "alert_relay_accept_duration_seconds",
            "Time from a notification's body read to its durable commit.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.forward_attempts = Counter(
            "alert_relay_forward_attempts_total",
            "Attempts to forward an alert, by destination and result.",
            ["destination", "result"],
            registry=r,
        )
        self.forward_duration = Histogram(
            "alert_relay_forward_duration_seconds",
            "Duration of forwarding attempts, by destination.",
            ["destination"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.deduplicated = Counter(
            "alert_relay_deduplicated_total",
            "Alerts not queued again for a target (destination or hook:<name>): already "
            "forwarded with the same fingerprint, status and startsAt.",
            ["target"],
            registry=r,
        )
        self.dead_letters = Counter(
            "alert_relay_dead_letters_total",
            "Alerts given up for a destination after their retry.max_age (dead letters).",
            ["destination"],
            registry=r,
        )
        self.hook_runs = Counter(
            "alert_relay_hook_runs_total",
            "Hook runs by hook and result.",
            ["hook", "result"],
            registry=r,
        )
        self.hooks_failed = Counter(
            "alert_relay_hooks_failed_total",
            "Alerts whose hook failed on its last allowed attempt, by hook.",
            ["hook"],
            registry=r,
        )
        self.config_reload_successful = Gauge(
            "alert_relay_config_last_reload_successful",
            "1 when the last load of --config.file succeeded, else 0.",
            registry=r,
        )
        self.config_reload_timestamp = Gauge(
            "alert_relay_config_last_reload_success_timestamp_seconds",
            "When --config.file last loaded successfully.",
            registry=r,
        )
        Gauge(
            "alert_relay_build_info",
            "The relay's version, 1.",
            ["version"],
            registry=r,
        ).labels(__version__).set(1)
        r.register(_StateCollector(queue_stats, config, web, storage, password_checks))
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

    def config_loaded(self, config: Config) -> None:
        """Record a successful (re)load; create the new names' series at zero."""
        self.config_reload_successful.set(1)
        self.config_reload_timestamp.set(time.time())
        for receiver in config.receivers:
            self.received.labels(receiver, "accepted")
            for status in ("firing", "resolved"):
                self.alerts_received.labels(receiver, status)
        for destination in config.destinations:
            self.dead_letters.labels(destination)
            self.forward_attempts.labels(destination, "success")
            self.forward_duration.labels(destination)
        for hook in config.hooks:
            self.hook_runs.labels(hook, "success")
            self.hooks_failed.labels(hook)


@dataclass(frozen=True)
class StorageHealth:
    failures: int  # database operations that failed since the start
    failing: bool  # from a failed operation until a write succeeds again


class _StateCollector(Collector):
    """Queue depth and age per target, read from the database at each scrape; the storage's
    health and the password checks, read from the objects that keep them."""

    def __init__(
        self,
        queue_stats: Callable[[], QueueStats],
        config: Callable[[], Config],
        web: WebConfigWatcher,
        storage: Callable[[], StorageHealth],
        password_checks: Callable[[], dict[str, int]],
    ) -> None:
        self._queue_stats = queue_stats
        self._config = config
        self._web = web
        self._storage = storage
        self._password_checks = password_checks

    def describe(self) -> list[Metric]:
        return []  # collected per scrape only: registration must not query the database

    def collect(self) -> Iterator[Metric]:
        try:
            stats = self._queue_stats()
        except StorageError:
            # Counted and logged by the store. The rest of the scrape still tells what
            # happens (the storage series first of all); the queue series go missing.
            stats = None
        now = time.time()
        health = self._storage()
        yield CounterMetricFamily(
            "alert_relay_storage_errors",
            "Database operations that failed: writes (a webhook's commit: 503; an attempt's "
            "outcome, kept in memory), reads, opening it.",
            value=health.failures,
        )
        yield GaugeMetricFamily(
            "alert_relay_storage_failing",
            "1 from a failed database operation until a write succeeds again (while it "
            "fails, a write is tried at least every 30 s), else 0.",
            value=1 if health.failing else 0,
        )
        checks = CounterMetricFamily(
            "alert_relay_basic_auth_checks",
            "Checks of the web config's basic auth, by result: granted (bcrypt), cached "
            "(granted before, same header and web config), denied, busy (too many checks "
            "under way: answered 503 unchecked).",
            labels=["result"],
        )
        for result, count in sorted(self._password_checks().items()):
            checks.add_metric([result], count)
        yield checks
        yield GaugeMetricFamily(
            "alert_relay_web_config_last_reload_successful",
            "0 when --web.config.file, or a file it names, changed and did not load; else 1.",
            value=1 if self._web.last_reload_successful else 0,
        )
        if stats is None:
            return
        targets = set(self._config().target_limits()) | set(stats.depth)
        depth = GaugeMetricFamily(
            "alert_relay_queue_depth",
            "Alerts waiting to be forwarded, per target (destination or hook:<name>).",
            labels=["target"],
        )
        age = GaugeMetricFamily(
            "alert_relay_oldest_pending_age_seconds",
            "Age of the oldest alert waiting for a target; 0 when none waits.",
            labels=["target"],
        )
        for target in sorted(targets):
            depth.add_metric([target], stats.depth.get(target, 0))
            oldest = stats.oldest.get(target)
            age.add_metric([target], max(0.0, now - oldest) if oldest is not None else 0.0)
        yield depth
        yield age
