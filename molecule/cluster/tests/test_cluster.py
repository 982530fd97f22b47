"""Three hosts from one inventory: an HA Prometheus pair, a gossip cluster of
two Alertmanagers, remote_write to a long-term store, and a host added by
rerunning the config only.

The tests look at the cluster as a whole, so they take the hosts by name
rather than Molecule's per-host `host` fixture (and run once each).
"""

import json
import os
import re
import subprocess
import time

import pytest
import testinfra
from molecule_helpers import (
    catalog_metrics,
    changed_tasks,
    get_json,
    get_text,
    metric_value,
    run_playbook,
    stopped,
    wait_for,
)

MONITORING = ("cluster-mon1", "cluster-mon2")
APP = "cluster-app1"
ADDRESS = {
    "cluster-mon1": "172.31.250.11",
    "cluster-mon2": "172.31.250.12",
    "cluster-app1": "172.31.250.21",
    "cluster-app2": "172.31.250.22",
}
SITE = "molecule/cluster/converge.yml"
RECEIVER = f"http://{ADDRESS[APP]}:8080/notifications"
LONG_TERM_STORE = f"http://{ADDRESS[APP]}:9095"


def on(name):
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}")


def prometheus(name):
    return f"http://{ADDRESS[name]}:9090"


def active_targets(name):
    return get_json(on(name), f"{prometheus(name)}/api/v1/targets")["data"]["activeTargets"]


def firing_notifications(alertname, instance):
    return [
        alert
        for record in get_json(on(APP), RECEIVER)
        for alert in record["body"]["alerts"]
        if alert["status"] == "firing"
        and alert["labels"].get("alertname") == alertname
        and alert["labels"].get("instance") == instance
    ]


def wait_for_every_target_up(server, expected):
    """Wait until `server` has exactly the `expected` (job, instance) targets, all up."""
    seen = {}

    def all_up():
        seen.clear()
        for target in active_targets(server):
            key = (target["labels"]["job"], target["labels"]["instance"])
            seen[key] = target["lastError"] or target["health"]
        return set(seen) == expected and set(seen.values()) == {"up"}

    wait_for(all_up, timeout=90, what=lambda: f"every target up on {server}; seen: {seen}")


def test_every_host_is_a_target_of_both_servers_and_up():
    expected = {
        ("node-exporter", "cluster-mon1"),
        ("node-exporter", "cluster-mon2"),
        ("node-exporter", APP),
        ("docker-exporter", APP),
        ("dragonflydb", APP),
        ("alertmanager", "cluster-mon1"),
        ("alertmanager", "cluster-mon2"),
        ("prometheus", "cluster-mon1"),
        ("prometheus", "cluster-mon2"),
        # The probe of where notifications go: the webhook receiver on the app host.
        ("blackbox", f"{ADDRESS[APP]}:8080"),
    }
    for server in MONITORING:
        wait_for_every_target_up(server, expected)
        # Each server probes through the blackbox exporter on its own host.
        (probe,) = [t for t in active_targets(server) if t["labels"]["job"] == "blackbox"]
        assert probe["scrapeUrl"].startswith(f"http://{ADDRESS[server]}:9115/probe?"), probe
        (target,) = [
            t
            for t in active_targets(server)
            if (t["labels"]["job"], t["labels"]["instance"]) == ("node-exporter", APP)
        ]
        assert target["scrapeUrl"] == f"http://{ADDRESS[APP]}:9100/metrics"
        assert target["labels"]["environment"] == "test"


def test_the_alertmanagers_form_one_cluster():
    for name in MONITORING:

        def members(name=name):
            metrics = get_text(on(name), f"http://{ADDRESS[name]}:9093/metrics")
            return metric_value(metrics, "alertmanager_cluster_members") == 2

        wait_for(members, timeout=60, what=f"two cluster members seen by {name}")


def test_the_cluster_and_remote_write_metrics_the_catalog_reads_are_served():
    """The metrics of the alerts that only a cluster or remote_write feeds (the stack
    scenario checks the others)."""
    wanted = {
        "9093": catalog_metrics("alertmanager_cluster_"),
        "9090": catalog_metrics("prometheus_remote_storage_"),
    }
    assert all(wanted.values())
    for name in MONITORING:
        for port, names in wanted.items():
            text = get_text(on(name), f"http://{ADDRESS[name]}:{port}/metrics")
            served = set(re.findall(r"^([a-z_]+)", text, re.MULTILINE))
            assert names <= served, f"{name}:{port} lacks {sorted(names - served)}"


def test_each_server_carries_its_replica_label_and_both_send_to_both():
    for name in MONITORING:
        config = get_json(on(name), f"{prometheus(name)}/api/v1/status/config")["data"]["yaml"]
        assert f"replica: {name}" in config
        assert "regex: replica" in config
        alertmanagers = get_json(on(name), f"{prometheus(name)}/api/v1/alertmanagers")["data"]
        urls = {a["url"] for a in alertmanagers["activeAlertmanagers"]}
        assert urls == {f"http://{ADDRESS[m]}:9093/api/v2/alerts" for m in MONITORING}


