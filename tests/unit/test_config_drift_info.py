"""config_drift_info: what Prometheus and Alertmanager run, against their files on disk.

The comparison runs in the action plugin on the controller; these tests run it
for real (ansible-playbook against this machine) on real Prometheus and
Alertmanager processes, and check its pure parts directly.
"""

import hashlib
import importlib.util
import json
import os
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, http_get, run_local_playbook, start_alertmanager, start_prometheus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import pki

_spec = importlib.util.spec_from_file_location(
    "config_drift_info_action", ROOT / "plugins" / "action" / "config_drift_info.py"
)
drift = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(drift)

PROMETHEUS_YML = """\
global:
  evaluation_interval: 15s
rule_files:
  - rules/*.yml
"""
# Written the way people write PromQL, not the way Prometheus prints it.
RULES = """\
groups:
  - name: system.rules
    rules:
      - alert: HighCPUUsage
        expr: |
          100 - (avg(rate(node_cpu_seconds_total{mode="idle"}[5m])) by (instance) * 100) > 85
        for: 5m
        labels: {severity: warning, service: system}
        annotations:
          summary: "CPU on {{ $labels.instance }} at {{ $value }}%"
      - alert: Ratio
        expr: sum(rate(a_total[5m])) by (job) / on(job) group_left sum(b) by (job) > 0.1
      - record: job:a:rate5m
        expr: sum without(instance) (rate(a_total[5m]))
  - name: fast.rules
    interval: 5s
    rules:
      - alert: Up
        expr: up==0
        for: 30s
"""
ALERTMANAGER_YML = """\
route:
  receiver: default
  group_wait: 10s
  group_interval: 60s
  routes:
    - matchers: [severity=critical]
      receiver: critical
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [alertname]
receivers:
  - name: default
  - name: critical
    webhook_configs:
      - url: http://127.0.0.1:1/hook
        http_config:
          authorization:
            credentials_file: secrets/token
templates:
  - templates/*.tmpl
"""


