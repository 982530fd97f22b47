"""Prometheus under faults: rows of docs/reliability.md.

A Prometheus cannot alert on itself when it is dead or cannot write; there
the rows name what covers it (its HA peer, the Watchdog's dead man's switch)
and test that.
"""

import shutil
import subprocess
import time

from harness import (
    Alertmanager,
    Ext4Image,
    Prometheus,
    binary,
    fill,
    node_exporter,
    role_default,
    wait_for,
)


def test_prometheus_killed_keeps_firing_and_pages_once(bench, catalog, recorder):
    """kill -9 of Prometheus while an alert fires: restarted (as systemd does), it restores the
    alert's state from its write-ahead log and goes on firing with the same start time, so
    Alertmanager neither resolves it nor pages again, even where the restart takes longer than
    Alertmanager waits for a silent alert (4 resend delays: 12 s here, 4 min in production).
    Upstream's default grace period (10m) would make the alert pending again for its `for`
    (20 s here): resolved, then paged again."""
    am = bench.start(Alertmanager("alertmanager", bench.workdir, catalog, recorder))
    node, node_target = node_exporter(bench.workdir)
    bench.start(node)
    prometheus = bench.start(
        Prometheus(
            "prometheus",
            bench.workdir,
            catalog,
            [am.address],
            {"node-exporter": [node_target]},
            recorder.target,
            resend_delay="3s",
        )
    )
    started = time.time()
    node.stop()
    first = recorder.wait_for_page("NodeExporterDown", since=started)

    prometheus.kill()
    killed = time.time()
    prometheus.wait_ready()
    # Longer than the alert's `for` (20 s) and Alertmanager's patience (4 x 3 s) together.
    time.sleep(30)

    assert prometheus.starts == 2
    assert prometheus.firing("NodeExporterDown"), (
        "NodeExporterDown no longer fires after the restart"
    )
    assert recorder.page_names(since=started) == ["NodeExporterDown"], recorder.pages(started)
    assert not recorder.resolved("NodeExporterDown", since=killed), (
        "Alertmanager resolved NodeExporterDown while Prometheus restarted"
    )
    again = [
        a
        for _r, a in recorder.alerts(since=killed)
        if a["labels"]["alertname"] == "NodeExporterDown" and a["startsAt"] != first["startsAt"]
    ]
    assert not again, f"NodeExporterDown fired anew after the restart: {again}"
    assert not recorder.duplicates(since=started)
    assert [
        a["status"]["state"] for a in am.alerts() if a["labels"]["alertname"] == "NodeExporterDown"
    ] == ["active"]


def pair_member(bench, catalog, recorder, am, name, **kwargs):
    return Prometheus(name, bench.workdir, catalog, [am.address], {}, recorder.target, **kwargs)


def prometheus_on_its_own_disk(bench, catalog, recorder):
    """Prometheus and Alertmanager, Prometheus' data on an ext4 file system of its own, with a
    lookback of 15 s (every series is gone soon after it stops storing); once it pages."""
    am = bench.start(Alertmanager("alertmanager", bench.workdir, catalog, recorder))
    disk = Ext4Image(bench.workdir / "prometheus-data", size_mb=48)
    bench.cleanups.append(disk.close)
    prometheus = bench.start(
        Prometheus(
            "prometheus",
            bench.workdir,
            catalog,
            [am.address],
            {},
            recorder.target,
            data_dir=disk.path,
            extra_flags=["--query.lookback-delta=15s"],
        )
    )
    recorder.wait_for_page("Watchdog")
    return prometheus, disk


def test_prometheus_data_directory_full_pages_once_and_recovers(bench, catalog, recorder):
    """The data directory fills up under a running Prometheus: every write of its WAL fails,
    it stores nothing but still evaluates and notifies, so it pages PrometheusNotIngesting
    itself, once (the jobs' "no target" alerts hold back, although every series leaves the
    lookback, 15 s here). Space freed, it stores again without a restart and the alert resolves.
    What it scraped meanwhile is lost (an HA peer has it)."""
    prometheus, disk = prometheus_on_its_own_disk(bench, catalog, recorder)
    started = time.time()
    filler = fill(disk.path)

    page = recorder.wait_for_page("PrometheusNotIngesting", since=started, timeout=60)
    assert page["labels"]["severity"] == "critical"
    # Past the lookback: every series is gone, and still only this page.
    time.sleep(25)
    assert "no space left on device" in prometheus.log_text()
    assert recorder.page_names(since=started) == ["PrometheusNotIngesting"]

    filler.unlink()
    freed = time.time()
    recorder.wait_for_resolved("PrometheusNotIngesting", since=freed, timeout=60)
    assert prometheus.starts == 1, "Prometheus was restarted"
    assert prometheus.value('time() - max(timestamp(up{job="prometheus"}))') < 5
    assert recorder.page_names(since=started) == ["PrometheusNotIngesting"]
    assert not recorder.duplicates(since=started)


