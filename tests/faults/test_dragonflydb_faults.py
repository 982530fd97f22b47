"""DragonflyDB faults seen by its exporter and by the monitoring host's probe: one page each.

Redis with TLS stands in for DragonflyDB (Debian has no DragonflyDB);
redis_exporter and the blackbox exporter are Debian's, configured by the
project's own filters as the roles configure them: the exporter's scrape job
(``prometheus_scrape_configs``) and the probes the inventory implies for a
``rediss://`` address (``blackbox_dragonflydb_probes``, ``blackbox_checks``,
``blackbox_modules``, ``blackbox_scrape_configs``).
"""

import datetime
import sys
import time

import yaml
from harness import (
    ROOT,
    Alertmanager,
    Prometheus,
    Service,
    binary,
    free_port,
    role_default,
    wait_for,
)

# The filters import the collection's own module_utils (through the symlink ansible.cfg uses).
sys.path.insert(0, str(ROOT / ".collections"))
sys.path.insert(0, str(ROOT / "plugins" / "filter"))
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))

import blackbox
import pki
import prometheus as prometheus_filters


def dragonflydb_bench(bench, catalog, recorder, certificate_expired=False):
    """Redis over TLS, its exporter, the probes, Prometheus and Alertmanager."""
    not_after = (
        datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
        if certificate_expired
        else None
    )
    pki.write_pki(bench.workdir / "pki", "redis", "localhost", not_after=not_after)
    ca = bench.workdir / "pki" / "ca.crt"
    redis_port, exporter_port, blackbox_port = free_port(), free_port(), free_port()
    redis = Service(
        "redis",
        [
            binary("redis-server"),
            "--port",
            "0",
            "--tls-port",
            str(redis_port),
            "--tls-cert-file",
            str(bench.workdir / "pki" / "redis.crt"),
            "--tls-key-file",
            str(bench.workdir / "pki" / "redis.key"),
            "--tls-ca-cert-file",
            str(ca),
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--dir",
            str(bench.workdir),
        ],
        bench.workdir,
        ready_url="",
    )
    bench.start(redis, wait=False)
    address = f"rediss://localhost:{redis_port}"
    exporter = Service(
        "redis-exporter",
        [
            binary("prometheus-redis-exporter"),
            f"--redis.addr={address}",
            f"--tls-ca-cert-file={ca}",
            f"--web.listen-address=127.0.0.1:{exporter_port}",
        ],
        bench.workdir,
        f"http://127.0.0.1:{exporter_port}/metrics",
    )
    bench.start(exporter)

    # The inventory of one DragonflyDB host, as the roles read it.
    hostvars = {
        "db1": {
            "dragonflydb_exporter_targets": [{"address": address}],
            "dragonflydb_exporter_port": exporter_port,
            "monitoring_address": "127.0.0.1",
        }
    }
    groups = {"dragonflydb_hosts": ["db1"]}
    probes = blackbox.blackbox_dragonflydb_probes(groups, hostvars)
    for probe in probes:
        probe["ca_file"] = str(ca)
    checks = blackbox.blackbox_checks(dragonflydb=probes)
    (bench.workdir / "blackbox.yml").write_text(
        yaml.safe_dump({"modules": blackbox.blackbox_modules(checks)})
    )
    bench.start(
        Service(
            "blackbox-exporter",
            [
                binary("prometheus-blackbox-exporter"),
                f"--config.file={bench.workdir / 'blackbox.yml'}",
                f"--web.listen-address=127.0.0.1:{blackbox_port}",
            ],
            bench.workdir,
            f"http://127.0.0.1:{blackbox_port}/metrics",
        )
    )
    job_specs = [
        spec
        for spec in role_default("prometheus", "prometheus_exporter_jobs")
        if spec["job_name"] == "dragonflydb"
    ]
    scrape_configs = prometheus_filters.prometheus_scrape_configs(
        job_specs, groups, hostvars
    ) + blackbox.blackbox_scrape_configs(checks, f"127.0.0.1:{blackbox_port}")

    am = bench.start(Alertmanager("alertmanager", bench.workdir, catalog, recorder))
    prom = bench.start(
        Prometheus(
            "prometheus",
            bench.workdir,
            catalog,
            [am.address],
            {},
            recorder.target,
            scrape_configs=scrape_configs,
        )
    )
    return redis, prom


def test_dragonflydb_down_is_one_page(bench, catalog, recorder):
    """DragonflyDB stops: its exporter (redis_up 0) and the monitoring host's probe (the TCP
    connect fails) both see it. DragonflyDBConnectionFailure pages, once; EndpointDown of the
    same endpoint stays quiet although its `for` has passed. Back, it resolves."""
    redis, prom = dragonflydb_bench(bench, catalog, recorder)
    wait_for(lambda: prom.value("redis_up") == 1, 30, "redis_up 1")
    wait_for(
        lambda: prom.value('min(probe_success{purpose="dragonflydb"})') == 1, 30, "probes succeed"
    )
    started = time.time()
    redis.stop()

    page = recorder.wait_for_page("DragonflyDBConnectionFailure", since=started)
    assert page["labels"]["endpoint"].startswith("localhost:")
    wait_for(
        lambda: prom.value('probe_success{purpose="dragonflydb", check="connect"}') == 0,
        30,
        "the probe sees it too",
    )
    time.sleep(8)  # EndpointDown's `for` (3 s) passes: it still must not page
    assert recorder.page_names(since=started) == ["DragonflyDBConnectionFailure"]

    redis.start(wait=False)
    recorder.wait_for_resolved("DragonflyDBConnectionFailure", since=started, timeout=60)
    assert recorder.page_names(since=started) == ["DragonflyDBConnectionFailure"]
    assert not recorder.duplicates(since=started)


def test_dragonflydb_certificate_expired_is_one_page(bench, catalog, recorder):
    """DragonflyDB's certificate has expired: the exporter's TLS connection fails (redis_up 0,
    an x509 error) and so does the probe's handshake, while its TCP connect works.
    DragonflyDBSSLIssue pages, once, for the endpoint; DragonflyDBConnectionFailure does not,
    although its `for` is the shorter."""
    started = time.time()
    _redis, prom = dragonflydb_bench(bench, catalog, recorder, certificate_expired=True)
    wait_for(lambda: prom.value("redis_up") == 0, 30, "redis_up 0")

    page = recorder.wait_for_page("DragonflyDBSSLIssue", since=started)
    assert set(page["labels"]) == {"alertname", "severity", "service", "endpoint"}
    time.sleep(8)
    assert prom.value('probe_success{purpose="dragonflydb", check="connect"}') == 1
    assert recorder.page_names(since=started) == ["DragonflyDBSSLIssue"]
    assert not recorder.duplicates(since=started)
