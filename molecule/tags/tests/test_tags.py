"""Every tag of README "Tags" is a contract, tested here on the converged stack.

A run with only that tag applies a change of each kind the table says it applies, the
running service reports the change afterwards (not just the file), only what the table
says restarts (the others keep their PID; a reload is seen in the service's own reload
timestamp), no other file changes, and a second run of the same tag changes nothing.

One run per tag, and its rerun. The tests build on each other in file order: each
starts from the settings the previous one left (STATE, the extra variables the host
is converged to), per role `<role>_configure`, `<role>_service`, `<role>_install` and
the role's own tag; `exporters` and `monitoring` then put every setting the chains
left back to the inventory's as their own change, so that the stack ends as the
inventory says, which a last run of site.yml confirms (changed=0). After a failure
the rest is skipped (the state they build on is unknown) and site.yml restores the
stack. A change of the install kind is a package the test removed first (a
policy-rc.d keeps its service running from the deleted binary).
"""

import copy
import fnmatch
import re
import shlex
import struct
import time
from pathlib import Path

import pytest
import yaml
from molecule_helpers import changed_tasks, recap, run_playbook, wait_for

# The stack scenario's host: its converge playbook and its inventory's variables.
SITE = "molecule/stack/converge.yml"
GROUP_VARS = Path(__file__).resolve().parents[2] / "stack" / "inventory" / "group_vars"
# The inventory's settings (extra variables replace them whole).
DEMO = yaml.safe_load((GROUP_VARS / "all.yml").read_text())
SCENARIO = yaml.safe_load((GROUP_VARS / "monitoring.yml").read_text())

PROMETHEUS = "http://127.0.0.1:9090"
ALERTMANAGER = "http://127.0.0.1:9093"
RELAY = "http://127.0.0.1:9097"
BLACKBOX = "http://127.0.0.1:9115"
NODE = "http://127.0.0.1:9100"
DOCKER = "http://127.0.0.1:9417"
REDIS_EXPORTER = "http://127.0.0.1:9121"

# unit -> (its URL, the metric of its last successful configuration load) where it reloads.
RELOADING = {
    "prometheus": (PROMETHEUS, "prometheus_config_last_reload_success_timestamp_seconds"),
    "prometheus-alertmanager": (
        ALERTMANAGER,
        "alertmanager_config_last_reload_success_timestamp_seconds",
    ),
    "alert-relay": (RELAY, "alert_relay_config_last_reload_success_timestamp_seconds"),
    "prometheus-blackbox-exporter": (
        BLACKBOX,
        "blackbox_exporter_config_last_reload_success_timestamp_seconds",
    ),
}
UNITS = (
    *RELOADING,
    "prometheus-node-exporter",
    "docker-exporter",
    "prometheus-redis-exporter",
)
# Every file the roles write (configuration, secrets, web files, units).
CONFIG_DIRS = (
    "/etc/prometheus",
    "/etc/alertmanager",
    "/etc/alert-relay",
    "/etc/prometheus-blackbox-exporter",
    "/etc/prometheus-node-exporter",
    "/etc/docker-exporter",
    "/etc/prometheus-redis-exporter",
    "/etc/systemd/system",
)
PACKAGES = {
    "prometheus-node-exporter": "prometheus-node-exporter",
    "docker-exporter": "python3-venv",
    "prometheus-redis-exporter": "prometheus-redis-exporter",
    "prometheus-blackbox-exporter": "prometheus-blackbox-exporter",
    "alert-relay": "python3-venv",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "prometheus": "prometheus",
}

# The extra variables the host is converged to, beyond the inventory: what each test
# starts from and leaves for the next.
STATE = {}
SECOND_REDIS_PORT = 6390


# --- Changes, as extra variables ------------------------------------------------------


def threshold(value):
    """HighRejectionRate's threshold (an alert the scenario leaves enabled)."""
    overrides = {
        **SCENARIO["prometheus_alert_overrides"],
        "HighRejectionRate": {"threshold": value},
    }
    return {"prometheus_alert_overrides": overrides}


def scrape_interval(value):
    """The data consumer's scrape interval (prometheus_scrape_configs)."""
    jobs = copy.deepcopy(DEMO["prometheus_scrape_configs"])
    (job,) = [j for j in jobs if j["job_name"] == "data-consumer"]
    job["scrape_interval"] = value
    return {"prometheus_scrape_configs": jobs}


def http_probes(*probes):
    """The inventory's HTTP probes and `probes`."""
    return {"blackbox_exporter_http_probes": [*DEMO["blackbox_exporter_http_probes"], *probes]}


# A probe of Prometheus' health, with a module of its own (the body it checks).
HTTP_PROBE = {"name": "tag-test", "url": f"{PROMETHEUS}/-/healthy", "body": "Healthy"}


def named_probe(host):
    """A probe of Prometheus at the container's host name: a DNS probe of that name
    follows it, which needs the host's resolver (the host facts)."""
    name = host.check_output("hostname")
    return {"name": "tag-test-named", "url": f"http://{name}:9090/-/healthy"}, name


def receiver_url(receiver, url):
    """One Alertmanager receiver's webhook URL changed."""
    receivers = copy.deepcopy(DEMO["alertmanager_receivers"])
    (changed,) = [r for r in receivers if r["name"] == receiver]
    changed["webhook"]["url"] = url
    return {"alertmanager_receivers": receivers}


def relay_destinations(**extra):
    """The relay's critical receiver forwarding to the stand-in and to `extra` too."""
    return {
        "alert_relay_receivers": {"critical-alerts": {"destinations": ["stand-in", *extra]}},
        "alert_relay_destinations": {**DEMO["alert_relay_destinations"], **extra},
    }


def blackbox_module(name):
    """A module of the operator's own in blackbox.yml."""
    return {"blackbox_exporter_modules": {name: {"prober": "tcp", "timeout": "3s"}}}


