"""The docker_exporter role: the exporter runs from its virtualenv, in the
socket's group, and reports the CI host's containers."""

import json
import re

import pytest
from molecule_helpers import exited_container as exited_container_of
from molecule_helpers import get_text, run_playbook, wait_for

METRICS_URL = "http://127.0.0.1:9417/metrics"
CONVERGE = "molecule/docker_exporter/converge.yml"


@pytest.fixture(scope="module")
def exited_container():
    with exited_container_of("dxrole-exited") as name:
        yield name


def series(metrics, name, container):
    pattern = rf'^{name}\{{[^}}]*name="{re.escape(container)}"[^}}]*\}} (\S+)$'
    return [float(v) for v in re.findall(pattern, metrics, re.MULTILINE)]


def test_runs_from_its_virtualenv_as_its_own_user(host):
    service = host.service("docker-exporter")
    assert service.is_running and service.is_enabled
    pid = host.check_output("systemctl show -P MainPID docker-exporter")
    assert host.check_output("stat -c %%U /proc/%s", pid) == "docker-exporter"
    cmdline = host.file(f"/proc/{pid}/cmdline").content_string
    assert cmdline.startswith("/opt/docker-exporter/venv/bin/python")


def test_joins_the_sockets_group_and_nothing_more(host):
    group = host.check_output("stat -c %G /var/run/docker.sock")
    unit = host.file("/etc/systemd/system/docker-exporter.service").content_string
    assert f"SupplementaryGroups={group}" in unit
    assert "NoNewPrivileges=yes" in unit


def test_listens_on_loopback_only(host):
    assert host.socket("tcp://127.0.0.1:9417").is_listening
    assert not host.socket("tcp://0.0.0.0:9417").is_listening


def test_reports_the_engine_and_its_containers(host, exited_container):
    def scraped():
        metrics = get_text(host, METRICS_URL)
        return metrics if series(metrics, "docker_container_exit_code", exited_container) else None

    metrics = wait_for(scraped, timeout=30, what=f"{exited_container} in the metrics")

    assert re.search(r"^docker_engine_up 1\.0$", metrics, re.MULTILINE)
    assert series(metrics, "docker_container_exit_code", exited_container) == [3.0]
    states = dict(
        re.findall(
            rf'^docker_container_state\{{[^}}]*name="{exited_container}"'
            rf'[^}}]*state="(\w+)"[^}}]*\}} (\S+)$',
            metrics,
            re.MULTILINE,
        )
    )
    assert states["exited"] == "1.0"
    assert states["running"] == "0.0"
    # The Molecule container itself runs, without a memory limit. (Its memory
    # usage is pytest's business in docker_exporter/tests: from inside this
    # container the other containers' processes, hence their cgroups, are out
    # of sight, and this CI engine's stats API reports no memory.)
    own = host.ansible("setup", "filter=ansible_hostname")["ansible_facts"]["ansible_hostname"]
    container = next(n for n in re.findall(r'name="([^"]+)"', metrics) if n.replace("_", "") == own)
    assert series(metrics, "docker_container_memory_limit_bytes", container) == [0.0]


def test_engine_metrics_merge_daemon_json_and_keep_other_settings(host):
    host.run("mkdir -p /etc/docker")
    host.run("""printf '{"log-driver": "json-file"}' > /etc/docker/daemon.json""")
    engine_started = host.check_output("systemctl show -P ActiveEnterTimestampMonotonic docker")
    engine_metrics = {"docker_exporter_engine_metrics": True}

    rc, output = run_playbook(
        CONVERGE,
        "--check",
        "--diff",
        "--tags",
        "docker_exporter_configure",
        extra_vars=engine_metrics,
    )

    assert rc == 0, output
    assert '"metrics-addr": "127.0.0.1:9323"' in output.split("+++ after", 1)[1]
    assert json.loads(host.file("/etc/docker/daemon.json").content_string) == {
        "log-driver": "json-file"
    }

    rc, output = run_playbook(
        CONVERGE, "--tags", "docker_exporter_configure", extra_vars=engine_metrics
    )

    assert rc == 0, output
    assert json.loads(host.file("/etc/docker/daemon.json").content_string) == {
        "log-driver": "json-file",
        "metrics-addr": "127.0.0.1:9323",
        "live-restore": True,
    }
    assert host.check_output("systemctl show -P ActiveEnterTimestampMonotonic docker") != (
        engine_started
    )

    rc, output = run_playbook(
        CONVERGE, "--tags", "docker_exporter_configure", extra_vars=engine_metrics
    )

    assert rc == 0, output
    assert "changed=0" in output
