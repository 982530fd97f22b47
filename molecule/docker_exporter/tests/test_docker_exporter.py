"""The docker_exporter role: the exporter runs from its versioned virtualenv, in
the socket's group, and reports the CI host's containers; a new version is
switched to atomically; the engine's metrics endpoint is turned on without
stopping a container (on the target's own engine, see prepare.yml)."""

import json
import re
import shutil
import time
from pathlib import Path

import pytest
from molecule_helpers import PROJECT, changed_tasks, get_text, recap, run_playbook, wait_for
from molecule_helpers import exited_container as exited_container_of

METRICS_URL = "http://127.0.0.1:9417/metrics"
CONVERGE = "molecule/docker_exporter/converge.yml"
INSTALL_ROOT = "/opt/prometheus-alerting/docker-exporter"
UNIT = "/etc/systemd/system/docker-exporter.service"

# The target's own engine (prepare.yml), and the role's variables pointed at
# it: only with --tags docker_exporter_configure, so the exporter's unit,
# which reads the CI host's engine, is not touched.
INNER = "unix:///run/inner-docker.sock"
INNER_ENGINE = {
    "docker_exporter_engine_metrics": True,
    "docker_exporter_socket_path": "/run/inner-docker.sock",
    "docker_exporter_docker_host": INNER,
}
# What prepare.yml configures the inner engine with: the role must keep it.
PREPARED = {"storage-driver": "vfs", "iptables": False, "bridge": "none"}


@pytest.fixture(scope="module")
def exited_container():
    with exited_container_of("dxrole-exited") as name:
        yield name


def series(metrics, name, container):
    pattern = rf'^{name}\{{[^}}]*name="{re.escape(container)}"[^}}]*\}} (\S+)$'
    return [float(v) for v in re.findall(pattern, metrics, re.MULTILINE)]


def main_pid(host, unit):
    return host.check_output("systemctl show -P MainPID %s", unit)


def running_executable(host):
    pid = main_pid(host, "docker-exporter")
    return host.file(f"/proc/{pid}/cmdline").content_string.split("\0")


def test_runs_from_its_versioned_virtualenv_as_its_own_user(host):
    service = host.service("docker-exporter")
    assert service.is_running and service.is_enabled
    pid = main_pid(host, "docker-exporter")
    assert host.check_output("stat -c %%U /proc/%s", pid) == "docker-exporter"
    # <root>/<sources hash>-py<python>/venv; the only version on the host.
    python = host.check_output("python3 -c 'import sys; print(sys.version_info[0:2])'")
    major, minor = re.findall(r"\d+", python)
    argv = running_executable(host)
    assert re.fullmatch(
        rf"{INSTALL_ROOT}/[0-9a-f]{{12}}-py{major}\.{minor}/venv/bin/python3?(\.\d+)?", argv[0]
    ), argv
    version_dir = argv[0].split("/venv/")[0]
    assert host.check_output("ls -A %s", INSTALL_ROOT).split() == [version_dir.rsplit("/", 1)[1]]
    manifest = json.loads(host.file(f"{version_dir}/.install-manifest.json").content_string)
    assert f"{version_dir}/venv/bin/docker-exporter" in manifest["files"]
    # Nothing but the virtualenv and its manifest stays: no wheels, no bundle.
    assert sorted(host.check_output("ls -A %s", version_dir).split()) == [
        ".install-manifest.json",
        "venv",
    ]


def test_joins_the_sockets_group_and_nothing_more(host):
    group = host.check_output("stat -c %G /var/run/docker.sock")
    unit = host.file(UNIT).content_string
    assert f"SupplementaryGroups={group}" in unit
    assert "NoNewPrivileges=yes" in unit


def test_listens_on_loopback_only(host):
    assert host.socket("tcp://127.0.0.1:9417").is_listening
    assert not host.socket("tcp://0.0.0.0:9417").is_listening


def test_reports_the_engine_and_its_containers(host, exited_container):
    def scraped():
        metrics = get_text(host, METRICS_URL)
        return metrics if series(metrics, "docker_container_exit_code", exited_container) else None

    metrics = wait_for(scraped, timeout=30, what=f"{exited_container} in the metrics")

    assert re.search(r"^docker_engine_up 1\.0$", metrics, re.MULTILINE)
    assert series(metrics, "docker_container_exit_code", exited_container) == [3.0]
    assert series(metrics, "docker_container_inspect_failed", exited_container) == [0.0]
    states = dict(
        re.findall(
            rf'^docker_container_state\{{[^}}]*name="{exited_container}"'
            rf'[^}}]*state="(\w+)"[^}}]*\}} (\S+)$',
            metrics,
            re.MULTILINE,
        )
    )
    assert states["exited"] == "1.0"
    assert states["running"] == "0.0"
    # The Molecule container itself runs, without a memory limit. (Its memory
    # usage is pytest's business in docker_exporter/tests: from inside this
    # container the other containers' processes, hence their cgroups, are out
    # of sight, and this CI engine's stats API reports no memory.)
    own = host.ansible("setup", "filter=ansible_hostname")["ansible_facts"]["ansible_hostname"]
    container = next(n for n in re.findall(r'name="([^"]+)"', metrics) if n.replace("_", "") == own)
    assert series(metrics, "docker_container_memory_limit_bytes", container) == [0.0]


