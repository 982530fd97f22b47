#!/usr/bin/python
"""Validate a set of configuration files together, then put them live."""

DOCUMENTATION = r"""
---
module: staged_config
short_description: Validate a set of config files as a whole before any of them goes live
description:
  - Compares the wanted files with the live ones under I(dest). When something differs,
    copies the live tree to a staging directory next to I(dest), writes the new files and
    removes the pruned ones there, and runs the I(validate) commands on that complete
    staged tree (for example C(promtool check config), which also checks every rule file
    the staged C(prometheus.yml) names).
  - Only when every command passes are the changed files put live, each by an atomic
    rename, and the pruned files removed. When a command fails the module fails with its
    output and the live files are not touched.
  - Files this module wrote carry a marker; I(prune) removes files that match a pattern,
    carry the marker and are no longer wanted. Files without the marker (an operator's
    own) are never removed.
  - Configs must refer to their other files by paths relative to their own directory, so
    that the staged copy validates the staged files rather than the live ones.
  - With I(readable_by), a wanted file that this user could not read once live (its mode,
    owner and group, and the directories above it) fails the validation too, as the service
    would refuse to reload or fail at its next start.
  - With I(reload_marker), a file records that the files went live and the service has not
    yet reloaded them. It is written before the first file goes live and removed by the
    C(config_reload) module once the service confirms the reload. A later run that finds it
    (the previous run died in between) reports C(changed) with C(reload_pending), so the
    reload handler runs although no file changes.
options:
  dest:
    description: Live directory the files belong to; created if missing.
    type: path
    required: true
  files:
    description:
      - Wanted files, by path relative to I(dest). A value is the file's text, or a
        mapping with C(content) and optional C(mode), C(owner), C(group) for that file, and
        C(diff=false) for a file whose content must never be shown (a secret, whose old
        value is as secret as its new one and known to no mask).
      - C(basic_auth_users), a mapping of user names to passwords, is for an exporter-toolkit
        web config; it is resolved on the controller by this module's action plugin, which adds
        them to the YAML C(content) under C(basic_auth_users) as bcrypt hashes. A hash already
        in the live file that verifies the password is kept (a rerun changes nothing); any other
        gets a new hash with a random salt (C(bcrypt_rounds), default 10). The passwords never
        reach the host, and nothing but bcrypt's hash is derived from them.
    type: dict
    default: {}
  validate:
    description:
      - Commands that must pass on the staged tree, run in the staged directory. C(%s) in a
        command stands for the staged directory. Each command is split like a shell would,
        without a shell.
    type: list
    elements: str
    default: []
  prune:
    description: Glob patterns, relative to I(dest), of files to remove when unwanted.
    type: list
    elements: str
    default: []
  prune_marker:
    description: Text that a file must contain (in its first 4 KiB) to be pruned.
    type: str
  owner:
    description: Owner of the written files.
    type: str
    default: root
  group:
    description: Group of the written files.
    type: str
    default: root
  mode:
    description: Mode of the written files.
    type: raw
    default: "0644"
  directory_mode:
    description: Mode of I(dest) and of directories the module creates in it.
    type: raw
    default: "0755"
  directory_owner:
    description: Owner of I(dest) and of directories the module creates in it.
    type: str
    default: root
  directory_group:
    description: Group of I(dest) and of directories the module creates in it.
    type: str
    default: root
  owned:
    description:
      - Subdirectories of I(dest) that hold only wanted files. Any other file in them is
        removed, marked or not. For files that can carry no marker, such as secrets.
    type: list
    elements: str
    default: []
  secrets:
    description:
      - Values that occur in the files and must never be shown; they are masked in the
        diff and in every message.
    type: list
    elements: str
    default: []
  readable_by:
    description:
      - The system user the service runs as. Every wanted file must be readable by it, and
        every directory above it down from I(dest) searchable, with the attributes they will
        have once live; otherwise the module fails before anything goes live.
      - Not checked in check mode while the user does not exist yet (a fresh host).
    type: str
  reload_marker:
    description:
      - File that records a reload owed to the service (see the description). Created, with
        its parent directories, before the first changed file goes live; removed by
        C(config_reload) with the same path.
    type: path
  service_started_at:
    description:
      - For a service that reads these files only when it starts, when its running process
        started (seconds since the epoch; 0 when none runs). A wanted live file modified after
        that is listed in C(stale_files) and the result is C(changed), so that the caller
        restarts the service (an earlier run put the file live and failed or died before the
        restart).
    type: float
    default: 0
  services_started_at:
    description:
      - Like I(service_started_at), for files of several services in one call, each service's
        files in a subdirectory of I(dest) of its own, as a mapping of subdirectory name to
        when that service started. A file in a subdirectory named here is judged by its value,
        any other by I(service_started_at).
    type: dict
    default: {}
  registry:
    description:
      - Directory where the module records I(dest), once its files are live, with
        I(reload_marker) and I(readable_by).
        M(prometheus_alerting.stack.monitoring_host_facts) given the same directory reports
        the state of every tree recorded there (C(config_trees)), for I(known_state) in later
        runs.
    type: path
  known_state:
    description:
      - What the host's look at the start of the run found, as
        M(prometheus_alerting.stack.monitoring_host_facts) returns it in C(config_trees), with
        its C(digest_key) added. When what it found of I(dest)
        shows every wanted file in place with its attributes, nothing to prune, no reload
        owed, no file newer than its service and every file readable by I(readable_by), the
        action plugin returns the module's unchanged result without running anything on
        the host. Any doubt, or a file with C(basic_auth_users), runs the module.
      - Only valid while nothing else has changed the tree since the look. Leave it out
        after a task that may have (a package install).
    type: dict
notes:
  - Supports check mode (the staged tree is still validated, nothing goes live) and diff mode.
    The diff shows a change of mode, owner or group as well as of content.
author: Prometheus Alerting maintainers (@prometheus-alerting)
"""

