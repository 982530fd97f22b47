"""Alertmanager under faults: rows of docs/reliability.md.

Alerts come from a ``Sender`` that behaves as Prometheus does (every alert
sent again every second, valid for four), or from a real Prometheus where the
page under test comes from a rule of the catalog.
"""

import time

from harness import (
    ANOTHER,
    CRITICAL,
    Alertmanager,
    Ext4Image,
    Prometheus,
    Sender,
    fill,
    node_exporter,
    only_filesystems_under,
    role_default,
    wait_for,
)


def seconds(duration):
    units = {"s": 1, "m": 60, "h": 3600}
    return float(duration[:-1]) * units[duration[-1]]


def notified(recorder, labels, since=0.0):
    return [
        (receiver, alert) for receiver, alert in recorder.alerts(since) if alert["labels"] == labels
    ]


def with_disk_watch(bench, catalog, recorder, am, disk_root):
    """A Prometheus with the catalog and node_exporter, watching only the test's disks."""
    node, target = node_exporter(bench.workdir)
    bench.start(node)
    prometheus = Prometheus(
        "prometheus",
        bench.workdir,
        catalog,
        [am.address],
        {"node-exporter": [target]},
        recorder.target,
    )
    prometheus.metric_relabel["node-exporter"] = only_filesystems_under(disk_root)
    return bench.start(prometheus)


def test_alertmanager_killed_sends_nothing_twice(bench, catalog, recorder):
    """kill -9 of Alertmanager after it notified: restarted (as systemd does), it reads its
    notification log from the last snapshot, written every maintenance interval (the role's
    30s; upstream's 15m would lose it) and sends nothing again. An alert that fires while it
    is down reaches it after the restart (Prometheus keeps sending) and pages once."""
    interval = seconds(str(role_default("alertmanager", "alertmanager_data_maintenance_interval")))
    am = bench.start(Alertmanager("alertmanager", bench.workdir, catalog, recorder))
    sender = Sender([am.address])
    bench.cleanups.append(sender.stop)
    started = time.time()
    sender.fire(CRITICAL)
    wait_for(lambda: notified(recorder, CRITICAL), 30, "the alert notified")
    # Past the next snapshot of the notification log.
    time.sleep(interval + 3)

    am.kill()
    sender.fire(ANOTHER)  # while it is down: Prometheus' sends fail and are made again
    am.wait_ready()
    wait_for(lambda: notified(recorder, ANOTHER), 30, "the alert fired during the restart")
    # Longer than group_wait + group_interval: a lost notification log would resend now.
    time.sleep(8)

    assert am.starts == 2
    assert len(notified(recorder, CRITICAL)) == 1, "notified again after the restart"
    assert len(notified(recorder, ANOTHER)) == 1
    assert not recorder.duplicates(since=started)


def test_alertmanager_data_directory_full_keeps_notifying(bench, catalog, recorder):
    """Alertmanager's data directory full: it keeps everything in memory and notifies as usual
    (nothing is lost while it runs); only its snapshots fail. CriticalDiskUsage of that file
    system is the one page. Space freed, the next maintenance writes the snapshot again: a
    kill -9 after that sends nothing twice."""
    interval = seconds(str(role_default("alertmanager", "alertmanager_data_maintenance_interval")))
    disk = Ext4Image(bench.workdir / "alertmanager-data", size_mb=16)
    bench.cleanups.append(disk.close)
    am = bench.start(
        Alertmanager("alertmanager", bench.workdir, catalog, recorder, data_dir=disk.path)
    )
    with_disk_watch(bench, catalog, recorder, am, bench.workdir)
    recorder.wait_for_page("Watchdog")
    sender = Sender([am.address])
    bench.cleanups.append(sender.stop)
    started = time.time()
    filler = fill(disk.path)

    sender.fire(CRITICAL)
    wait_for(lambda: notified(recorder, CRITICAL), 30, "an alert notified with the disk full")
    page = recorder.wait_for_page("CriticalDiskUsage", since=started)
    assert page["labels"]["mountpoint"] == str(disk.path)
    wait_for(
        lambda: "no space left on device" in am.log_text(),
        interval + 10,
        "a snapshot failing for lack of space",
    )
    assert recorder.page_names(since=started) == ["CriticalDiskUsage", "TradingBotDown"]

    filler.unlink()
    time.sleep(interval + 3)  # the next snapshot succeeds
    am.kill()
    am.wait_ready()
    time.sleep(6)
    assert len(notified(recorder, CRITICAL)) == 1, "notified again after the restart"
    assert not recorder.duplicates(since=started)


