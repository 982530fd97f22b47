"""alertmanager_silence against a real Alertmanager: create, update, expire, idempotence."""

import json
import uuid
from datetime import timedelta

import alertmanager_silence
import pytest
from ansible.module_utils.http_api import parse_time
from conftest import ModuleFailed, assert_documented, free_port, http_get, run_module

MATCHERS = ['instance="app1"', 'service="trading-bot"']
MAINTENANCE = {"matchers": MATCHERS, "comment": "Kernel upgrade", "duration": "2h"}


def silence(alertmanager, check_mode=False, diff=False, **args):
    return run_module(
        alertmanager_silence,
        {"url": alertmanager.url, **args},
        check_mode=check_mode,
        diff=diff,
    )


def stored_silences(alertmanager, states=("active", "pending")):
    return [
        s
        for s in json.loads(http_get(alertmanager.url + "/api/v2/silences"))
        if s["status"]["state"] in states
    ]


def matcher_set(stored):
    return {(m["name"], m["value"], m["isRegex"], m["isEqual"]) for m in stored["matchers"]}


def length(stored):
    return parse_time(stored["endsAt"]) - parse_time(stored["startsAt"])


def test_creates_a_silence_from_matchers_a_comment_and_a_duration(alertmanager):
    result = silence(alertmanager, created_by="ops", **MAINTENANCE)

    assert result["changed"] is True
    (stored,) = stored_silences(alertmanager)
    assert stored["id"] == result["silence_id"]
    assert matcher_set(stored) == {
        ("instance", "app1", False, True),
        ("service", "trading-bot", False, True),
    }
    assert stored["comment"] == "Kernel upgrade"
    assert stored["createdBy"] == "ops"
    assert stored["status"]["state"] == "active"
    assert abs(length(stored) - timedelta(hours=2)) < timedelta(seconds=1)
    assert result["silence"]["matchers"] == MATCHERS
    assert result["silence"]["ends_at"] == stored["endsAt"]


def test_regex_and_negative_matchers_in_text_or_as_mappings(alertmanager):
    silence(
        alertmanager,
        matchers=[
            'alertname=~"Disk.*"',
            {"name": "mountpoint", "value": "/boot", "is_equal": False},
            {"name": "job", "value": "test.*", "is_regex": True, "is_equal": False},
        ],
        comment="Disk alerts",
        duration="30m",
    )

    (stored,) = stored_silences(alertmanager)
    assert matcher_set(stored) == {
        ("alertname", "Disk.*", True, True),
        ("mountpoint", "/boot", False, False),
        ("job", "test.*", True, False),
    }


def test_a_second_identical_call_changes_nothing(alertmanager):
    first = silence(alertmanager, **MAINTENANCE)
    before = stored_silences(alertmanager)

    again = silence(alertmanager, **MAINTENANCE)
    reordered = silence(alertmanager, **dict(MAINTENANCE, matchers=MATCHERS[::-1]))

    assert again["changed"] is False
    assert reordered["changed"] is False
    assert again["silence_id"] == reordered["silence_id"] == first["silence_id"]
    assert stored_silences(alertmanager) == before


def test_a_new_comment_or_duration_updates_the_same_silence(alertmanager):
    first = silence(alertmanager, **MAINTENANCE)

    result = silence(alertmanager, **dict(MAINTENANCE, comment="Kernel and BIOS", duration="3h"))

    assert result["changed"] is True
    assert result["silence_id"] == first["silence_id"]
    (stored,) = stored_silences(alertmanager)
    assert stored["id"] == first["silence_id"]
    assert stored["comment"] == "Kernel and BIOS"
    assert abs(length(stored) - timedelta(hours=3)) < timedelta(seconds=1)
    assert (
        silence(alertmanager, **dict(MAINTENANCE, comment="Kernel and BIOS", duration="3h"))[
            "changed"
        ]
        is False
    )


def test_new_matchers_for_an_id_replace_that_silence(alertmanager):
    first = silence(alertmanager, **MAINTENANCE)

    result = silence(alertmanager, id=first["silence_id"], matchers=['instance="app2"'])

    assert result["changed"] is True
    assert result["silence_id"] != first["silence_id"]
    (stored,) = stored_silences(alertmanager)
    assert stored["id"] == result["silence_id"]
    assert matcher_set(stored) == {("instance", "app2", False, True)}
    # Comment and end carry over from the silence it replaces.
    assert stored["comment"] == "Kernel upgrade"
    (old,) = stored_silences(alertmanager, states=("expired",))
    assert old["id"] == first["silence_id"]