EXAMPLES = r"""
- name: Put new alert rules live after promtool accepts the whole configuration
  prometheus_alerting.stack.staged_config:
    dest: /etc/prometheus
    files:
      rules/system.yml: "{{ lookup('ansible.builtin.template', 'rules.yml.j2') }}"
    validate:
      - promtool check config %s/prometheus.yml
    prune: [rules/*.yml]
    prune_marker: "Managed by the prometheus role"
    group: prometheus
    mode: "0640"
    readable_by: prometheus
    reload_marker: /var/lib/prometheus-alerting/reload-pending/prometheus
  notify: Reload prometheus
"""

RETURN = r"""
changed_files:
  description: Files (relative to I(dest)) whose content or attributes changed.
  returned: always
  type: list
  elements: str
  sample: [rules/system.yml]
directory_changed:
  description: Whether I(dest) was created or its owner, group or mode corrected.
  returned: always
  type: bool
removed_files:
  description: Files (relative to I(dest)) that were pruned.
  returned: always
  type: list
  elements: str
  sample: [rules/old-group.yml]
validation:
  description: Output of the validation commands.
  returned: when the files changed
  type: list
  elements: dict
  sample: [{cmd: "promtool check config /etc/prometheus/prometheus.yml", rc: 0, stdout: "..."}]
stale_files:
  description:
    - Wanted files (relative to I(dest)) already live but modified after
      I(service_started_at), which the running service has not read.
  returned: always
  type: list
  elements: str
reload_pending:
  description:
    - Whether the service owes a reload, because files went live in this run or I(reload_marker)
      was left by an earlier run that did not get to the reload.
  returned: always
  type: bool
from_known_state:
  description:
    - Whether the action plugin answered from I(known_state), without running anything on
      the host (nothing to do).
  returned: always
  type: bool
"""

import grp
import json
import os
import pwd
import shlex
import shutil
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.config_tree import (
    ARGUMENT_SPEC,
    Reader,
    WantedDirectory,
    WantedFile,
    owner_text,
    plan,
    register,
    safe_relpath,
    snapshot,
    stale_files,
    unreadable,
    write_json,
)

MARKER_WINDOW = 4096


def host_ids(check_mode):
    """ids(kind, name) for config_tree: the host's user and group IDs.

    An owner or group that does not exist yet is allowed in check mode only
    (a fresh host where an earlier task would create it): its ID is None.
    """

    def ids(kind, name):
        try:
            return (pwd.getpwnam if kind == "user" else grp.getgrnam)(name)[2]
        except KeyError:
            if check_mode:
                return None
            raise ValueError(f"{kind} {name!r} does not exist") from None

    return ids


def host_name(kind, ident):
    """The name of a user or group ID, or the ID where it has none."""
    try:
        return (pwd.getpwuid if kind == "user" else grp.getgrgid)(ident)[0]
    except KeyError:
        return str(ident)


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _carries_marker(path, marker):
    try:
        with open(path, "rb") as handle:
            return marker.encode("utf-8") in handle.read(MARKER_WINDOW)
    except OSError:
        return False


def ensure_directory(path, directory):
    """Create path (and missing parents inside it) with the attributes of `directory`."""
    if not os.path.isdir(path):
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            ensure_directory(parent, directory)
        os.mkdir(path)
    os.chown(path, directory.uid, directory.gid)
    os.chmod(path, directory.mode)


