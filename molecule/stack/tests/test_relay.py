"""The alert relay in the stack: a real fault travels Alertmanager -> relay -> destination
(the webhook stand-in, path /webhooks/relayed-critical) with its labels and annotations,
firing and resolved; with the destination down for two minutes everything waits in the
relay's queue and arrives once, nothing lost or doubled, when it is back."""

import time
from collections import Counter
from datetime import datetime

from molecule_helpers import get_json, get_text, stopped, wait_for

RELAYED = "/webhooks/relayed-critical"
RELAY_METRICS = "http://127.0.0.1:9097/metrics"
RECEIVER = "http://127.0.0.1:8080/notifications"


def relayed(host, alertname, since=0.0):
    """The alerts the relay forwarded to the stand-in for an alert name, received after `since`."""
    records = get_json(host, RECEIVER)
    return [
        record["body"]["alert"]
        for record in records
        if record["path"] == RELAYED
        and record["body"]["alert"]["labels"].get("alertname") == alertname
        and _seconds(record["time"]) >= since
    ]


def _seconds(timestamp):
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def queue_depth(host):
    """Alerts waiting in the relay, all targets together."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in get_text(host, RELAY_METRICS).splitlines()
        if line.startswith("alert_relay_queue_depth{")
    )


def host_time(host):
    return float(host.check_output("date +%s.%N"))


def test_the_relay_runs_hardened_as_its_own_user_and_prometheus_scrapes_it(host):
    service = host.service("alert-relay")
    assert service.is_running and service.is_enabled
    pid = host.check_output("systemctl show -P MainPID alert-relay")
    assert host.check_output("stat -c %%U /proc/%s", pid) == "alert-relay"
    assert host.file("/etc/alert-relay/secrets/alertmanager.token").mode == 0o640
    targets = get_json(host, "http://127.0.0.1:9090/api/v1/targets")["data"]["activeTargets"]
    (relay,) = [t for t in targets if t["labels"]["job"] == "alert-relay"]
    assert relay["health"] == "up"


def test_a_fault_reaches_the_destination_through_the_relay_firing_and_resolved(host):
    since = host_time(host)

    with stopped(host, "redis-server"):
        (alert,) = wait_for(
            lambda: [
                a
                for a in relayed(host, "DragonflyDBConnectionFailure", since)
                if a["status"] == "firing"
            ][:1],
            timeout=120,
            what="DragonflyDBConnectionFailure (firing) forwarded by the relay",
        )

    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["service"] == "dragonflydb"
    assert alert["annotations"]["description"].startswith("Cannot connect to DragonflyDB on ")
    assert alert["annotations"]["runbook_url"].endswith("#dragonflydbconnectionfailure")
    resolved = wait_for(
        lambda: [
            a
            for a in relayed(host, "DragonflyDBConnectionFailure", since)
            if a["status"] == "resolved"
        ],
        timeout=120,
        what="DragonflyDBConnectionFailure (resolved) forwarded by the relay",
    )
    assert resolved[0]["labels"] == alert["labels"]
    assert resolved[0]["fingerprint"] == alert["fingerprint"]


def test_a_destination_down_for_two_minutes_gets_everything_once_when_it_is_back(host):
    since = host_time(host)
    started = time.monotonic()

    with stopped(host, "webhook-receiver"):
        # A fault that fires and resolves while the destination is away.
        with stopped(host, "prometheus-node-exporter"):
            wait_for(
                lambda: queue_depth(host) > 0,
                timeout=120,
                what="NodeExporterDown queued in the relay",
            )
        wait_for(
            lambda: queue_depth(host) >= 2,
            timeout=120,
            what="the resolution queued behind the firing",
        )
        time.sleep(max(0.0, 120 - (time.monotonic() - started)))
        assert queue_depth(host) >= 2
    # Started is not yet listening: the receiver opens its port a moment later.
    wait_for(
        lambda: host.run("curl -fsS --max-time 2 -o /dev/null %s", RECEIVER).succeeded,
        timeout=30,
        what="the webhook receiver answering again",
    )

    def both_forwarded():
        alerts = relayed(host, "NodeExporterDown", since)
        return alerts if {a["status"] for a in alerts} == {"firing", "resolved"} else None

    wait_for(
        both_forwarded,
        timeout=120,
        what="NodeExporterDown firing and resolved, forwarded once the destination is back",
    )
    wait_for(lambda: queue_depth(host) == 0, timeout=60, what="the relay's queue empty")
    time.sleep(10)  # anything forwarded twice would have arrived by now
    alerts = relayed(host, "NodeExporterDown", since)
    counts = Counter((a["fingerprint"], a["status"], a["startsAt"]) for a in alerts)
    assert counts and all(count == 1 for count in counts.values()), counts
    assert {status for _fingerprint, status, _start in counts} == {"firing", "resolved"}