def test_absent_expires_the_silence_with_these_matchers_once(alertmanager):
    kept = silence(alertmanager, matchers=['instance="app2"'], comment="Other", duration="1h")
    first = silence(alertmanager, **MAINTENANCE)

    result = silence(alertmanager, matchers=MATCHERS[::-1], state="absent")
    again = silence(alertmanager, matchers=MATCHERS, state="absent")

    assert result["changed"] is True
    assert result["expired_ids"] == [first["silence_id"]]
    assert [s["id"] for s in stored_silences(alertmanager)] == [kept["silence_id"]]
    assert again == {"changed": False, "expired_ids": [], "invocation": again["invocation"]}


def test_absent_by_id(alertmanager):
    first = silence(alertmanager, **MAINTENANCE)

    result = silence(alertmanager, id=first["silence_id"], state="absent")
    again = silence(alertmanager, id=first["silence_id"], state="absent")

    assert result["expired_ids"] == [first["silence_id"]]
    assert stored_silences(alertmanager) == []
    assert again["changed"] is False


def test_check_mode_changes_nothing_and_diff_mode_shows_the_change(alertmanager):
    created = silence(alertmanager, check_mode=True, diff=True, **MAINTENANCE)

    assert created["changed"] is True
    assert stored_silences(alertmanager) == []
    assert created["diff"]["before"] == {}
    assert created["diff"]["after"]["matchers"] == MATCHERS
    assert created["diff"]["after"]["comment"] == "Kernel upgrade"

    first = silence(alertmanager, **MAINTENANCE)
    updated = silence(
        alertmanager, check_mode=True, diff=True, **dict(MAINTENANCE, comment="Postponed")
    )

    assert updated["changed"] is True
    assert (updated["diff"]["before"]["comment"], updated["diff"]["after"]["comment"]) == (
        "Kernel upgrade",
        "Postponed",
    )
    assert updated["diff"]["before"]["id"] == first["silence_id"]
    assert stored_silences(alertmanager)[0]["comment"] == "Kernel upgrade"

    expired = silence(alertmanager, check_mode=True, matchers=MATCHERS, state="absent")
    assert expired["expired_ids"] == [first["silence_id"]]
    assert len(stored_silences(alertmanager)) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            dict(MAINTENANCE, matchers=["instance app1"]),
            "invalid silence: 'instance app1' is not a matcher: write name=\"value\"",
        ),
        (dict(MAINTENANCE, matchers=[]), "matchers is empty"),
        (dict(MAINTENANCE, duration="2 hours"), "'2 hours' is not a duration"),
        ({"matchers": MATCHERS, "duration": "2h"}, "comment is required to create a silence"),
        (
            {"matchers": MATCHERS, "comment": "c"},
            "duration or ends_at is required to create a silence",
        ),
        (
            {"matchers": MATCHERS, "comment": "c", "ends_at": "2020-01-01T00:00:00Z"},
            "the silence would end at 2020-01-01T00:00:00.000Z, which is not after",
        ),
        (
            dict(MAINTENANCE, starts_at="2020-01-01T00:00:00Z"),
            "starts_at 2020-01-01T00:00:00Z is past",
        ),
        (
            dict(MAINTENANCE, id=str(uuid.uuid4())),
            "Alertmanager has no silence with id",
        ),
    ],
)
def test_wrong_options_fail_with_a_clear_message_and_change_nothing(alertmanager, args, message):
    with pytest.raises(ModuleFailed) as failure:
        silence(alertmanager, **args)

    assert message in failure.value.result["msg"]
    assert stored_silences(alertmanager) == []


def test_a_silence_alertmanager_rejects_fails_with_its_reason(alertmanager):
    with pytest.raises(ModuleFailed) as failure:
        silence(alertmanager, **dict(MAINTENANCE, matchers=['instance=""']))

    message = failure.value.result["msg"]
    assert message.startswith("cannot manage the silence in Alertmanager: POST ")
    assert "HTTP 400" in message
    assert "at least one matcher must not match the empty string" in message


def test_an_unreachable_alertmanager_fails_with_the_url_and_reason():
    url = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(ModuleFailed) as failure:
        run_module(alertmanager_silence, {"url": url, "timeout": 2, **MAINTENANCE})

    message = failure.value.result["msg"]
    assert f"GET {url}/api/v2/silences failed" in message
    assert "Connection refused" in message


def test_documentation_matches_the_options():
    assert_documented(alertmanager_silence)