def _write_atomically(path, wanted, directory):
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        ensure_directory(parent, directory)
    fd, tmp = tempfile.mkstemp(prefix=".staged-", dir=parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(wanted.content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chown(tmp, wanted.uid, wanted.gid)
        os.chmod(tmp, wanted.mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def to_prune(dest, candidates, marker):
    """The candidates of config_tree.plan to remove: owned ones, and marked ones."""
    return [
        relpath
        for relpath, owned in candidates
        if owned or _carries_marker(os.path.join(dest, relpath), marker)
    ]


def _read_marker(path):
    try:
        with open(path) as handle:
            record = json.load(handle)
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def write_marker(path, files):
    """Record, durably, that `files` went live and the service has not reloaded them yet."""
    record = _read_marker(path)
    record = {
        "since": record.get("since") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": sorted(set(record.get("files") or []) | set(files)),
    }
    # Durable: the marker must be on disk before any live file changes.
    write_json(path, record, durable=True)


def stage(dest, content_changes, to_prune, directory_mode):
    """Copy the live tree next to dest and apply the changes there; return its path."""
    # Next to dest (same filesystem), or next to its closest existing ancestor.
    parent = os.path.dirname(os.path.abspath(dest))
    while not os.path.isdir(parent):
        parent = os.path.dirname(parent)
    staging_root = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.staging-", dir=parent)
    staged = os.path.join(staging_root, os.path.basename(dest))
    if os.path.isdir(dest):
        shutil.copytree(dest, staged, symlinks=True)
    else:
        os.makedirs(staged, mode=directory_mode)
    for item in content_changes:
        path = os.path.join(staged, item.relpath)
        os.makedirs(os.path.dirname(path), mode=directory_mode, exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(item.content)
    for relpath in to_prune:
        os.unlink(os.path.join(staged, relpath))
    return staging_root, staged


def validate(module, commands, staged, dest):
    """Run each command on the staged tree; return (results, the first failure)."""
    results = []
    for command in commands:
        argv = [arg.replace("%s", staged) for arg in shlex.split(command)]
        if module.check_mode and not shutil.which(argv[0]):
            # A fresh host in check mode: the package that brings the tool is not there yet.
            module.warn(f"not validated in check mode: {argv[0]} is not installed yet")
            continue
        rc, stdout, stderr = module.run_command(argv, cwd=staged)
        # Report paths as the live paths they will become: that is what the operator knows.
        shown = {
            "cmd": " ".join(argv).replace(staged, dest),
            "rc": rc,
            "stdout": stdout.replace(staged, dest),
            "stderr": stderr.replace(staged, dest),
        }
        results.append(shown)
        if rc != 0:
            return results, shown
    return results, None


# What a diff shows for a secret file: that it changed, never its content.
HIDDEN_BEFORE = "(old content not shown)\n"
HIDDEN_AFTER = "(new content not shown)\n"


def build_diff(dest, content_changes, to_prune, hidden, attribute_changes=()):
    """Diffs of the changes; files in `hidden` (relative paths) show no content.

    A file whose mode, owner or group changes gets an entry of its own with those,
    whether its content changes too or not.
    """
    diff = []
    for item in sorted(content_changes + list(attribute_changes), key=lambda i: i.relpath):
        path = os.path.join(dest, item.relpath)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue  # a new file: its content diff says it all
        before = owner_text(st.st_mode & 0o7777, st.st_uid, st.st_gid, host_name)
        after = owner_text(item.mode, item.uid, item.gid, host_name)
        if before != after:
            diff.append(
                {
                    "before_header": f"{path} (mode owner:group)",
                    "after_header": f"{path} (mode owner:group)",
                    "before": before + "\n",
                    "after": after + "\n",
                }
            )
    for item in content_changes:
        path = os.path.join(dest, item.relpath)
        before = (_read(path) or b"").decode("utf-8", "replace")
        after = item.content.decode("utf-8", "replace")
        if item.relpath in hidden:
            before, after = (HIDDEN_BEFORE if before else ""), HIDDEN_AFTER
        diff.append({"before_header": path, "after_header": path, "before": before, "after": after})
    for relpath in to_prune:
        path = os.path.join(dest, relpath)
        before = (
            HIDDEN_BEFORE if relpath in hidden else (_read(path) or b"").decode("utf-8", "replace")
        )
        diff.append(
            {
                "before_header": path,
                "after_header": path + " (removed)",
                "before": before,
                "after": "",
            }
        )
    return diff


def wanted_files(params, ids):
    """{relpath: WantedFile} of the files parameter; ValueError names a bad one."""
    wanted = {}
    for relpath, spec in params["files"].items():
        if isinstance(spec, dict) and "basic_auth_users" in spec:
            # The action plugin (plugins/action/staged_config.py) replaces them by hashes.
            raise ValueError(
                f"files[{relpath!r}] has basic_auth_users, which only the staged_config "
                "action plugin resolves: add its directory to action_plugins"
            )
        item = WantedFile(safe_relpath(relpath), spec, params, ids)
        wanted[item.relpath] = item
    return wanted


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    if params["prune"] and not params["prune_marker"]:
        module.fail_json(msg="prune needs prune_marker: only marked files may be removed")
    dest = params["dest"]
    ids = host_ids(module.check_mode)
    try:
        directory = WantedDirectory(params, ids)
        wanted = wanted_files(params, ids)
        owned = [safe_relpath(subdirectory) for subdirectory in params["owned"]]
    except ValueError as err:
        module.fail_json(msg=f"invalid files: {err}")

    tree = snapshot(dest)
    content_changes, attribute_changes, candidates = plan(tree, wanted, params["prune"], owned)
    pruned = to_prune(dest, candidates, params["prune_marker"] or "")
    directory_changed = directory.differs(tree)
    files_change = bool(content_changes or attribute_changes or pruned)
    marker = params["reload_marker"]
    # A marker left by an earlier run: the service still owes that reload.
    owed = bool(marker) and os.path.exists(marker)
    stale = stale_files(
        tree, wanted, content_changes, params["service_started_at"], params["services_started_at"]
    )
    result = {
        "changed": files_change or directory_changed or owed or bool(stale),
        "changed_files": sorted(i.relpath for i in content_changes + attribute_changes),
        "removed_files": pruned,
        "directory_changed": directory_changed,
        "reload_pending": files_change or owed,
        "stale_files": stale,
    }

    if params["readable_by"]:
        check_readable(module, params["readable_by"], dest, tree, wanted, directory, result, owed)

    if module._diff and (content_changes or pruned or attribute_changes):
        # Secret files, and whatever is pruned from owned directories, show no content.
        hidden = {relpath for relpath, item in wanted.items() if not item.show_diff}
        hidden |= {relpath for relpath, in_owned in candidates if in_owned}
        result["diff"] = build_diff(dest, content_changes, pruned, hidden, attribute_changes)

    if content_changes or pruned:
        staging_root, staged = stage(dest, content_changes, pruned, directory.mode)
        try:
            result["validation"], failure = validate(module, params["validate"], staged, dest)
        finally:
            shutil.rmtree(staging_root, ignore_errors=True)
        if failure:
            # amtool gives the reason on stdout and a summary on stderr; show both.
            output = " ".join(
                text.strip() for text in (failure["stdout"], failure["stderr"]) if text.strip()
            )
            # Nothing changed, and only a reload an earlier run left is still owed.
            result.update(changed=False, reload_pending=owed)
            module.fail_json(
                msg=f"the new configuration is invalid, nothing was changed: "
                f"`{failure['cmd']}` exited {failure['rc']}: {output}",
                **result,
            )

    if module.check_mode:
        module.exit_json(**result)

    if marker and files_change:
        write_marker(marker, result["changed_files"] + pruned)
    if files_change or directory_changed:
        go_live(dest, directory, directory_changed, content_changes, attribute_changes, pruned)
    if params["registry"]:
        # After the files: a record names a tree the next run's look may trust. Only a
        # shortcut for the next run: a full or read-only disk must not fail files already live.
        try:
            register(params["registry"], dest, marker, params["readable_by"])
        except OSError as err:
            module.warn(
                f"{dest} not recorded in {params['registry']} ({err}): the next run checks it "
                "on the host"
            )
    module.exit_json(**result)


def check_readable(module, user, dest, tree, wanted, directory, result, owed):
    """Fail, before anything goes live, when `user` could not read a wanted file."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        if module.check_mode:
            return  # a fresh host: an earlier task would create the user
        result.update(changed=False, reload_pending=owed)
        module.fail_json(msg=f"readable_by: user {user!r} does not exist", **result)
    reader = Reader(user, entry.pw_uid, os.getgrouplist(user, entry.pw_gid))
    problems = unreadable(dest, tree, wanted, directory, reader, host_name)
    if problems:
        result.update(changed=False, reload_pending=owed)
        module.fail_json(
            msg=f"the new configuration is invalid, nothing was changed: {user} could not read "
            + "; ".join(problems),
            **result,
        )


def go_live(dest, directory, directory_changed, content_changes, attribute_changes, to_prune):
    """Apply the validated plan to the live tree: each file by an atomic rename."""
    if directory_changed:
        ensure_directory(dest, directory)
    for item in content_changes:
        _write_atomically(os.path.join(dest, item.relpath), item, directory)
    for item in attribute_changes:
        path = os.path.join(dest, item.relpath)
        os.chown(path, item.uid, item.gid)
        os.chmod(path, item.mode)
    for relpath in to_prune:
        os.unlink(os.path.join(dest, relpath))


if __name__ == "__main__":
    main()
