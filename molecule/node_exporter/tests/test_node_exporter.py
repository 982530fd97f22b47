"""node_exporter runs under the role's unit and serves host metrics."""

import pytest

METRICS_URL = "http://127.0.0.1:9100/metrics"


@pytest.fixture(scope="module")
def metrics(host):
    return host.check_output("curl -fsS --max-time 5 %s", METRICS_URL)


def test_service_runs_enabled_under_the_roles_unit(host):
    service = host.service("prometheus-node-exporter")
    assert service.is_running
    assert service.is_enabled
    unit = host.file("/etc/systemd/system/prometheus-node-exporter.service")
    assert unit.contains("Managed by Ansible")
    assert unit.contains("NoNewPrivileges=yes")


def test_runs_as_its_own_user(host):
    pid = host.check_output("systemctl show -P MainPID prometheus-node-exporter")
    assert host.check_output("stat -c %%U /proc/%s", pid) == "node-exporter"


def test_listens_on_loopback_only(host):
    assert host.socket("tcp://127.0.0.1:9100").is_listening
    assert not host.socket("tcp://0.0.0.0:9100").is_listening


def test_serves_cpu_and_filesystem_metrics(metrics):
    assert "node_cpu_seconds_total{" in metrics
    assert "node_filesystem_avail_bytes{" in metrics


def test_enabled_collector_reports(metrics):
    # The scenario turns on the systemd collector; it must scrape cleanly.
    assert 'node_scrape_collector_success{collector="systemd"} 1' in metrics