def web_users(password):
    """Basic auth on (every role reads it; only the tagged roles' runs apply it)."""
    return {"monitoring_web_users": {"prometheus": password}}


def dragonflydb_targets(password):
    """A second target, in the password file only (the first one is the unit's flag)."""
    return {
        "dragonflydb_exporter_targets": [
            {"address": "redis://127.0.0.1:6379"},
            {"address": f"redis://127.0.0.1:{SECOND_REDIS_PORT}", "password": password},
        ]
    }


def without(state, *names):
    return {k: v for k, v in state.items() if k not in names}


# --- What the host and the services say ------------------------------------------------


def snapshot(host):
    """(MainPID per unit, last configuration load per reloading unit, file checksums)."""
    pids = host.check_output(
        f"for unit in {' '.join(UNITS)}; do systemctl show -P MainPID $unit; done"
    ).split()
    loads = {}
    for unit, (url, metric) in RELOADING.items():
        text = host.run("curl -fsS --max-time 10 %s/metrics", url).stdout
        match = re.search(rf"^{metric} (\S+)$", text, re.M)
        loads[unit] = float(match.group(1)) if match else None
    listing = host.check_output(
        f"find {' '.join(CONFIG_DIRS)} -type f -exec sha256sum {{}} + 2>/dev/null | sort -k 2"
    )
    files = {line.split()[1]: line.split()[0] for line in listing.splitlines()}
    return dict(zip(UNITS, pids, strict=True)), loads, files


def main_pid(host, unit):
    return host.check_output("systemctl show -P MainPID %s", unit)


def cmdline(host, unit):
    """The arguments the unit's running process was started with."""
    pid = main_pid(host, unit)
    return host.check_output("tr '\\0' '\\n' < /proc/%s/cmdline", pid).splitlines()


def get(host, url, password=None):
    auth = f"-u prometheus:{shlex.quote(password)} " if password else ""
    return host.check_output(f"curl -fsS --max-time 10 {auth}{shlex.quote(url)}")


def get_yaml(host, url, *keys):
    document = yaml.safe_load(get(host, url))
    for key in keys:
        document = document[key]
    return yaml.safe_load(document) if isinstance(document, str) else document


def http_code(host, url, password=None):
    auth = f"-u prometheus:{shlex.quote(password)} " if password else ""
    return host.check_output(
        f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 10 {auth}{shlex.quote(url)}"
    )


def running_rule(host, alertname):
    groups = get_yaml(host, f"{PROMETHEUS}/api/v1/rules", "data", "groups")
    (query,) = [r["query"] for g in groups for r in g["rules"] if r["name"] == alertname]
    return query


def running_job(host, job_name):
    config = get_yaml(host, f"{PROMETHEUS}/api/v1/status/config", "data", "yaml")
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == job_name]
    return job


def running_receiver(host, name):
    config = get_yaml(host, f"{ALERTMANAGER}/api/v2/status", "config", "original")
    (receiver,) = [r for r in config["receivers"] if r["name"] == name]
    return receiver


def alertmanager_runs_its_file(host):
    """Whether alertmanager_config_hash is the file's (its MD5's first 48 bits, little-endian)."""
    md5 = host.check_output("md5sum /etc/alertmanager/alertmanager.yml").split()[0]
    expected = float(struct.unpack("<Q", bytes.fromhex(md5)[:6] + b"\0\0")[0])
    match = re.search(
        r"^alertmanager_config_hash (\S+)$", get(host, f"{ALERTMANAGER}/metrics"), re.M
    )
    return float(match.group(1)) == expected


def running_group_wait(host):
    return get_yaml(host, f"{ALERTMANAGER}/api/v2/status", "config", "original")["route"][
        "group_wait"
    ]


def blackbox_modules(host):
    return set(yaml.safe_load(get(host, f"{BLACKBOX}/config"))["modules"])


def relay_destinations_running(host):
    """The destinations of the relay's running configuration (its queues, one per target)."""
    return set(
        re.findall(
            r'^alert_relay_queue_depth\{target="([^"]+)"\}', get(host, f"{RELAY}/metrics"), re.M
        )
    )


def probe_targets(host):
    """{(probe, check)} of Prometheus' blackbox targets."""
    targets = get_yaml(host, f"{PROMETHEUS}/api/v1/targets", "data", "activeTargets")
    return {
        (t["labels"]["probe"], t["labels"]["check"])
        for t in targets
        if t["labels"]["job"] == "blackbox"
    }


def wait_for_probe_targets(host, condition, what):
    """Prometheus' blackbox targets once `condition` holds of them: a reload hands new
    targets to the scrape manager within seconds, not at once."""
    return wait_for(lambda: condition(probe_targets(host)), timeout=30, interval=1, what=what)


def package_installed(host, package):
    return host.run("dpkg-query -W -f '${Status}' %s", package).stdout == "install ok installed"


def remove_package(host, unit):
    """Remove the unit's package; a policy-rc.d keeps the service running meanwhile."""
    package = PACKAGES[unit]
    host.run_expect(
        [0],
        "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 0755 "
        "/usr/sbin/policy-rc.d && DEBIAN_FRONTEND=noninteractive apt-get remove -q -y %s; "
        "status=$?; rm -f /usr/sbin/policy-rc.d; exit $status",
        package,
    )
    assert not package_installed(host, package)
    assert host.service(unit).is_running


# --- The run of one tag, and its rerun ----------------------------------------------


def unit_changed(unit):
    return {
        f"monitoring_service : Install the hardened systemd unit of {unit}",
        f"monitoring_service : Restart for a new unit or binary: {unit}",
    }


def installed(unit):
    return {f"monitoring_service : Install the packages of {unit}"}


def reinstalled(unit):
    """A package installed for a running service: it restarts for the new binary."""
    return installed(unit) | {f"monitoring_service : Restart for a new unit or binary: {unit}"}


