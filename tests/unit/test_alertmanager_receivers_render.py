"""The role's template with the filters: one render of hosts that differ by release and input.

playbooks/render.yml (the role's `render` entry point) writes what the role
would put live, from inventory, touching no host. Each host here runs another
Alertmanager release (the archive method's alertmanager_version) or has a
mistake: the good ones' files pass their release's amtool, the bad ones fail
with a message that names the receiver or interval, and get no files.
"""

import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT
from test_alertmanager_receivers import checked_release

TOKEN = "123456:render-test-telegram-token"
TELEGRAM = [{"name": "ops-chat", "telegram_configs": [{"bot_token": TOKEN, "chat_id": -100123}]}]
INTERVALS = [
    {
        "name": "maintenance",
        "time_intervals": [
            {"weekdays": ["sunday"], "times": [{"start_time": "02:00", "end_time": "04:00"}]}
        ],
    }
]
ROUTES = [
    {
        "receiver": "ops-chat",
        "matchers": ['service="trading-bot"'],
        "mute_time_intervals": ["maintenance"],
    }
]
COMMON = {
    "ansible_connection": "local",
    "ansible_python_interpreter": sys.executable,
    "alertmanager_install_method": "archive",
    "alertmanager_receivers": [*TELEGRAM, {"name": "default-receiver"}],
    "alertmanager_routes": ROUTES,
    "alertmanager_time_intervals": INTERVALS,
}
HOSTS = {
    # Debian 12's release: no bot_token_file, the token accepted in the config.
    "v025": {"alertmanager_version": "0.25.0", "alertmanager_extra_secrets": [TOKEN]},
    "v028": {"alertmanager_version": "0.28.1"},
    "v025-teams": {
        "alertmanager_version": "0.25.0",
        "alertmanager_receivers": [
            {"name": "default-receiver"},
            {"name": "teams", "msteams_configs": [{"webhook_url": "https://example.com/x"}]},
        ],
    },
    "v025-secret": {"alertmanager_version": "0.25.0"},
    # A key that is no type of any release: the role's argument specs refuse it
    # first, before the role does anything (the filter would name the receiver).
    "v028-no-such-type": {
        "alertmanager_version": "0.28.1",
        "alertmanager_receivers": [
            {"name": "default-receiver"},
            {"name": "chat", "teams_configs": [{"webhook_url": "https://example.com/x"}]},
        ],
    },
    "v028-undefined": {"alertmanager_version": "0.28.1", "alertmanager_time_intervals": []},
    "v028-unparsable": {
        "alertmanager_version": "0.28.1",
        "alertmanager_time_intervals": [
            {
                "name": "maintenance",
                "time_intervals": [{"times": [{"start_time": "4:00", "end_time": "02:00"}]}],
            }
        ],
    },
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    directory = tmp_path_factory.mktemp("render")
    inventory = {
        "all": {
            "children": {
                "monitoring": {
                    "hosts": {
                        # Several monitoring hosts scrape each other: each its own address.
                        name: {**COMMON, "monitoring_address": f"192.0.2.{number}", **own}
                        for number, (name, own) in enumerate(HOSTS.items(), start=10)
                    }
                }
            }
        }
    }
    (directory / "inventory.yml").write_text(yaml.safe_dump(inventory))
    environment = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    result = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(directory / "inventory.yml"),
            str(ROOT / "playbooks" / "render.yml"),
            "-e",
            json.dumps({"render_dir": str(directory / "out")}),
        ],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
        timeout=900,
    )
    return directory / "out", result.stdout + result.stderr


def failure_of(output, host):
    lines = [
        line
        for line in output.splitlines()
        if line.startswith((f"fatal: [{host}]", f"fatal: [{host} -> "))
    ]
    assert lines, f"{host} did not fail:\n{output}"
    return lines[0]


@pytest.mark.parametrize(("host", "release"), [("v025", "bookworm"), ("v028", "trixie")])
def test_each_release_gets_a_config_its_amtool_passes(rendered, host, release):
    out, output = rendered
    config = out / host / "alertmanager" / "alertmanager.yml"
    assert config.is_file(), output

    passed, said = checked_release(release).check_config(config)

    assert passed, said
    text = config.read_text()
    telegram = yaml.safe_load(text)["receivers"][0]["telegram_configs"][0]
    if release == "bookworm":
        assert telegram["bot_token"] == TOKEN
    else:
        assert TOKEN not in text
        assert (
            telegram["bot_token_file"] == "/etc/alertmanager/secrets/ops-chat.telegram.1.bot_token"
        )
    assert yaml.safe_load(text)["time_intervals"] == INTERVALS


@pytest.mark.parametrize(
    ("host", "message"),
    [
        (
            "v025-teams",
            "receiver 'teams': msteams_configs needs Alertmanager 0.26.0 or later, and this host "
            "runs Alertmanager 0.25.0 (alertmanager_version, from the release archive)",
        ),
        (
            "v028-no-such-type",
            '"argument_errors": ["alertmanager_receivers.teams_configs. Supported parameters '
            "include: alert_relay, discord_configs, email, email_configs, incidentio_configs, "
            "jira_configs, msteams_configs",
        ),
        (
            "v025-secret",
            "receiver 'ops-chat': telegram_configs[0]: bot_token is a secret, and Alertmanager "
            "0.25.0 (alertmanager_version, from the release archive) reads it from "
            "alertmanager.yml only (bot_token_file came with 0.26.0)",
        ),
        (
            "v028-undefined",
            "route.routes[0] (receiver ops-chat): mute_time_intervals names the time interval "
            "'maintenance', which alertmanager_time_intervals does not define (it defines none)",
        ),
        (
            "v028-unparsable",
            "time interval 'maintenance': time_intervals[0]: times[0]: start_time '4:00' is not a "
            "time of day as HH:MM",
        ),
    ],
)
def test_a_mistake_fails_its_host_naming_it_and_writes_nothing(rendered, host, message):
    out, output = rendered

    line = failure_of(output, host)

    assert message in line
    assert not (out / host).exists()


def test_no_secret_shows_in_the_output(rendered):
    _, output = rendered
    assert "ok: [v028" in output or "changed: [v028" in output
    assert TOKEN not in output
