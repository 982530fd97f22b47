"""alertmanager_silence against a real Alertmanager: create, update, expire, idempotence."""

import json
import shutil
import urllib.request
import uuid
from datetime import timedelta

import alertmanager_silence
import pytest
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.http_api import (
    format_time,
    parse_time,
    utc_now,
)
from conftest import (
    ALERTMANAGER_CONFIG,
    ModuleFailed,
    Service,
    assert_documented,
    free_port,
    http_get,
    require_binary,
    run_module,
    wait_for,
)

MATCHERS = ['instance="app1"', 'service="trading-bot"']
MAINTENANCE = {"matchers": MATCHERS, "comment": "Kernel upgrade", "duration": "2h"}
MARKER = "(playbooks/maintenance.yml)"


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


def by_hand(alertmanager, comment="Disk swap, by hand", created_by="ops"):
    """A silence with MATCHERS made as amtool or the web UI makes it; returns its id."""
    body = {
        "matchers": [
            {"name": "instance", "value": "app1", "isRegex": False, "isEqual": True},
            {"name": "service", "value": "trading-bot", "isRegex": False, "isEqual": True},
        ],
        "startsAt": format_time(utc_now()),
        "endsAt": format_time(utc_now() + timedelta(hours=1)),
        "createdBy": created_by,
        "comment": comment,
    }
    request = urllib.request.Request(
        alertmanager.url + "/api/v2/silences",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["silenceID"]


def by_id(alertmanager):
    return {s["id"]: s for s in stored_silences(alertmanager)}


def test_with_a_marker_present_makes_its_own_silence_next_to_one_made_by_hand(alertmanager):
    hand = by_hand(alertmanager, created_by="ops")
    hand_before = by_id(alertmanager)[hand]

    result = silence(alertmanager, created_by="ops", marker=MARKER, **MAINTENANCE)
    again = silence(alertmanager, created_by="ops", marker=MARKER, **MAINTENANCE)

    assert result["changed"] is True
    assert result["unmarked_ids"] == [hand]
    assert result["silence_id"] != hand
    stored = by_id(alertmanager)
    assert set(stored) == {hand, result["silence_id"]}
    assert stored[result["silence_id"]]["comment"] == f"Kernel upgrade {MARKER}"
    assert result["silence"]["comment"] == f"Kernel upgrade {MARKER}"
    # The hand-made silence is not adopted: not a field of it changes.
    assert stored[hand] == hand_before
    assert again["changed"] is False
    assert again["silence_id"] == result["silence_id"]
    assert by_id(alertmanager) == stored


def test_with_a_marker_absent_expires_only_the_marked_silences(alertmanager):
    mine = silence(alertmanager, marker=MARKER, **MAINTENANCE)["silence_id"]
    hand = by_hand(alertmanager)

    checked = silence(
        alertmanager, check_mode=True, matchers=MATCHERS, marker=MARKER, state="absent"
    )
    assert (checked["changed"], checked["expired_ids"], checked["unmarked_ids"]) == (
        True,
        [mine],
        [hand],
    )
    assert set(by_id(alertmanager)) == {mine, hand}

    result = silence(alertmanager, matchers=MATCHERS, marker=MARKER, state="absent", diff=True)
    again = silence(alertmanager, matchers=MATCHERS, marker=MARKER, state="absent")

    assert (result["changed"], result["expired_ids"], result["unmarked_ids"]) == (
        True,
        [mine],
        [hand],
    )
    assert [s["id"] for s in result["diff"]["before"]["silences"]] == [mine]
    assert list(by_id(alertmanager)) == [hand]
    assert (again["changed"], again["expired_ids"], again["unmarked_ids"]) == (False, [], [hand])


def test_a_marker_already_in_the_comment_is_not_repeated_and_such_a_silence_is_managed(
    alertmanager,
):
    # As the playbook made it before it passed a marker: the marker in its default comment.
    earlier = silence(alertmanager, **dict(MAINTENANCE, comment=f"Maintenance of app1 {MARKER}"))

    result = silence(
        alertmanager, marker=MARKER, **dict(MAINTENANCE, comment="Maintenance of app1")
    )

    assert result["changed"] is False
    assert result["silence_id"] == earlier["silence_id"]
    assert result["unmarked_ids"] == []
    (stored,) = stored_silences(alertmanager)
    assert stored["comment"] == f"Maintenance of app1 {MARKER}"


def test_with_a_marker_an_id_of_an_unmarked_silence_is_left_alone(alertmanager):
    hand = by_hand(alertmanager)

    expired = silence(alertmanager, id=hand, marker=MARKER, state="absent")
    with pytest.raises(ModuleFailed) as failure:
        silence(alertmanager, id=hand, marker=MARKER, comment="Taken over", duration="3h")

    assert (expired["changed"], expired["expired_ids"], expired["unmarked_ids"]) == (
        False,
        [],
        [hand],
    )
    assert failure.value.result["msg"] == (
        f"invalid silence: Alertmanager has no silence with id {hand} "
        f"whose comment contains '{MARKER}'"
    )
    assert by_id(alertmanager)[hand]["comment"] == "Disk swap, by hand"


def test_without_a_marker_nothing_is_reported_as_unmarked(alertmanager):
    by_hand(alertmanager)

    result = silence(alertmanager, matchers=MATCHERS, state="absent")

    assert "unmarked_ids" not in result
    assert result["changed"] is True


@pytest.fixture
def alertmanager_pair(tmp_path):
    """Two Alertmanagers on loopback that gossip as one cluster, as the roles set them up."""
    binary = shutil.which("prometheus-alertmanager") or require_binary("alertmanager")
    web = [free_port(), free_port()]
    gossip = [free_port(), free_port()]
    members = []
    try:
        for index in range(2):
            directory = tmp_path / f"member{index}"
            directory.mkdir()
            config = directory / "alertmanager.yml"
            config.write_text(ALERTMANAGER_CONFIG.format(receiver="initial"))
            members.append(
                Service(
                    [
                        binary,
                        f"--config.file={config}",
                        f"--storage.path={directory / 'data'}",
                        f"--web.listen-address=127.0.0.1:{web[index]}",
                        f"--cluster.listen-address=127.0.0.1:{gossip[index]}",
                        f"--cluster.peer=127.0.0.1:{gossip[1 - index]}",
                    ],
                    config,
                    f"http://127.0.0.1:{web[index]}",
                    open(directory / "alertmanager.log", "wb"),  # noqa: SIM115 - closed by stop()
                )
            )

        def joined():
            return all(
                len(json.loads(http_get(m.url + "/api/v2/status"))["cluster"]["peers"]) == 2
                for m in members
            )

        wait_for(joined, what="both Alertmanagers in one cluster")
        yield members
    finally:
        for member in members:
            member.stop()


def test_a_marked_silence_made_through_one_member_is_lifted_through_the_other(
    alertmanager_pair,
):
    first, second = alertmanager_pair
    made = silence(first, marker=MARKER, **MAINTENANCE)["silence_id"]
    hand = by_hand(second)
    wait_for(
        lambda: all(set(by_id(m)) == {made, hand} for m in alertmanager_pair),
        what="both silences on both members",
    )

    again = silence(second, marker=MARKER, **MAINTENANCE)
    lifted = silence(second, matchers=MATCHERS, marker=MARKER, state="absent")

    assert (again["changed"], again["silence_id"]) == (False, made)
    assert (lifted["expired_ids"], lifted["unmarked_ids"]) == ([made], [hand])
    wait_for(
        lambda: all(list(by_id(m)) == [hand] for m in alertmanager_pair),
        what="the marked silence expired on both members, the hand-made one live",
    )


def test_documentation_matches_the_options():
    assert_documented(alertmanager_silence)
