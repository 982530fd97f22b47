"""The operations playbooks on the HA pair: once per cluster, never once per member.

maintenance.yml makes one silence for the pair's gossip cluster, through the first
member whose Alertmanager answers, and a lift expires the silences it made (through
either member) but not one made by hand with the same matchers; test_alert.yml sends
one test alert, notified once. Each test leaves the pair as it found it: no silence
of its own live, both Alertmanagers running and in one cluster.
"""

import json
import os
import re
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import testinfra
from molecule_helpers import get_json, get_text, metric_value, stopped, wait_for
from molecule_helpers import run_playbook as run_playbook_raw

MONITORING = ("cluster-mon1", "cluster-mon2")
ADDRESS = {"cluster-mon1": "172.31.250.11", "cluster-mon2": "172.31.250.12"}
APP = "cluster-app1"
RECEIVER = "http://172.31.250.21:8080/notifications"
MAINTENANCE = "playbooks/maintenance.yml"
TEST_ALERT = "playbooks/test_alert.yml"
ALERTMANAGER_UNIT = "prometheus-alertmanager"
# Who the playbook names as the silence's author (silence_created_by's default):
# the same as an operator's amtool on the same machine, so it tells nothing apart.
AUTHOR = os.environ.get("USER") or "ansible"


def on(name):
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}")


def alertmanager(name):
    return f"http://{ADDRESS[name]}:9093"


def run_playbook(playbook, *args, extra_vars=None):
    """run_playbook, with the output's JSON-escaped quotes unescaped for matching."""
    rc, output = run_playbook_raw(playbook, *args, extra_vars=extra_vars)
    return rc, output.replace('\\"', '"')


def changed(output):
    """The `changed` count of the PLAY RECAP, summed over the hosts."""
    counts = re.findall(r"^\S+\s+:\s+ok=\d+\s+changed=(\d+)", output, re.MULTILINE)
    assert counts, f"no PLAY RECAP in:\n{output}"
    return sum(int(count) for count in counts)


def live(name, instance):
    """{id: silence} of the live silences with exactly instance="<instance>", on one member."""
    return {
        s["id"]: s
        for s in get_json(on(name), f"{alertmanager(name)}/api/v2/silences")
        if s["status"]["state"] in ("active", "pending")
        and [(m["name"], m["value"], m["isEqual"], m["isRegex"]) for m in s["matchers"]]
        == [("instance", instance, True, False)]
    }


def on_both(instance, ids):
    """Wait until both members hold exactly these live silences for the instance."""
    return wait_for(
        lambda: all(set(live(name, instance)) == set(ids) for name in MONITORING),
        timeout=30,
        what=lambda: (
            f"live silences {sorted(ids)} on both members; seen: "
            + str({name: sorted(live(name, instance)) for name in MONITORING})
        ),
    )


def silence_id(output, outcome):
    """The id of the silence a maintenance run reports, for an outcome such as 'Silenced'."""
    found = re.findall(rf"{outcome}: instance=\S+ until \S+ \(silence ([0-9a-f-]{{36}})\)", output)
    assert len(found) == 1, output
    return found[0]


def by_hand(name, instance):
    """A silence made as an operator makes it (amtool, the web UI), through one member."""
    now = datetime.now(UTC)
    body = {
        "matchers": [{"name": "instance", "value": instance, "isRegex": False, "isEqual": True}],
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=30)).isoformat(),
        "createdBy": AUTHOR,
        "comment": f"Disk swap on {instance}, by hand",
    }
    answer = on(name).check_output(
        "curl -fsS --max-time 10 -X POST -H 'Content-Type: application/json' --data %s %s",
        json.dumps(body),
        f"{alertmanager(name)}/api/v2/silences",
    )
    return json.loads(answer)["silenceID"]


def expire(name, silence):
    on(name).run(
        "curl -fsS --max-time 10 -X DELETE %s", f"{alertmanager(name)}/api/v2/silence/{silence}"
    )