PROMETHEUS_YML = "prometheus : Put prometheus.yml live once promtool accepts it"
RULE_FILES = "prometheus : Put the alert rules live once promtool accepts them"
RELOAD_PROMETHEUS = "prometheus : Reload prometheus"
ALERTMANAGER_YML = "alertmanager : Validate Alertmanager's configuration and put it live"
RELOAD_ALERTMANAGER = "alertmanager : Reload alertmanager"
RELAY_YML = "alert_relay : Validate the relay's configuration and put it live"
RELOAD_RELAY = "alert_relay : Reload the alert relay"
BLACKBOX_YML = "blackbox_exporter : Put blackbox.yml live once the exporter accepts it"
RELOAD_BLACKBOX = "blackbox_exporter : Reload the blackbox exporter"
NODE_WEB = "node_exporter : Put node_exporter's web config, certificate and key live"
DOCKER_WEB = "docker_exporter : Put the Docker exporter's web config, certificate and key live"
REDIS_FILES = (
    "dragonflydb_exporter : Write the exporter's password file and its TLS and basic-auth files"
)
RESTART_REDIS = "dragonflydb_exporter : Restart redis_exporter for its new files"


def apply(host, tag, state, *, changed, restarted=(), reloaded=(), files=()):
    """Run site.yml with only `tag` and the settings `state`; check what changed.

    `changed`: the tasks that report a change; `restarted`, `reloaded`: the units whose
    process is new, and those that loaded a configuration in the same process; `files`:
    patterns of the files under CONFIG_DIRS that change (written or removed). Returns
    the run's output and how long it took.
    """
    state = copy.deepcopy(state)
    pids, loads, checksums = snapshot(host)
    started = time.monotonic()
    rc, output = run_playbook(SITE, "--tags", tag, extra_vars=state or None)
    took = time.monotonic() - started
    assert rc == 0, output
    STATE.clear()
    STATE.update(state)
    assert set(changed_tasks(output)) == set(changed), output

    new_pids, new_loads, new_checksums = snapshot(host)
    assert {u for u in UNITS if new_pids[u] != pids[u]} == set(restarted)
    assert {
        u for u in RELOADING if new_pids[u] == pids[u] and (new_loads[u] or 0) > (loads[u] or 0)
    } == set(reloaded)
    moved = {
        p
        for p in checksums.keys() | new_checksums.keys()
        if checksums.get(p) != new_checksums.get(p)
    }
    assert {p for p in moved if not any(fnmatch.fnmatch(p, f) for f in files)} == set()
    assert all(any(fnmatch.fnmatch(p, f) for p in moved) for f in files), (files, moved)
    print(f"--tags {tag}: {took:.1f} s")
    return output


def rerun(tag):
    """The same tag again on the host it converged: nothing changes."""
    started = time.monotonic()
    rc, output = run_playbook(SITE, "--tags", tag, extra_vars=STATE or None)
    assert rc == 0, output
    assert recap(output)["changed"] == 0, changed_tasks(output)
    print(f"--tags {tag} again: {time.monotonic() - started:.1f} s")


@pytest.fixture(scope="module", autouse=True)
def back_to_the_inventory(request, host):
    """Whatever happens, the stack ends as the inventory says."""
    STATE.clear()
    request.module.FAILED_BEFORE = request.session.testsfailed
    original = {"rule": running_rule(host, "HighRejectionRate")}
    yield original
    host.run("systemctl stop tag-test-redis; rm -f /usr/sbin/policy-rc.d")
    if STATE or request.session.testsfailed > request.module.FAILED_BEFORE:
        STATE.clear()
        rc, output = run_playbook(SITE)
        assert rc == 0, output


@pytest.fixture(autouse=True)
def in_order(request):
    """Each tag test builds on the state the previous one left: after a failure, skip."""
    if request.function in INDEPENDENT:
        return
    if request.session.testsfailed > request.module.FAILED_BEFORE:
        pytest.skip("an earlier tag test failed: the state this one builds on is unknown")


# --- node_exporter: the role (basic auth on), its web files, its unit, its package ----


def test_node_exporter_tag_installs_configures_and_restarts_it_once(host):
    remove_package(host, "prometheus-node-exporter")
    state = {**web_users("tag-test-1"), "node_exporter_collectors_disabled": ["entropy"]}

    apply(
        host,
        "node_exporter",
        state,
        changed=reinstalled("prometheus-node-exporter")
        | unit_changed("prometheus-node-exporter")
        | {NODE_WEB},
        restarted={"prometheus-node-exporter"},
        files={"/etc/prometheus-node-exporter/web/*", "*/prometheus-node-exporter.service"},
    )

    assert package_installed(host, "prometheus-node-exporter")
    wait_for(lambda: http_code(host, f"{NODE}/metrics") == "401", timeout=30, what="basic auth")
    metrics = get(host, f"{NODE}/metrics", "tag-test-1")
    assert 'collector="cpu"' in metrics
    assert 'collector="entropy"' not in metrics
    rerun("node_exporter")


def test_node_exporter_configure_tag_changes_its_password_without_a_restart(host):
    apply(
        host,
        "node_exporter_configure",
        {**STATE, **web_users("tag-test-2")},
        changed={NODE_WEB},
        files={"/etc/prometheus-node-exporter/web/*"},
    )

    assert http_code(host, f"{NODE}/metrics", "tag-test-2") == "200"
    assert http_code(host, f"{NODE}/metrics", "tag-test-1") == "401"
    rerun("node_exporter_configure")


def test_node_exporter_service_tag_changes_a_flag_with_a_restart(host):
    apply(
        host,
        "node_exporter_service",
        {**STATE, "node_exporter_collectors_disabled": ["entropy", "netstat"]},
        changed=unit_changed("prometheus-node-exporter"),
        restarted={"prometheus-node-exporter"},
        files={"*/prometheus-node-exporter.service"},
    )

    metrics = wait_for(
        lambda: host.run("curl -fsS -u prometheus:tag-test-2 %s/metrics", NODE).stdout, timeout=30
    )
    assert 'collector="netstat"' not in metrics
    assert "--no-collector.netstat" in cmdline(host, "prometheus-node-exporter")
    rerun("node_exporter_service")


