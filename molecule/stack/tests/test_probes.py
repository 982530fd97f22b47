"""Probes in the stack (role blackbox_exporter): the inventory's probes are Prometheus
targets and succeed; a DragonflyDB endpoint added with `--tags prometheus_config` is
probed without a restart, and its certificate, one day from expiry, pages (the warning
twin muted by inhibition); a stand-in that stops raises EndpointDown, which resolves
when it is back. Each test leaves the stack as it found it."""

import base64
import subprocess
import sys
from pathlib import Path

import pytest
from molecule_helpers import (
    changed_tasks,
    file_checksums,
    get_json,
    notifications,
    run_playbook,
    stopped,
    wait_for,
)

PROMETHEUS = "http://127.0.0.1:9090"
ALERTMANAGER = "http://127.0.0.1:9093"
SITE = "molecule/stack/converge.yml"
PKI = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "pki.py"
SERVICES = ("prometheus", "prometheus-blackbox-exporter")
CONFIG_DIRS = ("/etc/prometheus", "/etc/prometheus-blackbox-exporter")

# A DragonflyDB reached over TLS, on the container's loopback: a certificate for
# cache.probe.test from a test CA, valid for one day (tests/fixtures/pki.py).
TLS_DIR = "/usr/local/share/probe-pki"
TLS_PORT = 6380
TLS_SERVER = f"""
import socket, ssl
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("{TLS_DIR}/cache.crt", "{TLS_DIR}/cache.key")
server = socket.create_server(("127.0.0.1", {TLS_PORT}))
while True:
    connection, _ = server.accept()
    try:
        context.wrap_socket(connection, server_side=True).close()
    except (OSError, ssl.SSLError):
        connection.close()
"""
CACHE_PROBE = {
    "name": "cache",
    "address": f"127.0.0.1:{TLS_PORT}",
    "server_name": "cache.probe.test",
    "ca_file": f"{TLS_DIR}/ca.crt",
}


def probe_results(host):
    """{(probe, check): probe_success} of every blackbox target."""
    result = get_json(host, f"{PROMETHEUS}/api/v1/query?query=probe_success")["data"]["result"]
    return {
        (series["metric"]["probe"], series["metric"]["check"]): series["value"][1]
        for series in result
    }


def main_pids(host):
    return {unit: host.check_output("systemctl show -P MainPID %s", unit) for unit in SERVICES}


