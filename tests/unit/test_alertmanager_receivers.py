"""Receivers of every type, per Alertmanager release: the filter, then amtool of that release.

The filter's tables (RECEIVER_TYPES, SECRET_FIELDS) say which types and which
``*_file`` fields each release has. These tests hold them against the real
amtool of Debian 12 (0.25) and Debian 13 (0.28): what the filter writes for a
release passes that release's check, and what it refuses that release really
lacks. Debian 12's Alertmanager is the controller's own (scripts/prepare-machine);
the other release's package is downloaded once from Debian's archive with
apt-get (as tests/fixtures/archive_mirror.py does for the archive scenario)
and unpacked under build/debian-alertmanager/.
"""

import fcntl
import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import alertmanager
import pytest
import staged_config
import yaml
from ansible.errors import AnsibleFilterError
from conftest import ModuleFailed, require_binary, run_module

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import archive_mirror  # noqa: E402 - tests/fixtures: apt-get with lists of its own

DOWNLOADS = ROOT / "build" / "debian-alertmanager"
# The Debian releases and the Alertmanager each has (alertmanager.DEBIAN_PACKAGE_VERSIONS).
DEBIAN = {"bookworm": "12", "trixie": "13"}
SECRETS_DIR = "/etc/alertmanager/secrets"


class Release:
    """One Debian build of Alertmanager: `alertmanager`, `amtool`, `version`, `package_version`."""

    def __init__(self, alertmanager_binary, amtool, package_version):
        self.alertmanager = str(alertmanager_binary)
        self.amtool = str(amtool)
        self.package_version = package_version.strip()
        self.version = alertmanager._version_text(package_version)

    def check_config(self, path):
        """amtool check-config: (passed, output on one line)."""
        result = subprocess.run(
            [self.amtool, "check-config", str(path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        return result.returncode == 0, " ".join((result.stdout + result.stderr).split())


def _installed():
    """The controller's prometheus-alertmanager package, as a Release (or None)."""
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "prometheus-alertmanager"],
        capture_output=True,
        text=True,
        check=False,
    )
    binary = shutil.which("prometheus-alertmanager")
    if result.returncode != 0 or not binary:
        return None
    return Release(binary, require_binary("amtool"), result.stdout.strip())


@functools.cache
def debian_alertmanager(release):
    """Debian `release`'s Alertmanager: the controller's own if it is that one, else downloaded.

    A downloaded Debian build reads its default notification templates from
    /usr/share/prometheus/alertmanager/, the controller package's: the
    telegram, discord and webhook notifiers' templates are in both releases.
    """
    wanted = alertmanager.DEBIAN_PACKAGE_VERSIONS[DEBIAN[release]]
    installed = _installed()
    if installed and installed.version.split(".")[:2] == wanted.split(".")[:2]:
        return installed
    target = DOWNLOADS / release
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    # One download even when tests run in parallel (pytest-xdist).
    with open(DOWNLOADS / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "version").is_file():
            apt = archive_mirror.Apt(release, DOWNLOADS)
            staging = DOWNLOADS / f".{release}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            deb = apt.download("prometheus-alertmanager", staging)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(staging / "root")], check=True)
            (staging / "root" / "version").write_text(deb.name.split("_")[1])
            shutil.rmtree(target, ignore_errors=True)
            (staging / "root").rename(target)
            shutil.rmtree(staging)
    return Release(
        target / "usr/bin/prometheus-alertmanager",
        target / "usr/bin/amtool",
        (target / "version").read_text(),
    )


def checked_release(name):
    """Debian `name`'s Alertmanager, checked to be the release the role expects there."""
    found = debian_alertmanager(name)
    wanted = alertmanager.DEBIAN_PACKAGE_VERSIONS[DEBIAN[name]]
    assert found.version.split(".")[:2] == wanted.split(".")[:2], (
        f"Debian {name} now has Alertmanager {found.version}, the role expects "
        f"{wanted}: update DEBIAN_PACKAGE_VERSIONS and the tables of plugins/filter/alertmanager.py"
    )
    return found


@pytest.fixture(scope="session", params=sorted(DEBIAN))
def release(request):
    """Each Debian release's Alertmanager in turn."""
    return checked_release(request.param)


def version_of(release_or_text):
    """What the role passes the filters: for a Debian build, as for a host with that package."""
    if isinstance(release_or_text, Release):
        host = {"packages": {"prometheus-alertmanager": release_or_text.package_version}}
        return alertmanager.alertmanager_config_version("package", "", host=host)
    return {"version": release_or_text, "source": "the test's"}


def convert(receivers, version, extra_secrets=(), defaults=None, relay=None):
    return alertmanager.alertmanager_receivers(
        receivers,
        defaults or {},
        SECRETS_DIR,
        relay,
        version=version_of(version) if version else None,
        extra_secrets=list(extra_secrets),
    )


def config_text(receivers, intervals=None, routes=None):
    """alertmanager.yml as the role's template builds it, around these receivers."""
    config = {
        "global": {"smtp_smarthost": "smtp.example.com:587", "smtp_from": "am@example.com"},
        "route": {"receiver": receivers[0]["name"], "routes": routes or []},
        "receivers": receivers,
    }
    if intervals:
        config["time_intervals"] = intervals
    return yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=False)


