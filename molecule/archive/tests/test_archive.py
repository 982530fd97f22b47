"""site.yml with every role from release archives (the scenario's local mirror).

The stack scenario's checks run unchanged (imported from its test module),
then what the archive method promises: the services run the archives'
binaries with no Debian package installed; a rerun downloads, copies and
changes nothing; a tampered archive, an unreachable URL and an unknown CPU
fail before the target changes; an upgrade restarts each service once; a
downgrade is refused unless allowed; a switch to the package and back keeps
one copy running and its data. Tests run in this file's order: each later
one starts from the state the earlier ones left.
"""

import hashlib
import importlib.util
import json
import os
import time

import pytest
from molecule_helpers import (
    PROJECT,
    changed_tasks,
    file_checksums,
    get_json,
    recap,
    run_playbook,
    wait_for,
)

SITE = "molecule/archive/converge.yml"
RELEASE = os.environ.get("MOLECULE_DISTRO") or "bookworm"
MIRROR_OUT = PROJECT / "build" / "archive-mirror"
MIRROR = MIRROR_OUT / RELEASE
ACCESS_LOG = MIRROR_OUT / "access.log"
CACHE = MIRROR_OUT / f"cache-{RELEASE}"
VERSIONS = json.loads((MIRROR / "versions.json").read_text())
INSTALL_ROOT = "/opt/prometheus-alerting"
MIRROR_URL = f"http://127.0.0.1:{os.environ.get('ARCHIVE_MIRROR_PORT') or 18931}"
ALERTMANAGER = "http://127.0.0.1:9093"
PROMETHEUS = "http://127.0.0.1:9090"

# role -> unit, install name under INSTALL_ROOT, binary, Debian package
SERVICES = {
    "node_exporter": ("prometheus-node-exporter", "node_exporter", "node_exporter"),
    "prometheus": ("prometheus", "prometheus", "prometheus"),
    "alertmanager": ("prometheus-alertmanager", "alertmanager", "alertmanager"),
    "dragonflydb_exporter": ("prometheus-redis-exporter", "redis_exporter", "redis_exporter"),
}
PACKAGES = {
    "node_exporter": "prometheus-node-exporter",
    "prometheus": "prometheus",
    "alertmanager": "prometheus-alertmanager",
    "dragonflydb_exporter": "prometheus-redis-exporter",
}
PROJECTS = {
    "node_exporter": "prometheus/node_exporter",
    "prometheus": "prometheus/prometheus",
    "alertmanager": "prometheus/alertmanager",
    "dragonflydb_exporter": "oliver006/redis_exporter",
}
EXTRA_BINARIES = {"prometheus": ["promtool"], "alertmanager": ["amtool"]}
UPGRADE = {f"{role}_version": VERSIONS[role]["upgrade"] for role in SERVICES}
# The versions the inventory should be run with from here on: tests that
# change one (upgrade, downgrade) record it for the tests after them.
current = {f"{role}_version": VERSIONS[role]["base"] for role in SERVICES}


