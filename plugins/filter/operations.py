"""Filters of the operations playbooks: which Alertmanager of a cluster to talk to.

The roles make the monitoring hosts' Alertmanagers one gossip cluster, which
shares silences and notifies each alert once. maintenance.yml and
test_alert.yml therefore act through one member: every member is asked for
its /api/v2/status at once (playbooks/tasks/alertmanager_member.yml), and
these filters read the answers, by host in inventory order.
"""

import re


def _cluster(probe):
    """The cluster section of a member's status, or None when it did not answer."""
    if not isinstance(probe, dict) or probe.get("status") != 200:
        return None
    cluster = (probe.get("json") or {}).get("cluster")
    return cluster if isinstance(cluster, dict) else None


def _peers(cluster):
    return [peer.get("name") for peer in cluster.get("peers") or [] if isinstance(peer, dict)]


def alertmanager_members(probes):
    """Who answers, and through whom to act, from {host: that host's status probe}.

    Returns ``answering`` (the hosts whose Alertmanager answered), ``senders``
    (the first answering member of each cluster, as the members report their
    gossip peers: one for a healthy cluster or a single host, one per part when
    the members that answer are not one cluster), and ``not_answering`` (each
    other host with the URL it was asked at and why, for messages).
    """
    answering, senders, covered, not_answering = [], [], set(), []
    for host, probe in probes.items():
        cluster = _cluster(probe)
        if cluster is None:
            answer = probe if isinstance(probe, dict) else {}
            reason = re.sub(r"^Task failed: ", "", str(answer.get("msg") or "no answer")).strip()
            where = "host unreachable" if answer.get("unreachable") else answer.get("url", "?")
            not_answering.append(f"{host} ({where}: {reason})")
            continue
        answering.append(host)
        if cluster.get("name", "") not in covered:
            senders.append(host)
            covered.update(_peers(cluster))
    return {"answering": answering, "senders": senders, "not_answering": not_answering}


def alertmanager_member_note(members, probes, host, url):
    """The lines a sender reports: through whom, with which members, who did not answer."""
    peers = _peers(_cluster(probes.get(host)) or {})
    together = [
        other
        for other in members["answering"]
        if other != host and (_cluster(probes[other]) or {}).get("name", "") in peers
    ]
    line = f"Through the Alertmanager of {host} ({url})"
    if len(peers) > 1:
        line += f", one of {len(peers)} in its cluster"
        if together:
            line += " with " + ", ".join(together)
    lines = [line + "."]
    if members["not_answering"]:
        lines.append("Not answering: " + "; ".join(members["not_answering"]) + ".")
    if len(members["senders"]) > 1:
        lines.append(
            f"WARNING: the Alertmanagers that answer are not one cluster but "
            f"{len(members['senders'])}, which share nothing, so each was asked on its own "
            f"({', '.join(members['senders'])}): check their gossip (cluster port, peers)."
        )
    return lines


class FilterModule:
    def filters(self):
        return {
            "alertmanager_members": alertmanager_members,
            "alertmanager_member_note": alertmanager_member_note,
        }
