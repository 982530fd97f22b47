"""kill -9 of every service of the stack, under systemd: the rows of docs/reliability.md that
need the real units (the rest of the fault matrix runs on loopback, tests/faults).

Each service is killed with SIGKILL, as the OOM killer or a crash would end it. systemd
restarts it (Restart=on-failure, RestartSec=5s), node_exporter's systemd collector sees the
restart, and ServiceCrashed pages once per service. Nothing else pages, and the alert
resolves by itself once the crash leaves its window (1m in this scenario, 15m by default).
"""

import time

from molecule_helpers import about_a_fixture_container, get_json, get_text, notifications, wait_for

PROMETHEUS = "http://127.0.0.1:9090"
# Unit -> where it answers once it runs again.
SERVICES = {
    "prometheus": "http://127.0.0.1:9090/-/ready",
    "prometheus-alertmanager": "http://127.0.0.1:9093/-/ready",
    "prometheus-node-exporter": "http://127.0.0.1:9100/metrics",
    "prometheus-blackbox-exporter": "http://127.0.0.1:9115/metrics",
    "prometheus-redis-exporter": "http://127.0.0.1:9121/metrics",
    "docker-exporter": "http://127.0.0.1:9417/metrics",
    "alert-relay": "http://127.0.0.1:9097/-/ready",
}


def main_pid(host, unit):
    return int(host.check_output("systemctl show -P MainPID %s", unit))


def crash_pages(host, since):
    """ServiceCrashed alerts the receiver got firing after `since`, by unit, with counts."""
    pages = {}
    for record, alert in notifications(host, "ServiceCrashed", "firing"):
        if record["time"] >= since:
            key = (alert["labels"]["name"], alert["labels"]["severity"], alert["startsAt"])
            pages[key] = alert
    by_unit = {}
    for name, severity, _starts in pages:
        by_unit.setdefault(name, []).append(severity)
    return by_unit


def test_every_service_killed_is_restarted_and_pages_once(host):
    since = host.check_output("date -u +%Y-%m-%dT%H:%M:%S.%6N+00:00")
    restarts_before = {
        unit: int(host.check_output("systemctl show -P NRestarts %s", unit)) for unit in SERVICES
    }
    for unit, url in SERVICES.items():
        before = main_pid(host, unit)
        assert before, f"{unit} does not run"
        host.run_expect([0], f"kill -9 {before}")
        started = time.monotonic()
        wait_for(
            lambda u=unit, b=before: main_pid(host, u) not in (0, b),
            timeout=60,
            interval=0.5,
            what=f"systemd to restart {unit}",
        )
        wait_for(
            lambda u=url: host.run("curl -fsS --max-time 2 -o /dev/null %s", u).succeeded,
            timeout=60,
            interval=0.5,
            what=f"{unit} to answer again",
        )
        print(f"{unit}: killed, answering again after {time.monotonic() - started:.1f} s")
        assert int(host.check_output("systemctl show -P NRestarts %s", unit)) == (
            restarts_before[unit] + 1
        )

    # One warning per service, none critical (one crash is no crash loop), nothing twice.
    expected = {f"{unit}.service": ["warning"] for unit in SERVICES}
    wait_for(
        lambda: crash_pages(host, since) == expected,
        timeout=180,
        interval=3,
        what=lambda: f"one ServiceCrashed per service; got {crash_pages(host, since)}",
    )

    # Nothing else of the stack is firing because of the kills.
    alerts = get_json(host, f"{PROMETHEUS}/api/v1/alerts")["data"]["alerts"]
    other = {
        a["labels"]["alertname"]
        for a in alerts
        if a["state"] == "firing"
        and a["labels"]["alertname"] not in ("Watchdog", "ServiceCrashed")
        and not about_a_fixture_container(a)
    }
    assert not other, f"the kills made other alerts fire: {other}"

    # Recovered without a hand: each alert resolves once its crash leaves the window.
    wait_for(
        lambda: (
            not [
                a
                for a in get_json(host, f"{PROMETHEUS}/api/v1/alerts")["data"]["alerts"]
                if a["labels"]["alertname"] == "ServiceCrashed"
            ]
        ),
        timeout=180,
        interval=5,
        what="every ServiceCrashed resolved",
    )
    assert "ServiceCrashed" not in get_text(host, "http://127.0.0.1:9093/api/v2/alerts?active=true")
