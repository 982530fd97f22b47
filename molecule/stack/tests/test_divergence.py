"""No silent divergence: a configuration that went live is reloaded whatever fails after
it, a run killed before its reload is healed by the next one, verify.yml names what a
service runs that is not on disk, and neither a unit written before a lost restart nor
a fact cache makes a rerun skip work. Every test leaves the stack as the inventory says."""

import json
import re
import time
from pathlib import Path

import pytest
import yaml
from molecule_helpers import (
    changed_tasks,
    get_json,
    recap,
    run_playbook,
    run_playbook_killed_at,
    wait_for,
)

PROMETHEUS = "http://127.0.0.1:9090"
ALERTMANAGER = "http://127.0.0.1:9093"
SITE = "molecule/stack/converge.yml"
VERIFY = "playbooks/verify.yml"
SCENARIO_VARS = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "inventory/group_vars/monitoring.yml").read_text()
)
PENDING = "/var/lib/prometheus-alerting/reload-pending"
RULES = "/etc/prometheus/rules/trading-bot.yml"
NODE_UNIT = "/etc/systemd/system/prometheus-node-exporter.service"


def overrides(**alerts):
    """The scenario's alert overrides (extra vars replace them) plus `alerts`."""
    return {"prometheus_alert_overrides": {**SCENARIO_VARS["prometheus_alert_overrides"], **alerts}}


def running_group_wait(host):
    original = get_json(host, f"{ALERTMANAGER}/api/v2/status")["config"]["original"]
    return yaml.safe_load(original)["route"]["group_wait"]


def running_rule_query(host, alertname):
    groups = get_json(host, f"{PROMETHEUS}/api/v1/rules")["data"]["groups"]
    (query,) = [r["query"] for g in groups for r in g["rules"] if r["name"] == alertname]
    return query


def main_pid(host, unit):
    return host.check_output("systemctl show -P MainPID %s", unit)


def drift_report(output, service):
    """What verify.yml says drifts in `service` (the first line that says so)."""
    match = re.search(rf"{service} runs another configuration than the one on disk: (.*)", output)
    assert match, output
    return match.group(1)


@pytest.fixture(scope="module", autouse=True)
def back_to_the_inventory():
    yield
    rc, output = run_playbook(SITE)
    assert rc == 0, output
    rc, output = run_playbook(VERIFY, "--tags", "drift")
    assert rc == 0, output


def test_a_config_that_went_live_is_reloaded_when_a_later_task_fails(host):
    rule_before = running_rule_query(host, "HighRejectionRate")

    # The report: Alertmanager's change goes live, then a rule promtool rejects.
    rc, output = run_playbook(
        SITE,
        extra_vars={
            "alertmanager_group_wait": "17s",
            **overrides(HighRejectionRate={"threshold": "90 +"}),
        },
    )

    assert rc != 0
    assert "the new configuration is invalid, nothing was changed" in output
    assert '"HighRejectionRate": could not parse expression' in output.replace('\\"', '"')
    assert "alertmanager : Reload alertmanager" in changed_tasks(output)
    assert running_group_wait(host) == "17s"
    assert running_rule_query(host, "HighRejectionRate") == rule_before
    assert not host.file(f"{PENDING}/prometheus-alertmanager").exists
    rc, output = run_playbook(VERIFY, "--tags", "drift")
    assert rc == 0, output


def test_a_run_killed_before_its_reload_is_healed_by_the_next(host):
    before = running_group_wait(host)
    marker = f"{PENDING}/prometheus-alertmanager"

    run_playbook_killed_at(
        host, marker, SITE, "--tags", "routing", extra_vars={"alertmanager_group_wait": "23s"}
    )
    wait_for(
        lambda: "group_wait: 23s" in host.file("/etc/alertmanager/alertmanager.yml").content_string,
        timeout=30,
        what="the killed run's alertmanager.yml live",
    )

    assert running_group_wait(host) == before
    assert json.loads(host.file(marker).content_string)["files"] == ["alertmanager.yml"]
    rc, output = run_playbook(VERIFY, "--tags", "drift")
    assert rc != 0
    assert f"{host.backend.get_hostname()}: Alertmanager runs another configuration" in output
    report = drift_report(output, "Alertmanager")
    assert "a reload is owed since" in report
    assert f"route.group_wait: 23s on disk, {before} running" in report

    # The same command again: no file changes, and yet the owed reload happens.
    rc, output = run_playbook(
        SITE, "--tags", "routing", extra_vars={"alertmanager_group_wait": "23s"}
    )

    assert rc == 0, output
    assert changed_tasks(output) == [
        "alertmanager : Validate Alertmanager's configuration and put it live",
        "alertmanager : Reload alertmanager",
    ]
    assert running_group_wait(host) == "23s"
    assert not host.file(marker).exists
    rc, output = run_playbook(
        SITE, "--tags", "routing", extra_vars={"alertmanager_group_wait": "23s"}
    )
    assert rc == 0, output
    assert recap(output)["changed"] == 0