def write_config(directory, parts, **extra):
    """alertmanager.yml under `directory`, its secret files in secrets/ there."""
    text = config_text(parts["receivers"], **extra).replace(SECRETS_DIR, str(directory / "secrets"))
    (directory / "secrets").mkdir(exist_ok=True)
    for name, value in parts["secret_files"].items():
        (directory / "secrets" / name).write_text(value)
    path = directory / "alertmanager.yml"
    path.write_text(text)
    return path


def secret(kind, field):
    return f"s3cret-{kind}-{field.replace('.', '-')}"


def url_secret(kind, field):
    return f"https://hooks.example.com/{secret(kind, field)}"


# A valid config of every type, as Alertmanager writes it, each secret a
# value that names its type and field.
EVERY_TYPE = {
    "email": {
        "to": "ops@example.com",
        "auth_username": "am",
        "auth_password": secret("email", "auth_password"),
    },
    "webhook": {
        "url": "http://127.0.0.1:9/hook",
        "http_config": {
            "basic_auth": {"username": "am", "password": secret("webhook", "password")}
        },
    },
    "slack": {"api_url": url_secret("slack", "api_url"), "channel": "#ops"},
    "pagerduty": {"routing_key": secret("pagerduty", "routing_key")},
    "discord": {"webhook_url": url_secret("discord", "webhook_url")},
    "incidentio": {
        "url": "https://api.incident.io/v2/alert_events/http/x",
        "alert_source_token": secret("incidentio", "alert_source_token"),
    },
    "jira": {
        "api_url": "https://example.atlassian.net",
        "project": "OPS",
        "issue_type": "Bug",
        "http_config": {"basic_auth": {"username": "am", "password": secret("jira", "password")}},
    },
    "msteams": {"webhook_url": url_secret("msteams", "webhook_url")},
    "msteamsv2": {"webhook_url": url_secret("msteamsv2", "webhook_url")},
    "opsgenie": {"api_key": secret("opsgenie", "api_key")},
    "pushover": {"user_key": secret("pushover", "user_key"), "token": secret("pushover", "token")},
    "rocketchat": {
        "token_id": secret("rocketchat", "token_id"),
        "token": secret("rocketchat", "token"),
        "channel": "#ops",
    },
    "sns": {
        "topic_arn": "arn:aws:sns:eu-west-1:123456789012:alerts",
        "sigv4": {
            "region": "eu-west-1",
            "access_key": "AKIAEXAMPLE",
            "secret_key": secret("sns", "sigv4.secret_key"),
        },
    },
    "telegram": {"bot_token": secret("telegram", "bot_token"), "chat_id": -1001234567890},
    "victorops": {"api_key": secret("victorops", "api_key"), "routing_key": "ops"},
    "webex": {
        "room_id": "Y2lzY29zcGFyazovL3VzL1JPT00vexample",
        "http_config": {"authorization": {"credentials": secret("webex", "credentials")}},
    },
    "wechat": {"api_secret": secret("wechat", "api_secret"), "corp_id": "corp", "to_user": "@all"},
}


def test_every_type_has_a_config_here_and_a_secret_table():
    assert set(EVERY_TYPE) == set(alertmanager.RECEIVER_TYPES) == set(alertmanager.SECRET_FIELDS)


def supported(version):
    release = alertmanager._Release(version_of(version))
    return [kind for kind in EVERY_TYPE if release.has_type(kind)]


