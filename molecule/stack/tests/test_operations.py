"""The operations playbooks on the converged stack: verify gates on health, a test alert
reaches the receiver, a maintenance silence mutes it until lifted, and a backup restores
the configuration byte for byte with a reload. Each test leaves the stack as it found it."""

import hashlib
import io
import json
import re
import tarfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from molecule_helpers import (
    changed_tasks,
    file_checksums,
    get_json,
    get_text,
    metric_value,
    recap,
    stopped,
    wait_for,
)
from molecule_helpers import run_playbook as run_playbook_raw

PROMETHEUS = "http://127.0.0.1:9090"
ALERTMANAGER = "http://127.0.0.1:9093"
RECEIVER = "http://127.0.0.1:8080/notifications"
SITE = "molecule/stack/converge.yml"
SCENARIO_VARS = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "inventory/group_vars/monitoring.yml").read_text()
)
CONFIG_DIRS = ("/etc/prometheus", "/etc/alertmanager")
SERVICES = ("prometheus", "prometheus-alertmanager")
RELOADED = {
    "prometheus": (PROMETHEUS, "prometheus_config_last_reload_success_timestamp_seconds"),
    "prometheus-alertmanager": (
        ALERTMANAGER,
        "alertmanager_config_last_reload_success_timestamp_seconds",
    ),
}


def run_playbook(playbook, *args, extra_vars=None):
    """run_playbook, with the output's JSON-escaped quotes unescaped for matching."""
    rc, output = run_playbook_raw(playbook, *args, extra_vars=extra_vars)
    return rc, output.replace('\\"', '"')


def target_health(host, job):
    targets = get_json(host, f"{PROMETHEUS}/api/v1/targets")["data"]["activeTargets"]
    return {t["health"] for t in targets if t["labels"]["job"] == job}


def received(host, test_id):
    """(status, receiver path) of what Alertmanager delivered for one test alert."""
    return [
        (alert["status"], record["path"])
        for record in get_json(host, RECEIVER)
        # The alert relay's deliveries (one alert each, under "alert") are not Alertmanager's.
        for alert in record["body"].get("alerts", ())
        if alert["labels"].get("test_id") == test_id
    ]


def live_silences(host, matcher):
    return [
        s
        for s in get_json(host, f"{ALERTMANAGER}/api/v2/silences")
        if s["status"]["state"] == "active"
        and [(m["name"], m["value"]) for m in s["matchers"]] == [matcher]
    ]


def tree(host):
    """{path: (sha256, mode, owner, group)} of every file under the config directories."""
    checksums = {}
    for directory in CONFIG_DIRS:
        checksums.update(file_checksums(host, directory))
    listing = host.check_output("find %s %s -type f -printf '%%m %%u %%g %%p\\n'", *CONFIG_DIRS)
    state = {}
    for line in listing.splitlines():
        mode, owner, group, path = line.split(" ", 3)
        state[path] = (checksums[path], mode, owner, group)
    return state


@contextmanager
def leaving_the_configuration_as(host, converged):
    """Whatever fails inside, the config directories end as `converged` (site.yml's state)."""
    try:
        yield
    finally:
        if tree(host) != converged:
            run_playbook(SITE, "--tags", "rules,routing")


def main_pids(host):
    return {unit: host.check_output("systemctl show -P MainPID %s", unit) for unit in SERVICES}


def reload_times(host):
    return {
        unit: metric_value(get_text(host, f"{url}/metrics"), metric)
        for unit, (url, metric) in RELOADED.items()
    }


def archives(directory, host_name):
    return sorted((directory / host_name).glob(f"monitoring-{host_name}-*.tar.gz"))


def backup(directory, **extra):
    rc, output = run_playbook(
        "playbooks/backup.yml", extra_vars={"backup_dir": str(directory), **extra}
    )
    assert rc == 0, output
    return output


@pytest.fixture(scope="module")
def host_name(host):
    """The host's inventory name, which names its backups."""
    return host.backend.get_hostname()


@pytest.fixture(scope="module")
def converged_backup(host, host_name, tmp_path_factory):
    """A backup of the converged stack's configuration, and the state it holds."""
    directory = tmp_path_factory.mktemp("backups")
    (directory / host_name).mkdir(mode=0o700)
    # Two older archives: the run keeps only the newest two of the three.
    for stamp in ("20000101T000000Z", "20000102T000000Z"):
        (directory / host_name / f"monitoring-{host_name}-{stamp}.tar.gz").write_bytes(b"old")
    state = tree(host)

    output = backup(directory, backup_keep=2)

    (older, archive) = archives(directory, host_name)
    assert older.name == f"monitoring-{host_name}-20000102T000000Z.tar.gz", output
    return archive, state