# prometheus.yml as the roles write it with TLS, basic auth, two servers and remote_write:
# file names relative to it, durations, relabelling, a false that Prometheus does not show.
# {port} is Prometheus' own.
FULL_PROMETHEUS_YML = """\
global:
  scrape_interval: 60s
  scrape_timeout: 10s
  evaluation_interval: 15s
  external_labels:
    environment: test
    replica: mon1
rule_files:
  - rules/*.yml
alerting:
  alert_relabel_configs:
    - action: labeldrop
      regex: replica
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:1"]
        - targets: ["127.0.0.2:1"]
          labels: {{__scheme__: http}}
      scheme: https
      tls_config: {{ca_file: web/ca.crt}}
      basic_auth: {{username: prometheus, password_file: web/client-password}}
remote_write:
  - url: http://127.0.0.1:1/api/v1/write
    authorization: {{credentials_file: {secrets}/remote_write.0.credentials}}
    queue_config: {{batch_send_deadline: 2s}}
scrape_configs:
  - job_name: node-exporter
    scheme: https
    tls_config: {{ca_file: web/ca.crt}}
    basic_auth: {{username: prometheus, password_file: web/client-password}}
    static_configs:
      - targets: ["127.0.0.1:1"]
        labels: {{instance: mon1}}
  - job_name: blackbox
    metrics_path: /probe
    honor_labels: false
    static_configs:
      - targets: ["127.0.0.1:8080"]
        labels:
          __param_module: tcp_connect
          probe: webhook-127.0.0.1-8080
          check: connect
          instance: 127.0.0.1:8080
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - target_label: __address__
        replacement: 127.0.0.1:9115
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


def reload(url):
    request = urllib.request.Request(url + "/-/reload", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5):
            pass
    except urllib.error.HTTPError:
        pass  # a rejected config: the metric says so


@pytest.fixture
def prometheus(tmp_path):
    directory = tmp_path / "prometheus"
    (directory / "rules").mkdir(parents=True)
    service = start_prometheus(directory, PROMETHEUS_YML, {"rules/system.yml": RULES})
    yield service
    service.stop()


@pytest.fixture
def full_prometheus(tmp_path):
    """A Prometheus running the full prometheus.yml, its CA, password and secret in place."""
    directory = tmp_path / "full"
    for sub in ("rules", "web", "secrets"):
        (directory / sub).mkdir(parents=True)
    ca_cert, _ca_key = pki.make_ca()
    (directory / "web" / "ca.crt").write_text(ca_cert)
    (directory / "web" / "client-password").write_text("pw\n")
    (directory / "secrets" / "remote_write.0.credentials").write_text("token\n")
    service = start_prometheus(
        directory, FULL_PROMETHEUS_YML, {"rules/system.yml": RULES}, secrets=directory / "secrets"
    )
    yield service
    service.stop()


@pytest.fixture
def alertmanager(tmp_path):
    directory = tmp_path / "alertmanager"
    (directory / "templates").mkdir(parents=True)
    (directory / "secrets").mkdir()
    (directory / "secrets" / "token").write_text("t0ken\n")
    (directory / "templates" / "custom.tmpl").write_text('{{ define "x" }}x{{ end }}\n')
    service = start_alertmanager(directory, ALERTMANAGER_YML)
    yield service
    service.stop()


def check(tmp_path, service, name, **extra):
    """Run config_drift_info through ansible-playbook on this machine; return its result."""
    playbook = tmp_path / "drift.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - prometheus_alerting.stack.config_drift_info: '{{ drift_args }}'\n"
        "      register: drift\n"
        "    - ansible.builtin.copy:\n        content: '{{ drift | to_json }}'\n"
        "        dest: '{{ result_file }}'\n        mode: '0600'\n"
    )
    result_file = tmp_path / f"{name}-result.json"
    drift_args = {"service": name, "url": service.url, "config_file": str(service.config), **extra}
    completed = run_local_playbook(
        playbook, {"drift_args": drift_args, "result_file": str(result_file)}
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    # Only the differences come back: never the files' content.
    assert "t0ken" not in completed.stdout
    return json.loads(result_file.read_text())


def touch_later(path):
    """Rewrite a file so that its modification time is after the last reload."""
    time.sleep(0.05)
    os.utime(path, None)


# --- Prometheus -------------------------------------------------------------------------


def test_a_prometheus_running_its_files_is_in_sync(tmp_path, prometheus):
    result = check(tmp_path, prometheus, "prometheus")

    assert result["differences"] == []
    assert result["in_sync"] is True
    assert result["compared"] == {
        "files": 2,
        "rule_groups": 2,
        "rules": 4,
        "settings": "every setting of prometheus.yml",
    }
    assert result["reloaded_at"] > 0


def test_a_threshold_changed_on_disk_without_a_reload_is_named(tmp_path, prometheus):
    rules = prometheus.config.parent / "rules" / "system.yml"
    rules.write_text(RULES.replace("> 85", "> 90").replace("for: 30s", "for: 1m"))
    touch_later(rules)

    result = check(tmp_path, prometheus, "prometheus")

    assert result["in_sync"] is False
    assert result["differences"][0].startswith(
        "changed on disk after its last successful reload at "
    )
    assert result["differences"][0].endswith(str(rules))
    (expression,) = [d for d in result["differences"] if "expression" in d]
    assert expression.startswith("rule group system.rules, HighCPUUsage: expression on disk `")
    assert "> 90`, running `" in expression and expression.endswith("> 85`")
    assert "rule group fast.rules, Up: for 1m on disk, 30s running" in result["differences"]


def test_files_touched_after_the_reload_with_the_same_content_are_no_drift(tmp_path, prometheus):
    # touch, a backup tool, a restore of the same file: the time moves, the content does not.
    touch_later(prometheus.config.parent / "rules" / "system.yml")
    touch_later(prometheus.config)

    result = check(tmp_path, prometheus, "prometheus")

    assert result["differences"] == []
    assert result["in_sync"] is True


def test_the_full_configuration_the_roles_write_is_in_sync_as_prometheus_shows_it(
    tmp_path, full_prometheus
):
    result = check(tmp_path, full_prometheus, "prometheus")

    assert result["differences"] == []


def test_a_setting_of_prometheus_yml_changed_on_disk_is_named(tmp_path, full_prometheus):
    config = full_prometheus.config
    config.write_text(
        config.read_text()
        .replace("  scrape_timeout: 10s\n", "  scrape_timeout: 20s\n")
        .replace("replacement: 127.0.0.1:9115", "replacement: 127.0.0.1:9116")
    )
    touch_later(config)

    result = check(tmp_path, full_prometheus, "prometheus")

    assert result["in_sync"] is False
    assert result["differences"][0].startswith(
        "changed on disk after its last successful reload at "
    )
    assert result["differences"][0].endswith(f": {config}")
    assert result["differences"][1:] == [
        f"{config}: global.scrape_timeout: 20s on disk, 10s running",
        f"{config}: scrape_configs[1].relabel_configs[1].replacement: 127.0.0.1:9116 on disk, "
        "127.0.0.1:9115 running",
    ]


def test_rules_and_groups_added_or_removed_on_disk_are_named(tmp_path, prometheus):
    rules = prometheus.config.parent / "rules"
    (rules / "system.yml").write_text(
        RULES.replace("      - alert: Ratio\n", "      - alert: Ratio2\n")
    )
    (rules / "extra.yml").write_text("groups:\n  - name: extra.rules\n    rules: []\n")

    result = check(tmp_path, prometheus, "prometheus")

    assert (
        "rule group system.rules: its rules differ (on disk only: Ratio2; running only: Ratio)"
        in result["differences"]
    )
    assert (
        f"rule group extra.rules ({rules / 'extra.yml'}) is on disk but not loaded"
        in (result["differences"])
    )


def test_a_failed_reload_and_an_owed_reload_are_reported(tmp_path, prometheus):
    marker = tmp_path / "reload-pending" / "prometheus"
    marker.parent.mkdir()
    marker.write_text('{"since": "2026-12-01T10:00:00Z", "files": ["rules/system.yml"]}\n')
    prometheus.config.write_text(PROMETHEUS_YML + "scrape_configs: [{job_name: x, bad: 1}]\n")
    reload(prometheus.url)

    result = check(tmp_path, prometheus, "prometheus", reload_marker=str(marker))

    assert result["differences"][0] == (
        "a reload is owed since 2026-12-01T10:00:00Z (rules/system.yml went live, and the run "
        "stopped before the reload): rerun site.yml to reload"
    )
    assert result["differences"][1] == (
        "its last reload failed (prometheus_config_last_reload_successful is 0.0): "
        "it runs an older configuration than the one on disk"
    )


# --- Alertmanager -----------------------------------------------------------------------


def test_the_config_hash_is_alertmanagers_own(alertmanager):
    metrics = http_get(alertmanager.url + "/metrics")
    (line,) = [m for m in metrics.splitlines() if m.startswith("alertmanager_config_hash ")]
    md5 = hashlib.md5(alertmanager.config.read_bytes()).hexdigest()

    assert float(line.split()[1]) == drift.alertmanager_hash(md5)


def test_an_alertmanager_running_its_file_is_in_sync(tmp_path, alertmanager):
    result = check(tmp_path, alertmanager, "alertmanager")

    assert result["differences"] == []
    assert result["in_sync"] is True


def test_the_setting_that_differs_is_named(tmp_path, alertmanager):
    # The case: group_wait went live as 17s, the reload never came.
    alertmanager.config.write_text(
        ALERTMANAGER_YML.replace("group_wait: 10s", "group_wait: 17s").replace(
            "severity=critical]", "severity=page]"
        )
    )

    result = check(tmp_path, alertmanager, "alertmanager")

    assert result["in_sync"] is False
    assert "route.group_wait: 17s on disk, 10s running" in result["differences"]
    assert any(
        d.startswith('route.routes[0].matchers: ["severity=page"] on disk')
        for d in result["differences"]
    )


def record_templates(alertmanager, tmp_path):
    """The record the roles' reload handler writes: sha256sum of the templates."""
    directory = alertmanager.config.parent
    record = tmp_path / "reloaded" / "alertmanager"
    record.parent.mkdir(exist_ok=True)
    record.write_text(
        "".join(
            f"{hashlib.sha256(path.read_bytes()).hexdigest()}  templates/{path.name}\n"
            for path in sorted((directory / "templates").iterdir())
        )
    )
    return record


