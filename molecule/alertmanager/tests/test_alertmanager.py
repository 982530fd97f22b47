"""Alertmanager runs the rendered config, delivers alerts, reloads without a
restart, refuses a broken config and never shows a secret.

Some tests re-run converge.yml with other variables through ansible-playbook
(the same inventory Molecule uses); each restores the converged state.
"""

import json
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from molecule_helpers import (
    PROJECT,
    changed_tasks,
    get_text,
    metric_value,
    notifications,
    run_playbook,
    wait_for,
)

SCENARIO = "molecule/alertmanager"
API = "http://127.0.0.1:9093"
WEBHOOK = "http://127.0.0.1:8080"
SERVICE = "prometheus-alertmanager"
CONFIG = "/etc/alertmanager/alertmanager.yml"
RELOAD_METRIC = "alertmanager_config_last_reload_success_timestamp_seconds"
# The fake secrets of vars/scenario.yml, for generation 1 and 2.
SECRET_PREFIXES = (
    "fake-smtp-password-",
    "fake-webhook-token-",
    "fake-slack-url-",
    "fake-pagerduty-key-",
)
SECRET_FILES = {
    "smtp_auth_password": "fake-smtp-password-{}",
    "critical-alerts.webhook.1.bearer_token": "fake-webhook-token-{}",
    "unrouted-secrets.slack.1.api_url": (
        "https://hooks.slack.example.com/services/fake-slack-url-{}"
    ),
    "unrouted-secrets.pagerduty.1.routing_key": "fake-pagerduty-key-{}",
}


# --- helpers ------------------------------------------------------------------


def converge(*args):
    return run_playbook(f"{SCENARIO}/converge.yml", *args)


def post_alerts(host, alerts):
    host.check_output(
        "curl -fsS --max-time 5 -H 'Content-Type: application/json' -d %s %s",
        json.dumps(alerts),
        API + "/api/v2/alerts",
    )


def status_config(host):
    return yaml.safe_load(json.loads(get_text(host, API + "/api/v2/status"))["config"]["original"])


def main_pid(host):
    return host.check_output("systemctl show -P MainPID %s", SERVICE)


def reload_timestamp(host):
    return metric_value(get_text(host, API + "/metrics"), RELOAD_METRIC)


def sha256(host, path):
    return host.check_output("sha256sum %s", path).split()[0]


def iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


# --- the service ----------------------------------------------------------------


def test_runs_enabled_as_its_own_user_with_clustering_off(host):
    service = host.service(SERVICE)
    assert service.is_running
    assert service.is_enabled
    assert host.check_output("stat -c %%U /proc/%s", main_pid(host)) == "alertmanager"
    cmdline = host.file(f"/proc/{main_pid(host)}/cmdline").content_string.split("\0")
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in cmdline
    assert "--storage.path=/var/lib/alertmanager" in cmdline
    assert "--cluster.listen-address=" in cmdline
    assert json.loads(get_text(host, API + "/api/v2/status"))["cluster"]["status"] == "disabled"
    storage = host.file("/var/lib/alertmanager")
    assert (storage.user, storage.group, storage.mode) == ("alertmanager", "alertmanager", 0o750)


def test_listens_on_loopback_only(host):
    assert host.socket("tcp://127.0.0.1:9093").is_listening
    assert not host.socket("tcp://0.0.0.0:9093").is_listening


def test_config_and_secret_files_are_readable_by_its_group_only(host):
    paths = [CONFIG, "/etc/alertmanager/templates/custom.tmpl"]
    paths += [f"/etc/alertmanager/secrets/{name}" for name in SECRET_FILES]
    for path in paths:
        file = host.file(path)
        assert (file.user, file.group, file.mode) == ("root", "alertmanager", 0o640), path
    for path in ("/etc/alertmanager", "/etc/alertmanager/secrets"):
        directory = host.file(path)
        assert (directory.user, directory.group, directory.mode) == ("root", "alertmanager", 0o750)


def test_secrets_are_in_their_files_and_not_in_the_config(host):
    for name, value in SECRET_FILES.items():
        assert host.file(f"/etc/alertmanager/secrets/{name}").content_string == value.format(1)
    config = host.file(CONFIG).content_string
    assert not [prefix for prefix in SECRET_PREFIXES if prefix in config]
    assert "smtp_auth_password_file: /etc/alertmanager/secrets/smtp_auth_password" in config


def test_status_shows_the_rendered_config(host):
    rendered = yaml.safe_load(host.file(CONFIG).content_string)
    running = status_config(host)

    assert running["route"]["receiver"] == rendered["route"]["receiver"] == "default-receiver"
    for key in ("group_by", "group_wait", "group_interval", "repeat_interval"):
        assert running["route"][key] == rendered["route"][key], key
    assert [(r["receiver"], r["matchers"]) for r in running["route"]["routes"]] == [
        (r["receiver"], r["matchers"]) for r in rendered["route"]["routes"]
    ]
    assert [r["name"] for r in running["receivers"]] == [r["name"] for r in rendered["receivers"]]
    assert running["inhibit_rules"][0]["equal"] == ["service", "environment"]
    assert running["templates"] == ["/etc/alertmanager/templates/*.tmpl"]


