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
"""

import glob
import grp
import json
import os
import pwd
import shlex
import shutil
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

MARKER_WINDOW = 4096


class WantedFile:
    """One file the caller wants, with its content and attributes.

    An owner or group that does not exist yet is allowed in check mode only
    (a fresh host where an earlier task would create it): its id is None.
    """

    def __init__(self, relpath, spec, defaults, check_mode=False):
        if isinstance(spec, dict):
            if "content" not in spec:
                raise ValueError(f"files[{relpath!r}] has no 'content'")
            if "basic_auth_users" in spec:
                # The action plugin (plugins/action/staged_config.py) replaces them by hashes.
                raise ValueError(
                    f"files[{relpath!r}] has basic_auth_users, which only the staged_config "
                    "action plugin resolves: add its directory to action_plugins"
                )
            content = spec["content"]
        else:
            content, spec = spec, {}
        self.relpath = relpath
        self.content = str(content).encode("utf-8")
        self.show_diff = bool(spec.get("diff", True))
        self.mode = _parse_mode(spec.get("mode", defaults["mode"]))
        self.uid = _lookup_id(
            pwd.getpwnam, "user", spec.get("owner", defaults["owner"]), check_mode
        )
        self.gid = _lookup_id(
            grp.getgrnam, "group", spec.get("group", defaults["group"]), check_mode
        )


def _parse_mode(mode):
    if isinstance(mode, int):
        return mode
    return int(str(mode), 8)


def _lookup_id(lookup, kind, name, check_mode):
    try:
        return lookup(name)[2]
    except KeyError:
        if check_mode:
            return None
        raise ValueError(f"{kind} {name!r} does not exist") from None


def _safe_relpath(relpath):
    normalized = os.path.normpath(relpath)
    if os.path.isabs(relpath) or normalized.startswith(".."):
        raise ValueError(f"file path {relpath!r} must stay inside dest")
    return normalized


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


def _attributes_differ(path, wanted):
    """Whether path is missing or lacks the mode, uid and gid of `wanted` (a file or directory)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return True
    return (st.st_mode & 0o7777, st.st_uid, st.st_gid) != (wanted.mode, wanted.uid, wanted.gid)


class WantedDirectory:
    """Attributes of dest and of the directories created in it."""

    def __init__(self, params, check_mode):
        self.mode = _parse_mode(params["directory_mode"])
        self.uid = _lookup_id(pwd.getpwnam, "user", params["directory_owner"], check_mode)
        self.gid = _lookup_id(grp.getgrnam, "group", params["directory_group"], check_mode)

    def ensure(self, path):
        """Create path (and missing parents inside it) with these attributes."""
        if not os.path.isdir(path):
            parent = os.path.dirname(path)
            if not os.path.isdir(parent):
                self.ensure(parent)
            os.mkdir(path)
        os.chown(path, self.uid, self.gid)
        os.chmod(path, self.mode)


def _write_atomically(path, wanted, directory):
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        directory.ensure(parent)
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


def _owner_text(mode, uid, gid):
    """`0640 root:prometheus`: a file's mode, owner and group as ls shows them."""

    def name(lookup, ident):
        if ident is None:
            return "(not created yet)"
        try:
            return lookup(ident)[0]
        except KeyError:
            return str(ident)

    return f"{mode:04o} {name(pwd.getpwuid, uid)}:{name(grp.getgrgid, gid)}"


class Reader:
    """A system user, and whether it may read or search a path with given attributes."""

    READ, SEARCH = 4, 1

    def __init__(self, name):
        entry = pwd.getpwnam(name)
        self.name = name
        self.uid = entry.pw_uid
        self.gids = set(os.getgrouplist(name, entry.pw_gid))

    def may(self, mode, uid, gid, permission):
        # As the kernel decides: the owner's bits for the owner, else the group's, else others'.
        if self.uid == 0:
            return True
        if uid == self.uid:
            return bool((mode >> 6) & permission)
        if gid in self.gids:
            return bool((mode >> 3) & permission)
        return bool(mode & permission)


def unreadable(dest, wanted, directory, reader):
    """Wanted files `reader` could not read once live, each with the reason."""
    problems = []
    for item in sorted(wanted.values(), key=lambda i: i.relpath):
        # dest gets the wanted directory attributes; a subdirectory keeps its own, or
        # gets them when it is created.
        path_attributes = [(dest, directory.mode, directory.uid, directory.gid)]
        current = dest
        for part in item.relpath.split(os.sep)[:-1]:
            current = os.path.join(current, part)
            try:
                st = os.stat(current)
                path_attributes.append((current, st.st_mode & 0o7777, st.st_uid, st.st_gid))
            except FileNotFoundError:
                path_attributes.append((current, directory.mode, directory.uid, directory.gid))
        path_attributes.append((None, item.mode, item.uid, item.gid))
        if any(uid is None or gid is None for _path, _mode, uid, gid in path_attributes):
            continue  # check mode on a fresh host: the owner does not exist yet
        for path, mode, uid, gid in path_attributes:
            permission = Reader.READ if path is None else Reader.SEARCH
            if not reader.may(mode, uid, gid, permission):
                where = f"its directory {path} is" if path else "it would be"
                problems.append(f"{item.relpath} ({where} {_owner_text(mode, uid, gid)})")
                break
    return problems