def test_alertmanager_data_directory_read_only_pages_once(bench, catalog, recorder):
    """Alertmanager's file system turns read-only: it notifies on from memory, and
    FilesystemReadOnly is the one page. The repair (stop, fsck, mount, start) is the
    operator's; Alertmanager then starts from its last snapshot before the fault: what it
    notified before is not sent again, a silence made before is kept."""
    interval = seconds(str(role_default("alertmanager", "alertmanager_data_maintenance_interval")))
    disk = Ext4Image(bench.workdir / "alertmanager-data", size_mb=16)
    bench.cleanups.append(disk.close)
    am = bench.start(
        Alertmanager("alertmanager", bench.workdir, catalog, recorder, data_dir=disk.path)
    )
    with_disk_watch(bench, catalog, recorder, am, bench.workdir)
    recorder.wait_for_page("Watchdog")
    sender = Sender([am.address])
    bench.cleanups.append(sender.stop)
    silence = am.silence({"alertname": "DataConsumerDown"}, hours=2)
    started = time.time()
    sender.fire(CRITICAL)
    wait_for(lambda: notified(recorder, CRITICAL), 30, "the alert notified")
    time.sleep(interval + 3)  # in the snapshot

    disk.remount_read_only()
    sender.fire(ANOTHER)  # silenced: never notified
    page = recorder.wait_for_page("FilesystemReadOnly", since=started, timeout=60)
    assert page["labels"]["mountpoint"] == str(disk.path)
    assert recorder.page_names(since=started) == ["FilesystemReadOnly", "TradingBotDown"]

    am.stop()
    disk.repair()
    am.start()
    time.sleep(8)
    assert [s["id"] for s in am.silences() if s["status"]["state"] == "active"] == [silence]
    assert len(notified(recorder, CRITICAL)) == 1, "notified again after the repair"
    assert not notified(recorder, ANOTHER)
    assert not recorder.duplicates(since=started)


def test_alertmanager_peer_unreachable_pages_once_and_notifies_once(bench, catalog, recorder):
    """A cluster of two: one Alertmanager becomes unreachable (frozen: neither its API nor its
    gossip answers). Prometheus' alerts still reach the other, which notifies each once;
    AlertmanagerDown is the one page (PrometheusAlertmanagerUnreachable stays quiet while one
    Alertmanager takes the alerts). Back, it rejoins and sends nothing twice."""
    first = Alertmanager("alertmanager-1", bench.workdir, catalog, recorder, peers=[])
    second = Alertmanager(
        "alertmanager-2",
        bench.workdir,
        catalog,
        recorder,
        peers=[f"127.0.0.1:{first.cluster_port}"],
    )
    first.argv.append(f"--cluster.peer=127.0.0.1:{second.cluster_port}")
    bench.start(first)
    bench.start(second)
    wait_for(lambda: first.metric("alertmanager_cluster_members") == 2, 30, "a cluster of two")
    prometheus = Prometheus(
        "prometheus",
        bench.workdir,
        catalog,
        [first.address, second.address],
        {},
        recorder.target,
    )
    prometheus.jobs["alertmanager"] = [
        (first.address, {"instance": "alertmanager-1"}),
        (second.address, {"instance": "alertmanager-2"}),
    ]
    bench.start(prometheus)
    # The frozen one reads the requests queued in its socket when it thaws: alerts valid
    # for 4 s would be stale by then, and resolve what the other notified. Prometheus'
    # alerts are valid for 4 minutes (4 resend delays): a freeze shorter than that.
    sender = Sender([first.address, second.address], valid_for=60)
    bench.cleanups.append(sender.stop)
    recorder.wait_for_page("Watchdog")
    started = time.time()
    second.freeze()
    bench.cleanups.append(second.thaw)

    page = recorder.wait_for_page("AlertmanagerDown", since=started)
    assert page["labels"]["instance"] == "alertmanager-2"
    sender.fire(CRITICAL)
    wait_for(lambda: notified(recorder, CRITICAL), 30, "an alert notified by the other one")
    time.sleep(8)
    assert recorder.page_names(since=started) == ["AlertmanagerDown", "TradingBotDown"]

    second.thaw()
    thawed = time.time()
    wait_for(lambda: second.metric("alertmanager_cluster_members") == 2, 60, "rejoined")
    time.sleep(10)
    assert len(notified(recorder, CRITICAL)) == 1, "notified twice once the peer came back"
    assert not recorder.duplicates(since=started)
    assert not [a for _r, a in recorder.alerts(since=thawed) if a["labels"] == CRITICAL]