def test_verify_passes_on_the_converged_stack_with_a_report_of_every_part(host):
    groups = get_json(host, f"{PROMETHEUS}/api/v1/rules")["data"]["groups"]
    rules = sum(len(group["rules"]) for group in groups)
    targets = len(get_json(host, f"{PROMETHEUS}/api/v1/targets")["data"]["activeTargets"])

    rc, output = run_playbook("playbooks/verify.yml")

    assert rc == 0, output
    assert f"Rules: {rules} in {len(groups)} groups, {rules} ok, 0 failing" in output
    assert f"Targets: {targets}, {targets} up, 0 down" in output
    assert re.search(r"firing +none +Watchdog", output), output
    assert "Firing by severity: " in output
    assert "Alertmanager notifications since it started: " in output
    assert (
        f"All {rules} rules evaluate, all {targets} targets are up, and Prometheus and "
        "Alertmanager run the configuration on disk." in output
    )


def test_verify_fails_and_names_a_target_that_is_down(host):
    targets = len(get_json(host, f"{PROMETHEUS}/api/v1/targets")["data"]["activeTargets"])
    try:
        with stopped(host, "data-consumer-stand-in"):
            wait_for(
                lambda: target_health(host, "data-consumer") == {"down"},
                timeout=30,
                what="Prometheus to see the data consumer down",
            )
            rc, output = run_playbook("playbooks/verify.yml", "--tags", "status")
    finally:
        wait_for(
            lambda: target_health(host, "data-consumer") == {"up"},
            timeout=30,
            what="the data consumer up again",
        )

    assert rc != 0, output
    assert f"Targets: {targets}, {targets - 1} up, 1 down" in output
    assert re.search(
        r"DOWN data-consumer \S+ \(http://127.0.0.1:9191/metrics\): .*connection refused", output
    ), output
    assert "Not healthy: 0 rules failing (none), 1 targets down (data-consumer " in output


def test_a_test_alert_is_delivered_and_resolved(host):
    test_id = uuid.uuid4().hex[:12]

    rc, output = run_playbook("playbooks/test_alert.yml", extra_vars={"test_alert_id": test_id})

    assert rc == 0, output
    assert re.search(
        rf"Test alert PrometheusAlertingTest \(test_id={test_id}\) routed to default-receiver"
        r" \(webhook\) and delivered: [1-9]\d* notifications sent, none failed\.",
        output,
    ), output
    # The receiver itself confirms it, and hears that it is over.
    wait_for(
        lambda: ("resolved", "/webhooks/default") in received(host, test_id),
        timeout=60,
        what="the resolved test alert at the receiver",
    )
    assert ("firing", "/webhooks/default") in received(host, test_id)


def test_a_maintenance_silence_mutes_the_test_alert_until_it_is_lifted(host):
    instance = f"ops-test-{uuid.uuid4().hex[:8]}"
    silence = {"silence_instance": instance, "silence_duration": "10m"}
    muted_id = f"muted-{uuid.uuid4().hex[:8]}"
    try:
        rc, output = run_playbook("playbooks/maintenance.yml", extra_vars=silence)
        assert rc == 0, output
        (created,) = live_silences(host, ("instance", instance))
        assert f'Silenced: instance="{instance}" until' in output

        rc, output = run_playbook("playbooks/maintenance.yml", extra_vars=silence)
        assert rc == 0, output
        assert recap(output)["changed"] == 0
        assert [s["id"] for s in live_silences(host, ("instance", instance))] == [created["id"]]

        rc, output = run_playbook(
            "playbooks/test_alert.yml",
            extra_vars={"test_alert_id": muted_id, "test_alert_labels": {"instance": instance}},
        )
        assert rc != 0, output
        assert (
            f"The test alert is suppressed and will not be delivered: silenced by {created['id']}"
            in output
        )
        # Longer than the route's group_wait and group_interval: nothing arrived.
        time.sleep(8)
        assert received(host, muted_id) == []
    finally:
        rc, output = run_playbook("playbooks/maintenance.yml", extra_vars=dict(silence, lift=True))

    assert rc == 0, output
    assert f'Lifted silence {created["id"]} for instance="{instance}".' in output
    assert live_silences(host, ("instance", instance)) == []
    (expired,) = [
        s for s in get_json(host, f"{ALERTMANAGER}/api/v2/silences") if s["id"] == created["id"]
    ]
    assert expired["status"]["state"] == "expired"