# --- delivery -------------------------------------------------------------------


@pytest.fixture(scope="module")
def critical_alert(host):
    """A critical trading-bot alert, posted once for the delivery tests."""
    name = f"MoleculeCritical{uuid.uuid4().hex[:8]}"
    labels = {
        "alertname": name,
        "severity": "critical",
        "service": "trading-bot",
        "instance": "trading-bot:8082",
    }
    annotations = {
        "summary": "Trading bot is down",
        "description": "posted by the alertmanager scenario",
    }
    starts = datetime.now(UTC) - timedelta(seconds=5)
    post_alerts(host, [{"labels": labels, "annotations": annotations, "startsAt": iso(starts)}])
    return labels, annotations, starts


def test_critical_alert_reaches_the_webhook_intact(host, critical_alert):
    labels, annotations, _ = critical_alert

    record, alert = wait_for(
        lambda: notifications(host, labels["alertname"], "firing"),
        what="the firing notification",
    )[0]

    assert record["path"] == "/webhooks/critical"
    assert record["body"]["receiver"] == "critical-alerts"
    assert alert["labels"] == labels
    assert alert["annotations"] == annotations


def test_resolved_alert_is_delivered_too(host, critical_alert):
    labels, annotations, starts = critical_alert
    wait_for(
        lambda: notifications(host, labels["alertname"], "firing"),
        what="the firing notification",
    )

    ended = datetime.now(UTC) - timedelta(seconds=1)
    post_alerts(
        host,
        [
            {
                "labels": labels,
                "annotations": annotations,
                "startsAt": iso(starts),
                "endsAt": iso(ended),
            }
        ],
    )

    record, alert = wait_for(
        lambda: notifications(host, labels["alertname"], "resolved"),
        what="the resolved notification",
    )[0]
    assert record["body"]["status"] == "resolved"
    assert alert["labels"] == labels


def alert_state(host, run_id, alertname, **labels):
    """Alertmanager's state of the posted alert with these labels, e.g. 'suppressed'."""
    query = f'filter=run="{run_id}"&filter=alertname="{alertname}"'
    alerts = json.loads(get_text(host, f"{API}/api/v2/alerts?{query}"))
    for alert in alerts:
        if all(alert["labels"].get(k) == v for k, v in labels.items()):
            return alert["status"]["state"]
    return None


def test_trading_bot_down_mutes_the_bots_other_alerts(host):
    run_id = uuid.uuid4().hex[:8]
    common = {"service": "trading-bot", "severity": "warning", "run": run_id}
    post_alerts(
        host,
        [
            # The bot's `up` target and a metric of another target differ in instance.
            {
                "labels": {
                    **common,
                    "alertname": "TradingBotDown",
                    "severity": "critical",
                    "instance": "trading-bot:8082",
                }
            },
            {
                "labels": {
                    **common,
                    "alertname": "HighRejectionRate",
                    "instance": "bot-metrics:9000",
                }
            },
            {
                "labels": {
                    **common,
                    "alertname": "HighCPUUsage",
                    "service": "system",
                    "instance": "node:9100",
                }
            },
        ],
    )

    wait_for(
        lambda: alert_state(host, run_id, "HighRejectionRate") == "suppressed",
        what="HighRejectionRate to be suppressed",
    )
    assert alert_state(host, run_id, "TradingBotDown") == "active"
    assert alert_state(host, run_id, "HighCPUUsage") == "active"


def test_critical_mutes_the_warning_of_the_same_problem_only(host):
    run_id = uuid.uuid4().hex[:8]
    disk = {
        "alertname": "DiskSpaceLow",
        "service": "system",
        "instance": "node:9100",
        "run": run_id,
    }
    post_alerts(
        host,
        [
            {"labels": {**disk, "severity": "critical", "mountpoint": "/"}},
            {"labels": {**disk, "severity": "warning", "mountpoint": "/"}},
            {"labels": {**disk, "severity": "warning", "mountpoint": "/data"}},
        ],
    )

    wait_for(
        lambda: (
            alert_state(host, run_id, "DiskSpaceLow", severity="warning", mountpoint="/")
            == "suppressed"
        ),
        what="the warning on / to be suppressed",
    )
    state = alert_state(host, run_id, "DiskSpaceLow", severity="warning", mountpoint="/data")
    assert state == "active"


# --- re-running the role -----------------------------------------------------------


@pytest.fixture
def restore_converged_state():
    """Put the scenario's own variables back live after a test changed them."""
    yield
    rc, output = converge("--tags", "routing")
    assert rc == 0, output


