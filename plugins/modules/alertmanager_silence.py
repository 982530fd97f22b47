#!/usr/bin/python
"""Create, update and expire Alertmanager silences, idempotently."""

DOCUMENTATION = r"""
---
module: alertmanager_silence
short_description: Create, update or expire an Alertmanager silence, idempotently
description:
  - A silence is known by its set of matchers (their order does not matter), or by its
    I(id). With I(state=present) the module creates the silence when no active or pending
    silence has exactly these matchers, updates the one that does when its comment, author,
    start or end differ, and changes nothing when they are the same. With I(state=absent) it
    expires every active or pending silence with exactly these matchers, or the one with
    I(id).
  - With I(marker), the module manages only the silences whose comment contains the marker,
    and puts the marker into the comment of the silences it creates or updates. A silence
    with the same matchers made otherwise (by hand with amtool or the web UI, or by another
    tool) is left as it is, neither updated nor expired; I(state=present) then creates a
    silence of its own next to it.
  - An update keeps the silence's id when Alertmanager allows it (same matchers and start);
    otherwise Alertmanager expires the old silence and creates a new one.
  - I(duration) counts from the silence's start, so running the same task again does not
    extend the silence; a longer I(duration) or a later I(ends_at) does.
  - Uses C(/api/v2/silences) only (Alertmanager 0.27 and later no longer serve C(/api/v1)).
options:
  state:
    description: C(present) creates or updates the silence; C(absent) expires it.
    type: str
    choices: [present, absent]
    default: present
  matchers:
    description:
      - The silence's matchers, each in Alertmanager's syntax (C(instance="mon1"),
        C(service!="trading-bot"), C(alertname=~"Disk.*"), C(job!~"test.*")), or as a
        mapping with C(name), C(value), C(is_regex) and C(is_equal).
      - At least one matcher must not match the empty string (Alertmanager's rule).
      - Required unless I(id) is given.
    type: list
    elements: raw
  id:
    description: >-
      The id of an existing silence to update or expire. With I(matchers) as well, the
      silence's matchers are replaced (Alertmanager then gives it a new id).
    type: str
  comment:
    description: Why the silence exists. Required to create a silence.
    type: str
  created_by:
    description: Who made the silence.
    type: str
    default: ansible
  starts_at:
    description: >-
      Start, RFC 3339 (C(2025-06-01T18:00:00Z)), for a silence planned ahead; a new
      silence starts now when omitted, an existing one keeps its start.
    type: str
  ends_at:
    description: End, RFC 3339.
    type: str
  duration:
    description: >-
      Length of the silence from its start, as a Prometheus duration (C(2h), C(1h30m),
      C(1d)). To create a silence, give I(duration) or I(ends_at); an existing silence
      keeps its end when neither is given.
    type: str
  marker:
    description:
      - Text that marks the silences this task manages, such as C((playbooks/maintenance.yml)).
        It is appended to I(comment) (after a space) unless the comment already contains it.
      - Only silences whose comment contains it are updated (I(state=present)) or expired
        (I(state=absent)). Live silences with the same matchers (or the I(id)) that lack it are
        left alone and returned in RV(unmarked_ids); I(state=present) with the I(id) of such a
        silence fails as for an unknown id.
      - Without it, every silence with the matchers (or the I(id)) is managed.
    type: str
extends_documentation_fragment: [prometheus_alerting.stack.http_api]
notes:
  - Supports check mode (nothing is sent; the result says what would change) and diff mode
    (the silence before and after).
  - In an Alertmanager cluster, silences are shared by gossip. Manage them through one member,
    any that answers, not through each, or every member adds a silence of its own.
author: Prometheus Alerting maintainers (@prometheus-alerting)
"""