def inline_secrets(kind, version):
    """The secret values of `kind` that `version` reads from alertmanager.yml only."""
    running = alertmanager._version_tuple(version)
    found = []
    for path, (file_field, since) in alertmanager.SECRET_FIELDS[kind].items():
        parent, field = alertmanager._get_path(EVERY_TYPE[kind], path)
        if parent and field in parent and not (file_field and alertmanager._has(running, since)):
            found.append(parent[field])
    return found


def test_every_type_the_release_has_passes_its_amtool_with_secrets_in_files(release, tmp_path):
    kinds = supported(release)
    receivers = [{"name": f"to-{kind}", f"{kind}_configs": [EVERY_TYPE[kind]]} for kind in kinds]
    inline = [value for kind in kinds for value in inline_secrets(kind, release.version)]

    parts = convert(receivers, release, extra_secrets=inline)
    path = write_config(tmp_path, parts)

    passed, output = release.check_config(path)
    assert passed, output
    text = path.read_text()
    for kind in kinds:
        for path_, (file_field, _since) in alertmanager.SECRET_FIELDS[kind].items():
            parent, field = alertmanager._get_path(EVERY_TYPE[kind], path_)
            if parent is None or field not in parent:
                continue  # an email's auth_secret: not in this config
            value = parent[field]
            if value in inline:
                assert value in text, f"{kind} {path_} stays inline in {release.version}"
                assert value not in parts["secret_files"].values()
            else:
                assert value not in text, f"{kind} {path_} is in alertmanager.yml"
                assert parts["secret_files"][f"to-{kind}.{kind}.1.{path_}"] == value
                assert f"{file_field}: {tmp_path}/secrets/to-{kind}.{kind}.1.{path_}" in text
    # The secrets of http_config (webhook, jira, webex) go to files in every release.
    for kind, field in (("webhook", "password"), ("jira", "password"), ("webex", "credentials")):
        if kind in kinds:
            assert secret(kind, field) not in text
            assert secret(kind, field) in parts["secret_files"].values()


def test_types_the_release_lacks_are_refused_by_the_filter_and_by_its_amtool(release, tmp_path):
    lacking = [kind for kind in EVERY_TYPE if kind not in supported(release)]
    assert lacking, "every release has types the next ones brought"
    debian_leaves_out = alertmanager.DEBIAN_BUILD_LACKS.get(release.version.rsplit(".", 1)[0], ())

    for kind in lacking:
        receivers = [{"name": f"to-{kind}", f"{kind}_configs": [EVERY_TYPE[kind]]}]
        with pytest.raises(AnsibleFilterError) as failure:
            convert(receivers, release)
        message = str(failure.value)
        assert message.startswith(f"receiver 'to-{kind}': {kind}_configs ")
        if kind in debian_leaves_out:
            assert "leaves out (Debian builds it without)" in message
        else:
            assert f"needs Alertmanager {alertmanager.RECEIVER_TYPES[kind]} or later" in message
        assert f"this host runs Alertmanager {release.version}" in message or (
            f"host's Alertmanager {release.version}" in message
        )
        assert "prometheus-alertmanager" in message
        assert secret(kind, "token") not in message

        # The table is right: this release's amtool does not know the type either.
        parts = convert(receivers, None)
        passed, output = release.check_config(write_config(tmp_path, parts))
        assert not passed
        assert f"{kind}_configs not found" in output


def test_file_fields_the_release_lacks_are_refused_by_its_amtool(release, tmp_path):
    """Where the table says a release has no *_file field, its amtool really has none."""
    running = alertmanager._version_tuple(release.version)
    checked = 0
    for kind in supported(release):
        for path, (file_field, since) in alertmanager.SECRET_FIELDS[kind].items():
            if not file_field:
                continue
            config = json.loads(json.dumps(EVERY_TYPE[kind]))
            parent, field = alertmanager._get_path(config, path)
            parent.pop(field, None)  # PagerDuty's service_key: besides its routing_key
            parent[file_field] = str(tmp_path / "secret")
            receivers = [{"name": "r", f"{kind}_configs": [config]}]
            passed, output = release.check_config(
                write_config(tmp_path, {"receivers": receivers, "secret_files": {}})
            )
            assert passed == alertmanager._has(running, since), f"{kind} {file_field}: {output}"
            checked += 1
    assert checked >= 10


