#!/usr/bin/python
"""One look at a host: what the stack's roles would otherwise ask in many calls."""

DOCUMENTATION = r"""
---
module: monitoring_host_facts
short_description: A host's packages, users, groups, services and archive installs, in one call
description:
  - Returns, as C(host), what the roles need to skip work that is already in place. That
    is the installed Debian packages and their versions, system users and groups, the state
    of every systemd service (and, for the units under C(/etc/systemd/system), when their
    main process started), the checksums and modification times of those unit files, the
    Python version, the CPU architecture, and the services installed from release archives
    under O(archive_root).
  - One module run replaces a package install, a user, a unit file and a service check per
    service that would otherwise each cost a round trip to the host.
  - Read-only; runs the same in check mode.
  - Returns no C(ansible_facts) on purpose. Facts go into the fact cache when one is on,
    and the next run would find them there, describing the host as it was. Register the
    result and keep it with a (non-cacheable) C(set_fact) instead.
options:
  archive_root:
    description:
      - Directory under which release archives are installed, one C(<name>/<version>/) each
        with a manifest of its files (written by the monitoring_service role).
      - Reading the manifests and checking each file's size is what tells a rerun, without
        hashing any binary, that a version is completely in place.
    type: path
    default: /opt/prometheus-alerting
  config_registry:
    description:
      - Directory where M(prometheus_alerting.stack.staged_config) records the configuration
        directories it manages (its O(prometheus_alerting.stack.staged_config#module:registry)).
        Each one recorded there is reported in C(config_trees).
    type: path
  digest_key:
    description:
      - Key of the HMAC-SHA256 digests of the files in C(config_trees), instead of their
        SHA-256. A result shown in a log (C(-v)) then gives nobody a way to test guesses of
        a password file's content. A new random key for each run, kept on the controller.
    type: str
notes:
  - Without systemd (a plain container), C(services) is empty.
author: Prometheus Alerting maintainers (@prometheus-alerting)
"""

EXAMPLES = r"""
- name: Look at the host once per run
  prometheus_alerting.stack.monitoring_host_facts:
  register: host_look
  when: monitoring_host is undefined

- name: Keep it for this run only (set_fact is not cached)
  ansible.builtin.set_fact:
    monitoring_host: "{{ host_look.host }}"
  when: monitoring_host is undefined

- name: Install the package unless it is there
  ansible.builtin.apt:
    name: prometheus
  when: "'prometheus' not in monitoring_host.packages"
"""

RETURN = r"""
host:
  description: The host's state.
  returned: always
  type: dict
  contains:
    packages:
      description: Installed packages and their versions.
      type: dict
      sample: {prometheus: 2.42.0+ds-5+deb12u1}
    users:
      description: Names of the host's users.
      type: list
      elements: str
    groups:
      description: Group names and their IDs.
      type: dict
      sample: {docker: 108}
    services:
      description:
        - Every systemd service unit with whether it is active and enabled. A unit with a
          file in /etc/systemd/system also has C(started_at), when its main process started
          (seconds since the epoch, 0 when none runs), and C(needs_daemon_reload), whether
          systemd still runs an older definition of the unit than the one on disk.
        - Together with the unit file's C(mtime) they tell a service that runs an older unit
          than the one on disk (a run interrupted between writing the unit and restarting).
      type: dict
      sample: {prometheus.service: {active: true, enabled: true, started_at: 1764172800.5,
               needs_daemon_reload: false}}
    unit_files:
      description: SHA-1 and modification time of each unit file in /etc/systemd/system.
      type: dict
      sample: {/etc/systemd/system/prometheus.service: {sha1: 3b5d..., mtime: 1764172790.1}}
    python_version:
      description: Major and minor version of the Python that runs modules.
      type: str
      sample: "3.11"
    architecture:
      description: CPU architecture, as uname -m gives it.
      type: str
      sample: x86_64
    nameservers:
      description: The resolvers of C(/etc/resolv.conf), in its order (none when it is missing).
      type: list
      elements: str
      sample: [127.0.0.53]
    archives:
      description:
        - Per name, every version directory under O(archive_root), with the SHA-256 of the
          archive it came from, the files its manifest lists, and whether all of them are
          there with the recorded size (C(complete)). A directory without a readable manifest
          (an interrupted install) is listed with C(complete) false.
      type: dict
      sample: {prometheus: {"2.53.3": {archive_sha256: 7f2a..., complete: true,
               files: [/opt/prometheus-alerting/prometheus/2.53.3/prometheus]}}}
    config_trees:
      description:
        - With O(config_registry), what staged_config needs to tell, on the controller, that
          it has nothing to do (its O(prometheus_alerting.stack.staged_config#module:known_state)).
        - C(trees) has, per recorded directory, every file and directory under it with its
          mode, owner, group (and a file's digest and modification time), whether each reload
          marker recorded with it exists, and the user and group IDs of each recorded reader;
          C(user_ids) and C(group_ids) map the host's names to IDs.
      type: dict
      returned: when O(config_registry) is set
      sample: {trees: {/etc/prometheus: {tree: {dirs: {".": [493, 0, 0]}, files: {prometheus.yml:
               {digest: 9c1e..., mode: 416, uid: 0, gid: 112, mtime: 1764172790.1}}},
               reload_markers: {/var/lib/prometheus-alerting/reload-pending/prometheus: false},
               readers: {prometheus: {uid: 108, gids: [112]}}}},
               user_ids: {prometheus: 108}, group_ids: {prometheus: 112}}
"""

import glob
import grp
import hashlib
import json
import os
import platform
import pwd
import shutil
import sys
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.config_tree import look