def wait_for_one_cluster():
    """Both Alertmanagers up and in one cluster again (after a test stopped one)."""
    for name in MONITORING:

        def members(name=name):
            try:
                metrics = get_text(on(name), f"{alertmanager(name)}/metrics")
            except AssertionError:
                return False
            return metric_value(metrics, "alertmanager_cluster_members") == 2

        wait_for(members, timeout=120, what=f"two cluster members seen by {name}")


@pytest.fixture
def instance():
    """A host name to silence that no alert has; its playbook silences are lifted after."""
    name = f"ops-test-{uuid.uuid4().hex[:8]}"
    yield name
    run_playbook(MAINTENANCE, extra_vars={"silence_instance": name, "lift": True})


def test_maintenance_makes_one_silence_for_the_pair_and_a_rerun_changes_nothing(instance):
    window = {"silence_instance": instance, "silence_duration": "10m"}

    rc, checked = run_playbook(MAINTENANCE, "--check", extra_vars=window)
    assert rc == 0, checked
    assert checked.count(f'Would silence: instance="{instance}"') == 1, checked
    assert all(live(name, instance) == {} for name in MONITORING)

    rc, output = run_playbook(MAINTENANCE, extra_vars=window)
    assert rc == 0, output
    assert changed(output) == 1, output
    made = silence_id(output, "Silenced")
    assert (
        "Through the Alertmanager of cluster-mon1 (http://172.31.250.11:9093), "
        "one of 2 in its cluster with cluster-mon2." in output
    )
    on_both(instance, [made])
    (stored,) = live("cluster-mon2", instance).values()
    assert stored["comment"] == f"Maintenance of {instance} (playbooks/maintenance.yml)"

    rc, again = run_playbook(MAINTENANCE, extra_vars=window)
    assert rc == 0, again
    assert changed(again) == 0, again
    assert silence_id(again, "Already silenced") == made
    on_both(instance, [made])


def test_a_lift_through_the_other_member_expires_the_playbooks_silence_not_one_made_by_hand(
    instance,
):
    hand = by_hand("cluster-mon2", instance)
    window = {"silence_instance": instance, "silence_duration": "10m"}
    on_both(instance, [hand])

    # The hand-made silence has the same matchers (and author): the playbook makes
    # its own next to it rather than taking it over.
    rc, output = run_playbook(MAINTENANCE, extra_vars=window)
    assert rc == 0, output
    made = silence_id(output, "Silenced")
    assert made != hand
    assert f"not made by this playbook (left alone): {hand}." in output
    on_both(instance, [hand, made])
    assert live("cluster-mon1", instance)[hand]["comment"] == f"Disk swap on {instance}, by hand"

    rc, lifted = run_playbook(
        MAINTENANCE, "--limit", "cluster-mon2", extra_vars=dict(window, lift=True)
    )

    assert rc == 0, lifted
    assert changed(lifted) == 1, lifted
    assert f'Lifted silence {made} for instance="{instance}".' in lifted
    assert "Through the Alertmanager of cluster-mon2 (http://172.31.250.12:9093)" in lifted
    assert f"Still live, not made by this playbook (left alone): {hand}." in lifted
    try:
        on_both(instance, [hand])
        for name in MONITORING:
            (expired,) = [
                s
                for s in get_json(on(name), f"{alertmanager(name)}/api/v2/silences")
                if s["id"] == made
            ]
            assert expired["status"]["state"] == "expired"
    finally:
        expire("cluster-mon2", hand)