def test_a_config_touched_after_the_reload_is_no_drift(tmp_path, alertmanager):
    touch_later(alertmanager.config)

    result = check(tmp_path, alertmanager, "alertmanager")

    assert result["differences"] == []
    assert result["in_sync"] is True


def test_templates_touched_after_the_reload_are_no_drift_with_the_reload_record(
    tmp_path, alertmanager
):
    record = record_templates(alertmanager, tmp_path)
    touch_later(alertmanager.config)
    touch_later(alertmanager.config.parent / "templates" / "custom.tmpl")

    result = check(tmp_path, alertmanager, "alertmanager", reload_record=str(record))

    assert result["differences"] == []
    assert result["in_sync"] is True


def test_a_template_changed_after_the_reload_is_named(tmp_path, alertmanager):
    record = record_templates(alertmanager, tmp_path)
    template = alertmanager.config.parent / "templates" / "custom.tmpl"
    template.write_text('{{ define "x" }}y{{ end }}\n')
    touch_later(template)

    result = check(tmp_path, alertmanager, "alertmanager", reload_record=str(record))

    assert result["in_sync"] is False
    assert result["differences"][0].endswith(f": {template}")
    assert result["differences"][1] == (
        f"{template}: modified after the last successful reload, and not the content recorded "
        "then (Alertmanager does not show the templates it loaded)"
    )