def test_node_exporter_install_tag_installs_its_package_and_restarts_nothing(host):
    remove_package(host, "prometheus-node-exporter")

    apply(host, "node_exporter_install", STATE, changed=installed("prometheus-node-exporter"))

    assert package_installed(host, "prometheus-node-exporter")
    assert host.run("/usr/bin/prometheus-node-exporter --version").succeeded
    rerun("node_exporter_install")


# --- docker_exporter: the same, with its virtualenv's package ---------------------------


def test_docker_exporter_tag_installs_configures_and_restarts_it_once(host):
    remove_package(host, "docker-exporter")

    apply(
        host,
        "docker_exporter",
        {**STATE, "docker_exporter_log_level": "debug"},
        changed=reinstalled("docker-exporter") | unit_changed("docker-exporter") | {DOCKER_WEB},
        restarted={"docker-exporter"},
        files={"/etc/docker-exporter/web/*", "*/docker-exporter.service"},
    )

    assert package_installed(host, "python3-venv")
    wait_for(lambda: http_code(host, f"{DOCKER}/metrics") == "401", timeout=30, what="basic auth")
    assert "docker_container" in get(host, f"{DOCKER}/metrics", "tag-test-2")
    assert "--log.level=debug" in cmdline(host, "docker-exporter")
    rerun("docker_exporter")


def test_docker_exporter_configure_tag_changes_its_password_without_a_restart(host):
    apply(
        host,
        "docker_exporter_configure",
        {**STATE, **web_users("tag-test-3")},
        changed={DOCKER_WEB},
        files={"/etc/docker-exporter/web/*"},
    )

    assert http_code(host, f"{DOCKER}/metrics", "tag-test-3") == "200"
    assert http_code(host, f"{DOCKER}/metrics", "tag-test-2") == "401"
    # Only the Docker exporter's: node_exporter keeps the password it has.
    assert http_code(host, f"{NODE}/metrics", "tag-test-2") == "200"
    rerun("docker_exporter_configure")


def test_docker_exporter_service_tag_changes_a_flag_with_a_restart(host):
    apply(
        host,
        "docker_exporter_service",
        {**STATE, "docker_exporter_max_concurrency": 8},
        changed=unit_changed("docker-exporter"),
        restarted={"docker-exporter"},
        files={"*/docker-exporter.service"},
    )

    assert "--docker.max-concurrency=8" in cmdline(host, "docker-exporter")
    wait_for(
        lambda: http_code(host, f"{DOCKER}/metrics", "tag-test-3") == "200",
        timeout=30,
        what="the Docker exporter answering",
    )
    rerun("docker_exporter_service")


def test_docker_exporter_install_tag_installs_its_package_and_restarts_nothing(host):
    remove_package(host, "docker-exporter")

    apply(host, "docker_exporter_install", STATE, changed=installed("docker-exporter"))

    assert package_installed(host, "python3-venv")
    rerun("docker_exporter_install")


# --- exporters: every exporter, back to the inventory, a package, the probes' modules -


def test_exporters_tag_reconfigures_every_exporter_and_nothing_else(host):
    remove_package(host, "prometheus-redis-exporter")

    # Basic auth and the flags of node_exporter and the Docker exporter go back to the
    # inventory's, redis_exporter's package comes back, the blackbox exporter gets a module.
    apply(
        host,
        "exporters",
        blackbox_module("tag_test_m0"),
        changed=unit_changed("prometheus-node-exporter")
        | unit_changed("docker-exporter")
        | reinstalled("prometheus-redis-exporter")
        | {NODE_WEB, DOCKER_WEB, BLACKBOX_YML, RELOAD_BLACKBOX},
        restarted={"prometheus-node-exporter", "docker-exporter", "prometheus-redis-exporter"},
        reloaded={"prometheus-blackbox-exporter"},
        files={
            "/etc/prometheus-node-exporter/web/*",
            "/etc/docker-exporter/web/*",
            "*/prometheus-node-exporter.service",
            "*/docker-exporter.service",
            "/etc/prometheus-blackbox-exporter/blackbox.yml",
        },
    )

    assert package_installed(host, "prometheus-redis-exporter")
    metrics = wait_for(lambda: host.run("curl -fsS %s/metrics", NODE).stdout, timeout=30)
    assert 'collector="netstat"' in metrics and 'collector="entropy"' in metrics
    wait_for(lambda: http_code(host, f"{DOCKER}/metrics") == "200", timeout=30, what="no auth")
    assert "--log.level=info" in cmdline(host, "docker-exporter")
    assert "tag_test_m0" in blackbox_modules(host)
    rerun("exporters")


# --- dragonflydb_exporter: a target's password, a flag, its package, the role ----------


@pytest.fixture(scope="module")
def second_redis(host):
    """A Redis with a password: the target whose password only the password file holds."""
    host.run_expect(
        [0],
        f"systemd-run --unit tag-test-redis /usr/bin/redis-server --port {SECOND_REDIS_PORT} "
        "--requirepass tag-test-redis-pw --save '' --appendonly no",
    )
    wait_for(
        lambda: host.run(f"redis-cli -p {SECOND_REDIS_PORT} ping").succeeded,
        timeout=30,
        what="the second Redis",
    )
    yield f"{REDIS_EXPORTER}/scrape?target=redis://127.0.0.1:{SECOND_REDIS_PORT}"
    host.run("systemctl stop tag-test-redis")


def redis_up(host, url):
    return re.search(r"^redis_up (\S+)$", get(host, url), re.M).group(1)