def test_prometheus_data_directory_read_only_pages_once(bench, catalog, recorder):
    """The data directory's file system turns read-only under Prometheus (an I/O error with
    errors=remount-ro): as with a full disk it stores nothing and pages PrometheusNotIngesting
    once. Repairing the file system is the operator's (stop, fsck, mount, start); after it,
    Prometheus starts on its data and the alert resolves."""
    prometheus, disk = prometheus_on_its_own_disk(bench, catalog, recorder)
    started = time.time()
    disk.abort()

    recorder.wait_for_page("PrometheusNotIngesting", since=started, timeout=60)
    time.sleep(20)
    assert "read-only file system" in prometheus.log_text()
    assert recorder.page_names(since=started) == ["PrometheusNotIngesting"]

    prometheus.stop()
    disk.repair()
    repaired = time.time()
    prometheus.start()
    recorder.wait_for_resolved("PrometheusNotIngesting", since=repaired, timeout=60)
    assert recorder.page_names(since=started) == ["PrometheusNotIngesting"]
    assert not recorder.duplicates(since=started)


def test_prometheus_gone_pages_from_its_peer_then_the_dead_mans_switch(bench, catalog, recorder):
    """An HA pair: one Prometheus dies for good (a crash loop, a host gone). Its peer pages
    PrometheusDown, once, and the Watchdog goes on (both send it; Alertmanager keeps one).
    With the second gone too, nothing can page through Alertmanager: the Watchdog stops
    reaching the dead man's switch (the watchdog receiver) within 4 resend delays, and the
    switch pages; that is the single-server case."""
    am = bench.start(Alertmanager("alertmanager", bench.workdir, catalog, recorder))
    first = pair_member(bench, catalog, recorder, am, "prometheus-a", resend_delay="2s")
    second = pair_member(bench, catalog, recorder, am, "prometheus-b", resend_delay="2s")
    for member in (first, second):
        member.jobs["prometheus"] = [
            (f"127.0.0.1:{first.port}", {"instance": "prometheus-a"}),
            (f"127.0.0.1:{second.port}", {"instance": "prometheus-b"}),
        ]
        bench.start(member)
    recorder.wait_for_page("Watchdog")
    started = time.time()
    first.stop()

    page = recorder.wait_for_page("PrometheusDown", since=started)
    assert page["labels"]["instance"] == "prometheus-a"
    time.sleep(10)
    assert recorder.page_names(since=started) == ["PrometheusDown"]
    assert [a for a in am.alerts() if a["labels"]["alertname"] == "Watchdog"]

    second.stop()
    both_gone = time.time()
    # Alertmanager drops the Watchdog 4 x 2 s after its last update, and says it resolved.
    wait_for(
        lambda: [r for r, _a in recorder.resolved("Watchdog", since=both_gone) if r == "watchdog"],
        30,
        "the Watchdog resolved at the dead man's switch",
    )
    last_beat = max(
        r["time"]
        for r in recorder.delivered()
        if r["receiver"] == "watchdog" and r["body"]["status"] == "firing"
    )
    time.sleep(5)
    assert not [
        r
        for r in recorder.delivered(since=last_beat + 0.001)
        if r["receiver"] == "watchdog" and r["body"]["status"] == "firing"
    ], "the Watchdog still reaches the dead man's switch"


def backfill(directory, series, start, end, step=60):
    """TSDB blocks (promtool) with ``series`` {name{labels}: value} every ``step`` seconds."""
    text = directory / "history.om"
    with text.open("w") as out:
        for name in sorted({s.split("{", 1)[0] for s in series}):
            out.write(f"# TYPE {name} gauge\n")
            for key, value in series.items():
                if key.split("{", 1)[0] != name:
                    continue
                sample = key.replace(", ", ",")  # OpenMetrics: no space between labels
                for at in range(int(start), int(end), step):
                    out.write(f"{sample} {value} {at}\n")
        out.write("# EOF\n")
    blocks = directory / "blocks"
    subprocess.run(
        [
            binary("promtool"),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "-q",
            str(text),
            str(blocks),
        ],
        check=True,
        capture_output=True,
    )
    return blocks