def test_without_a_record_a_template_modified_after_the_reload_differs(tmp_path, alertmanager):
    template = alertmanager.config.parent / "templates" / "custom.tmpl"
    touch_later(template)

    result = check(tmp_path, alertmanager, "alertmanager")

    assert result["in_sync"] is False
    assert result["differences"][0].endswith(f": {template}")


def test_a_comment_alone_still_differs_by_its_hash(tmp_path, alertmanager):
    alertmanager.config.write_text("# edited by hand\n" + ALERTMANAGER_YML)

    result = check(tmp_path, alertmanager, "alertmanager")

    assert result["differences"][-1] == (
        f"{alertmanager.config} is not the file Alertmanager loaded (alertmanager_config_hash "
        "differs), though no setting it can show differs"
    )


# --- the comparison itself --------------------------------------------------------------


@pytest.mark.parametrize(
    ("disk", "running", "same"),
    [
        ("60s", "1m", True),
        ("17s", "10s", False),
        (True, "true", True),
        ("templates/*.tmpl", "/etc/alertmanager/templates/*.tmpl", True),
        ("secrets/token", "/etc/alertmanager/secrets/other", False),
        ("hunter2", "<secret>", True),
    ],
)
def test_settings_compare_as_alertmanager_loads_them(disk, running, same):
    differences = drift.config_differences({"x": disk}, {"x": running}, "/etc/alertmanager")

    assert (differences == []) is same


def test_matchers_compare_whatever_their_order_and_quoting():
    disk = {"matchers": ["service=trading-bot", 'alertname!="TradingBotDown"']}
    running = {"matchers": ['alertname!="TradingBotDown"', 'service="trading-bot"']}

    assert drift.config_differences(disk, running, "/etc/alertmanager") == []
    changed = {"matchers": ['alertname!="TradingBotDown"', 'service="data-consumer"']}
    assert drift.config_differences(disk, changed, "/etc/alertmanager") == [
        'matchers: ["service=trading-bot", "alertname!=\\"TradingBotDown\\""] on disk, '
        '["alertname!=\\"TradingBotDown\\"", "service=\\"data-consumer\\""] running'
    ]
