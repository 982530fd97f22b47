"""The prometheus role: every alert loaded and healthy, reload not restart,
validation before anything goes live."""

import re

import pytest
import yaml
from molecule_helpers import (
    changed_tasks,
    file_checksums,
    get_json,
    get_text,
    metric_value,
    run_playbook,
    wait_for,
)

API = "http://127.0.0.1:9090"
CONVERGE = "molecule/prometheus/converge.yml"

# The seed document's 32 alerts, by name: all of them must be loaded.
SEED_ALERTS = {
    "TradingBotDown",
    "HighRejectionRate",
    "LowRejectionRate",
    "NoTradingActivity",
    "HighErrorRate",
    "TradingBotHighMemory",
    "APIEndpointFailures",
    "PerformanceDegradation",
    "HighCPUUsage",
    "HighMemoryUsage",
    "CriticalDiskUsage",
    "HighLoadAverage",
    "NetworkConnectivityIssue",
    "DiskIOPressure",
    "ContainerFailed",
    "HealthCheckFailure",
    "ContainerResourceLimitExceeded",
    "VolumeMountIssue",
    "DockerServiceDown",
    "ContainerRestartLoop",
    "DockerDaemonIssues",
    "ServiceDowntime",
    "OrphanedContainers",
    "ConfigurationError",
    "DragonflyDBConnectionFailure",
    "DragonflyDBHighMemoryUsage",
    "DragonflyDBConnectionPoolExhaustion",
    "DragonflyDBHighLatency",
    "DragonflyDBReplicationLag",
    "DragonflyDBBackupFailure",
    "DragonflyDBAuthenticationError",
    "DragonflyDBSSLIssue",
}
ADDED_ALERTS = {
    "DataConsumerDown",
    "NodeExporterDown",
    "Watchdog",
    "PrometheusConfigReloadFailed",
    "PrometheusRuleEvaluationFailures",
    "PrometheusAlertmanagerUnreachable",
    "AlertmanagerDown",
    "AlertmanagerConfigReloadFailed",
    "AlertmanagerNotificationsFailing",
}


def loaded_rules(host):
    groups = get_json(host, f"{API}/api/v1/rules?type=alert")["data"]["groups"]
    return {rule["name"]: rule for group in groups for rule in group["rules"]}


def rule_file_alerts(host):
    names = set()
    for path in host.file("/etc/prometheus/rules").listdir():
        document = yaml.safe_load(host.file(f"/etc/prometheus/rules/{path}").content_string)
        names.update(rule["alert"] for group in document["groups"] for rule in group["rules"])
    return names


def process_identity(host):
    """PID and start time: both stay the same across a reload."""
    pid = host.check_output("systemctl show -P MainPID prometheus")
    started = metric_value(get_text(host, f"{API}/metrics"), "process_start_time_seconds")
    return pid, started


def test_runs_as_prometheus_with_lifecycle_on_loopback(host):
    assert host.service("prometheus").is_running
    pid = host.check_output("systemctl show -P MainPID prometheus")
    assert host.check_output("stat -c %%U /proc/%s", pid) == "prometheus"
    assert host.socket("tcp://127.0.0.1:9090").is_listening
    assert "--web.enable-lifecycle" in host.file(f"/proc/{pid}/cmdline").content_string


def test_every_alert_is_loaded_and_healthy(host):
    # Health is "unknown" until a group's first evaluation.
    rules = wait_for(
        lambda: (
            (r := loaded_rules(host)) and all(x["health"] != "unknown" for x in r.values()) and r
        ),
        timeout=60,
        what="every rule evaluated once",
    )

    assert set(rules) == rule_file_alerts(host)
    assert set(rules) >= SEED_ALERTS | ADDED_ALERTS
    unhealthy = {
        name: rule.get("lastError") for name, rule in rules.items() if rule["health"] != "ok"
    }
    assert not unhealthy


def test_scrape_jobs_are_generated_from_the_inventory(host):
    targets = get_json(host, f"{API}/api/v1/targets")["data"]["activeTargets"]
    jobs = {target["labels"]["job"] for target in targets}
    assert {"node-exporter", "docker-exporter", "dragonflydb", "alertmanager", "prometheus"} <= jobs

    def itself_up():
        targets = get_json(host, f"{API}/api/v1/targets")["data"]["activeTargets"]
        return next(t for t in targets if t["labels"]["job"] == "prometheus")["health"] == "up"

    wait_for(itself_up, timeout=60, what="Prometheus scraping itself")


def test_rules_tag_changes_one_threshold_and_reloads_without_restart(host):
    before_files = file_checksums(host, "/etc/prometheus")
    before_identity = process_identity(host)
    before_reload = metric_value(
        get_text(host, f"{API}/metrics"), "prometheus_config_last_reload_success_timestamp_seconds"
    )

    rc, output = run_playbook(
        CONVERGE,
        "--tags",
        "rules",
        extra_vars={"prometheus_alert_overrides": {"HighCPUUsage": {"threshold": 91}}},
    )

    assert rc == 0, output
    after_files = file_checksums(host, "/etc/prometheus")
    changed = {path for path in after_files if after_files[path] != before_files.get(path)}
    assert changed == {"/etc/prometheus/rules/system-resources.yml"}
    assert changed_tasks(output) == [
        "prometheus : Put the alert rules live once promtool accepts them",
        "prometheus : Reload prometheus",
    ]
    assert process_identity(host) == before_identity
    metrics = get_text(host, f"{API}/metrics")
    assert (
        metric_value(metrics, "prometheus_config_last_reload_success_timestamp_seconds")
        > before_reload
    )
    assert re.search(r"> 91$", loaded_rules(host)["HighCPUUsage"]["query"])


def test_a_broken_rule_fails_and_changes_nothing_live(host):
    before_files = file_checksums(host, "/etc/prometheus")
    before_query = loaded_rules(host)["HighCPUUsage"]["query"]

    rc, output = run_playbook(
        CONVERGE,
        "--tags",
        "rules",
        extra_vars={"prometheus_alert_overrides": {"HighCPUUsage": {"expr": "up =="}}},
    )

    assert rc != 0
    assert "the new configuration is invalid, nothing was changed" in output
    assert "HighCPUUsage" in output
    assert "/etc/prometheus/rules/system-resources.yml" in output
    assert file_checksums(host, "/etc/prometheus") == before_files
    assert loaded_rules(host)["HighCPUUsage"]["query"] == before_query


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        (
            {"prometheus_alert_overrides": {"HighCPUUsag": {"threshold": 1}}},
            "prometheus_alert_overrides names alerts that do not exist: HighCPUUsag",
        ),
        ({"prometheus_port": "ninety-ninety"}, "prometheus_port"),
    ],
)
def test_a_wrong_variable_fails_early_and_names_it(host, extra_vars, message):
    before_files = file_checksums(host, "/etc/prometheus")

    rc, output = run_playbook(CONVERGE, extra_vars=extra_vars)

    assert rc != 0
    assert message in output
    assert file_checksums(host, "/etc/prometheus") == before_files


def test_back_to_the_defaults_restores_the_first_rules(host):
    rc, output = run_playbook(CONVERGE, "--tags", "rules")

    assert rc == 0, output
    assert re.search(r"> 80$", loaded_rules(host)["HighCPUUsage"]["query"])
