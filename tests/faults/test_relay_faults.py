"""The alert relay in the alert path under faults: Alertmanager posts critical-alerts to it,
it forwards them to their destination. The relay's own rows (kill -9, a full disk, the clock,
a month of history, a destination down) run in its test suite against a real relay process
(alert_relay/tests/alert_relay_tests/test_relay_faults.py); this is the row of the whole
path: what pages, and that nothing Alertmanager sent is lost or forwarded twice."""

import time

from harness import (
    ANOTHER,
    CRITICAL,
    Alertmanager,
    Ext4Image,
    Prometheus,
    Sender,
    alert_relay,
    node_exporter,
    only_filesystems_under,
    wait_for,
)


def relayed(recorder, labels):
    return [a for a in recorder.relayed() if a["labels"] == labels and a["status"] == "firing"]


def test_relay_disk_read_only_pages_once_and_loses_nothing(bench, catalog, recorder):
    """The relay's file system turns read-only under it: it answers Alertmanager 503, which
    Alertmanager retries; AlertRelayStorageFailing is the one page, on the default receiver
    (around the relay). (Where the kernel marks the mount `ro`, FilesystemReadOnly pages
    instead and an inhibit rule mutes the relay's alert on the same host; this kernel marks it
    `emergency_ro`, which node_exporter does not report.) The operator repairs the file system
    under the running relay; Alertmanager's next retry is stored and forwarded: each alert
    reaches the destination once."""
    disk = Ext4Image(bench.workdir / "relay-data", size_mb=32)
    bench.cleanups.append(disk.close)
    relay, webhook, token = alert_relay(bench.workdir, disk.path, f"{recorder.url}/relayed/sink")
    bench.start(relay)
    am = bench.start(
        Alertmanager(
            "alertmanager",
            bench.workdir,
            catalog,
            recorder,
            relayed={"critical-alerts": (webhook, token)},
        )
    )
    node, node_target = node_exporter(bench.workdir)
    bench.start(node)
    prometheus = Prometheus(
        "prometheus",
        bench.workdir,
        catalog,
        [am.address],
        {"node-exporter": [node_target], "alert-relay": [relay.ready_url.split("/")[2]]},
        recorder.target,
    )
    prometheus.metric_relabel["node-exporter"] = only_filesystems_under(bench.workdir)
    bench.start(prometheus)
    recorder.wait_for_page("Watchdog")
    sender = Sender([am.address])
    bench.cleanups.append(sender.stop)
    sender.fire(CRITICAL)
    wait_for(lambda: relayed(recorder, CRITICAL), 30, "the alert relayed")

    started = time.time()
    disk.abort()
    sender.fire(ANOTHER)
    page = recorder.wait_for_page("AlertRelayStorageFailing", since=started, timeout=90)
    assert [r for (r, labels) in recorder.pages(started)] == ["default-receiver"]
    assert page["labels"]["instance"] == "faults"
    assert not relayed(recorder, ANOTHER), "relayed although it could not be stored"

    disk.repair()  # under the running relay: it let go of its files
    wait_for(lambda: relayed(recorder, ANOTHER), 90, "the alert relayed once the disk is back")
    time.sleep(5)
    assert relay.starts == 1, "the relay was restarted"
    assert len(relayed(recorder, CRITICAL)) == 1
    assert len(relayed(recorder, ANOTHER)) == 1
    assert recorder.page_names(since=started) == ["AlertRelayStorageFailing"]


def test_a_disk_alert_mutes_the_relays_storage_alert_on_the_same_host(bench, catalog, recorder):
    """The inhibit rule behind "one fault, one page" for a disk the kernel marks read-only (or
    full): FilesystemReadOnly of a host mutes AlertRelayStorageFailing of the same host, not of
    another one. Alerts sent as Prometheus would send them."""
    am = bench.start(Alertmanager("alertmanager", bench.workdir, catalog, recorder))
    sender = Sender([am.address])
    bench.cleanups.append(sender.stop)
    started = time.time()
    sender.fire(
        {
            "alertname": "FilesystemReadOnly",
            "severity": "critical",
            "service": "system",
            "instance": "mon1",
            "job": "node-exporter",
            "mountpoint": "/var/lib/alert-relay",
            "device": "/dev/sdb1",
            "fstype": "ext4",
        }
    )
    recorder.wait_for_page("FilesystemReadOnly", since=started)
    for instance in ("mon1", "mon2"):
        sender.fire(
            {
                "alertname": "AlertRelayStorageFailing",
                "severity": "critical",
                "service": "monitoring",
                "instance": instance,
                "job": "alert-relay",
            }
        )
    page = recorder.wait_for_page("AlertRelayStorageFailing", since=started)
    time.sleep(5)
    assert page["labels"]["instance"] == "mon2"
    assert sorted(dict(labels)["instance"] for (_r, labels) in recorder.pages(started)) == [
        "mon1",
        "mon2",
    ]
    assert [
        a["labels"]["instance"]
        for a in am.alerts(active=False)
        if a["labels"]["alertname"] == "AlertRelayStorageFailing" and a["status"]["inhibitedBy"]
    ] == ["mon1"]
