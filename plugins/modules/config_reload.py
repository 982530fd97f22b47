#!/usr/bin/python
"""Reload a service of the stack over HTTP and confirm that the reload took."""

DOCUMENTATION = r"""
---
module: config_reload
short_description: Reload a service of the stack over HTTP and confirm the reload took
description:
  - Posts to the service's C(/-/reload) endpoint, then reads the service's own
    C(<service>_config_last_reload_successful) and
    C(<service>_config_last_reload_success_timestamp_seconds) metrics and fails,
    with the service's reason, unless the reload succeeded after the request was made.
  - The process is not restarted; its PID and start time stay the same.
  - Waits for the service to be ready first, so it can follow a (re)start.
options:
  service:
    description: Which service answers at I(url); selects the metric names.
    type: str
    choices: [prometheus, alertmanager, alert_relay, blackbox_exporter]
    required: true
  ready_timeout:
    description: Seconds to wait for the service to answer C(/-/ready) before reloading.
    type: float
    default: 60.0
  reload_marker:
    description:
      - The file C(staged_config) wrote when it put files live (its option of the same name).
        Removed once the reload is confirmed, and only then, so that a run that fails or dies
        before that leaves it for the next run, which reloads.
    type: path
extends_documentation_fragment: [prometheus_alerting.stack.http_api]
notes:
  - Prometheus serves C(/-/reload) only with C(--web.enable-lifecycle); the prometheus role sets it.
  - In check mode nothing is sent; the module reports the reload it would make.
author: Prometheus Alerting maintainers (@prometheus-alerting)
"""

EXAMPLES = r"""
- name: Reload Prometheus, and clear the record of the reload it owed
  prometheus_alerting.stack.config_reload:
    service: prometheus
    url: http://127.0.0.1:9090
    reload_marker: /var/lib/prometheus-alerting/reload-pending/prometheus

- name: Reload Alertmanager behind TLS and basic auth
  prometheus_alerting.stack.config_reload:
    service: alertmanager
    url: https://alertmanager.example.com:9093
    url_username: admin
    url_password: "{{ vault_alertmanager_admin_password }}"
    ca_path: /etc/ssl/certs/monitoring-ca.pem
"""

RETURN = r"""
reload_timestamp:
  description: The service's C(_config_last_reload_success_timestamp_seconds) after the reload.
  returned: success, not in check mode
  type: float
  sample: 1764172800
previous_reload_timestamp:
  description: The same metric before the reload.
  returned: success, not in check mode
  type: float
  sample: 1764170000
"""

import contextlib
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.http_api import (
    HTTP_API_ARGUMENT_SPEC,
    HTTP_API_MUTUALLY_EXCLUSIVE,
    ApiError,
    HttpApi,
)


def reload_and_confirm(api, service, ready_timeout):
    """Reload `service` at `api`; return (before, after) success timestamps."""
    successful = f"{service}_config_last_reload_successful"
    timestamp = f"{service}_config_last_reload_success_timestamp_seconds"

    api.wait_until_ready(deadline=ready_timeout)
    before = api.metrics([timestamp]).get(timestamp, 0.0)
    requested_at = int(time.time())
    try:
        api.request("POST", "/-/reload")
    except ApiError as err:
        # Each service answers 500 with the reason when the new config is bad.
        raise ApiError(f"{service} rejected the new configuration: {err.body or err}") from err

    samples = api.metrics([successful, timestamp])
    if samples.get(successful) != 1.0:
        raise ApiError(
            f"{service} reports its last reload failed ({successful} is "
            f"{samples.get(successful)}); it keeps running the previous configuration"
        )
    after = samples.get(timestamp, 0.0)
    if after < requested_at:
        raise ApiError(
            f"{service} did not reload: {timestamp} is {after}, older than the request "
            f"made at {requested_at}"
        )
    return before, after


def main():
    argument_spec = dict(HTTP_API_ARGUMENT_SPEC)
    argument_spec.update(
        service={
            "type": "str",
            "required": True,
            "choices": ["prometheus", "alertmanager", "alert_relay", "blackbox_exporter"],
        },
        ready_timeout={"type": "float", "default": 60.0},
        reload_marker={"type": "path"},
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=HTTP_API_MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    if module.check_mode:
        module.exit_json(changed=True, msg=f"{module.params['service']} would be reloaded")

    api = HttpApi(module.params)
    try:
        before, after = reload_and_confirm(
            api, module.params["service"], module.params["ready_timeout"]
        )
    except ApiError as err:
        module.fail_json(msg=str(err))
    marker = module.params["reload_marker"]
    if marker:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(marker)
    module.exit_json(changed=True, previous_reload_timestamp=before, reload_timestamp=after)


if __name__ == "__main__":
    main()
