"""Notifications delivered end to end by a real Alertmanager of each Debian release.

Telegram and Discord: the filter writes the receivers (secrets in files where
the release reads them from one), a real Alertmanager on loopback notifies
a stand-in of each service (tests/fixtures/chat_stand_in.py, at the URL
fields both take: telegram `api_url`, discord `webhook_url`), and the test
reads what arrived. Time intervals: routes muted or active in intervals
chosen around the current time, so that what must be sent and what must not
is known whenever the test runs.
"""

import json
import sys
import urllib.request
from datetime import UTC, datetime, timedelta

import alertmanager
import pytest
import yaml
from conftest import ROOT, Service, free_port, wait_for
from test_alertmanager_receivers import DEBIAN, SECRETS_DIR, checked_release, convert, version_of

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
from chat_stand_in import ChatStandIn

BOT_TOKEN = "123456:telegram-bot-token-of-the-test"
ROTATED_TOKEN = "654321:the-token-after-rotation"
DISCORD_TOKEN = "discord-webhook-token-of-the-test"
CHAT_ID = -1001234567890


class Running:
    """An Alertmanager of one release on a free loopback port, its config built by the filters."""

    def __init__(self, directory, release, receivers, routes, intervals=None, extra_secrets=()):
        self.directory = directory
        self.secrets = directory / "secrets"
        self.secrets.mkdir(parents=True)
        parts = convert(receivers, release, extra_secrets=extra_secrets)
        for name, value in parts["secret_files"].items():
            (self.secrets / name).write_text(value)
            (self.secrets / name).chmod(0o600)
        route = {
            "receiver": "nobody",
            "group_by": ["alertname"],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "1h",
            "routes": routes,
        }
        checked = alertmanager.alertmanager_time_intervals(
            intervals or [], route, version_of(release)
        )
        config = {"route": route, "receivers": [{"name": "nobody"}, *parts["receivers"]]}
        if checked:
            config["time_intervals"] = checked
        self.config_text = yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=False).replace(
            SECRETS_DIR, str(self.secrets)
        )
        config_file = directory / "alertmanager.yml"
        config_file.write_text(self.config_text)
        port = free_port()
        self.log = directory / "alertmanager.log"
        self.service = Service(
            [
                release.alertmanager,
                f"--config.file={config_file}",
                f"--storage.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                "--log.level=debug",
            ],
            config_file,
            f"http://127.0.0.1:{port}",
            open(self.log, "wb"),  # noqa: SIM115 - closed by Service.stop()
        )

    def fire(self, **labels):
        body = json.dumps([{"labels": labels, "annotations": {"summary": f"{labels} fires"}}])
        request = urllib.request.Request(
            self.service.url + "/api/v2/alerts",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5):
            pass

    def log_lines(self, *words):
        return [
            line
            for line in self.log.read_text(errors="replace").splitlines()
            if all(word in line for word in words)
        ]

    def stop(self):
        self.service.stop()


@pytest.fixture(scope="module", params=sorted(DEBIAN))
def release(request):
    """Each Debian release's Alertmanager in turn (test_alertmanager_receivers.py)."""
    return checked_release(request.param)


@pytest.fixture
def stand_in():
    with ChatStandIn() as server:
        yield server


@pytest.fixture
def running(tmp_path):
    started = []

    def start(*args, **kwargs):
        started.append(Running(tmp_path / f"am{len(started)}", *args, **kwargs))
        return started[-1]

    yield start
    for each in started:
        each.stop()


def sends_from_a_file(release, field):
    """Whether `release` reads the telegram/discord secret `field` from a file."""
    kind, path = field.split(".", 1)
    _, since = alertmanager.SECRET_FIELDS[kind][path]
    return alertmanager._Release(version_of(release)).has(since)


def test_telegram_is_delivered_with_the_token_from_its_file(release, stand_in, running):
    receivers = [
        {
            "name": "ops-chat",
            "telegram_configs": [
                {"api_url": stand_in.url, "bot_token": BOT_TOKEN, "chat_id": CHAT_ID}
            ],
        }
    ]
    routes = [{"receiver": "ops-chat", "matchers": ['alertname=~"Telegram.*"']}]
    from_file = sends_from_a_file(release, "telegram.bot_token")
    # 0.25 has no bot_token_file: the token stays in the config, accepted explicitly.
    am = running(release, receivers, routes, extra_secrets=[] if from_file else [BOT_TOKEN])

    am.fire(alertname="TelegramTest", severity="warning", instance="mon1")

    (sent,) = stand_in.wait_for(lambda r: r["path"].endswith("/sendMessage"))
    assert sent["path"] == f"/bot{BOT_TOKEN}/sendMessage"
    assert str(sent["body"]["chat_id"]) == str(CHAT_ID)
    assert "TelegramTest" in sent["body"]["text"]
    assert sent["body"]["parse_mode"] == "HTML"

    token_file = am.secrets / "ops-chat.telegram.1.bot_token"
    if not from_file:
        assert release.version.startswith("0.25.")
        assert BOT_TOKEN in am.config_text
        assert not token_file.exists()
        return
    # The token is in its file only, and Alertmanager reads it there for each
    # notification: a new token in the file is the one the next one uses.
    assert BOT_TOKEN not in am.config_text
    assert f"bot_token_file: {token_file}" in am.config_text
    assert token_file.read_text() == BOT_TOKEN
    token_file.write_text(ROTATED_TOKEN)

    am.fire(alertname="TelegramRotated", severity="warning", instance="mon1")

    (rotated,) = stand_in.wait_for(lambda r: "TelegramRotated" in str(r["body"]))
    assert rotated["path"] == f"/bot{ROTATED_TOKEN}/sendMessage"