def test_dragonflydb_exporter_configure_tag_restarts_it_for_a_new_password(host, second_redis):
    apply(
        host,
        "dragonflydb_exporter_configure",
        {**STATE, **dragonflydb_targets("tag-test-redis-pw")},
        # redis_exporter reads its password file only at start.
        changed={REDIS_FILES, RESTART_REDIS},
        restarted={"prometheus-redis-exporter"},
        files={"/etc/prometheus-redis-exporter/passwords.json"},
    )

    assert wait_for(lambda: host.run("curl -fsS %s", second_redis).succeeded, timeout=30)
    assert redis_up(host, second_redis) == "1"
    rerun("dragonflydb_exporter_configure")


def test_dragonflydb_exporter_service_tag_changes_a_flag_with_a_restart(host):
    apply(
        host,
        "dragonflydb_exporter_service",
        {**STATE, "dragonflydb_exporter_extra_flags": {"include-system-metrics": True}},
        changed=unit_changed("prometheus-redis-exporter"),
        restarted={"prometheus-redis-exporter"},
        files={"*/prometheus-redis-exporter.service"},
    )

    metrics = wait_for(lambda: host.run("curl -fsS %s/metrics", REDIS_EXPORTER).stdout, timeout=30)
    assert "redis_total_system_memory_bytes" in metrics
    rerun("dragonflydb_exporter_service")


def test_dragonflydb_exporter_install_tag_installs_its_package_and_restarts_nothing(host):
    remove_package(host, "prometheus-redis-exporter")

    apply(
        host, "dragonflydb_exporter_install", STATE, changed=installed("prometheus-redis-exporter")
    )

    assert package_installed(host, "prometheus-redis-exporter")
    rerun("dragonflydb_exporter_install")


def test_dragonflydb_exporter_tag_installs_configures_and_restarts_it_once(host, second_redis):
    remove_package(host, "prometheus-redis-exporter")

    # Back to the inventory's target and flags; one restart for the package, the
    # password file and the unit together (the handler has nothing left to do).
    apply(
        host,
        "dragonflydb_exporter",
        without(STATE, "dragonflydb_exporter_targets", "dragonflydb_exporter_extra_flags"),
        changed=reinstalled("prometheus-redis-exporter")
        | unit_changed("prometheus-redis-exporter")
        | {REDIS_FILES},
        restarted={"prometheus-redis-exporter"},
        files={
            "/etc/prometheus-redis-exporter/passwords.json",
            "*/prometheus-redis-exporter.service",
        },
    )

    assert package_installed(host, "prometheus-redis-exporter")
    metrics = wait_for(lambda: host.run("curl -fsS %s/metrics", REDIS_EXPORTER).stdout, timeout=30)
    assert "redis_total_system_memory_bytes" not in metrics
    assert redis_up(host, second_redis) == "0"
    rerun("dragonflydb_exporter")


# --- blackbox_exporter: a module, a flag, its package, the role --------------------------


def test_blackbox_exporter_configure_tag_reloads_a_new_module(host):
    apply(
        host,
        "blackbox_exporter_configure",
        {**STATE, **blackbox_module("tag_test_m1")},
        changed={BLACKBOX_YML, RELOAD_BLACKBOX},
        reloaded={"prometheus-blackbox-exporter"},
        files={"/etc/prometheus-blackbox-exporter/blackbox.yml"},
    )

    modules = blackbox_modules(host)
    assert "tag_test_m1" in modules and "tag_test_m0" not in modules
    rerun("blackbox_exporter_configure")


def test_blackbox_exporter_service_tag_changes_a_flag_with_a_restart(host):
    apply(
        host,
        "blackbox_exporter_service",
        {**STATE, "blackbox_exporter_extra_flags": {"log.level": "debug"}},
        changed=unit_changed("prometheus-blackbox-exporter"),
        restarted={"prometheus-blackbox-exporter"},
        files={"*/prometheus-blackbox-exporter.service"},
    )

    assert "--log.level=debug" in cmdline(host, "prometheus-blackbox-exporter")
    rerun("blackbox_exporter_service")


def test_blackbox_exporter_install_tag_installs_its_package_and_restarts_nothing(host):
    remove_package(host, "prometheus-blackbox-exporter")

    apply(
        host, "blackbox_exporter_install", STATE, changed=installed("prometheus-blackbox-exporter")
    )

    assert package_installed(host, "prometheus-blackbox-exporter")
    rerun("blackbox_exporter_install")


def test_blackbox_exporter_tag_installs_configures_and_restarts_it_once(host):
    remove_package(host, "prometheus-blackbox-exporter")

    apply(
        host,
        "blackbox_exporter",
        {
            **STATE,
            **blackbox_module("tag_test_m2"),
            "blackbox_exporter_extra_flags": {"log.level": "warn"},
        },
        changed=reinstalled("prometheus-blackbox-exporter")
        | unit_changed("prometheus-blackbox-exporter")
        | {BLACKBOX_YML, RELOAD_BLACKBOX},
        restarted={"prometheus-blackbox-exporter"},
        files={
            "/etc/prometheus-blackbox-exporter/blackbox.yml",
            "*/prometheus-blackbox-exporter.service",
        },
    )

    assert package_installed(host, "prometheus-blackbox-exporter")
    assert "--log.level=warn" in cmdline(host, "prometheus-blackbox-exporter")
    assert "tag_test_m2" in wait_for(lambda: blackbox_modules(host), timeout=30)
    rerun("blackbox_exporter")


# --- alert_relay: a destination, a flag, its virtualenv's package, the role -------------


STAND_IN = "http://127.0.0.1:8080/webhooks"


def test_alert_relay_configure_tag_checks_and_reloads_a_new_destination(host):
    apply(
        host,
        "alert_relay_configure",
        {**STATE, **relay_destinations(**{"tag-test": {"url": f"{STAND_IN}/relayed-tag-test"}})},
        changed={RELAY_YML, RELOAD_RELAY},
        reloaded={"alert-relay"},
        files={"/etc/alert-relay/alert-relay.yml"},
    )

    assert "tag-test" in relay_destinations_running(host)
    rerun("alert_relay_configure")


