"""`scripts/bench --fleet N`: two monitoring hosts and N monitored hosts; prints figures.

The monitoring hosts (fleet-mon1, fleet-mon2) run the whole monitoring side
(an HA Prometheus pair, an Alertmanager cluster, the probes) and node_exporter;
each monitored host (fleet-node1..N) runs node_exporter, the exporter every
host has. Each is a light systemd container on a network of its own. One more
container plays every part of the stack alone (as `scripts/bench` does), for
the one-host figures of the same run that the fleet's are held against:

  - full rollout of site.yml to the fleet,
  - no-change rerun, fleet and one host (medians of --runs),
  - `--tags rules` with one threshold changed, fleet and one host (medians),
  - adding one monitored host: its exporter and the scrape targets, and that no
    service restarted on the hosts that were there,
  - removing it again: its targets gone from Prometheus, no alert about it left.

Asserts nothing: the targets (issue 24) are printed beside the figures.
"""

import json
import statistics
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "prometheus-alerting-fleet"
NETWORK = "prometheus-alerting-fleet"
SUBNET = "172.31.252"
MONITORING = ("fleet-mon1", "fleet-mon2")
# What the one-host figures run: every service of the stack on one container.
SINGLE_GROUPS = (
    "monitoring",
    "exporters",
    "docker_hosts",
    "dragonflydb_hosts",
    "webhook_receivers",
)
SINGLE_GROUP_VARS = ROOT / "molecule" / "stack" / "inventory" / "group_vars"

FLEET_VARS = {
    "monitoring_labels": {"environment": "bench"},
    "prometheus_scrape_interval": "15s",
    # Nothing of the trading stack runs here: its alerts would only fire.
    "prometheus_alert_overrides": {
        "TradingBotDown": {"enabled": False},
        "DataConsumerDown": {"enabled": False},
        "HighCPUUsage": {"enabled": False},
        "HighLoadAverage": {"enabled": False},
        "HighMemoryUsage": {"enabled": False},
        "HostClockNotSynchronised": {"enabled": False},
        "HostClockInaccurate": {"enabled": False},
    },
}


def host_name(index):
    return MONITORING[index - 1] if index <= len(MONITORING) else f"fleet-node{index - 2}"


def container(host):
    return f"{PREFIX}-{host.removeprefix('fleet-')}"


def address(index):
    return f"{SUBNET}.{10 + index}"


def fleet_inventory(directory, total):
    """Hosts 1..total (the first two the monitoring hosts) as an inventory in `directory`."""
    hosts = [host_name(index) for index in range(1, total + 1)]
    groups = {
        "monitoring": {"hosts": dict.fromkeys(MONITORING)},
        "exporters": {"hosts": dict.fromkeys(hosts)},
        "webhook_receivers": {"hosts": {MONITORING[0]: None}},
    }
    host_vars = {
        host: {
            "ansible_connection": "community.docker.docker",
            "ansible_host": container(host),
            "ansible_user": "root",
            "monitoring_address": address(index),
        }
        for index, host in enumerate(hosts, start=1)
    }
    receiver = f"http://{address(1)}:8080/webhooks/default"
    fleet_vars = dict(
        FLEET_VARS,
        alertmanager_receivers=[
            {"name": name, "webhook": {"url": receiver, "send_resolved": True}}
            for name in (
                "default-receiver",
                "critical-alerts",
                "system-alerts",
                "docker-alerts",
                "trading-bot-alerts",
                "watchdog",
            )
        ],
        webhook_receiver_address=address(1),
    )
    document = {"all": {"vars": fleet_vars, "children": groups}}
    for group in groups.values():
        group["hosts"] = {host: host_vars[host] for host in group["hosts"]}
    (directory / "hosts.yml").write_text(json.dumps(document))
    return directory / "hosts.yml"


def single_inventory(directory, name):
    """One container playing every part, with the stack scenario's variables."""
    (directory / "hosts.yml").write_text(
        json.dumps(
            {
                "all": {
                    "children": {
                        group: {
                            "hosts": {
                                "single": {
                                    "ansible_connection": "community.docker.docker",
                                    "ansible_host": name,
                                    "ansible_user": "root",
                                }
                            }
                        }
                        for group in SINGLE_GROUPS
                    }
                }
            }
        )
    )
    (directory / "group_vars").symlink_to(SINGLE_GROUP_VARS)
    return directory


def fleet_run(bench, inventory, *args):
    seconds, _recap = bench.playbook(inventory, "site.yml", *args)
    return seconds


def threshold_changes():
    """-e arguments that set HighRejectionRate's threshold to another value each call."""
    values = iter(range(91, 200))

    def next_args(base):
        overrides = dict(base, HighRejectionRate={"threshold": next(values)})
        return ("--tags", "rules", "-e", json.dumps({"prometheus_alert_overrides": overrides}))

    return next_args