def test_discord_is_delivered_with_the_webhook_url_from_its_file(release, stand_in, running):
    webhook_url = f"{stand_in.url}/api/webhooks/1234567890/{DISCORD_TOKEN}"
    receivers = [{"name": "ops-discord", "discord_configs": [{"webhook_url": webhook_url}]}]
    routes = [{"receiver": "ops-discord", "matchers": ['alertname="DiscordTest"']}]
    from_file = sends_from_a_file(release, "discord.webhook_url")
    # 0.25 and 0.26 have no webhook_url_file: the URL stays in the config, accepted.
    am = running(release, receivers, routes, extra_secrets=[] if from_file else [webhook_url])

    am.fire(alertname="DiscordTest", severity="critical", instance="mon1")

    (sent,) = stand_in.wait_for(lambda r: "/api/webhooks/" in r["path"])
    assert sent["path"] == f"/api/webhooks/1234567890/{DISCORD_TOKEN}"
    (embed,) = sent["body"]["embeds"]
    assert "DiscordTest" in embed["title"]
    assert "firing" in embed["title"].lower()

    url_file = am.secrets / "ops-discord.discord.1.webhook_url"
    if from_file:
        assert DISCORD_TOKEN not in am.config_text
        assert f"webhook_url_file: {url_file}" in am.config_text
        assert url_file.read_text() == webhook_url
    else:
        assert webhook_url in am.config_text
        assert not url_file.exists()


# --- Time intervals -------------------------------------------------------------


def window_around(now, minutes=60):
    """Alertmanager `times` covering now +- `minutes` on a clock, split at midnight."""

    def clock(minute):
        return f"{minute // 60:02d}:{minute % 60:02d}"

    start = now.hour * 60 + now.minute - minutes
    end = now.hour * 60 + now.minute + minutes + 1
    if start < 0:
        ranges = [(start + 1440, 1440), (0, end)]
    elif end > 1440:
        ranges = [(start, 1440), (0, end - 1440)]
    else:
        ranges = [(start, end)]
    return [{"start_time": clock(a), "end_time": clock(b)} for a, b in ranges]


def test_muted_routes_send_nothing_and_active_ones_send_now(release, stand_in, running):
    now = datetime.now(UTC)
    times = window_around(now)
    # The same clock times, read in UTC (no location) and twelve hours ahead of
    # it (Etc/GMT-12 is UTC+12): now is inside the first and outside the second.
    intervals = [
        {"name": "around-now", "time_intervals": [{"times": times}]},
        {
            "name": "around-now-far-east",
            "time_intervals": [{"times": times, "location": "Etc/GMT-12"}],
        },
    ]
    cases = {
        "ActiveNow": ("active_time_intervals", "around-now", True),
        "MutedNow": ("mute_time_intervals", "around-now", False),
        "ActiveFarEast": ("active_time_intervals", "around-now-far-east", False),
        "MutedFarEast": ("mute_time_intervals", "around-now-far-east", True),
    }
    receivers = [
        {"name": f"to-{name}", "webhook_configs": [{"url": f"{stand_in.url}/webhooks/{name}"}]}
        for name in cases
    ]
    routes = [
        {"receiver": f"to-{name}", "matchers": [f'alertname="{name}"'], key: [interval]}
        for name, (key, interval, _) in cases.items()
    ]
    am = running(release, receivers, routes, intervals=intervals)
    assert now + timedelta(minutes=30) > datetime.now(UTC), "the test ran inside its window"

    for name in cases:
        am.fire(alertname=name, severity="warning", instance="mon1")

    sent = [name for name, (_, _, sends) in cases.items() if sends]
    held = [name for name, (_, _, sends) in cases.items() if not sends]
    for name in sent:
        (notification,) = stand_in.wait_for(lambda r, name=name: r["path"] == f"/webhooks/{name}")
        assert notification["body"]["alerts"][0]["labels"]["alertname"] == name
    # Alertmanager decides each time it would notify (every group_interval, 1s
    # here): its log says it held them back, twice at least. Only MutedNow's
    # route has a mute interval that holds now, only ActiveFarEast's an active
    # interval that does not.
    wait_for(
        lambda: (
            len(am.log_lines("Notifications not sent, route is within mute time")) >= 2
            and len(am.log_lines("Notifications not sent, route is not within active time")) >= 2
        ),
        what="Alertmanager to hold back the muted and the inactive notification, twice",
    )
    assert stand_in.received(lambda r: r["path"] in {f"/webhooks/{name}" for name in held}) == []