def stale_files(dest, wanted, content_changes, started_at, started_at_by_subdir):
    """Live files, unchanged by this run, that were written after their service started."""
    changing = {item.relpath for item in content_changes}
    stale = []
    for relpath in sorted(wanted):
        subdir = relpath.split("/", 1)[0] if "/" in relpath else None
        service_started = float(started_at_by_subdir.get(subdir, started_at) or 0)
        if not service_started or relpath in changing:
            continue
        try:
            modified = os.stat(os.path.join(dest, relpath)).st_mtime
        except FileNotFoundError:
            continue
        if modified > service_started:
            stale.append(relpath)
    return stale


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
    parent = os.path.dirname(path)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".marker-", dir=parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    # The rename itself must reach the disk before any live file changes.
    directory_fd = os.open(parent, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)


def _all_files(dest):
    for root, _dirs, names in os.walk(dest):
        for name in names:
            yield os.path.relpath(os.path.join(root, name), dest)


def plan(dest, wanted, prune, marker, owned=()):
    """Work out what differs: (content changes, attribute-only changes, files to prune)."""
    content_changes, attribute_changes = [], []
    for item in wanted.values():
        live = os.path.join(dest, item.relpath)
        if _read(live) != item.content:
            content_changes.append(item)
        elif _attributes_differ(live, item):
            attribute_changes.append(item)
    to_prune = []
    for pattern in prune:
        for path in sorted(glob.glob(os.path.join(dest, pattern))):
            relpath = os.path.relpath(path, dest)
            if relpath not in wanted and os.path.isfile(path) and _carries_marker(path, marker):
                to_prune.append(relpath)
    for subdirectory in owned:
        root = os.path.join(dest, subdirectory)
        if os.path.isdir(root):
            to_prune += [
                os.path.normpath(os.path.join(subdirectory, relpath))
                for relpath in _all_files(root)
                if os.path.normpath(os.path.join(subdirectory, relpath)) not in wanted
            ]
    return content_changes, attribute_changes, sorted(set(to_prune))


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
        before = _owner_text(st.st_mode & 0o7777, st.st_uid, st.st_gid)
        after = _owner_text(item.mode, item.uid, item.gid)
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


def main():
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "files": {"type": "dict", "default": {}},
            "validate": {"type": "list", "elements": "str", "default": []},
            "prune": {"type": "list", "elements": "str", "default": []},
            "prune_marker": {"type": "str"},
            "owner": {"type": "str", "default": "root"},
            "group": {"type": "str", "default": "root"},
            "mode": {"type": "raw", "default": "0644"},
            "directory_mode": {"type": "raw", "default": "0755"},
            "directory_owner": {"type": "str", "default": "root"},
            "directory_group": {"type": "str", "default": "root"},
            "owned": {"type": "list", "elements": "str", "default": []},
            "secrets": {"type": "list", "elements": "str", "default": [], "no_log": True},
            "readable_by": {"type": "str"},
            "reload_marker": {"type": "path"},
            "service_started_at": {"type": "float", "default": 0},
            "services_started_at": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    params = module.params
    if params["prune"] and not params["prune_marker"]:
        module.fail_json(msg="prune needs prune_marker: only marked files may be removed")
    dest = params["dest"]
    try:
        directory = WantedDirectory(params, module.check_mode)
        wanted = {}
        for relpath, spec in params["files"].items():
            item = WantedFile(_safe_relpath(relpath), spec, params, module.check_mode)
            wanted[item.relpath] = item
    except ValueError as err:
        module.fail_json(msg=f"invalid files: {err}")

    owned = [_safe_relpath(subdirectory) for subdirectory in params["owned"]]
    content_changes, attribute_changes, to_prune = plan(
        dest, wanted, params["prune"], params["prune_marker"] or "", owned
    )
    directory_changed = _attributes_differ(dest, directory)
    files_change = bool(content_changes or attribute_changes or to_prune)
    marker = params["reload_marker"]
    # A marker left by an earlier run: the service still owes that reload.
    owed = bool(marker) and os.path.exists(marker)
    stale = stale_files(
        dest, wanted, content_changes, params["service_started_at"], params["services_started_at"]
    )
    result = {
        "changed": files_change or directory_changed or owed or bool(stale),
        "changed_files": sorted(i.relpath for i in content_changes + attribute_changes),
        "removed_files": to_prune,
        "directory_changed": directory_changed,
        "reload_pending": files_change or owed,
        "stale_files": stale,
    }

    if params["readable_by"]:
        check_readable(module, params["readable_by"], dest, wanted, directory, result, owed)

    if module._diff and (content_changes or to_prune or attribute_changes):
        # Secret files, and whatever is pruned from owned directories, show no content.
        hidden = {relpath for relpath, item in wanted.items() if not item.show_diff}
        hidden |= {
            relpath
            for relpath in to_prune
            if any(relpath.startswith(sub + os.sep) for sub in owned)
        }
        result["diff"] = build_diff(dest, content_changes, to_prune, hidden, attribute_changes)

    if content_changes or to_prune:
        staging_root, staged = stage(dest, content_changes, to_prune, directory.mode)
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

    if module.check_mode or not (files_change or directory_changed):
        module.exit_json(**result)

    if marker and files_change:
        write_marker(marker, result["changed_files"] + to_prune)
    go_live(dest, directory, directory_changed, content_changes, attribute_changes, to_prune)
    module.exit_json(**result)


def check_readable(module, user, dest, wanted, directory, result, owed):
    """Fail, before anything goes live, when `user` could not read a wanted file."""
    try:
        reader = Reader(user)
    except KeyError:
        if module.check_mode:
            return  # a fresh host: an earlier task would create the user
        result.update(changed=False, reload_pending=owed)
        module.fail_json(msg=f"readable_by: user {user!r} does not exist", **result)
    problems = unreadable(dest, wanted, directory, reader)
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
        directory.ensure(dest)
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