EXAMPLES = r"""
- name: Silence one host for two hours of maintenance
  prometheus_alerting.stack.alertmanager_silence:
    url: http://127.0.0.1:9093
    matchers: ['instance="app1"']
    comment: Kernel upgrade
    created_by: "{{ lookup('ansible.builtin.env', 'USER') }}"
    duration: 2h
  register: maintenance

- name: Silence a service's warnings until a fixed time
  prometheus_alerting.stack.alertmanager_silence:
    url: http://127.0.0.1:9093
    matchers:
      - service="trading-bot"
      - {name: severity, value: "warning|info", is_regex: true}
    comment: Exchange maintenance window
    ends_at: "2025-06-01T22:00:00Z"

- name: Lift the host's silence again
  prometheus_alerting.stack.alertmanager_silence:
    url: http://127.0.0.1:9093
    matchers: ['instance="app1"']
    state: absent

- name: Silence a host, keeping apart from silences that operators make by hand
  prometheus_alerting.stack.alertmanager_silence:
    url: http://127.0.0.1:9093
    matchers: ['instance="app1"']
    comment: Maintenance of app1
    marker: (playbooks/maintenance.yml)
    duration: 2h

- name: Lift only the silence that the task above made
  prometheus_alerting.stack.alertmanager_silence:
    url: http://127.0.0.1:9093
    matchers: ['instance="app1"']
    marker: (playbooks/maintenance.yml)
    state: absent

- name: Expire one silence by its id
  prometheus_alerting.stack.alertmanager_silence:
    url: http://127.0.0.1:9093
    id: "{{ maintenance.silence_id }}"
    state: absent
"""

RETURN = r"""
silence_id:
  description: Id of the silence that now exists.
  returned: state is present, not in check mode when a silence is created
  type: str
  sample: 4877197e-beed-4111-a132-9e2771a6d577
silence:
  description: The silence as Alertmanager holds it (as it would be, in check mode).
  returned: state is present
  type: dict
  sample: {id: 4877197e-beed-4111-a132-9e2771a6d577, state: active,
           matchers: ['instance="app1"'], starts_at: "2025-06-01T18:00:00.000Z",
           ends_at: "2025-06-01T20:00:00.000Z", created_by: ansible, comment: Kernel upgrade}
expired_ids:
  description: Ids of the silences that were (or in check mode would be) expired.
  returned: state is absent
  type: list
  elements: str
unmarked_ids:
  description: >-
    Ids of the live silences with the same matchers (or the I(id)) that lack I(marker), and
    which the module therefore left alone.
  returned: when marker is given
  type: list
  elements: str
  sample: [0b3e2a51-6c1a-4f0e-9d7e-3c1f6a2b8e90]
"""

from datetime import timedelta

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.http_api import (
    HTTP_API_MUTUALLY_EXCLUSIVE,
    ApiError,
    HttpApi,
    describe_silence,
    format_time,
    http_api_argument_spec,
    parse_duration,
    parse_matcher,
    parse_time,
    utc_now,
)

ARGUMENT_SPEC = http_api_argument_spec(
    state={"type": "str", "choices": ["present", "absent"], "default": "present"},
    matchers={"type": "list", "elements": "raw"},
    id={"type": "str"},
    comment={"type": "str"},
    created_by={"type": "str", "default": "ansible"},
    starts_at={"type": "str"},
    ends_at={"type": "str"},
    duration={"type": "str"},
    marker={"type": "str"},
)

# Alertmanager keeps silence times to the millisecond and compares starts to
# the second; closer than this, two times are the same.
TOLERANCE = timedelta(seconds=1)
LIVE_STATES = ("active", "pending")


def to_api_matcher(item):
    """One matcher option (text or mapping) in the API's form; ValueError if malformed."""
    if isinstance(item, dict):
        unknown = set(item) - {"name", "value", "is_regex", "is_equal"}
        if unknown or "name" not in item or "value" not in item:
            raise ValueError(
                f"matcher {item!r} needs name and value, and only is_regex and is_equal besides"
            )
        return {
            "name": str(item["name"]),
            "value": str(item["value"]),
            "isRegex": bool(item.get("is_regex", False)),
            "isEqual": bool(item.get("is_equal", True)),
        }
    return parse_matcher(item)