def test_prometheus_with_a_month_of_history_keeps_its_retention(bench, catalog, recorder):
    """A month of history (backfilled: 30 days of 1-minute samples, in 2-hour blocks), then
    Prometheus starts on it as the role runs it (retention 15d): it drops what is older than
    the retention at once, answers a 7-day query, ingests, and pages nothing."""
    retention = str(role_default("prometheus", "prometheus_retention_time"))
    am = bench.start(Alertmanager("alertmanager", bench.workdir, catalog, recorder))
    now = time.time()
    day = 86400
    blocks = backfill(
        bench.workdir,
        {
            'node_load1{job="node-exporter", instance="history"}': 0.5,
            'node_memory_MemAvailable_bytes{job="node-exporter", instance="history"}': 1e9,
        },
        now - 30 * day,
        now - 600,
    )
    data = bench.workdir / "prometheus-data"
    shutil.copytree(blocks, data)
    months_blocks = len([p for p in data.iterdir() if (p / "meta.json").exists()])
    started = time.time()
    prometheus = bench.start(
        Prometheus(
            "prometheus",
            bench.workdir,
            catalog,
            [am.address],
            {},
            recorder.target,
            data_dir=data,
            extra_flags=[f"--storage.tsdb.retention.time={retention}"],
        )
    )
    ready_after = time.time() - started
    assert months_blocks >= 300

    def oldest_days():
        lowest = prometheus.value("prometheus_tsdb_lowest_timestamp_seconds")
        return None if lowest is None else (time.time() - lowest) / day

    # The retention holds: nothing much older than 15 days is kept (a block is dropped as a
    # whole, 2 hours at a time).
    wait_for(lambda: (oldest_days() or 99) < 15.2, 60, lambda: f"oldest data {oldest_days()} days")
    kept = len([p for p in data.iterdir() if (p / "meta.json").exists()])
    assert kept < months_blocks * 0.6
    week = prometheus.value('count_over_time(node_load1{instance="history"}[7d] offset 15m)')
    assert week is not None and abs(week - 7 * 24 * 60) <= 2
    time.sleep(5)
    assert prometheus.value('time() - max(timestamp(up{job="prometheus"}))') < 5
    assert recorder.page_names(since=started) == []
    print(f"a month of history: {months_blocks} blocks, {kept} kept, ready in {ready_after:.1f} s")


def test_prometheus_after_running_a_day_ahead_pages_once(bench, catalog, recorder):
    """The host's clock ran a day ahead and was set right: Prometheus wrote data stamped a day
    in the future (here: a block of it), and its database now refuses every sample older than
    that (out of bounds) until the real time catches up. It stores nothing and pages
    PrometheusNotIngesting, once. Recovery needs a hand: remove the future block (docs)."""
    am = bench.start(Alertmanager("alertmanager", bench.workdir, catalog, recorder))
    now = time.time()
    blocks = backfill(
        bench.workdir,
        {'node_load1{job="node-exporter", instance="ahead"}': 1},
        now + 86400 - 300,
        now + 86400,
    )
    data = bench.workdir / "prometheus-data"
    shutil.copytree(blocks, data)
    started = time.time()
    prometheus = bench.start(
        Prometheus(
            "prometheus", bench.workdir, catalog, [am.address], {}, recorder.target, data_dir=data
        )
    )
    recorder.wait_for_page("PrometheusNotIngesting", since=started, timeout=60)
    # Its own counter of refused samples is refused too: the journal tells.
    assert 'err="out of bounds"' in prometheus.log_text()
    time.sleep(10)
    assert recorder.page_names(since=started) == ["PrometheusNotIngesting"]

    # The operator's fix: stop, remove the block from the future, start.
    prometheus.stop()
    for block in data.iterdir():
        if (block / "meta.json").exists():
            shutil.rmtree(block)
    fixed = time.time()
    prometheus.start()
    recorder.wait_for_resolved("PrometheusNotIngesting", since=fixed, timeout=60)