def test_restore_after_a_change_gives_back_every_file_byte_for_byte_with_a_reload(
    host, host_name, converged_backup, tmp_path
):
    archive, converged = converged_backup
    assert oct(archive.stat().st_mode & 0o777) == "0o600"
    assert oct(archive.parent.stat().st_mode & 0o777) == "0o700"
    overrides = {
        **SCENARIO_VARS["prometheus_alert_overrides"],
        "HighRejectionRate": {"threshold": 91},
    }
    with leaving_the_configuration_as(host, converged):
        rc, output = run_playbook(
            SITE,
            "--tags",
            "rules,routing",
            extra_vars={
                "prometheus_alert_overrides": overrides,
                "alertmanager_repeat_interval": "7h",
                "alertmanager_smtp_auth_password": "ops-test-secret",
            },
        )
        assert rc == 0, output
        changed = tree(host)
        assert changed != converged
        assert "/etc/alertmanager/secrets/smtp_auth_password" in changed

        # A backup of the changed state holds the secret, owner-only in the archive,
        # with its live mode in the manifest.
        backup(tmp_path)
        (changed_archive,) = archives(tmp_path, host_name)
        with tarfile.open(changed_archive) as bundle:
            secret = bundle.getmember("etc/alertmanager/secrets/smtp_auth_password")
            assert oct(secret.mode) == "0o600"
            assert bundle.extractfile(secret).read() == b"ops-test-secret"
            manifest = json.load(bundle.extractfile("MANIFEST.json"))
        (entry,) = [f for f in manifest["files"] if f["path"].endswith("/smtp_auth_password")]
        assert (entry["mode"], entry["owner"], entry["group"]) == ("0640", "root", "alertmanager")

        pids, reloaded = main_pids(host), reload_times(host)
        rc, output = run_playbook(
            "playbooks/restore.yml", extra_vars={"restore_archive": str(archive)}
        )

        assert rc == 0, output
        assert tree(host) == converged
        assert changed_tasks(output) == [
            "Put Prometheus' configuration from the archive live",
            "Put Alertmanager's configuration from the archive live",
            "Reload prometheus",
            "Reload alertmanager",
        ]
        assert "prometheus: rules/trading-bot.yml" in output
        assert "alertmanager: alertmanager.yml, secrets/smtp_auth_password (removed)" in output
        assert main_pids(host) == pids
        assert all(reload_times(host)[unit] > reloaded[unit] for unit in SERVICES)

    rc, output = run_playbook("playbooks/restore.yml", extra_vars={"restore_archive": str(archive)})
    assert rc == 0, output
    assert recap(output)["changed"] == 0


def test_restore_validates_both_services_before_anything_goes_live(
    host, host_name, converged_backup, tmp_path
):
    archive, converged = converged_backup
    # The archive with a changed (valid) rule severity and an Alertmanager route to
    # a receiver that does not exist, its manifest checksums updated to match.
    broken = tmp_path / host_name / archive.name.replace(".tar.gz", "-broken.tar.gz")
    broken.parent.mkdir()
    rewrite_archive(
        archive,
        broken,
        {
            "etc/prometheus/rules/trading-bot.yml": lambda text: text.replace(
                "severity: warning", "severity: info", 1
            ),
            "etc/alertmanager/alertmanager.yml": lambda text: text.replace(
                "receiver: default-receiver", "receiver: nowhere", 1
            ),
        },
    )
    reloaded = reload_times(host)

    with leaving_the_configuration_as(host, converged):
        rc, output = run_playbook(
            "playbooks/restore.yml", extra_vars={"restore_archive": str(broken)}
        )
        after = tree(host), reload_times(host)

    assert rc != 0, output
    assert "the new configuration is invalid, nothing was changed" in output
    assert 'undefined receiver "nowhere"' in output
    assert "Put Prometheus' configuration from the archive live" not in output
    assert after == (converged, reloaded)


def test_a_tsdb_snapshot_needs_the_admin_api_and_says_so(host_name, tmp_path):
    rc, output = run_playbook(
        "playbooks/backup.yml",
        extra_vars={"backup_dir": str(tmp_path), "backup_tsdb_snapshot": True},
    )

    assert rc != 0, output
    assert f"A TSDB snapshot needs Prometheus' admin API, which is off on {host_name}" in output
    assert "set `prometheus_extra_flags: {web.enable-admin-api: true}`" in output
    assert archives(tmp_path, host_name) == []


def rewrite_archive(source, destination, edits):
    """Copy a backup archive with some files edited and the manifest's checksums updated."""
    with tarfile.open(source) as bundle:
        members = {m.name: (m, bundle.extractfile(m).read()) for m in bundle.getmembers()}
    for name, edit in edits.items():
        member, data = members[name]
        new = edit(data.decode()).encode()
        assert new != data, f"the edit of {name} changed nothing"
        members[name] = (member, new)
    manifest_member, manifest_data = members["MANIFEST.json"]
    manifest = json.loads(manifest_data)
    for entry in manifest["files"]:
        entry["sha256"] = hashlib.sha256(members[entry["path"].lstrip("/")][1]).hexdigest()
    members["MANIFEST.json"] = (manifest_member, json.dumps(manifest).encode())
    with tarfile.open(destination, "w:gz") as bundle:
        for member, data in members.values():
            member.size = len(data)
            bundle.addfile(member, io.BytesIO(data))