@pytest.mark.parametrize(
    "version", ["0.22.0", "0.24.0", "0.25.0", "0.26.0", "0.27.0", "0.28.1", "0.29.0"]
)
def test_the_staged_secret_files_hold_every_file_a_release_names(version):
    """vars/main.yml stages the secret files of the release-blind call: a superset."""
    kinds = supported(version)
    receivers = [{"name": f"to-{kind}", f"{kind}_configs": [EVERY_TYPE[kind]]} for kind in kinds]
    inline = [value for kind in kinds for value in inline_secrets(kind, version)]

    staged = convert(receivers, None)["secret_files"]
    named = convert(receivers, version, extra_secrets=inline)["secret_files"]

    assert named.items() <= staged.items()


def test_a_secret_the_release_cannot_read_from_a_file_fails_unless_accepted():
    receivers = [{"name": "ops-chat", "telegram_configs": [EVERY_TYPE["telegram"]]}]

    with pytest.raises(AnsibleFilterError) as failure:
        convert(receivers, "0.25.0")

    message = str(failure.value)
    assert message.startswith("receiver 'ops-chat': telegram_configs[0]: bot_token is a secret")
    assert "Alertmanager 0.25.0 (the test's) reads it from alertmanager.yml only" in message
    assert "bot_token_file came with 0.26.0" in message
    assert "alertmanager_extra_secrets" in message
    assert secret("telegram", "bot_token") not in message

    # Listed in alertmanager_extra_secrets: it stays in the config, masked in output.
    parts = convert(receivers, "0.25.0", extra_secrets=[secret("telegram", "bot_token")])
    assert parts["receivers"][0]["telegram_configs"][0]["bot_token"] == secret(
        "telegram", "bot_token"
    )
    assert parts["secret_files"] == {}
    # A release with the field takes it from a file either way.
    parts = convert(receivers, "0.26.0", extra_secrets=[secret("telegram", "bot_token")])
    assert parts["receivers"][0]["telegram_configs"][0] == {
        "chat_id": -1001234567890,
        "bot_token_file": f"{SECRETS_DIR}/ops-chat.telegram.1.bot_token",
    }


def test_a_secret_no_release_reads_from_a_file_needs_accepting_in_every_release():
    receivers = [{"name": "wx", "wechat_configs": [EVERY_TYPE["wechat"]]}]

    with pytest.raises(AnsibleFilterError, match="no release has a file for it"):
        convert(receivers, "0.28.1")

    parts = convert(receivers, "0.28.1", extra_secrets=[secret("wechat", "api_secret")])
    assert parts["receivers"][0]["wechat_configs"][0]["api_secret"] == secret(
        "wechat", "api_secret"
    )


@pytest.mark.parametrize(
    ("receiver", "message"),
    [
        (
            {"name": "chat", "teams_configs": [{"webhook_url": "https://secret.example.com/x"}]},
            "receiver 'chat': unknown keys \\['teams_configs'\\]; .* for the types of Alertmanager "
            "0.28.1 \\(the test's\\): email, webhook, slack, pagerduty, discord, jira, msteams",
        ),
        (
            {"name": "chat", "telegram": {"bot_token": "secret.example.com"}},
            "did you mean 'telegram' -> telegram_configs\\?",
        ),
        (
            {"name": "chat", "discord_configs": {"webhook_url": "https://secret.example.com/x"}},
            "receiver 'chat': discord_configs must be a list of dicts, got dict",
        ),
        (
            {
                "name": "chat",
                "telegram_configs": [{"bot_token": "secret.example.com", "bot_token_file": "/x"}],
            },
            "receiver 'chat': telegram_configs\\[0\\]: set either bot_token or its bot_token_file",
        ),
    ],
)
def test_receiver_mistakes_are_named_without_showing_values(receiver, message):
    with pytest.raises(AnsibleFilterError, match=message) as failure:
        convert([receiver], "0.28.1")
    assert "secret.example.com" not in str(failure.value)


def test_a_file_field_written_by_hand_must_exist_in_the_release():
    receivers = [{"name": "chat", "discord_configs": [{"webhook_url_file": "/run/discord"}]}]

    with pytest.raises(
        AnsibleFilterError, match=r"webhook_url_file came with Alertmanager 0\.27\.0"
    ):
        convert(receivers, "0.25.0")
    assert convert(receivers, "0.27.0")["receivers"][0]["discord_configs"] == [
        {"webhook_url_file": "/run/discord"}
    ]