def prometheus_query(host, query):
    """The result of an instant query on the Prometheus of a monitoring host (None when
    it does not answer). It listens on the host's monitoring_address."""
    index = MONITORING.index(host) + 1
    url = f"http://{address(index)}:9090/api/v1/query?query=" + urllib.parse.quote(query)
    result = subprocess.run(
        ["docker", "exec", container(host), "curl", "-fsS", url],
        capture_output=True,
        text=True,
        check=False,
    )
    return json.loads(result.stdout)["data"]["result"] if result.returncode == 0 else None


def service_starts(hosts):
    """{(host, unit): when its main process started} of the units the roles wrote."""
    starts = {}
    for host in hosts:
        shown = subprocess.run(
            [
                "docker",
                "exec",
                container(host),
                "sh",
                "-c",
                "cd /etc/systemd/system && systemctl show "
                "--property=Id,ExecMainStartTimestampMonotonic *.service",
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        for block in shown.strip().split("\n\n"):
            fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
            if "Id" in fields:
                starts[(host, fields["Id"])] = fields.get("ExecMainStartTimestampMonotonic")
    return starts


def wait_for(condition, timeout=180):
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(2)
    return float("nan")


def measure(bench, count, runs):
    """The fleet's and the one host's figures, as (label, seconds, note) rows."""
    rows = []
    total = count + len(MONITORING)
    hosts = [host_name(index) for index in range(1, total + 2)]  # one spare to add
    single = f"{PREFIX}-single"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name in ("fleet", "fleet-plus", "single"):
            (tmp / name).mkdir()
        fleet = fleet_inventory(tmp / "fleet", total)
        fleet_plus = fleet_inventory(tmp / "fleet-plus", total + 1)
        one = single_inventory(tmp / "single", single)
        bench.start_named(
            [(container(host), host, address(index)) for index, host in enumerate(hosts, 1)]
            + [(single, "single", None)],
            NETWORK,
            SUBNET,
        )
        try:
            overrides = FLEET_VARS["prometheus_alert_overrides"]
            changes = threshold_changes()

            bench.playbook(fleet, "tests/fixtures/stand_ins.yml")
            rows.append(
                (f"Full rollout of site.yml, {count} + 2 hosts", fleet_run(bench, fleet), "")
            )
            fleet_rerun = statistics.median(fleet_run(bench, fleet) for _ in range(runs))
            fleet_rules = statistics.median(
                fleet_run(bench, fleet, *changes(overrides)) for _ in range(runs)
            )

            bench.playbook(one, "tests/fixtures/stand_ins.yml")
            fleet_run(bench, one)
            single_overrides = bench.stack_overrides()
            one_rerun = statistics.median(fleet_run(bench, one) for _ in range(runs))
            one_rules = statistics.median(
                fleet_run(bench, one, *changes(single_overrides)) for _ in range(runs)
            )

            rows.append(("No-change rerun, one host (all seven services)", one_rerun, ""))
            rows.append(
                (
                    f"No-change rerun, {count} + 2 hosts",
                    fleet_rerun,
                    f"{fleet_rerun / one_rerun:.1f} x the one host (target: at most 3 x)",
                )
            )
            rows.append(("`--tags rules`, one threshold changed, one host", one_rules, ""))
            rows.append(
                (
                    f"`--tags rules`, one threshold changed, {count} + 2 hosts",
                    fleet_rules,
                    f"one host + {fleet_rules - one_rules:.1f} s (target: + 2 s at most)",
                )
            )

            added = hosts[-1]
            before = service_starts(hosts[:-1])
            seconds = fleet_run(bench, fleet_plus)
            restarted = sorted(
                f"{host}:{unit}"
                for (host, unit), start in service_starts(hosts[:-1]).items()
                if before.get((host, unit)) != start
            )
            scraped = wait_for(
                lambda: prometheus_query(MONITORING[0], f'up{{instance="{added}"}} == 1')
            )
            rows.append(
                (
                    "Adding one host (its exporter, the scrape targets)",
                    seconds,
                    f"scraped {scraped:.0f} s after; restarted elsewhere: "
                    f"{', '.join(restarted) or 'nothing'}",
                )
            )

            seconds = fleet_run(bench, fleet)
            gone = wait_for(
                lambda: (
                    prometheus_query(MONITORING[0], f'up{{instance="{added}"}}') == []
                    and prometheus_query(MONITORING[1], f'up{{instance="{added}"}}') == []
                )
            )
            stale = prometheus_query(MONITORING[0], f'ALERTS{{instance="{added}"}}')
            rows.append(
                (
                    "Removing it again (its targets gone)",
                    seconds,
                    f"targets gone {gone:.0f} s after; alerts about it: {len(stale or [])}",
                )
            )
        finally:
            bench.remove_named([container(host) for host in hosts] + [single], NETWORK)
    return rows
