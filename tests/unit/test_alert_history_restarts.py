"""A restart of Prometheus is not a resolve: the report against a real Prometheus restarted twice.

A rule whose `for` is shorter than Prometheus' --rules.alert.for-grace-period
(10m) does not get its active time back after a restart: the first evaluation
finds it pending with a new ALERTS_FOR_STATE value, and ALERTS has a gap of the
downtime plus the `for`. That is what this Prometheus does, for real:

- Steady (vector(1), for 5s) fires from the first evaluation on; Prometheus is
  restarted twice while it fires. One firing, still firing at the end: no
  resolve, no flap, no `for` suggestion.
- Cycling fires in three 2-second windows, 2 seconds apart, before the
  restarts: three firings, two flaps, a `for` suggestion. Real resolves and
  refirings still count.

Prometheus scrapes itself as job `prometheus` with instance=<the monitoring
host>, as the roles configure it: its process_start_time_seconds tells when it
restarted.
"""

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from itertools import pairwise
from urllib.parse import urlsplit

import pytest
from conftest import ROOT, Service, http_get, start_prometheus, wait_for

HOST = "mon-restart"
CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:{port}"]
        labels: {{instance: {host}}}
"""
STEADY = """\
groups:
  - name: restart.rules
    rules:
      - alert: Steady
        expr: vector(1)
        for: 5s
        labels: {severity: critical}
"""
CYCLING = """\
      - alert: Cycling
        expr: {expr}
        labels: {{severity: warning}}
