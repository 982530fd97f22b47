#!/usr/bin/python
"""Read Prometheus' scrape targets with their health and last error."""

DOCUMENTATION = r"""
---
module: prometheus_targets_info
short_description: Read Prometheus' scrape targets with their health and last scrape error
description:
  - Reads C(/api/v1/targets) and returns every active scrape target with its job, instance,
    health (C(up), C(down), or C(unknown) before its first scrape), last error and last
    scrape, and the targets that are down.
  - Changes nothing; check mode returns the same.
options:
  jobs:
    description: Read only the targets of these jobs; all when empty.
    type: list
    elements: str
    default: []
extends_documentation_fragment: [prometheus_alerting.stack.http_api]
author: Prometheus Alerting maintainers (@prometheus-alerting)
"""

EXAMPLES = r"""
- name: Read the scrape targets
  prometheus_alerting.stack.prometheus_targets_info:
    url: http://127.0.0.1:9090
  register: targets

- name: Name the targets that are down
  ansible.builtin.debug:
    msg: "{{ item.job }} {{ item.instance }}: {{ item.last_error }}"
  loop: "{{ targets.down }}"
"""

RETURN = r"""
targets:
  description: Every active target (of I(jobs)), by job and instance.
  returned: always
  type: list
  elements: dict
  sample:
    - {job: node-exporter, instance: mon1, health: up, last_error: "",
       scrape_url: "http://10.0.0.5:9100/metrics", scrape_pool: node-exporter,
       last_scrape: "2025-06-01T18:00:00.123Z", last_scrape_duration: 0.012,
       labels: {job: node-exporter, instance: mon1}}
down:
  description: The targets whose last scrape failed, with the error.
  returned: always
  type: list
  elements: dict
counts:
  description: Number of targets, by health.
  returned: always
  type: dict
  sample: {targets: 7, up: 6, down: 1, unknown: 0}
missing_jobs:
  description: Names in I(jobs) that Prometheus has no active target of (also a warning).
  returned: always
  type: list
  elements: str
jobs:
  description: Per job, the number of targets by health.
  returned: always
  type: dict
  sample: {node-exporter: {up: 1, down: 0, unknown: 0}}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.http_api import (
    HTTP_API_MUTUALLY_EXCLUSIVE,
    ApiError,
    HttpApi,
    http_api_argument_spec,
)

ARGUMENT_SPEC = http_api_argument_spec(
    jobs={"type": "list", "elements": "str", "default": []},
)
HEALTH = ("up", "down", "unknown")


def read_targets(api, jobs):
    """The active targets of Prometheus at `api`, shaped as this module returns them."""
    data = api.get_json("/api/v1/targets", query={"state": "active"})
    wanted = set(jobs)
    targets = []
    for target in data.get("activeTargets") or []:
        labels = target.get("labels") or {}
        job = labels.get("job") or target.get("scrapePool")
        if wanted and job not in wanted:
            continue
        health = target.get("health")
        targets.append(
            {
                "job": job,
                "instance": labels.get("instance"),
                "health": health if health in HEALTH else "unknown",
                "last_error": target.get("lastError", ""),
                "scrape_url": target.get("scrapeUrl"),
                "scrape_pool": target.get("scrapePool"),
                "last_scrape": target.get("lastScrape"),
                "last_scrape_duration": target.get("lastScrapeDuration"),
                "labels": labels,
            }
        )
    targets.sort(key=lambda t: (t["job"] or "", t["instance"] or "", t["scrape_url"] or ""))

    per_job = {}
    for target in targets:
        per_job.setdefault(target["job"], dict.fromkeys(HEALTH, 0))[target["health"]] += 1
    counts = {"targets": len(targets)}
    counts.update({h: sum(t["health"] == h for t in targets) for h in HEALTH})
    missing = sorted(wanted - set(per_job))
    return {
        "targets": targets,
        "down": [t for t in targets if t["health"] == "down"],
        "counts": counts,
        "jobs": per_job,
    }, missing


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=HTTP_API_MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    api = HttpApi(module.params)
    try:
        result, missing = read_targets(api, module.params["jobs"])
    except ApiError as err:
        module.fail_json(msg=f"cannot read the scrape targets from Prometheus: {err}")
    if missing:
        module.warn(f"Prometheus has no active target in job {', '.join(missing)}")
    module.exit_json(changed=False, missing_jobs=missing, **result)


if __name__ == "__main__":
    main()
