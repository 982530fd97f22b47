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
notes:
  - Supports check mode (the staged tree is still validated, nothing goes live) and diff mode.
author: prometheus-alerting
"""

EXAMPLES = r"""
- name: Put new alert rules live after promtool accepts the whole configuration
  staged_config:
    dest: /etc/prometheus
    files:
      rules/system.yml: "{{ lookup('ansible.builtin.template', 'rules.yml.j2') }}"
    validate:
      - promtool check config %s/prometheus.yml
    prune: [rules/*.yml]
    prune_marker: "Managed by the prometheus role"
    group: prometheus
    mode: "0640"
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
"""

import glob
import grp
import os
import pwd
import shlex
import shutil
import tempfile

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


def build_diff(dest, content_changes, to_prune, hidden):
    """Diffs of the changes; files in `hidden` (relative paths) show no content."""
    diff = []
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
    directory_mode = directory.mode

    owned = [_safe_relpath(subdirectory) for subdirectory in params["owned"]]
    content_changes, attribute_changes, to_prune = plan(
        dest, wanted, params["prune"], params["prune_marker"] or "", owned
    )
    directory_changed = _attributes_differ(dest, directory)
    result = {
        "changed": bool(content_changes or attribute_changes or to_prune or directory_changed),
        "changed_files": sorted(i.relpath for i in content_changes + attribute_changes),
        "removed_files": to_prune,
        "directory_changed": directory_changed,
    }
    if module._diff and (content_changes or to_prune):
        # Secret files, and whatever is pruned from owned directories, show no content.
        hidden = {relpath for relpath, item in wanted.items() if not item.show_diff}
        hidden |= {
            relpath
            for relpath in to_prune
            if any(relpath.startswith(sub + os.sep) for sub in owned)
        }
        result["diff"] = build_diff(dest, content_changes, to_prune, hidden)

    if content_changes or to_prune:
        staging_root, staged = stage(dest, content_changes, to_prune, directory_mode)
        try:
            result["validation"], failure = validate(module, params["validate"], staged, dest)
        finally:
            shutil.rmtree(staging_root, ignore_errors=True)
        if failure:
            # amtool gives the reason on stdout and a summary on stderr; show both.
            output = " ".join(
                text.strip() for text in (failure["stdout"], failure["stderr"]) if text.strip()
            )
            module.fail_json(
                msg=f"the new configuration is invalid, nothing was changed: "
                f"`{failure['cmd']}` exited {failure['rc']}: {output}",
                **result,
            )

    if module.check_mode or not result["changed"]:
        module.exit_json(**result)

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
    module.exit_json(**result)


if __name__ == "__main__":
    main()