"""


def rfc3339(seconds):
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def rules_api(service):
    return json.loads(http_get(service.url + "/api/v1/rules"))["data"]["groups"]


def steady_fires_since(service, moment):
    """Steady is firing, active since `moment` or later (the process that runs now)."""
    for group in rules_api(service):
        for rule in group["rules"]:
            for alert in rule.get("alerts") or []:
                if rule["name"] == "Steady" and alert["state"] == "firing":
                    active = datetime.fromisoformat(alert["activeAt"].replace("Z", "+00:00"))
                    if active.timestamp() >= moment:
                        return True
    return False


def scraped_itself_since(service, moment):
    """Prometheus has scraped its own process_start_time_seconds of a process started
    at `moment` or later (its first scrape comes about 5 s after it starts)."""
    query = urllib.parse.urlencode({"query": 'process_start_time_seconds{job="prometheus"}'})
    result = json.loads(http_get(f"{service.url}/api/v1/query?{query}"))["data"]["result"]
    return any(float(item["value"][1]) >= moment - 1 for item in result)


def restart(service, directory):
    """Stop Prometheus, wait a second, start it again on the same data and port."""
    argv = service.process.args
    service.stop()
    time.sleep(1)
    stopped = time.time()
    log = open(directory / "prometheus.log", "ab")  # noqa: SIM115 - closed by Service.stop()
    again = Service(argv, service.config, service.url, log)
    wait_for(lambda: steady_fires_since(again, stopped), deadline=30, what="Steady firing again")
    wait_for(lambda: scraped_itself_since(again, stopped), deadline=30, what="a scrape of itself")
    time.sleep(2)
    return again


@pytest.fixture(scope="module")
def restarted(tmp_path_factory):
    """(Prometheus after two restarts, start of the period, end of the period)."""
    directory = tmp_path_factory.mktemp("restarted-prometheus")
    begun = time.time()
    service = start_prometheus(directory, CONFIG, {"rules.yml": STEADY}, host=HOST)
    try:
        wait_for(lambda: steady_fires_since(service, 0), deadline=30, what="Steady firing")
        # Three windows of 2 s, 2 s apart, from 2 s on: evaluated at 1 s, each is a
        # firing that resolves.
        t1 = int(time.time()) + 2
        windows = [(t1 + 4 * n, t1 + 4 * n + 2) for n in range(3)]
        expr = " or ".join(f"(vector(time()) >= {a} < {b})" for a, b in windows)
        (directory / "rules.yml").write_text(STEADY + CYCLING.format(expr=expr))
        request = urllib.request.Request(service.url + "/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=5):
            pass
        time.sleep(windows[-1][1] - time.time() + 2)
        service = restart(service, directory)
        service = restart(service, directory)
        yield service, begun - 1, time.time()
    finally:
        service.stop()


def run_report(tmp_path, service, start, end, extra_vars=None):
    inventory = tmp_path / "inventory.json"
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "prometheus_port": urlsplit(service.url).port,
        # No Alertmanager: nothing is silenced, nothing else changes.
        "alertmanager_port": urlsplit(service.url).port,
    }
    inventory.write_text(json.dumps({"monitoring": {"hosts": {HOST: host}}}))
    extra = {
        "report_start": rfc3339(start),
        "report_end": rfc3339(end),
        "report_dir": str(tmp_path / "reports"),
        "operations_alertmanager_url": "",
        **(extra_vars or {}),
    }
    argv = ["ansible-playbook", "-i", str(inventory), str(ROOT / "playbooks" / "report.yml")]
    argv += ["-e", json.dumps(extra)]
    environment = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    completed = subprocess.run(argv, capture_output=True, text=True, env=environment, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    (json_file,) = (tmp_path / "reports" / HOST).glob("*.json")
    return json.loads(json_file.read_text()), completed.stdout


def test_a_prometheus_restart_is_not_a_resolve_but_a_real_resolve_still_is(tmp_path, restarted):
    service, start, end = restarted

    data, stdout = run_report(tmp_path, service, start, end)

    alerts = {a["name"]: a for a in data["alerts"]}
    steady = alerts["Steady"]
    assert (steady["fired"], steady["flaps"], steady["flapping"]) == (1, 0, False)
    assert (steady["resolved"], steady["firing_at_end"]) == (0, 1)
    assert steady["across_restarts"] == 2
    cycling = alerts["Cycling"]
    assert (cycling["fired"], cycling["flaps"], cycling["flapping"]) == (3, 2, True)
    assert cycling["resolved"] == 3
    assert cycling["across_restarts"] == 0
    kinds = {(s["alert"], s["kind"]) for s in data["suggestions"]}
    assert ("Steady", "for") not in kinds
    assert ("Cycling", "for") in kinds
    assert data["counts"]["firings"] == 4
    assert data["counts"]["flaps"] == 2
    assert len(data["prometheus_restarts"]) == 2
    assert "Prometheus restarted 2 times in the period" in stdout


def steady_samples(service, start, end):
    """The times (s) of Steady's firing samples in [start, end]."""
    query = urllib.parse.urlencode(
        {
            "query": f'ALERTS{{alertname="Steady",alertstate="firing"}}[{round(end - start)}s]',
            "time": f"{end:.3f}",
        }
    )
    answer = json.loads(http_get(f"{service.url}/api/v1/query?{query}"))
    ((_labels, values),) = [(r["metric"], r["values"]) for r in answer["data"]["result"]]
    return [float(t) for t, _v in values]


def test_a_period_that_starts_right_after_a_restart_still_sees_the_firing_before_it(
    tmp_path, restarted
):
    service, start, end = restarted
    # The period starts with Steady's first sample after the first restart; with a flap
    # window of 1 s its look-back (1 s and two evaluations) ends after Prometheus went
    # down: the firing before the restart lies before what the report reads at first.
    times = steady_samples(service, start, end)
    after_gap = next(b for a, b in pairwise(times) if b - a > 3)

    data, _stdout = run_report(tmp_path, service, after_gap, end, {"report_flap_window": "1s"})

    steady = {a["name"]: a for a in data["alerts"]}["Steady"]
    assert (steady["fired"], steady["firing_at_start"], steady["flaps"]) == (0, 1, 0)
    assert steady["across_restarts"] == 2
