"""The whole stack from site.yml: targets up, rules healthy, real faults travel
to the receiver and back, and check mode predicts a real run. The tag contract
(README "Tags") is tested by the `tags` scenario (molecule/tags)."""

import json
import re
import time
from pathlib import Path

import pytest
import yaml
from molecule_helpers import (
    about_a_fixture_container,
    catalog_groups,
    changed_tasks,
    exited_container,
    file_checksums,
    get_json,
    recap,
    run_playbook,
    stopped,
    wait_for,
    wait_for_notification,
)

PROMETHEUS = "http://127.0.0.1:9090"
SITE = "molecule/stack/converge.yml"
SCENARIO_VARS = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "inventory/group_vars/monitoring.yml").read_text()
)
# The archive scenario's checks read these too (test_archive.py imports this module).
CONFIG_DIRS = ("/etc/prometheus", "/etc/alertmanager", "/etc/prometheus-redis-exporter")
UNITS = "/etc/systemd/system"


def main_pid(host, unit):
    return host.check_output("systemctl show -P MainPID %s", unit)


def firing_alerts(host, alertname):
    alerts = get_json(host, f"{PROMETHEUS}/api/v1/alerts")["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == alertname and a["state"] == "firing"]


@pytest.fixture(scope="module", autouse=True)
def targets_up(host):
    """Every scrape target is up before any test provokes a fault."""

    def all_up():
        targets = get_json(host, f"{PROMETHEUS}/api/v1/targets")["data"]["activeTargets"]
        down = [t["scrapeUrl"] for t in targets if t["health"] != "up"]
        return targets if targets and not down else None

    return wait_for(all_up, timeout=90, what="every target up")


def test_every_scrape_target_is_up(targets_up):
    jobs = {target["labels"]["job"] for target in targets_up}
    assert jobs == {
        "alert-relay",
        "blackbox",
        "node-exporter",
        "docker-exporter",
        "dragonflydb",
        "alertmanager",
        "prometheus",
        "trading-bot",
        "data-consumer",
    }


def test_every_rule_group_is_loaded_and_healthy(host):
    groups = get_json(host, f"{PROMETHEUS}/api/v1/rules")["data"]["groups"]

    # Every group of the catalog: the stack's inventory disables none.
    catalog = {group["name"] for group in catalog_groups()}
    assert "trading-bot.rules" in catalog
    assert {group["name"] for group in groups} == catalog
    unhealthy = [
        (r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"
    ]
    assert not unhealthy


def test_only_the_watchdog_fires_on_a_healthy_stack(host):
    firing = []

    def quiet():
        alerts = get_json(host, f"{PROMETHEUS}/api/v1/alerts")["data"]["alerts"]
        # Another scenario's fault fixture on the shared engine is not this stack's.
        firing[:] = [
            a["labels"]
            for a in alerts
            if a["state"] == "firing" and not about_a_fixture_container(a)
        ]
        return {labels["alertname"] for labels in firing} == {"Watchdog"}

    wait_for(quiet, timeout=60, what=lambda: f"only the Watchdog firing; firing: {firing}")


def test_stopped_node_exporter_pages_and_recovers(host):
    started = time.monotonic()
    with stopped(host, "prometheus-node-exporter"):
        record, alert = wait_for_notification(host, "NodeExporterDown", "firing")
        print(
            f"NodeExporterDown reached the receiver {time.monotonic() - started:.0f} s "
            "after node_exporter stopped"
        )

    assert record["path"] == "/webhooks/critical"
    assert record["body"]["receiver"] == "critical-alerts"
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["service"] == "system"
    assert alert["labels"]["job"] == "node-exporter"
    assert alert["annotations"]["summary"] == "node_exporter is down"
    assert alert["annotations"]["description"].startswith(
        "Prometheus cannot scrape node_exporter on "
    )
    assert alert["annotations"]["runbook_url"].endswith("#nodeexporterdown")

    record, alert = wait_for_notification(host, "NodeExporterDown", "resolved")
    assert record["body"]["receiver"] == "critical-alerts"
    assert alert["labels"]["job"] == "node-exporter"


def test_stopped_redis_raises_the_dragonflydb_connection_alert(host):
    with stopped(host, "redis-server"):
        _record, alert = wait_for_notification(host, "DragonflyDBConnectionFailure", "firing")

    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["service"] == "dragonflydb"
    assert alert["annotations"]["description"].startswith("Cannot connect to DragonflyDB on ")


def test_a_container_exiting_with_an_error_raises_configuration_error(host):
    with exited_container("stack-exit3") as name:
        (alert,) = wait_for(
            lambda: [
                a
                for a in firing_alerts(host, "ConfigurationError")
                if a["labels"].get("name") == name
            ],
            timeout=120,
            what=f"ConfigurationError for {name}",
        )

    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["image"] == "debian:bookworm"
    assert alert["annotations"]["description"].startswith(
        f"Container {name} (debian:bookworm) exited with code 3 on "
    )


def test_check_mode_predicts_the_changes_of_a_real_run(host):
    overrides = {
        **SCENARIO_VARS["prometheus_alert_overrides"],
        "LowRejectionRate": {"threshold": 78},
    }
    before = file_checksums(host, "/etc/prometheus")

    rc, predicted = run_playbook(
        SITE, "--check", "--diff", extra_vars={"prometheus_alert_overrides": overrides}
    )

    assert rc == 0, predicted
    assert file_checksums(host, "/etc/prometheus") == before
    assert re.search(r"^-.*trading_bot_rejection_rate < 80$", predicted, re.M)
    assert re.search(r"^\+.*trading_bot_rejection_rate < 78$", predicted, re.M)

    rc, output = run_playbook(SITE, extra_vars={"prometheus_alert_overrides": overrides})

    assert rc == 0, output
    assert changed_tasks(output) == changed_tasks(predicted)


def test_back_to_the_inventory_then_a_rerun_changes_nothing(host):
    rc, output = run_playbook(SITE)
    assert rc == 0, output

    rc, output = run_playbook(SITE)

    assert rc == 0, output
    assert recap(output)["changed"] == 0

    rc, output = run_playbook(SITE, "--check", "--diff")

    assert rc == 0, output
    assert recap(output)["changed"] == 0


def test_the_report_of_the_last_hours_names_the_alerts_the_faults_raised(host, tmp_path):
    rc, output = run_playbook(
        "playbooks/report.yml", extra_vars={"report_period": "2h", "report_dir": str(tmp_path)}
    )

    assert rc == 0, output
    (path,) = tmp_path.glob("*/alert-report-*.json")
    alerts = {a["name"]: a for a in json.loads(path.read_text())["alerts"]}
    assert alerts["NodeExporterDown"]["fired"] >= 1
    assert alerts["NodeExporterDown"]["time_to_resolve"]["count"] >= 1
    for name in ("DragonflyDBConnectionFailure", "ConfigurationError"):
        assert alerts[name]["fired"] >= 1, name
    assert alerts["Watchdog"]["firing_at_end"] == 1
    assert "<svg" in path.with_suffix(".html").read_text()
