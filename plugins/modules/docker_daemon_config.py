#!/usr/bin/python
"""Merge settings into the Docker engine's daemon.json and tell what the running engine has."""

DOCUMENTATION = r"""
---
module: docker_daemon_config
short_description: Merge settings into daemon.json; report live-restore and the metrics endpoint
description:
  - Merges O(settings) into the Docker engine's O(path) (C(/etc/docker/daemon.json)), keeping
    every other key, and writes it (atomically, with a backup) only when a setting differs.
    An unreadable or invalid file fails the module and is left as it is.
  - Reports, in the same call, what the running engine does, so that the caller restarts
    dockerd only when needed and only when it is safe. C(live_restore) is the engine's
    C(LiveRestoreEnabled) (C(GET /info) on O(socket)); C(metrics_answering) is whether the
    engine's metrics endpoint (the C(metrics-addr) of O(settings)) answers with engine
    metrics. An endpoint that does not answer, with the setting in the file, means that
    dockerd has not been restarted since, also after an earlier run that wrote the file and
    died before the restart.
  - Never signals or restarts the engine itself.
  - Supports check mode (nothing is written) and diff mode.
options:
  path:
    description: The engine's configuration file.
    type: path
    default: /etc/docker/daemon.json
  settings:
    description: Keys and values to merge into the file, e.g. C(live-restore) and C(metrics-addr).
    type: dict
    required: true
  socket:
    description: The engine's API socket, asked for C(LiveRestoreEnabled).
    type: path
    default: /var/run/docker.sock
  timeout:
    description: Seconds to wait for the engine's API and metrics endpoint.
    type: float
    default: 5
author: Prometheus Alerting maintainers (@prometheus-alerting)
"""

EXAMPLES = r"""
- name: Turn on the engine's metrics and live-restore in daemon.json
  prometheus_alerting.stack.docker_daemon_config:
    settings:
      metrics-addr: 127.0.0.1:9323
      live-restore: true
  register: engine

- name: Restart dockerd for the metrics endpoint, once live-restore is active
  ansible.builtin.systemd_service:
    name: docker
    state: restarted
  when: engine.live_restore and not engine.metrics_answering
"""

RETURN = r"""
live_restore:
  description: C(LiveRestoreEnabled) of the running engine; false when it does not answer.
  returned: always
  type: bool
engine_error:
  description: Why the engine's API did not answer on O(socket); empty when it did.
  returned: always
  type: str
metrics_answering:
  description:
    - Whether the endpoint of the C(metrics-addr) setting answers with engine metrics
      (C(engine_daemon_*)); false without that setting.
  returned: always
  type: bool
metrics_url:
  description: The URL probed for C(metrics_answering); empty without a C(metrics-addr) setting.
  returned: always
  type: str
backup_file:
  description: Copy of the previous file, when the module changed it.
  returned: changed
  type: str
"""

import contextlib
import http.client
import json
import os
import socket
import tempfile
import urllib.request

from ansible.module_utils.basic import AnsibleModule


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the engine's Unix socket."""

    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def engine_info(path, timeout):
    """The engine's GET /info, or raise OSError/ValueError."""
    connection = UnixHTTPConnection(path, timeout)
    try:
        connection.request("GET", "/info", headers={"Host": "docker"})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise ValueError(f"GET /info answered {response.status}: {body[:200]!r}")
        return json.loads(body)
    except http.client.HTTPException as err:
        raise ValueError(f"GET /info: {err}") from err
    finally:
        connection.close()


def metrics_url(address):
    """The URL to probe for a metrics-addr; a wildcard host is probed on loopback."""
    host, _sep, port = str(address).rpartition(":")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "[::]":
        host = "[::1]"
    return f"http://{host}:{port}/metrics"


def answers_with_engine_metrics(url, timeout):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status == 200 and b"engine_daemon_" in response.read()
    except (OSError, ValueError, http.client.HTTPException):
        return False


def read_config(module, path):
    """(text, parsed) of the file; ('', {}) when there is none."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return "", {}
    except OSError as err:
        module.fail_json(msg=f"cannot read {path}: {err}")
    try:
        parsed = json.loads(text) if text.strip() else {}
    except ValueError as err:
        module.fail_json(msg=f"{path} is not valid JSON ({err}): fix it first, it is left as it is")
    if not isinstance(parsed, dict):
        module.fail_json(msg=f"{path} must hold a JSON object: fix it first, it is left as it is")
    return text, parsed


def write_config(path, text):
    """Atomically, keeping the file's mode and owner (0644 root:root for a new file)."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    try:
        current = os.stat(path)
        mode, uid, gid = current.st_mode & 0o7777, current.st_uid, current.st_gid
    except FileNotFoundError:
        mode, uid, gid = 0o644, 0, 0
    fd, partial = tempfile.mkstemp(prefix=".daemon.json.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(partial, mode)
        os.chown(partial, uid, gid)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "/etc/docker/daemon.json"},
            "settings": {"type": "dict", "required": True},
            "socket": {"type": "path", "default": "/var/run/docker.sock"},
            "timeout": {"type": "float", "default": 5.0},
        },
        supports_check_mode=True,
    )
    path, settings = module.params["path"], module.params["settings"]
    timeout = module.params["timeout"]

    before_text, current = read_config(module, path)
    wanted = {**current, **settings}
    changed = wanted != current
    after_text = json.dumps(wanted, indent=2, sort_keys=True) + "\n" if changed else before_text
    result = {"changed": changed}
    if module._diff:
        result["diff"] = {
            "before_header": path,
            "after_header": path,
            "before": before_text,
            "after": after_text,
        }
    if changed and not module.check_mode:
        if os.path.exists(path):
            result["backup_file"] = module.backup_local(path)
        try:
            write_config(path, after_text)
        except OSError as err:
            module.fail_json(msg=f"cannot write {path}: {err}", **result)

    try:
        info = engine_info(module.params["socket"], timeout)
        result.update(live_restore=bool(info.get("LiveRestoreEnabled")), engine_error="")
    except (OSError, ValueError) as err:
        result.update(live_restore=False, engine_error=f"{type(err).__name__}: {err}")

    address = wanted.get("metrics-addr")
    result["metrics_url"] = metrics_url(address) if address else ""
    result["metrics_answering"] = bool(address) and answers_with_engine_metrics(
        result["metrics_url"], timeout
    )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