def matcher_key(matchers):
    """Matchers as an order-free comparable value."""
    return frozenset(
        (m["name"], m["value"], bool(m.get("isRegex")), bool(m.get("isEqual", True)))
        for m in matchers
    )


def _same_time(a, b):
    return abs(parse_time(a) - parse_time(b)) < TOLERANCE


def carries(silence, marker):
    """Whether a silence is one of those the task manages: no marker, or its comment has it."""
    return not marker or marker in (silence.get("comment") or "")


def with_marker(comment, marker):
    """The comment with the marker appended, unless it is there already."""
    if not marker or marker in comment:
        return comment
    return f"{comment} {marker}" if comment else marker


class Silences:
    """The silences of one Alertmanager."""

    def __init__(self, api):
        self.api = api

    def get(self, silence_id):
        try:
            return self.api.get_json(f"/api/v2/silence/{silence_id}")
        except ApiError as err:
            # 404 for an unknown id; 422 for one that is not a UUID at all.
            if err.status in (404, 422):
                return None
            raise

    def live_with(self, matchers):
        """Active and pending silences with exactly these matchers, latest end first."""
        key = matcher_key(matchers)
        found = [
            s
            for s in self.api.get_json("/api/v2/silences")
            if (s.get("status") or {}).get("state") in LIVE_STATES
            and matcher_key(s.get("matchers") or []) == key
        ]
        return sorted(found, key=lambda s: parse_time(s["endsAt"]), reverse=True)

    def put(self, silence):
        answer = self.api.send_json("POST", "/api/v2/silences", body=silence)
        return (answer or {}).get("silenceID")

    def expire(self, silence_id):
        self.api.send_json("DELETE", f"/api/v2/silence/{silence_id}")


def _window(params, existing, now):
    """(start, end) of the wanted silence; `existing` is the live silence or None."""
    if params["starts_at"]:
        starts_at = parse_time(params["starts_at"])
        # Alertmanager moves a new start in the past to now and never changes an
        # active silence's start: only the start it already has may be past.
        if starts_at < now - TOLERANCE and not (
            existing and _same_time(existing["startsAt"], params["starts_at"])
        ):
            raise ValueError(f"starts_at {params['starts_at']} is past: omit it to start now")
    else:
        starts_at = parse_time(existing["startsAt"]) if existing else now

    if params["ends_at"]:
        ends_at = parse_time(params["ends_at"])
    elif params["duration"]:
        ends_at = starts_at + parse_duration(params["duration"])
    elif existing:
        ends_at = parse_time(existing["endsAt"])
    else:
        raise ValueError("duration or ends_at is required to create a silence")
    if ends_at <= max(starts_at, now):
        raise ValueError(
            f"the silence would end at {format_time(ends_at)}, which is not after its start "
            f"({format_time(starts_at)}) and now: give a later ends_at or a longer duration"
        )
    return starts_at, ends_at


def wanted_silence(params, matchers, existing, now):
    """The silence to post, in the API's form; ValueError for missing or wrong options."""
    live = existing if existing and existing["status"]["state"] in LIVE_STATES else None
    if matchers is None:
        matchers = existing["matchers"]
    elif live and matcher_key(matchers) == matcher_key(live["matchers"]):
        # Alertmanager updates in place only when the matchers are equal in order too.
        matchers = live["matchers"]
    comment = params["comment"]
    if comment is None:
        if not live:
            raise ValueError("comment is required to create a silence")
        comment = live["comment"]
    comment = with_marker(comment, params["marker"])
    starts_at, ends_at = _window(params, live, now)
    silence = {
        "matchers": matchers,
        "startsAt": format_time(starts_at),
        "endsAt": format_time(ends_at),
        "createdBy": params["created_by"],
        "comment": comment,
    }
    if live:
        silence["id"] = live["id"]
    return silence