UNIT_DIR = "/etc/systemd/system"
# Written last by an archive install (roles/monitoring_service/tasks/install.yml).
ARCHIVE_MANIFEST = ".install-manifest.json"


def installed_packages(module):
    rc, out, _err = module.run_command(
        ["dpkg-query", "-W", "-f", "${db:Status-Status} ${Package} ${Version}\\n"]
    )
    if rc != 0:
        return {}
    packages = {}
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] == "installed":
            packages[parts[1]] = parts[2]
    return packages


def services(module):
    """{unit: {active, enabled}} from two systemctl calls; {} without systemd."""
    if not shutil.which("systemctl") or not os.path.isdir("/run/systemd/system"):
        return {}
    states = {}
    rc, out, _err = module.run_command(
        [
            "systemctl",
            "list-units",
            "--type=service",
            "--all",
            "--plain",
            "--no-legend",
            "--no-pager",
        ]
    )
    if rc == 0:
        for line in out.splitlines():
            fields = line.split()
            if len(fields) >= 3:
                states[fields[0]] = {"active": fields[2] == "active", "enabled": False}
    rc, out, _err = module.run_command(
        ["systemctl", "list-unit-files", "--type=service", "--plain", "--no-legend", "--no-pager"]
    )
    if rc == 0:
        for line in out.splitlines():
            fields = line.split()
            if len(fields) >= 2:
                entry = states.setdefault(fields[0], {"active": False, "enabled": False})
                entry["enabled"] = fields[1] == "enabled"
    return states


def unit_files():
    """{path: {sha1, mtime}} of the service unit files in UNIT_DIR."""
    found = {}
    for path in sorted(glob.glob(os.path.join(UNIT_DIR, "*.service"))):
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, "rb") as handle:
                # SHA-1, as Ansible checksums files: comparable with the hash filter.
                found[path] = {
                    "sha1": hashlib.sha1(handle.read()).hexdigest(),
                    "mtime": os.fstat(handle.fileno()).st_mtime,
                }
    return found


def main_process_starts(module, units):
    """{unit: {started_at, needs_daemon_reload}} for `units`, from one systemctl call.

    systemd gives the start as a monotonic timestamp (microseconds since boot);
    it is turned into wall-clock seconds to compare with file modification times.
    """
    if not units:
        return {}
    rc, out, _err = module.run_command(
        [
            "systemctl",
            "show",
            "--property=Id,ExecMainStartTimestampMonotonic,ExecMainPID,NeedDaemonReload",
            "--",
            *units,
        ]
    )
    if rc != 0:
        return {}
    offset = time.time() - time.clock_gettime(time.CLOCK_MONOTONIC)
    starts = {}
    # One block of KEY=value lines per unit, separated by an empty line.
    for block in out.strip().split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" not in fields:
            continue
        running = fields.get("ExecMainPID", "0") not in ("", "0")
        monotonic = int(fields.get("ExecMainStartTimestampMonotonic") or 0)
        starts[fields["Id"]] = {
            "started_at": round(offset + monotonic / 1e6, 3) if running and monotonic else 0,
            "needs_daemon_reload": fields.get("NeedDaemonReload") == "yes",
        }
    return starts


def archive_installs(root):
    """{name: {version: {archive_sha256, files, complete}}} of the installs under `root`."""
    installs = {}
    for directory in sorted(glob.glob(os.path.join(glob.escape(root), "*", "*"))):
        if not os.path.isdir(directory) or os.path.islink(directory):
            continue
        name, version = directory.split(os.sep)[-2:]
        entry = {"archive_sha256": "", "files": [], "complete": False}
        try:
            with open(os.path.join(directory, ARCHIVE_MANIFEST)) as handle:
                manifest = json.load(handle)
            files = manifest["files"]
            entry = {
                "archive_sha256": str(manifest.get("archive_sha256", "")),
                "files": sorted(files),
                "complete": all(
                    os.path.isfile(path) and os.path.getsize(path) == record["size"]
                    for path, record in files.items()
                ),
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        installs.setdefault(name, {})[version] = entry
    return installs


def nameservers(path="/etc/resolv.conf"):
    """The `nameserver` lines of resolv.conf, in order."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    return [
        fields[1]
        for fields in (line.split() for line in lines)
        if len(fields) >= 2 and fields[0] == "nameserver"
    ]


def main():
    module = AnsibleModule(
        argument_spec={
            "archive_root": {"type": "path", "default": "/opt/prometheus-alerting"},
            "config_registry": {"type": "path"},
            "digest_key": {"type": "str", "no_log": True},
        },
        supports_check_mode=True,
    )
    units = unit_files()
    states = services(module)
    if states:
        own_units = [os.path.basename(path) for path in units]
        for unit, start in main_process_starts(module, own_units).items():
            states.setdefault(unit, {"active": False, "enabled": False}).update(start)
    host = {
        "packages": installed_packages(module),
        "users": sorted(entry.pw_name for entry in pwd.getpwall()),
        "groups": {entry.gr_name: entry.gr_gid for entry in grp.getgrall()},
        "services": states,
        "unit_files": units,
        "python_version": f"{sys.version_info.major}.{sys.version_info.minor}",
        "architecture": platform.machine(),
        "nameservers": nameservers(),
        "archives": archive_installs(module.params["archive_root"]),
    }
    if module.params["config_registry"]:
        host["config_trees"] = {
            "trees": look(module.params["config_registry"], module.params["digest_key"]),
            "user_ids": {entry.pw_name: entry.pw_uid for entry in pwd.getpwall()},
            "group_ids": host["groups"],
        }
    module.exit_json(changed=False, host=host)


if __name__ == "__main__":
    main()