def test_alert_relay_service_tag_changes_a_flag_with_a_restart(host):
    apply(
        host,
        "alert_relay_service",
        {**STATE, "alert_relay_log_level": "debug"},
        changed=unit_changed("alert-relay"),
        restarted={"alert-relay"},
        files={"*/alert-relay.service"},
    )

    assert "--log.level=debug" in cmdline(host, "alert-relay")
    rerun("alert_relay_service")


def test_alert_relay_install_tag_installs_its_package_and_restarts_nothing(host):
    remove_package(host, "alert-relay")

    apply(host, "alert_relay_install", STATE, changed=installed("alert-relay"))

    assert package_installed(host, "python3-venv")
    rerun("alert_relay_install")


def test_alert_relay_tag_installs_configures_and_restarts_it_once(host):
    remove_package(host, "alert-relay")

    apply(
        host,
        "alert_relay",
        {
            **without(STATE, "alert_relay_log_level"),
            **relay_destinations(**{"tag-test-2": {"url": f"{STAND_IN}/relayed-tag-test-2"}}),
        },
        changed=reinstalled("alert-relay")
        | unit_changed("alert-relay")
        | {RELAY_YML, RELOAD_RELAY},
        restarted={"alert-relay"},
        files={"/etc/alert-relay/alert-relay.yml", "*/alert-relay.service"},
    )

    assert package_installed(host, "python3-venv")
    assert "--log.level=info" in cmdline(host, "alert-relay")
    destinations = relay_destinations_running(host)
    assert "tag-test-2" in destinations and "tag-test" not in destinations
    rerun("alert_relay")


# --- alertmanager: a routing setting, a flag, its package, the role ---------------------


def test_alertmanager_configure_tag_reloads_a_routing_setting(host):
    apply(
        host,
        "alertmanager_configure",
        {**STATE, "alertmanager_group_wait": "2s"},
        changed={ALERTMANAGER_YML, RELOAD_ALERTMANAGER},
        reloaded={"prometheus-alertmanager"},
        files={"/etc/alertmanager/alertmanager.yml"},
    )

    assert running_group_wait(host) == "2s"
    rerun("alertmanager_configure")


def test_alertmanager_service_tag_changes_a_flag_with_a_restart(host):
    apply(
        host,
        "alertmanager_service",
        {**STATE, "alertmanager_data_retention": "721h"},
        changed=unit_changed("prometheus-alertmanager"),
        restarted={"prometheus-alertmanager"},
        files={"*/prometheus-alertmanager.service"},
    )

    assert "--data.retention=721h" in cmdline(host, "prometheus-alertmanager")
    rerun("alertmanager_service")


def test_alertmanager_install_tag_installs_its_package_and_restarts_nothing(host):
    remove_package(host, "prometheus-alertmanager")

    apply(host, "alertmanager_install", STATE, changed=installed("prometheus-alertmanager"))

    assert package_installed(host, "prometheus-alertmanager")
    rerun("alertmanager_install")


def test_alertmanager_tag_installs_configures_and_restarts_it_once(host):
    remove_package(host, "prometheus-alertmanager")

    apply(
        host,
        "alertmanager",
        {**without(STATE, "alertmanager_data_retention"), "alertmanager_group_wait": "3s"},
        changed=reinstalled("prometheus-alertmanager")
        | unit_changed("prometheus-alertmanager")
        | {ALERTMANAGER_YML, RELOAD_ALERTMANAGER},
        restarted={"prometheus-alertmanager"},
        files={"/etc/alertmanager/alertmanager.yml", "*/prometheus-alertmanager.service"},
    )

    assert package_installed(host, "prometheus-alertmanager")
    assert "--data.retention=721h" not in cmdline(host, "prometheus-alertmanager")
    assert running_group_wait(host) == "3s"
    rerun("alertmanager")


# --- prometheus: a threshold and a scrape setting, a flag, its package, the role --------


def retention(host):
    flags = get_yaml(host, f"{PROMETHEUS}/api/v1/status/flags", "data")
    return flags["storage.tsdb.retention.time"]


def test_prometheus_configure_tag_reloads_a_threshold_and_a_scrape_setting(host):
    probe, name = named_probe(host)

    # And a probe's targets (not its module: blackbox.yml is the blackbox exporter's).
    apply(
        host,
        "prometheus_configure",
        {**STATE, **threshold(97), **scrape_interval("6s"), **http_probes(probe)},
        changed={PROMETHEUS_YML, RULE_FILES, RELOAD_PROMETHEUS},
        reloaded={"prometheus"},
        files={"/etc/prometheus/prometheus.yml", "/etc/prometheus/rules/trading-bot.yml"},
    )

    assert "trading_bot_rejection_rate > 97" in running_rule(host, "HighRejectionRate")
    assert running_job(host, "data-consumer")["scrape_interval"] == "6s"
    wait_for_probe_targets(
        host,
        lambda targets: {("tag-test-named", "http"), (name, "dns")} <= targets,
        "the probe's targets",
    )
    rerun("prometheus_configure")


def test_prometheus_service_tag_changes_a_flag_with_a_restart(host):
    apply(
        host,
        "prometheus_service",
        {**STATE, "prometheus_retention_time": "16d"},
        changed=unit_changed("prometheus"),
        restarted={"prometheus"},
        files={"*/prometheus.service"},
    )

    assert wait_for(lambda: host.run("curl -fsS %s/-/ready", PROMETHEUS).succeeded, timeout=60)
    assert retention(host) == "16d"
    rerun("prometheus_service")


def test_prometheus_install_tag_installs_its_package_and_restarts_nothing(host):
    remove_package(host, "prometheus")

    apply(host, "prometheus_install", STATE, changed=installed("prometheus"))

    assert package_installed(host, "prometheus")
    rerun("prometheus_install")