def differs(existing, silence):
    """Whether posting `silence` would change the live silence `existing`."""
    return (
        "id" not in silence
        or matcher_key(existing["matchers"]) != matcher_key(silence["matchers"])
        or existing.get("comment") != silence["comment"]
        or existing.get("createdBy") != silence["createdBy"]
        or not _same_time(existing["startsAt"], silence["startsAt"])
        or not _same_time(existing["endsAt"], silence["endsAt"])
    )


def _unmarked(module, silences):
    """The result key for silences left alone, when the task has a marker."""
    if not module.params["marker"]:
        return {}
    return {"unmarked_ids": [s["id"] for s in silences]}


def present(module, silences, matchers):
    params = module.params
    marker = params["marker"]
    unmarked = []
    if params["id"]:
        existing = silences.get(params["id"])
        if existing is None or not carries(existing, marker):
            raise ValueError(
                f"Alertmanager has no silence with id {params['id']}"
                + (f" whose comment contains {marker!r}" if marker else "")
            )
    else:
        found = silences.live_with(matchers)
        unmarked = [s for s in found if not carries(s, marker)]
        found = [s for s in found if carries(s, marker)]
        existing = found[0] if found else None

    silence = wanted_silence(params, matchers, existing, utc_now())
    changed = existing is None or differs(existing, silence)
    result = {"changed": changed, **_unmarked(module, unmarked)}
    if module._diff:
        before = describe_silence(existing) if existing is not None and "id" in silence else {}
        after = describe_silence(silence)
        # The states are Alertmanager's to set; a new silence has no id yet.
        before.pop("state", None)
        after.pop("state")
        if after["id"] is None:
            del after["id"]
        result["diff"] = {"before": before, "after": after}
    if not changed:
        result.update(silence_id=existing["id"], silence=describe_silence(existing))
        return result
    if module.check_mode:
        result.update(silence=describe_silence(silence))
        if "id" in silence:
            result["silence_id"] = silence["id"]
        return result
    silence_id = silences.put(silence)
    stored = silences.get(silence_id) or silence
    result.update(silence_id=silence_id, silence=describe_silence(stored))
    return result


def absent(module, silences, matchers):
    params = module.params
    if params["id"]:
        existing = silences.get(params["id"])
        live = [existing] if existing and existing["status"]["state"] in LIVE_STATES else []
    else:
        live = silences.live_with(matchers)
    unmarked = [s for s in live if not carries(s, params["marker"])]
    live = [s for s in live if carries(s, params["marker"])]
    result = {
        "changed": bool(live),
        "expired_ids": [s["id"] for s in live],
        **_unmarked(module, unmarked),
    }
    if module._diff:
        result["diff"] = {
            "before": {"silences": [describe_silence(s) for s in live]},
            "after": {"silences": []},
        }
    if not module.check_mode:
        for silence in live:
            silences.expire(silence["id"])
    return result


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[*HTTP_API_MUTUALLY_EXCLUSIVE, ("ends_at", "duration")],
        required_one_of=[("matchers", "id")],
        supports_check_mode=True,
    )
    params = module.params
    try:
        matchers = None
        if params["matchers"] is not None:
            matchers = [to_api_matcher(item) for item in params["matchers"]]
            if not matchers:
                raise ValueError("matchers is empty: a silence needs at least one matcher")
        for name in ("starts_at", "ends_at"):
            if params[name]:
                parse_time(params[name])
        if params["duration"]:
            parse_duration(params["duration"])
    except ValueError as err:
        module.fail_json(msg=f"invalid silence: {err}")

    silences = Silences(HttpApi(params))
    try:
        if params["state"] == "present":
            result = present(module, silences, matchers)
        else:
            result = absent(module, silences, matchers)
    except ValueError as err:
        module.fail_json(msg=f"invalid silence: {err}")
    except ApiError as err:
        module.fail_json(msg=f"cannot manage the silence in Alertmanager: {err}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