def test_an_alert_of_the_pair_is_notified_exactly_once():
    with stopped(on(APP), "prometheus-node-exporter"):
        wait_for(
            lambda: firing_notifications("NodeExporterDown", APP),
            timeout=120,
            what="NodeExporterDown at the receiver",
        )
        # Both servers fire it and send it to both Alertmanagers...
        for name in MONITORING:

            def firing(name=name):
                alerts = get_json(on(name), f"{prometheus(name)}/api/v1/alerts")["data"]["alerts"]
                return any(
                    a["labels"]["alertname"] == "NodeExporterDown"
                    and a["labels"]["instance"] == APP
                    and a["state"] == "firing"
                    for a in alerts
                )

            wait_for(firing, timeout=60, what=f"NodeExporterDown firing on {name}")
        # ...and a member that would notify second sees the first's
        # notification in the shared log (it waits its turn, 15 s per position).
        time.sleep(35)
        assert len(firing_notifications("NodeExporterDown", APP)) == 1


def test_samples_reach_the_long_term_store_from_both_servers():
    def replicas():
        result = get_json(
            on(APP), f"{LONG_TERM_STORE}/api/v1/query?query=up%7Bjob%3D%22node-exporter%22%7D"
        )
        return {series["metric"].get("replica") for series in result["data"]["result"]}

    assert wait_for(
        lambda: replicas() == set(MONITORING),
        timeout=90,
        what="samples of both servers in the long-term store",
    )


def test_remote_write_credentials_are_in_a_file_not_in_the_config():
    mon = on("cluster-mon1")
    config = mon.file("/etc/prometheus/prometheus.yml").content_string
    secret = mon.file("/etc/prometheus/secrets/remote_write.0.authorization.credentials")
    assert "fake-remote-write-token" not in config
    assert secret.content_string == "fake-remote-write-token"
    assert (secret.mode, secret.user, secret.group) == (0o640, "root", "prometheus")


@pytest.fixture
def added_host(tmp_path):
    """A fourth container on the scenario's network, in the inventory's `exporters`."""
    name = "cluster-app2"
    # One that an interrupted run left would hold the name and the address.
    subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)
    started = subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            name,
            "--hostname",
            name,
            "--label",
            "dxtest=1",
            "--cap-add",
            "SYS_ADMIN",
            "--security-opt",
            "seccomp=unconfined",
            "--cgroupns=host",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "--network",
            "prometheus-alerting-cluster",
            "--ip",
            ADDRESS[name],
            os.environ.get(
                "CLUSTER_IMAGE",
                f"prometheus-alerting/target:{os.environ.get('MOLECULE_DISTRO', 'bookworm')}",
            ),
            "/lib/systemd/systemd",
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    if started.returncode != 0:
        subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)
        pytest.fail(f"docker run {name}: {started.stderr}")
    inventory = tmp_path / "added.yml"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "children": {
                        "exporters": {
                            "hosts": {
                                name: {
                                    "ansible_connection": "community.docker.docker",
                                    "ansible_host": name,
                                    "monitoring_address": ADDRESS[name],
                                }
                            }
                        }
                    }
                }
            }
        )
    )
    try:
        wait_for(
            lambda: (
                subprocess.run(
                    ["docker", "exec", name, "systemctl", "is-system-running"],
                    check=False,
                    capture_output=True,
                    text=True,
                ).stdout.strip()
                in ("running", "degraded")
            ),
            timeout=60,
            what=f"systemd in {name}",
        )
        yield name, inventory
    finally:
        subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)
        rc, output = run_playbook(SITE, "--tags", "prometheus_config")
        assert rc == 0, output


def test_a_host_added_to_the_inventory_is_scraped_after_a_config_rerun(added_host):
    name, inventory = added_host
    rc, output = run_playbook(SITE, "-i", str(inventory), "--limit", name, "--tags", "exporters")
    assert rc == 0, output
    pids = {m: on(m).check_output("systemctl show -P MainPID prometheus") for m in MONITORING}

    rc, output = run_playbook(SITE, "-i", str(inventory), "--tags", "prometheus_config")

    assert rc == 0, output
    assert set(changed_tasks(output)) == {
        "prometheus : Put prometheus.yml live once promtool accepts it",
        "prometheus : Reload prometheus",
    }
    for server in MONITORING:
        assert on(server).check_output("systemctl show -P MainPID prometheus") == pids[server]

        def scraped(server=server):
            return [
                t
                for t in active_targets(server)
                if t["labels"]["instance"] == name and t["health"] == "up"
            ]

        (target,) = wait_for(scraped, timeout=60, what=f"{name} scraped by {server}")
        assert target["labels"]["job"] == "node-exporter"