# --- The engine's own metrics, on the target's engine ---------------------------------


def configure_inner_engine(**extra):
    """The role's configure step with the engine metrics on, on the target's engine."""
    return run_playbook(
        CONVERGE, "--tags", "docker_exporter_configure", extra_vars={**INNER_ENGINE, **extra}
    )


def inner(host, command, *args):
    return host.check_output(f"docker -H {INNER} {command}", *args)


def daemon_json(host):
    return json.loads(host.file("/etc/docker/daemon.json").content_string)


def container_start(host, name):
    """(PID, StartedAt, Status) of a container of the inner engine."""
    return inner(
        host, "inspect -f %s %s", "{{.State.Pid}} {{.State.StartedAt}} {{.State.Status}}", name
    )


@pytest.fixture(scope="module")
def inner_container(host):
    """A container of the target's engine, started before the role touches the engine."""
    name = "dxrole-kept"
    host.run(f"docker -H {INNER} rm -f {name}")
    inner(host, "run -d --name %s --network none dxinner/sleep:1 /usr/bin/sleep infinity", name)
    pid, _started, status = container_start(host, name).split()
    assert status == "running" and pid != "0"
    yield name
    # Removed through its engine, which cleans up its cgroups on the CI host
    # (a test that failed may have left the engine stopped).
    host.run("systemctl reset-failed docker.service; systemctl start docker.service")
    host.run(f"docker -H {INNER} rm -f {name}")


def test_engine_metrics_turn_on_without_stopping_a_container(host, inner_container):
    before = container_start(host, inner_container)
    engine_pid = main_pid(host, "docker")
    assert not json.loads(inner(host, "info --format '{{json .LiveRestoreEnabled}}'"))

    rc, output = run_playbook(
        CONVERGE,
        "--check",
        "--diff",
        "--tags",
        "docker_exporter_configure",
        extra_vars=INNER_ENGINE,
    )

    assert rc == 0, output
    assert '"metrics-addr": "127.0.0.1:9323"' in output.split("+++ after", 1)[1]
    assert daemon_json(host) == PREPARED
    assert main_pid(host, "docker") == engine_pid

    rc, output = configure_inner_engine()

    assert rc == 0, output
    assert daemon_json(host) == {**PREPARED, "metrics-addr": "127.0.0.1:9323", "live-restore": True}
    # Live-restore made active by a reload first, then one restart.
    assert changed_tasks(output) == [
        "docker_exporter : Turn on the engine's metrics endpoint and live-restore in daemon.json",
        "docker_exporter : Make live-restore active in the running engine (SIGHUP)",
        "docker_exporter : Restart the engine for its metrics endpoint "
        "(live-restore keeps the containers)",
    ], output
    assert main_pid(host, "docker") != engine_pid
    assert json.loads(inner(host, "info --format '{{json .LiveRestoreEnabled}}'"))
    # The same process, started at the same time: never stopped.
    assert container_start(host, inner_container) == before
    assert "engine_daemon_engine_info" in get_text(host, "http://127.0.0.1:9323/metrics")

    rc, output = configure_inner_engine()

    assert rc == 0, output
    assert recap(output)["changed"] == 0, changed_tasks(output)


def test_a_restart_left_undone_is_made_by_the_next_run(host, inner_container):
    """daemon.json written, dockerd never restarted (a run interrupted in between)."""
    before = container_start(host, inner_container)
    settings = {**daemon_json(host), "metrics-addr": "127.0.0.1:9324"}
    host.run_expect([0], "printf '%%s' %s > /etc/docker/daemon.json", json.dumps(settings))
    engine_pid = main_pid(host, "docker")

    rc, output = configure_inner_engine(docker_exporter_engine_metrics_port=9324)

    assert rc == 0, output
    changed = changed_tasks(output)
    # The file is as wanted already; the restart is what the look found missing.
    assert not any("daemon.json" in task for task in changed), changed
    assert any("Restart the engine" in task for task in changed), changed
    assert main_pid(host, "docker") != engine_pid
    assert container_start(host, inner_container) == before
    assert "engine_daemon_engine_info" in get_text(host, "http://127.0.0.1:9324/metrics")


