"""The operations filters: which member of an Alertmanager cluster the playbooks act through."""

import operations


def status(name, peers):
    """A member's /api/v2/status as ansible.builtin.uri registers it."""
    return {
        "status": 200,
        "json": {"cluster": {"name": name, "peers": [{"name": p} for p in peers]}},
    }


def down(url, reason="Connection refused"):
    return {"status": -1, "url": url, "msg": f"Status code was -1 and not [200]: {reason}"}


PAIR = {
    "mon1": status("AAA", ["AAA", "BBB"]),
    "mon2": status("BBB", ["AAA", "BBB"]),
}


def test_a_healthy_cluster_is_reached_through_its_first_member():
    members = operations.alertmanager_members(PAIR)

    assert members == {"answering": ["mon1", "mon2"], "senders": ["mon1"], "not_answering": []}


def test_a_member_that_does_not_answer_is_passed_over_and_named():
    probes = {"mon1": down("http://10.0.0.1:9093/api/v2/status"), "mon2": PAIR["mon2"]}

    members = operations.alertmanager_members(probes)

    assert members["senders"] == ["mon2"]
    assert members["not_answering"] == [
        "mon1 (http://10.0.0.1:9093/api/v2/status: Status code was -1 and not [200]: "
        "Connection refused)"
    ]


def test_an_unreachable_host_is_named_as_such():
    probes = {"mon1": {"unreachable": True, "msg": "Task failed: ssh: no route"}}

    members = operations.alertmanager_members(probes)

    assert members["senders"] == []
    assert members["not_answering"] == ["mon1 (host unreachable: ssh: no route)"]


def test_members_that_are_not_one_cluster_are_each_asked_and_warned_about():
    probes = {**PAIR, "mon3": status("CCC", ["CCC"])}

    members = operations.alertmanager_members(probes)
    note = operations.alertmanager_member_note(members, probes, "mon1", "http://mon1:9093")

    assert members["senders"] == ["mon1", "mon3"]
    assert (
        note[0]
        == "Through the Alertmanager of mon1 (http://mon1:9093), one of 2 in its cluster with mon2."
    )
    assert note[1].startswith("WARNING: the Alertmanagers that answer are not one cluster but 2")


def test_a_single_host_reports_just_itself():
    probes = {"demo": status("AAA", ["AAA"])}
    members = operations.alertmanager_members(probes)

    note = operations.alertmanager_member_note(members, probes, "demo", "http://127.0.0.1:9093")

    assert note == ["Through the Alertmanager of demo (http://127.0.0.1:9093)."]