def test_prometheus_too_reloads_what_a_killed_run_put_live(host):
    marker = f"{PENDING}/prometheus"
    changed = overrides(HighRejectionRate={"threshold": 96})

    run_playbook_killed_at(host, marker, SITE, "--tags", "rules", extra_vars=changed)
    wait_for(
        lambda: "> 96" in host.file(RULES).content_string,
        timeout=30,
        what="the killed run's rule file live",
    )

    assert "> 96" not in running_rule_query(host, "HighRejectionRate")
    rc, output = run_playbook(VERIFY, "--tags", "drift")
    assert rc != 0
    report = drift_report(output, "Prometheus")
    assert "rule group trading-bot.rules, HighRejectionRate: expression on disk" in report

    rc, output = run_playbook(SITE, "--tags", "rules", extra_vars=changed)

    assert rc == 0, output
    assert changed_tasks(output) == [
        "prometheus : Put the alert rules live once promtool accepts them",
        "prometheus : Reload prometheus",
    ]
    assert "> 96" in running_rule_query(host, "HighRejectionRate")
    assert not host.file(marker).exists


def test_verify_names_a_rule_edited_by_hand_and_a_rerun_puts_it_back(host):
    threshold = re.search(r"trading_bot_rejection_rate > (\d+)", host.file(RULES).content_string)
    edit = f"s/trading_bot_rejection_rate > {threshold[1]}/trading_bot_rejection_rate > 1/"
    host.run_expect([0], f"sed -i '{edit}' {RULES}")

    rc, output = run_playbook(VERIFY)

    assert rc != 0
    report = drift_report(output, "Prometheus")
    assert "changed on disk after its last successful reload at" in report
    assert "HighRejectionRate: expression on disk `" in report
    assert "trading_bot_rejection_rate > 1`, running `" in report

    rc, output = run_playbook(SITE, "--tags", "rules")

    assert rc == 0, output
    assert "prometheus : Reload prometheus" in changed_tasks(output)
    rc, output = run_playbook(VERIFY, "--tags", "drift")
    assert rc == 0, output


def test_a_unit_written_after_its_service_started_restarts_it_once(host):
    # A run that wrote the unit and died before the restart leaves exactly this.
    pid = main_pid(host, "prometheus-node-exporter")
    time.sleep(1)
    host.run_expect([0], f"touch {NODE_UNIT}")

    rc, output = run_playbook(SITE, "--tags", "node_exporter")

    assert rc == 0, output
    assert changed_tasks(output) == [
        "monitoring_service : Restart for a new unit or binary: prometheus-node-exporter"
    ]
    assert main_pid(host, "prometheus-node-exporter") != pid
    rc, output = run_playbook(SITE, "--tags", "node_exporter")
    assert rc == 0, output
    assert recap(output)["changed"] == 0


def test_a_fact_cache_never_makes_a_rerun_skip_work(host, tmp_path):
    cache = {
        "ANSIBLE_CACHE_PLUGIN": "ansible.builtin.jsonfile",
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(tmp_path / "facts"),
        "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "86400",
    }
    rc, output = run_playbook(SITE, "--tags", "node_exporter", env=cache)
    assert rc == 0, output
    # What the cache saw is gone: no unit, no running service.
    host.run_expect([0], f"systemctl disable --now prometheus-node-exporter && rm {NODE_UNIT}")
    host.run_expect([0], "systemctl daemon-reload")

    rc, output = run_playbook(SITE, "--tags", "node_exporter", env=cache)

    assert rc == 0, output
    assert "monitoring_service : Install the hardened systemd unit of prometheus-node-exporter" in (
        changed_tasks(output)
    )
    assert host.service("prometheus-node-exporter").is_running
    assert host.service("prometheus-node-exporter").is_enabled
    cached = "".join(p.read_text() for p in (tmp_path / "facts").iterdir())
    assert "_monitoring_service_host" not in cached
    assert "unit_files" not in cached


def test_a_mode_change_shows_in_the_diff_and_is_put_right(host):
    host.run_expect([0], f"chmod 0644 {RULES}")

    rc, output = run_playbook(SITE, "--tags", "rules", "--check", "--diff")

    assert rc == 0, output
    assert f"--- before: {RULES} (mode owner:group)" in output
    assert "-0644 root:prometheus" in output and "+0640 root:prometheus" in output
    assert host.file(RULES).mode == 0o644

    rc, output = run_playbook(SITE, "--tags", "rules")

    assert rc == 0, output
    assert host.file(RULES).mode == 0o640


@pytest.mark.parametrize(
    ("unit", "timeout"),
    [
        ("prometheus", "10min"),
        ("prometheus-alertmanager", "2min"),
        ("prometheus-node-exporter", "30s"),
    ],
)
def test_a_stop_gives_each_service_time_to_write_its_data(host, unit, timeout):
    assert host.check_output("systemctl show -P TimeoutStopUSec %s", unit) == timeout