def test_shorthand_and_configs_of_one_type_number_their_files_in_order():
    receivers = [
        {
            "name": "ops",
            "slack": {"api_url": "https://hooks.slack.example.com/one", "channel": "#a"},
            "slack_configs": [{"api_url": "https://hooks.slack.example.com/two", "channel": "#b"}],
        }
    ]
    defaults = {"slack": {"title": '{{ template "custom.slack.title" . }}'}}

    parts = convert(receivers, "0.25.0", defaults=defaults)

    first, second = parts["receivers"][0]["slack_configs"]
    assert first["title"] == defaults["slack"]["title"]  # the shorthand takes the defaults
    assert "title" not in second  # Alertmanager's own form does not
    assert parts["secret_files"] == {
        "ops.slack.1.api_url": "https://hooks.slack.example.com/one",
        "ops.slack.2.api_url": "https://hooks.slack.example.com/two",
    }


def test_the_input_is_left_as_it_was():
    receivers = [{"name": "w", "webex_configs": [json.loads(json.dumps(EVERY_TYPE["webex"]))]}]
    before = json.dumps(receivers)

    convert(receivers, "0.28.1")

    assert json.dumps(receivers) == before


# --- Which release the configuration is for --------------------------------


@pytest.mark.parametrize(
    ("method", "host", "version", "source"),
    [
        ("archive", {}, "0.27.0", "alertmanager_version, from the release archive"),
        (
            "package",
            {"packages": {"prometheus-alertmanager": "0.25.0-1+b4", "base-files": "13.8"}},
            "0.25.0",
            "the host's package prometheus-alertmanager 0.25.0-1+b4",
        ),
        ("package", {"packages": {"base-files": "13.8+deb13u8"}}, "0.28.1", "Debian 13's package"),
        ("package", {"packages": {"base-files": "12.4+deb12u11"}}, "0.25.0", "Debian 12's package"),
        ("package", {"nameservers": ["127.0.0.53"]}, "0.25.0", "the host was not looked at"),
        ("package", {"packages": {"base-files": "14.1"}}, "0.25.0", "runs Debian 14, which the"),
    ],
)
def test_the_release_comes_from_the_method_the_package_or_debian(method, host, version, source):
    found = alertmanager.alertmanager_config_version(
        method, "0.27.0", "prometheus-alertmanager", host
    )

    assert found["version"] == version
    assert source in found["source"]


def test_a_version_that_is_no_version_is_named():
    with pytest.raises(AnsibleFilterError, match="version 'latest' is not a version"):
        alertmanager.alertmanager_config_version("archive", "latest")


# --- What the filter cannot tell: amtool on the staged file names it ---------


def test_a_field_the_filter_does_not_know_fails_amtool_on_the_staged_tree_naming_it(
    release, tmp_path
):
    """No schema per type in the role: a mistyped field is amtool's to find, before going live."""
    live = tmp_path / "alertmanager"
    live.mkdir()
    good = convert(
        [{"name": "chat", "telegram_configs": [{"bot_token": "t0ken", "chat_id": 1}]}],
        release,
        extra_secrets=["t0ken"],
    )
    (live / "alertmanager.yml").write_text(config_text(good["receivers"]))
    before = (live / "alertmanager.yml").read_text()
    bad = convert(
        [{"name": "chat", "telegram_configs": [{"bot_token": "t0ken", "chat_idd": 1}]}],
        release,
        extra_secrets=["t0ken"],
    )

    with pytest.raises(ModuleFailed) as failure:
        run_module(
            staged_config,
            {
                "dest": str(live),
                "files": {"alertmanager.yml": config_text(bad["receivers"])},
                "validate": [f"{release.amtool} check-config %s/alertmanager.yml"],
                "secrets": ["t0ken"],
            },
        )

    message = failure.value.result["msg"]
    assert "field chat_idd not found" in message
    assert "nothing was changed" in message
    assert "t0ken" not in message
    assert (live / "alertmanager.yml").read_text() == before
    assert sorted(p.name for p in live.iterdir()) == ["alertmanager.yml"]


def test_an_unknown_time_zone_fails_amtool_naming_it(release, tmp_path):
    """Whether a zone exists is the host's time zone database's to say: amtool on the host."""
    intervals = [
        {
            "name": "office",
            "time_intervals": [{"weekdays": ["monday:friday"], "location": "Mars/Olympus_Mons"}],
        }
    ]
    routes = [
        {"receiver": "r", "matchers": ['severity="warning"'], "active_time_intervals": ["office"]}
    ]
    alertmanager.alertmanager_time_intervals(
        intervals, {"receiver": "r", "routes": routes}, version_of(release)
    )
    parts = convert([{"name": "r"}], release)

    passed, output = release.check_config(
        write_config(tmp_path, parts, intervals=intervals, routes=routes)
    )

    assert not passed
    assert "unknown time zone Mars/Olympus_Mons" in output