def test_prometheus_tag_installs_configures_and_restarts_it_once(host):
    remove_package(host, "prometheus")

    apply(
        host,
        "prometheus",
        {**without(STATE, "prometheus_retention_time"), **threshold(96), **scrape_interval("7s")},
        changed=reinstalled("prometheus")
        | unit_changed("prometheus")
        | {PROMETHEUS_YML, RULE_FILES, RELOAD_PROMETHEUS},
        restarted={"prometheus"},
        files={
            "/etc/prometheus/prometheus.yml",
            "/etc/prometheus/rules/trading-bot.yml",
            "*/prometheus.service",
        },
    )

    assert package_installed(host, "prometheus")
    assert retention(host) == "15d"
    assert "trading_bot_rejection_rate > 96" in running_rule(host, "HighRejectionRate")
    assert running_job(host, "data-consumer")["scrape_interval"] == "7s"
    rerun("prometheus")


# --- rules, prometheus_config, routing -------------------------------------------------


def test_rules_tag_reloads_a_threshold_and_touches_nothing_else(host):
    apply(
        host,
        "rules",
        {**STATE, **threshold(94)},
        changed={RULE_FILES, RELOAD_PROMETHEUS},
        reloaded={"prometheus"},
        files={"/etc/prometheus/rules/trading-bot.yml"},
    )

    assert "trading_bot_rejection_rate > 94" in running_rule(host, "HighRejectionRate")
    rerun("rules")


def test_prometheus_config_tag_reloads_a_scrape_setting_and_a_probe(host):
    apply(
        host,
        "prometheus_config",
        {
            **STATE,
            **scrape_interval("8s"),
            **http_probes(named_probe(host)[0], HTTP_PROBE),
        },
        changed={PROMETHEUS_YML, RELOAD_PROMETHEUS, BLACKBOX_YML, RELOAD_BLACKBOX},
        reloaded={"prometheus", "prometheus-blackbox-exporter"},
        files={"/etc/prometheus/prometheus.yml", "/etc/prometheus-blackbox-exporter/blackbox.yml"},
    )

    assert running_job(host, "data-consumer")["scrape_interval"] == "8s"
    # The new probe's module, and the DNS module of the probe prometheus_configure added.
    assert {"http_tag-test", f"dns_{named_probe(host)[1]}"} <= blackbox_modules(host)
    wait_for_probe_targets(host, lambda targets: ("tag-test", "http") in targets, "its target")
    rerun("prometheus_config")


# A receiver's new host: a name (the probes resolve it, DNS probe included), which
# nothing needs to reach while the test runs.
RECEIVER_HOST = "tag-test.invalid"


def test_routing_applies_a_receiver_a_relay_destination_and_the_probes_that_follow(host):
    relay = relay_destinations(
        **{
            "tag-test-2": {"url": f"{STAND_IN}/relayed-tag-test-2"},
            "tag-test-3": {"url": "http://localhost:8080/webhooks/relayed-tag-test-3"},
        }
    )
    apply(
        host,
        "routing",
        {
            **STATE,
            **receiver_url(
                "trading-bot-alerts", f"http://{RECEIVER_HOST}:8080/webhooks/trading-bot"
            ),
            **relay,
        },
        changed={
            ALERTMANAGER_YML,
            RELOAD_ALERTMANAGER,
            RELAY_YML,
            RELOAD_RELAY,
            BLACKBOX_YML,
            RELOAD_BLACKBOX,
            PROMETHEUS_YML,
            RELOAD_PROMETHEUS,
        },
        reloaded={
            "prometheus-alertmanager",
            "alert-relay",
            "prometheus-blackbox-exporter",
            "prometheus",
        },
        files={
            "/etc/alertmanager/alertmanager.yml",
            "/etc/alert-relay/alert-relay.yml",
            "/etc/prometheus-blackbox-exporter/blackbox.yml",
            "/etc/prometheus/prometheus.yml",
        },
    )

    # Alertmanager 0.27 and later show a webhook's URL as <secret>: its config hash tells.
    receiver = running_receiver(host, "trading-bot-alerts")
    url = f"http://{RECEIVER_HOST}:8080/webhooks/trading-bot"
    assert receiver["webhook_configs"][0]["url"] in (url, "<secret>")
    assert alertmanager_runs_its_file(host)
    assert "tag-test-3" in relay_destinations_running(host)
    assert f"dns_{RECEIVER_HOST}" in blackbox_modules(host)
    expected = {
        (f"webhook-{RECEIVER_HOST}-8080", "connect"),
        (RECEIVER_HOST, "dns"),
        ("relay-localhost-8080", "connect"),
    }
    wait_for_probe_targets(host, lambda targets: expected <= targets, "the probes' targets")
    rerun("routing")


# --- monitoring: every monitoring service back to the inventory, a package -------------