def test_maintenance_goes_through_the_other_member_when_the_first_alertmanager_is_down(
    instance,
):
    window = {"silence_instance": instance, "silence_duration": "10m"}
    try:
        with stopped(on("cluster-mon1"), ALERTMANAGER_UNIT):
            rc, output = run_playbook(MAINTENANCE, extra_vars=window)

            assert rc == 0, output
            made = silence_id(output, "Silenced")
            assert "Through the Alertmanager of cluster-mon2 (http://172.31.250.12:9093)" in output
            assert re.search(
                r"Not answering: cluster-mon1 \(http://172\.31\.250\.11:9093/api/v2/status: "
                r".*Connection refused",
                output,
            ), output
            assert set(live("cluster-mon2", instance)) == {made}
    finally:
        wait_for_one_cluster()

    # Back, the first member has the silence from its peer: the same command
    # through it changes nothing, and a lift through it expires it on both.
    on_both(instance, [made])
    rc, again = run_playbook(MAINTENANCE, extra_vars=window)
    assert rc == 0, again
    assert changed(again) == 0, again
    assert "Through the Alertmanager of cluster-mon1" in again

    rc, lifted = run_playbook(MAINTENANCE, extra_vars=dict(window, lift=True))
    assert rc == 0, lifted
    assert f'Lifted silence {made} for instance="{instance}".' in lifted
    on_both(instance, [])


def test_maintenance_passes_over_a_member_whose_host_cannot_be_reached(instance, tmp_path):
    # The first member's host gone (as far as Ansible can tell): another inventory
    # source points it at a container that does not exist.
    gone = tmp_path / "gone.yml"
    gone.write_text(json.dumps({"all": {"hosts": {"cluster-mon1": {"ansible_host": "gone"}}}}))
    window = {"silence_instance": instance, "silence_duration": "10m"}

    rc, output = run_playbook(MAINTENANCE, "-i", str(gone), extra_vars=window)
    rc_lift, lifted = run_playbook(MAINTENANCE, "-i", str(gone), extra_vars=dict(window, lift=True))

    assert rc == 0, output
    made = silence_id(output, "Silenced")
    assert "Through the Alertmanager of cluster-mon2" in output
    assert "Not answering: cluster-mon1 (host unreachable: " in output
    assert rc_lift == 0, lifted
    assert f'Lifted silence {made} for instance="{instance}".' in lifted
    on_both(instance, [])


def test_a_test_alert_of_the_pair_is_sent_once_and_notified_once():
    def firing_tests():
        return [
            alert
            for record in get_json(on(APP), RECEIVER)
            for alert in record["body"]["alerts"]
            if alert["labels"].get("alertname") == "PrometheusAlertingTest"
            and alert["status"] == "firing"
        ]

    before = len(firing_tests())
    rc, checked = run_playbook(TEST_ALERT, "--check")
    assert rc == 0, checked
    assert "Send the test alert" not in checked

    rc, output = run_playbook(TEST_ALERT)

    assert rc == 0, output
    (test_id,) = re.findall(r"Test alert PrometheusAlertingTest \(test_id=(\w+)\) routed", output)
    assert re.search(r"and delivered: [1-9]\d* notifications sent, none failed\.", output), output
    assert output.count("Through the Alertmanager of cluster-mon1") == 1, output
    # Longer than a second member would take to notify (its turn in the cluster,
    # 15 s, plus group_wait) had it been sent the alert too.
    time.sleep(20)
    (notified,) = firing_tests()[before:]
    assert notified["labels"]["test_id"] == test_id
    assert notified["labels"]["instance"] == "cluster-mon1"


def test_with_no_alertmanager_answering_maintenance_fails_naming_the_members_tried(instance):
    mon1, mon2 = (on(name) for name in MONITORING)
    try:
        with stopped(mon1, ALERTMANAGER_UNIT), stopped(mon2, ALERTMANAGER_UNIT):
            rc, output = run_playbook(
                MAINTENANCE, extra_vars={"silence_instance": instance, "silence_duration": "10m"}
            )
    finally:
        wait_for_one_cluster()

    assert rc != 0, output
    assert re.search(
        r"No Alertmanager answers, so nothing was done\. Tried: "
        r"cluster-mon1 \(http://172\.31\.250\.11:9093/api/v2/status: [^;]*Connection refused\S*\); "
        r"cluster-mon2 \(http://172\.31\.250\.12:9093/api/v2/status: [^;]*Connection refused",
        output,
    ), output
    assert "Silence the alerts for the maintenance" not in output
    assert all(live(name, instance) == {} for name in MONITORING)
