"""node_exporter runs under the role's unit and serves host metrics."""

import os
import re
import subprocess

import pytest
from molecule_helpers import PROJECT, catalog_metrics, wait_for

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


def test_the_systemd_collector_reports_the_stacks_units_and_their_restarts(metrics):
    # On by default (node_exporter_systemd_units), through D-Bus, which the role installs.
    assert 'node_scrape_collector_success{collector="systemd"} 1' in metrics
    assert 'node_systemd_service_restart_total{name="prometheus-node-exporter.service"}' in metrics
    units = set(re.findall(r'^node_systemd_unit_state\{name="([^"]+)"', metrics, re.MULTILINE))
    assert units == {"prometheus-node-exporter.service"}, "only the stack's units, of this host"


# Series that exist only on some hosts: a kernel module loaded (conntrack),
# hardware present. Every other node_* metric an alert reads must be served by
# this node_exporter (Debian 12's 1.5 and Debian 13's 1.9, as this scenario runs).
CONDITIONAL = {"node_nf_conntrack_entries", "node_nf_conntrack_entries_limit"}


def test_every_node_metric_the_catalog_reads_is_served(metrics):
    wanted = catalog_metrics("node_")
    assert len(wanted) > 20
    served = set(re.findall(r"^(node_[A-Za-z0-9_]+)", metrics, re.MULTILINE))
    missing = wanted - served - CONDITIONAL
    assert not missing, f"alerts read metrics this node_exporter does not serve: {sorted(missing)}"


def test_the_role_from_the_built_collection_converges_this_host(host, tmp_path):
    """As a user runs it: the tarball installed into their project, the role by its FQCN."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    subprocess.run(
        ["ansible-galaxy", "collection", "build", "--output-path", str(tmp_path), str(PROJECT)],
        check=True,
        capture_output=True,
        env=env,
    )
    (tarball,) = tmp_path.glob("*.tar.gz")
    (tmp_path / "ansible.cfg").write_text("[defaults]\ncollections_path = collections\n")
    (tmp_path / "converge.yml").write_text(
        "- hosts: exporters\n  become: true\n  roles:\n"
        "    - role: prometheus_alerting.stack.node_exporter\n"
        "      vars: {node_exporter_collectors_enabled: [systemd, processes]}\n"
    )
    env["ANSIBLE_CONFIG"] = str(tmp_path / "ansible.cfg")
    subprocess.run(
        ["ansible-galaxy", "collection", "install", str(tarball), "-p", "collections"],
        check=True,
        capture_output=True,
        env=env,
        cwd=tmp_path,
    )

    result = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "converge.yml"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        str(tmp_path / "collections")
        in subprocess.run(
            ["ansible-galaxy", "collection", "list", "prometheus_alerting.stack"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            check=True,
        ).stdout
    )
    unit = host.file("/etc/systemd/system/prometheus-node-exporter.service")
    assert unit.contains("--collector.processes")
    metrics = wait_for(
        lambda: (
            text
            if 'node_scrape_collector_success{collector="processes"} 1'
            in (text := host.check_output("curl -fsS --max-time 5 %s", METRICS_URL))
            else None
        ),
        timeout=30,
        what="the processes collector",
    )
    assert 'node_scrape_collector_success{collector="systemd"} 1' in metrics