def test_no_restart_when_live_restore_cannot_be_confirmed(host, inner_container):
    # The running engine without live-restore, and a daemon.json it will
    # refuse to reload (a key it does not know).
    valid = {**PREPARED, "live-restore": False, "metrics-addr": "127.0.0.1:9324"}
    host.run_expect([0], "printf '%%s' %s > /etc/docker/daemon.json", json.dumps(valid))
    host.run_expect([0], "systemctl kill --kill-whom=main --signal=HUP docker.service")
    wait_for(
        lambda: not json.loads(inner(host, "info --format '{{json .LiveRestoreEnabled}}'")),
        timeout=20,
        what="live-restore off in the inner engine",
    )
    broken = {**valid, "dxtest-not-a-setting": True}
    host.run_expect([0], "printf '%%s' %s > /etc/docker/daemon.json", json.dumps(broken))
    before = container_start(host, inner_container)
    engine_pid = main_pid(host, "docker")

    rc, output = configure_inner_engine(docker_exporter_engine_metrics_port=9325)

    assert rc != 0, output
    assert "live-restore is not active" in output
    assert "was NOT restarted" in output
    assert not any("Restart the engine" in task for task in changed_tasks(output))
    assert main_pid(host, "docker") == engine_pid
    assert container_start(host, inner_container) == before

    # Fixed by hand, as the message says: the next run completes.
    host.run_expect([0], "printf '%%s' %s > /etc/docker/daemon.json", json.dumps(valid))
    rc, output = configure_inner_engine()
    assert rc == 0, output
    assert container_start(host, inner_container) == before
    assert "engine_daemon_engine_info" in get_text(host, "http://127.0.0.1:9323/metrics")


# --- A new version beside the running one, switched to atomically ---------------------
# Last in this file: they leave the host on a test version of the exporter.


def source_copy(tmp_path, name, edit):
    """A copy of docker_exporter/ whose sources differ (a version of its own).

    exporter_web/, which the role builds beside it, is copied next to it unchanged.
    """
    ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests", "bench")
    copy = tmp_path / name / "docker_exporter"
    shutil.copytree(PROJECT / "docker_exporter", copy, ignore=ignore)
    shutil.copytree(PROJECT / "exporter_web", tmp_path / name / "exporter_web", ignore=ignore)
    edit(copy / "src" / "docker_exporter")
    return copy


def broken_cli(package: Path):
    cli = package / "cli.py"
    failure = '\nraise SystemExit("dxtest: a version that does not start")\n'
    cli.write_text(cli.read_text() + failure)


def new_version(package: Path):
    init = package / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "9.9.9+dxtest.'))


def installed_versions(host):
    return sorted(host.check_output("ls -A %s", INSTALL_ROOT).split())


def test_a_failed_install_leaves_the_running_exporter_as_it_was(host, tmp_path):
    pid, argv = main_pid(host, "docker-exporter"), running_executable(host)
    unit = host.file(UNIT).content_string
    versions = installed_versions(host)

    rc, output = run_playbook(
        CONVERGE,
        extra_vars={"docker_exporter_source_dir": str(source_copy(tmp_path, "broken", broken_cli))},
    )

    assert rc != 0, output
    assert "dxtest: a version that does not start" in output
    assert (main_pid(host, "docker-exporter"), running_executable(host)) == (pid, argv)
    assert host.file(UNIT).content_string == unit
    assert "docker_engine_up 1.0" in get_text(host, METRICS_URL)
    # The half-built version is there, but without a manifest: never taken
    # for an install.
    (partial,) = set(installed_versions(host)) - set(versions)
    assert not host.file(f"{INSTALL_ROOT}/{partial}/.install-manifest.json").exists


def test_a_new_version_is_switched_to_and_the_old_one_removed(host, tmp_path):
    pid, argv = main_pid(host, "docker-exporter"), running_executable(host)
    source = str(source_copy(tmp_path, "new", new_version))

    rc, output = run_playbook(CONVERGE, extra_vars={"docker_exporter_source_dir": source})

    assert rc == 0, output
    new_pid, new_argv = main_pid(host, "docker-exporter"), running_executable(host)
    assert new_pid != pid and new_argv[0] != argv[0]
    version_dir = new_argv[0].split("/venv/")[0]
    # Only the version the unit runs is left: the previous one, and the
    # half-built one of the failed test above, are gone.
    assert installed_versions(host) == [version_dir.rsplit("/", 1)[1]]
    version = host.check_output("%s/venv/bin/docker-exporter --version", version_dir)
    assert "9.9.9+dxtest." in version
    wait_for(
        lambda: "docker_engine_up 1.0" in get_text(host, METRICS_URL),
        timeout=30,
        what="the new version to answer",
    )

    start = time.monotonic()
    rc, output = run_playbook(CONVERGE, extra_vars={"docker_exporter_source_dir": source})
    seconds = time.monotonic() - start

    assert rc == 0, output
    assert recap(output)["changed"] == 0, changed_tasks(output)
    # Nothing about the install asks the host or the controller on a rerun.
    assert "Build the exporter's wheel bundle" not in output
    assert "Copy the wheel bundle" not in output
    print(f"no-change rerun of the role: {seconds:.1f} s")