def test_monitoring_tag_puts_every_monitoring_service_back_restarting_only_the_new_unit(
    host, back_to_the_inventory
):
    remove_package(host, "prometheus-blackbox-exporter")

    # Everything the tests above left differs from the inventory: the blackbox
    # exporter's module and flag, the relay's destinations, Alertmanager's receiver and
    # group_wait, Prometheus' threshold, scrape interval and probe. Only the blackbox
    # exporter restarts (its unit and its package); the others reload.
    apply(
        host,
        "monitoring",
        {},
        changed=reinstalled("prometheus-blackbox-exporter")
        | unit_changed("prometheus-blackbox-exporter")
        | {
            BLACKBOX_YML,
            RELOAD_BLACKBOX,
            RELAY_YML,
            RELOAD_RELAY,
            ALERTMANAGER_YML,
            RELOAD_ALERTMANAGER,
            PROMETHEUS_YML,
            RULE_FILES,
            RELOAD_PROMETHEUS,
        },
        restarted={"prometheus-blackbox-exporter"},
        reloaded={"alert-relay", "prometheus-alertmanager", "prometheus"},
        files={
            "/etc/prometheus-blackbox-exporter/blackbox.yml",
            "*/prometheus-blackbox-exporter.service",
            "/etc/alert-relay/alert-relay.yml",
            "/etc/alertmanager/alertmanager.yml",
            "/etc/prometheus/prometheus.yml",
            "/etc/prometheus/rules/trading-bot.yml",
        },
    )

    assert package_installed(host, "prometheus-blackbox-exporter")
    assert not any(
        a.startswith("--log.level") for a in cmdline(host, "prometheus-blackbox-exporter")
    )
    assert not {m for m in wait_for(lambda: blackbox_modules(host), timeout=30) if "tag" in m}
    assert relay_destinations_running(host) == {"stand-in"}
    assert running_group_wait(host) == SCENARIO["alertmanager_group_wait"]
    assert running_rule(host, "HighRejectionRate") == back_to_the_inventory["rule"]
    assert (
        running_job(host, "data-consumer")["scrape_interval"]
        == SCENARIO["prometheus_scrape_interval"]
    )
    name = named_probe(host)[1]
    wait_for_probe_targets(
        host,
        lambda targets: not {p for p in targets if "tag-test" in p[0] or p[0] == name},
        "no probe target of the tests",
    )
    rerun("monitoring")


def test_after_every_tag_site_yml_changes_nothing(host):
    rc, output = run_playbook(SITE)

    assert rc == 0, output
    assert recap(output)["changed"] == 0, changed_tasks(output)


# --- For the archive scenario ----------------------------------------------------------
# test_archive.py runs three of these checks on release-archive installs: each from the
# inventory's settings, and back to them after.


def standalone(host, check, tag):
    STATE.clear()
    try:
        check(host)
    finally:
        STATE.clear()
        rc, output = run_playbook(SITE, "--tags", tag)
        assert rc == 0, output


def rules_tag_contract(host):
    standalone(host, test_rules_tag_reloads_a_threshold_and_touches_nothing_else, "rules")


def routing_tag_contract(host):
    standalone(
        host,
        test_routing_applies_a_receiver_a_relay_destination_and_the_probes_that_follow,
        "routing",
    )


def exporters_tag_contract(host):
    """A flag of node_exporter (its unit: one restart) and a module of the blackbox
    exporter (reloaded); nothing else changes."""

    def check(host):
        apply(
            host,
            "exporters",
            {"node_exporter_collectors_disabled": ["entropy"], **blackbox_module("tag_test_m0")},
            changed=unit_changed("prometheus-node-exporter") | {BLACKBOX_YML, RELOAD_BLACKBOX},
            restarted={"prometheus-node-exporter"},
            reloaded={"prometheus-blackbox-exporter"},
            files={
                "*/prometheus-node-exporter.service",
                "/etc/prometheus-blackbox-exporter/blackbox.yml",
            },
        )
        assert "--no-collector.entropy" in cmdline(host, "prometheus-node-exporter")
        assert "tag_test_m0" in blackbox_modules(host)
        rerun("exporters")

    standalone(host, check, "exporters")


# --- A file whose time moves without a change is no drift ------------------------------
# verify.yml compares what the services loaded with the files' content: touch, a
# backup tool or a restore of the same file changes nothing that a rerun of site.yml
# would put live, and verify.yml agrees; a change by hand is named.

VERIFY = "playbooks/verify.yml"
RULE_FILE = "/etc/prometheus/rules/trading-bot.yml"
PROMETHEUS_CONFIG = "/etc/prometheus/prometheus.yml"
ALERTMANAGER_CONFIG = "/etc/alertmanager/alertmanager.yml"
TEMPLATE = "/etc/alertmanager/templates/custom.tmpl"


def test_touched_files_are_no_drift_and_files_changed_by_hand_are_named(host):
    time.sleep(1)  # after the services' last reload, to the second
    host.run_expect([0], f"touch {RULE_FILE} {PROMETHEUS_CONFIG} {ALERTMANAGER_CONFIG} {TEMPLATE}")

    rc, output = run_playbook(VERIFY, "--tags", "drift")

    assert rc == 0, output
    assert "Prometheus runs the configuration on disk" in output
    assert "Alertmanager runs the configuration on disk" in output
    # And site.yml agrees: nothing to put live, nothing to reload.
    rc, output = run_playbook(SITE, "--tags", "rules,prometheus_config,routing")
    assert rc == 0, output
    assert recap(output)["changed"] == 0, changed_tasks(output)

    try:
        host.run_expect(
            [0],
            f"sed -i '0,/group_wait: 1s/s//group_wait: 9s/' {ALERTMANAGER_CONFIG} && "
            f"sed -i 's/^  scrape_timeout: 4s$/  scrape_timeout: 3s/' {PROMETHEUS_CONFIG} && "
            f"echo '{{{{/* edited by hand */}}}}' >> {TEMPLATE}",
        )

        rc, output = run_playbook(VERIFY, "--tags", "drift")

        assert rc != 0, output
        output = output.replace('\\"', '"')
        assert f"{PROMETHEUS_CONFIG}: global.scrape_timeout: 3s on disk, 4s running" in output
        assert "route.group_wait: 9s on disk, 1s running" in output
        assert (
            f"{TEMPLATE}: modified after the last successful reload, and not the content "
            "recorded then" in output
        )
        # The rule file, touched only, is not named.
        assert RULE_FILE not in output
    finally:
        rc, output = run_playbook(SITE, "--tags", "prometheus_config,routing")
        assert rc == 0, output
    rc, output = run_playbook(VERIFY, "--tags", "drift")
    assert rc == 0, output


# Not part of the chain of tag tests: they run whatever happened before.
INDEPENDENT = (test_touched_files_are_no_drift_and_files_changed_by_hand_are_named,)