def test_routing_tag_changes_only_the_config_and_reloads(host, restore_converged_state):
    pid, reloaded = main_pid(host), reload_timestamp(host)
    unit = sha256(host, f"/etc/systemd/system/{SERVICE}.service")
    time.sleep(1)  # the reload timestamp has a resolution of seconds in the check

    rc, output = converge("--tags", "routing", "-e", "alertmanager_repeat_interval=2h")

    assert rc == 0, output
    assert changed_tasks(output) == [
        "alertmanager : Validate Alertmanager's configuration and put it live",
        "alertmanager : Reload alertmanager",
    ], output
    assert status_config(host)["route"]["repeat_interval"] == "2h"
    assert main_pid(host) == pid
    assert reload_timestamp(host) > reloaded
    assert sha256(host, f"/etc/systemd/system/{SERVICE}.service") == unit


BROKEN_ROUTING = {
    "route to an undefined receiver": (
        {"alertmanager_routes": [{"receiver": "nowhere", "matchers": ['service="x"']}]},
        ("undefined receiver", "nowhere", "used in route"),
    ),
    "invalid matcher": (
        {"alertmanager_routes": [{"receiver": "system-alerts", "matchers": ['service=~"(x"']}]},
        ("error parsing regexp", "missing closing )"),
    ),
    "deprecated match": (
        {"alertmanager_routes": [{"receiver": "system-alerts", "match": {"service": "x"}}]},
        ("use match,", "deprecated since Alertmanager 0.22"),
    ),
}


@pytest.mark.parametrize("case", BROKEN_ROUTING, ids=list(BROKEN_ROUTING))
def test_broken_routing_fails_clearly_and_changes_nothing(host, case):
    variables, messages = BROKEN_ROUTING[case]
    before, pid, running = sha256(host, CONFIG), main_pid(host), status_config(host)

    rc, output = converge("--tags", "routing", "-e", json.dumps(variables))

    assert rc != 0
    # amtool's reason (JSON-quoted in the task result, hence no quotes here).
    assert all(message in output for message in messages), output
    assert sha256(host, CONFIG) == before
    assert main_pid(host) == pid
    assert status_config(host) == running
    assert host.run("curl -fsS --max-time 5 %s", API + "/-/ready").rc == 0


def test_unwanted_templates_are_pruned_and_an_operators_own_kept(host):
    own = "/etc/alertmanager/templates/operator.tmpl"
    retired = "/etc/alertmanager/templates/retired.tmpl"
    host.check_output("printf '%%s\\n' %s > %s", '{{ define "operator.x" }}x{{ end }}', own)
    with_retired = {
        "custom.tmpl": "{{ lookup('ansible.builtin.file', 'custom.tmpl', rstrip=false) }}",
        "retired.tmpl": "A template the role will stop wanting.\n",
    }
    try:
        rc, output = converge(
            "--tags", "routing", "-e",
            json.dumps({"alertmanager_notification_templates": with_retired}),
        )  # fmt: skip
        assert rc == 0, output
        assert host.file(retired).contains("Managed by the alertmanager role")

        rc, output = converge("--tags", "routing")

        assert rc == 0, output
        assert not host.file(retired).exists
        assert host.file(own).exists
    finally:
        host.check_output("rm -f %s", own)


# --- secrets in Ansible's output ----------------------------------------------------


def test_no_secret_appears_in_verbose_diff_output(host):
    # Rotate every secret and change the routing, so that the run writes the
    # secret files and shows a diff of the config; then rotate back.
    try:
        rc, rotated = converge(
            "-v", "--diff",
            "-e", "molecule_secret_generation=2",
            "-e", "alertmanager_repeat_interval=3h",
        )  # fmt: skip
        assert rc == 0, rotated
        for name, value in SECRET_FILES.items():
            assert host.file(f"/etc/alertmanager/secrets/{name}").content_string == value.format(2)
    finally:
        rc_back, restored = converge("-v", "--diff")

    assert rc_back == 0, restored
    assert "+  repeat_interval: 3h" in rotated  # the diff is really shown
    # The rotated secret files are written, with their diffs hidden.
    assert "/etc/alertmanager/secrets/" in rotated
    assert "(new content not shown)" in rotated
    for output in (rotated, restored):
        assert not [prefix for prefix in SECRET_PREFIXES if prefix in output]


def test_render_writes_exactly_the_live_files(host, tmp_path):
    rc, output = run_playbook(f"{SCENARIO}/render.yml", "-e", f"render_dir={tmp_path}")
    assert rc == 0, output

    rendered = {
        str(path.relative_to(next(tmp_path.glob("*/alertmanager")))): path.read_text()
        for path in tmp_path.glob("*/alertmanager/**/*")
        if path.is_file()
    }
    assert sorted(rendered) == ["alertmanager.yml", "templates/custom.tmpl"]
    for relpath, text in rendered.items():
        assert host.file(f"/etc/alertmanager/{relpath}").content_string == text, relpath

    routes = subprocess.run(
        [str(PROJECT / "tests" / "routing" / "run"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert routes.returncode == 0, routes.stdout + routes.stderr