def load_stack_tests(name="test_stack.py", scenario="stack"):
    """A test module of the stack scenario (or the tags scenario, on the same host):
    its checks hold for archive installs too."""
    path = PROJECT / "molecule" / scenario / "tests" / name
    spec = importlib.util.spec_from_file_location(f"{scenario}_scenario_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stack = load_stack_tests()
catalog_metrics_tests = load_stack_tests("test_catalog_metrics.py")
tag_tests = load_stack_tests("test_tags.py", scenario="tags")
# Autouse, module-scoped: every scrape target is up before the first test.
targets_up = stack.targets_up
main_pid = stack.main_pid


def executable(host, unit):
    """The binary a unit's main process runs (its argv[0]: /proc/PID/exe needs ptrace)."""
    return host.check_output("tr '\\0' '\\n' < /proc/%s/cmdline | head -n 1", main_pid(host, unit))


def archive_path(role, version, binary=None):
    _unit, name, main_binary = SERVICES[role]
    return f"{INSTALL_ROOT}/{name}/{version}/{binary or main_binary}"


def package_installed(host, package):
    result = host.run("dpkg-query -W -f '${db:Status-Status}' %s", package)
    return result.rc == 0 and result.stdout == "installed"


def running_copies(host, binaries):
    """How many processes run one of `binaries` (paths), by their argv[0]."""
    output = host.check_output(
        "for cmdline in /proc/[0-9]*/cmdline; do"
        " tr '\\0' '\\n' < $cmdline 2>/dev/null | head -n 1; done | sort | uniq -c"
    )
    counts = {line.split()[1]: int(line.split()[0]) for line in output.splitlines()}
    return sum(counts.get(path, 0) for path in binaries)


def downloads():
    """Paths the mirror served, in order (its access log)."""
    return [line.split()[2] for line in ACCESS_LOG.read_text().splitlines() if " GET " in line]


def cache_state():
    return {
        str(path.relative_to(CACHE)): (path.stat().st_mtime_ns, path.stat().st_size)
        for path in sorted(CACHE.rglob("*"))
    }


def target_state(host):
    """What must not change when a run fails: installs, units, configs, running PIDs."""
    return (
        {d: file_checksums(host, d) for d in (INSTALL_ROOT, stack.UNITS, *stack.CONFIG_DIRS)},
        {unit: main_pid(host, unit) for unit, _name, _binary in SERVICES.values()},
    )


def archive_file(role, version):
    """The archive's path in the mirror and its URL path."""
    (path,) = (MIRROR / PROJECTS[role] / "releases" / "download" / f"v{version}").glob("*.tar.gz")
    return path, "/" + str(path.relative_to(MIRROR))


def one_line(text):
    """Ansible's YAML output folds long messages: compare them with whitespace normalised."""
    return " ".join(text.split())


def all_targets_up(host):
    def up():
        targets = get_json(host, f"{PROMETHEUS}/api/v1/targets")["data"]["activeTargets"]
        return targets and all(target["health"] == "up" for target in targets)

    wait_for(up, timeout=90, what="every target up")


def starts_since(host, unit, since):
    """How often systemd started `unit` since the epoch time `since`."""
    output = host.check_output(
        "journalctl --no-pager -o cat -u %s --since @%s", f"{unit}.service", str(int(since))
    )
    return sum(1 for line in output.splitlines() if line.startswith("Started "))


# --- The converged state ---------------------------------------------------------


def test_each_service_runs_its_archive_binary_and_no_debian_package_is_installed(host):
    for role, (unit, _name, _binary) in SERVICES.items():
        version = VERSIONS[role]["base"]
        assert executable(host, unit) == archive_path(role, version)
        for binary in [SERVICES[role][2], *EXTRA_BINARIES.get(role, [])]:
            installed = host.file(archive_path(role, version, binary))
            assert (installed.user, installed.group, installed.mode) == ("root", "root", 0o755)
        assert not package_installed(host, PACKAGES[role])
        assert (
            host.check_output("systemctl show -P FragmentPath %s", unit)
            == f"{stack.UNITS}/{unit}.service"
        )
    # Debian's Alertmanager build reads its default templates from disk.
    template = host.file("/usr/share/prometheus/alertmanager/default.tmpl")
    assert (template.user, template.mode) == ("root", 0o644)


def test_the_first_converge_fetched_each_archive_once_into_the_cache():
    served = downloads()
    for role in SERVICES:
        archive, url_path = archive_file(role, VERSIONS[role]["base"])
        assert served.count(url_path) == 1, served
        assert (CACHE / archive.name).read_bytes() == archive.read_bytes()


def test_a_rerun_downloads_nothing_copies_nothing_and_changes_nothing(host):
    cache, served = cache_state(), len(downloads())
    installs = host.check_output("find %s -printf '%%p %%T@\\n' | sort", INSTALL_ROOT)

    started = time.monotonic()
    rc, output = run_playbook(SITE)
    elapsed = time.monotonic() - started

    assert rc == 0, output
    assert recap(output)["changed"] == 0
    # For the record (build/molecule/archive-rerun.txt); the machine is shared.
    (PROJECT / "build" / "molecule" / "archive-rerun.txt").write_text(
        f"no-change rerun of site.yml with every role on archive: {elapsed:.1f} s\n"
    )
    # Skipped tasks are not shown: neither the controller's half nor the copies ran.
    assert "Fetch and verify on the controller" not in output
    assert "Install the binaries of" not in output
    assert len(downloads()) == served
    assert cache_state() == cache
    assert host.check_output("find %s -printf '%%p %%T@\\n' | sort", INSTALL_ROOT) == installs


# --- The stack scenario's checks, unchanged ----------------------------------------


def test_every_scrape_target_is_up(targets_up):
    stack.test_every_scrape_target_is_up(targets_up)


def test_every_rule_group_is_loaded_and_healthy(host):
    stack.test_every_rule_group_is_loaded_and_healthy(host)


def test_only_the_watchdog_fires_on_a_healthy_stack(host):
    stack.test_only_the_watchdog_fires_on_a_healthy_stack(host)


def test_stopped_node_exporter_pages_and_recovers(host):
    stack.test_stopped_node_exporter_pages_and_recovers(host)


def test_stopped_redis_raises_the_dragonflydb_connection_alert(host):
    stack.test_stopped_redis_raises_the_dragonflydb_connection_alert(host)


def test_a_container_exiting_with_an_error_raises_configuration_error(host):
    stack.test_a_container_exiting_with_an_error_raises_configuration_error(host)


def test_rules_tag_touches_only_rule_files_and_reloads_prometheus(host):
    tag_tests.rules_tag_contract(host)


def test_routing_tag_touches_only_alertmanager_and_reloads_it(host):
    tag_tests.routing_tag_contract(host)


def test_exporters_tag_reconfigures_exporters_only(host):
    tag_tests.exporters_tag_contract(host)


def test_every_metric_the_catalog_reads_is_served_by_the_releases(host):
    """Upstream's releases (Debian 13's versions) serve every metric an alert reads."""
    for prefix, url in catalog_metrics_tests.SERVICES:
        catalog_metrics_tests.test_every_metric_the_catalog_reads_is_served(host, prefix, url)


# --- Failures before anything changes ---------------------------------------------


def tampered_message():
    """The message a tampered archive must fail with, and the archive's file name."""
    archive, url_path = archive_file("node_exporter", VERSIONS["node_exporter"]["tampered"])
    sums = archive.parent / "sha256sums.txt"
    expected = sums.read_text().split()[0]
    actual = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert expected != actual
    sums_url = f"{MIRROR_URL}/{sums.relative_to(MIRROR)}"
    return (
        f"SHA-256 mismatch for {MIRROR_URL}{url_path}: expected {expected} ({sums_url}), "
        f"actual {actual}",
        archive.name,
    )


@pytest.mark.parametrize(
    "case",
    ["tampered-archive", "unreachable-url", "unknown-cpu"],
)
def test_a_bad_archive_fails_before_the_target_changes(host, case):
    base = VERSIONS["node_exporter"]["base"]
    if case == "tampered-archive":
        extra = {"node_exporter_version": VERSIONS["node_exporter"]["tampered"]}
        expected, kept_out_of_cache = tampered_message()
    elif case == "unreachable-url":
        # A release that is not on the mirror, with a pinned checksum: the
        # archive's own URL is what fails.
        extra = {
            "node_exporter_version": "9.9.9",
            "node_exporter_archive_checksum": "sha256:" + "0" * 64,
        }
        url = (
            f"{MIRROR_URL}/prometheus/node_exporter/releases/download/"
            "v9.9.9/node_exporter-9.9.9.linux-amd64.tar.gz"
        )
        expected = f"Cannot download {url}: HTTP Error 404"
        kept_out_of_cache = "node_exporter-9.9.9"
    else:
        extra = {
            "node_exporter_version": VERSIONS["node_exporter"]["upgrade"],
            "monitoring_service_archive_architectures": {"aarch64": "arm64"},
        }
        expected = "(x86_64): monitoring_service_archive_architectures does not list it"
        kept_out_of_cache = f"node_exporter-{VERSIONS['node_exporter']['upgrade']}"
    before = target_state(host)

    rc, output = run_playbook(SITE, "--tags", "node_exporter", extra_vars={**current, **extra})

    assert rc != 0
    assert one_line(expected) in one_line(output), output
    assert target_state(host) == before
    assert executable(host, "prometheus-node-exporter") == archive_path("node_exporter", base)
    # Neither the archive nor anything unpacked from it (lock files aside).
    assert not [n for n in os.listdir(CACHE) if kept_out_of_cache in n and not n.startswith(".")]


# --- Upgrade, downgrade ----------------------------------------------------------------


def test_an_upgrade_restarts_each_service_once(host):
    pids = {unit: main_pid(host, unit) for unit, _name, _binary in SERVICES.values()}
    since = float(host.check_output("date +%s.%N")) + 0.001

    rc, output = run_playbook(SITE, extra_vars=UPGRADE)

    assert rc == 0, output
    current.update(UPGRADE)
    restarts = [task for task in changed_tasks(output) if "Restart for a new unit" in task]
    assert sorted(restarts) == sorted(
        f"monitoring_service : Restart for a new unit or binary: {unit}"
        for unit, _name, _binary in SERVICES.values()
    )
    for role, (unit, name, _binary) in SERVICES.items():
        assert main_pid(host, unit) != pids[unit]
        assert starts_since(host, unit, since) == 1, unit
        assert executable(host, unit) == archive_path(role, VERSIONS[role]["upgrade"])
        # Only the version the unit runs is left.
        assert host.file(f"{INSTALL_ROOT}/{name}").listdir() == [VERSIONS[role]["upgrade"]]
    served = downloads()
    for role in SERVICES:
        assert served.count(archive_file(role, VERSIONS[role]["upgrade"])[1]) == 1
    all_targets_up(host)


def test_a_downgrade_is_refused_unless_allowed(host):
    base, upgrade = VERSIONS["prometheus"]["base"], VERSIONS["prometheus"]["upgrade"]
    before = target_state(host)
    served = len(downloads())

    rc, output = run_playbook(
        SITE, "--tags", "prometheus", extra_vars={**current, "prometheus_version": base}
    )

    assert rc != 0
    assert f"Refusing to downgrade prometheus from {upgrade} to {base}" in one_line(output)
    assert "Set prometheus_allow_downgrade: true to downgrade anyway" in one_line(output)
    assert target_state(host) == before

    pid = main_pid(host, "prometheus")
    rc, output = run_playbook(
        SITE,
        "--tags",
        "prometheus",
        extra_vars={**current, "prometheus_version": base, "prometheus_allow_downgrade": True},
    )

    assert rc == 0, output
    current["prometheus_version"] = base
    assert executable(host, "prometheus") == archive_path("prometheus", base)
    assert main_pid(host, "prometheus") != pid
    assert (
        changed_tasks(output).count(
            "monitoring_service : Restart for a new unit or binary: prometheus"
        )
        == 1
    )
    # The base archive is still in the controller's cache: only its checksums
    # file is read again.
    assert [path for path in downloads()[served:] if path.endswith(".tar.gz")] == []


# --- Switching methods ----------------------------------------------------------------


def test_switching_alertmanager_to_the_package_and_back_keeps_one_copy_and_its_silences(host):
    package_binary = "/usr/bin/prometheus-alertmanager"
    archive_binary = archive_path("alertmanager", current["alertmanager_version"])
    silence = json.loads(
        host.check_output(
            "curl -fsS -X POST -H 'Content-Type: application/json' -d %s %s/api/v2/silences",
            json.dumps(
                {
                    "matchers": [{"name": "alertname", "value": "ArchiveSwitch", "isRegex": False}],
                    "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600)),
                    "createdBy": "test_archive",
                    "comment": "kept across install methods",
                }
            ),
            ALERTMANAGER,
        )
    )["silenceID"]
    config = file_checksums(host, "/etc/alertmanager")

    def silence_kept():
        state = get_json(host, f"{ALERTMANAGER}/api/v2/silence/{silence}")["status"]["state"]
        return state == "active"

    to_package = {**current, "alertmanager_install_method": "package"}
    rc, output = run_playbook(SITE, "--tags", "alertmanager", extra_vars=to_package)

    assert rc == 0, output
    assert package_installed(host, "prometheus-alertmanager")
    assert executable(host, "prometheus-alertmanager") == package_binary
    assert running_copies(host, [package_binary, archive_binary]) == 1
    assert not host.file(f"{INSTALL_ROOT}/alertmanager").exists
    assert wait_for(silence_kept, timeout=30, what="the silence after the switch to the package")
    assert file_checksums(host, "/etc/alertmanager") == config

    rc, output = run_playbook(SITE, "--tags", "alertmanager", extra_vars=current)

    assert rc == 0, output
    assert executable(host, "prometheus-alertmanager") == archive_binary
    assert running_copies(host, [package_binary, archive_binary]) == 1
    # The package stays installed; the role's unit of the same name shadows its own.
    assert (
        host.check_output("systemctl show -P FragmentPath prometheus-alertmanager")
        == f"{stack.UNITS}/prometheus-alertmanager.service"
    )
    assert wait_for(silence_kept, timeout=30, what="the silence after the switch back")
    assert file_checksums(host, "/etc/alertmanager") == config


def test_after_all_of_it_a_rerun_changes_nothing(host):
    rc, output = run_playbook(SITE, extra_vars=current)

    assert rc == 0, output
    assert recap(output)["changed"] == 0
    all_targets_up(host)