def firing(host, alertname):
    alerts = get_json(host, f"{PROMETHEUS}/api/v1/alerts")["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == alertname and a["state"] == "firing"]


def put(host, path, content, mode):
    encoded = base64.b64encode(content.encode()).decode()
    host.run_expect([0], f"echo {encoded} | base64 -d > {path} && chmod {mode} {path}")


@pytest.fixture
def tls_stand_in(host, tmp_path):
    """The TLS endpoint running in the container; stopped and removed after the test."""
    subprocess.run(
        [sys.executable, str(PKI), str(tmp_path), "cache", "--host", "cache.probe.test"],
        check=True,
        capture_output=True,
    )
    host.run_expect([0], f"install -d -m 0755 {TLS_DIR}")
    put(host, f"{TLS_DIR}/ca.crt", (tmp_path / "ca.crt").read_text(), "0644")
    put(host, f"{TLS_DIR}/cache.crt", (tmp_path / "cache.crt").read_text(), "0644")
    put(host, f"{TLS_DIR}/cache.key", (tmp_path / "cache.key").read_text(), "0600")
    put(host, f"{TLS_DIR}/server.py", TLS_SERVER, "0644")
    host.run_expect(
        [0], f"systemd-run --unit probe-tls-stand-in /usr/bin/python3 {TLS_DIR}/server.py"
    )
    try:
        yield
    finally:
        host.run("systemctl stop probe-tls-stand-in")
        host.run(f"rm -rf {TLS_DIR}")


def test_the_inventory_probes_are_targets_and_succeed(host):
    def all_succeed():
        results = probe_results(host)
        return results if results and set(results.values()) == {"1"} else None

    results = wait_for(all_succeed, timeout=60, what="every probe succeeding")

    # The stand-ins' endpoints (inventory/demo), and the webhook stand-in the
    # receivers post to, derived from alertmanager_receivers.
    assert {
        ("trading-bot", "http"),
        ("data-consumer", "http"),
        ("webhook-127.0.0.1-8080", "connect"),
    } <= set(results)
    unit = host.file("/etc/systemd/system/prometheus-blackbox-exporter.service").content_string
    assert "User=blackbox-exporter" in unit


def test_a_probe_added_with_tags_prometheus_config_pages_for_an_expiring_certificate(
    host, tls_stand_in
):
    pids = main_pids(host)

    rc, output = run_playbook(
        SITE,
        "--tags",
        "prometheus_config",
        extra_vars={"blackbox_exporter_dragonflydb_probes": [CACHE_PROBE]},
    )

    assert rc == 0, output
    assert set(changed_tasks(output)) == {
        "blackbox_exporter : Put blackbox.yml live once the exporter accepts it",
        "blackbox_exporter : Reload the blackbox exporter",
        "prometheus : Put prometheus.yml live once promtool accepts it",
        "prometheus : Reload prometheus",
    }
    assert main_pids(host) == pids
    try:
        # Connection and handshake both work: it is the certificate's date.
        wait_for(
            lambda: (
                probe_results(host).get(("cache", "tls")) == "1"
                and probe_results(host).get(("cache", "connect")) == "1"
            ),
            timeout=60,
            what="the cache's connect and tls checks succeeding",
        )

        def paged():
            return [
                alert
                for _, alert in notifications(host, "TLSCertificateExpiring", "firing")
                if alert["labels"]["severity"] == "critical" and alert["labels"]["probe"] == "cache"
            ]

        (alert, *_) = wait_for(paged, timeout=120, what="TLSCertificateExpiring (critical) paged")
        assert alert["labels"]["purpose"] == "dragonflydb"
        assert alert["labels"]["instance"] == f"127.0.0.1:{TLS_PORT}"

        # The warning twin fires too, and Alertmanager mutes it.
        def warning_muted():
            alerts = get_json(
                host,
                f"{ALERTMANAGER}/api/v2/alerts?filter=alertname%3D%22TLSCertificateExpiring%22",
            )
            return [
                a
                for a in alerts
                if a["labels"]["severity"] == "warning" and a["status"]["state"] == "suppressed"
            ]

        (warning, *_) = wait_for(warning_muted, timeout=60, what="the warning twin suppressed")
        assert warning["status"]["inhibitedBy"]
    finally:
        rc, output = run_playbook(SITE, "--tags", "prometheus_config")
        assert rc == 0, output
        wait_for(
            lambda: not firing(host, "TLSCertificateExpiring"),
            timeout=60,
            what="TLSCertificateExpiring gone with its probe",
        )


def test_a_stopped_service_endpoint_raises_endpoint_down_then_resolves(host):
    with stopped(host, "data-consumer-stand-in"):
        wait_for(
            lambda: [
                alert
                for _, alert in notifications(host, "EndpointDown", "firing")
                if alert["labels"]["probe"] == "data-consumer"
            ],
            timeout=120,
            what="EndpointDown for the data consumer at the receiver",
        )

    resolved = wait_for(
        lambda: [
            alert
            for _, alert in notifications(host, "EndpointDown", "resolved")
            if alert["labels"]["probe"] == "data-consumer"
        ],
        timeout=120,
        what="EndpointDown resolved",
    )
    assert resolved[0]["labels"]["instance"] == "http://127.0.0.1:9191/metrics"


@pytest.mark.parametrize(
    ("probes", "message_parts"),
    [
        (
            {"blackbox_exporter_http_probes": [{"name": "bot", "url": "x"}]},
            ("service probe 0", "bot", "must start with http:// or https://"),
        ),
        (
            {
                "blackbox_exporter_http_probes": [
                    {"name": "bot", "url": "http://127.0.0.1:8082/", "module": "nope"}
                ]
            },
            ("probe bot names module", "nope", "which is not defined"),
        ),
        (
            {
                "blackbox_exporter_dragonflydb_probes": [
                    {"name": "cache", "address": "127.0.0.1:6380"}
                ]
            },
            (
                "dragonflydb probe 0",
                "cache",
                "is an IP address, so the certificate cannot be checked",
            ),
        ),
    ],
    ids=["url-without-scheme", "unknown-module", "tls-without-server-name"],
)
def test_a_wrong_probe_fails_the_run_naming_it_and_changes_nothing(host, probes, message_parts):
    before = {d: file_checksums(host, d) for d in CONFIG_DIRS}
    pids = main_pids(host)

    rc, output = run_playbook(SITE, "--tags", "prometheus_config", extra_vars=probes)

    assert rc != 0
    message = " ".join(output.split())
    assert all(part in message for part in message_parts), output
    assert {d: file_checksums(host, d) for d in CONFIG_DIRS} == before
    assert main_pids(host) == pids