def test_time_intervals_the_filter_passes_pass_amtool(release, tmp_path):
    intervals = [
        {
            "name": "working-hours",
            "time_intervals": [
                {
                    "weekdays": ["monday:friday"],
                    "times": [{"start_time": "08:00", "end_time": "18:00"}],
                    "location": "Europe/Berlin",
                }
            ],
        },
        {
            "name": "maintenance",
            "time_intervals": [
                {"weekdays": ["Sunday"], "times": [{"start_time": "02:00", "end_time": "04:00"}]},
                {
                    "days_of_month": ["-1", 1, "1:7"],
                    "months": ["december", "1:3"],
                    "years": ["2026:2030"],
                },
            ],
        },
    ]
    routes = [
        {
            "receiver": "r",
            "matchers": ['severity="warning"'],
            "active_time_intervals": ["working-hours"],
            "mute_time_intervals": ["maintenance"],
        },
    ]
    checked = alertmanager.alertmanager_time_intervals(
        intervals, {"receiver": "r", "routes": routes}, version_of(release)
    )
    parts = convert([{"name": "r"}], release)

    passed, output = release.check_config(
        write_config(tmp_path, parts, intervals=checked, routes=routes)
    )

    assert passed, output


@pytest.mark.parametrize(
    ("spec", "amtool_says"),
    [
        (
            {"times": [{"start_time": "18:00", "end_time": "08:00"}]},
            "start time cannot be equal or greater",
        ),
        ({"times": [{"start_time": "8:00", "end_time": "18:00"}]}, "couldn't parse timestamp 8:00"),
        ({"weekdays": ["mon:fri"]}, "mon is not a valid weekday"),
        ({"weekdays": ["saturday:sunday"]}, "start day cannot be before end day"),
        ({"days_of_month": ["0"]}, "0 is not a valid day of the month"),
        ({"days_of_month": ["-1:5"]}, "end day must be negative if start day is negative"),
        ({"months": ["december:january"]}, "end month january is before start month december"),
        ({"years": ["2030:2020"]}, "end year 2020 is before start year 2030"),
    ],
)
def test_an_interval_that_does_not_parse_is_named_by_the_filter_where_amtool_names_only_the_value(
    release, tmp_path, spec, amtool_says
):
    intervals = [{"name": "bad-one", "time_intervals": [spec]}]
    routes = [{"receiver": "r", "mute_time_intervals": ["bad-one"]}]

    with pytest.raises(
        AnsibleFilterError, match=r"^time interval 'bad-one': time_intervals\[0\]: "
    ):
        alertmanager.alertmanager_time_intervals(
            intervals, {"receiver": "r", "routes": routes}, version_of(release)
        )

    parts = convert([{"name": "r"}], release)
    passed, output = release.check_config(
        write_config(tmp_path, parts, intervals=intervals, routes=routes)
    )
    assert not passed
    assert amtool_says in output
    assert "bad-one" not in output


def test_an_undefined_interval_is_named_by_the_filter_and_by_amtool(release, tmp_path):
    routes = [
        {"receiver": "r", "matchers": ['service="docker"'], "mute_time_intervals": ["maintenance"]}
    ]

    with pytest.raises(AnsibleFilterError) as failure:
        alertmanager.alertmanager_time_intervals(
            [], {"receiver": "r", "routes": routes}, version_of(release)
        )
    assert str(failure.value) == (
        "route.routes[0] (receiver r): mute_time_intervals names the time interval 'maintenance', "
        "which alertmanager_time_intervals does not define (it defines none)"
    )

    parts = convert([{"name": "r"}], release)
    passed, output = release.check_config(write_config(tmp_path, parts, routes=routes))
    assert not passed
    assert 'undefined time interval "maintenance" used in route' in output


def test_the_amtool_messages_quoted_here_are_the_releases_own(release):
    """Guard for the expectations above: each release's amtool is the one it claims."""
    result = subprocess.run(
        [release.amtool, "--version"], capture_output=True, text=True, check=True
    )
    assert re.search(rf"version {re.escape(release.version)}", result.stdout + result.stderr)