def test_alertmanager_destination_down_pages_elsewhere_then_delivers(bench, catalog, recorder):
    """The destination of critical-alerts is down for longer than Alertmanager retries a
    notification: AlertmanagerNotificationsFailing pages, once, on the default receiver (routed
    around critical-alerts, which may be the one failing). The critical alert is not lost:
    Alertmanager tries again at every group_interval while it fires, and it arrives, once,
    when the destination answers again."""
    am = bench.start(Alertmanager("alertmanager", bench.workdir, catalog, recorder))
    prometheus = Prometheus("prometheus", bench.workdir, catalog, [am.address], {}, recorder.target)
    prometheus.jobs["alertmanager"] = [(am.address, {"instance": "alertmanager"})]
    bench.start(prometheus)
    recorder.wait_for_page("Watchdog")
    sender = Sender([am.address])
    bench.cleanups.append(sender.stop)
    started = time.time()
    recorder.failing.add("critical-alerts")
    sender.fire(CRITICAL)

    page = recorder.wait_for_page("AlertmanagerNotificationsFailing", since=started, timeout=90)
    receivers = [
        r
        for (r, labels) in recorder.pages(started)
        if dict(labels)["alertname"] == "AlertmanagerNotificationsFailing"
    ]
    assert receivers == ["default-receiver"]
    assert page["labels"]["integration"] == "webhook"
    assert not notified(recorder, CRITICAL)

    recorder.failing.clear()
    wait_for(lambda: notified(recorder, CRITICAL), 30, "the alert delivered once back")
    time.sleep(6)
    assert len(notified(recorder, CRITICAL)) == 1
    assert recorder.page_names(since=started) == [
        "AlertmanagerNotificationsFailing",
        "TradingBotDown",
    ]
    assert not recorder.duplicates(since=started)


def test_alertmanager_a_day_ahead_sends_nothing_but_the_switch_pages(bench, catalog, recorder):
    """Alertmanager's host clock a day ahead (Go's clock cannot be faked here: its alerts are
    sent as Prometheus would send them, seen from that clock, ending a day in the past). Every
    alert looks resolved on arrival: nothing is notified, the Watchdog included, so the dead
    man's switch is what pages. A clock alert of that host (node_exporter) cannot get through
    that Alertmanager: only the switch, or an HA peer with the right time, can tell."""
    am = bench.start(Alertmanager("alertmanager", bench.workdir, catalog, recorder))
    day = 86400
    now = time.time()
    skewed = [
        {
            "labels": labels,
            "annotations": {"summary": "sent a day in the past, as this clock sees it"},
            "startsAt": _at(now - day - 60),
            "endsAt": _at(now - day + 60),
        }
        for labels in (
            {"alertname": "Watchdog", "severity": "none", "service": "monitoring"},
            CRITICAL,
        )
    ]
    for _resend in range(5):  # as Prometheus sends them again
        am.post_alerts(skewed)
        time.sleep(1)
    time.sleep(3)
    assert not recorder.delivered(), "something was notified"
    assert not am.alerts()


def _at(seconds_since_epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds_since_epoch))
