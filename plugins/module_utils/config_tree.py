"""A configuration directory as data, and what it takes to make it as wanted.

One description of the tree serves two readers. staged_config's module takes
it of the live directory and plans its changes from it; its action plugin
takes the one monitoring_host_facts made at the start of the run and, when
the plan is empty, answers on the controller without a round trip to the host.
The same functions decide in both places, so they can never disagree.

A tree (``snapshot``): ``dirs`` maps each directory, relative to the tree's
root (``.`` for the root), to ``[mode, uid, gid]``; ``files`` maps each file
to ``{digest, mode, uid, gid, mtime}``. An absent root has neither.

A file's digest is its SHA-256, or with a key its HMAC-SHA256: a look whose
result shows in a log (ansible-playbook -v) must not let a reader test
guesses of a password file against it. The key lives for one run, on the
controller and in the look's no_log argument.
"""

import fnmatch
import hashlib
import hmac
import json
import os
import pwd
import stat
import tempfile

ROOT = "."

# staged_config's options: the module's argument spec, and the defaults its
# action plugin fills in before it decides on the controller.
ARGUMENT_SPEC = {
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
    "registry": {"type": "path"},
    "known_state": {"type": "dict"},
}


def _attributes(st):
    return [st.st_mode & 0o7777, st.st_uid, st.st_gid]


def digest(content, key=None):
    """The digest of a file's content (bytes): SHA-256, or HMAC-SHA256 with `key` (str)."""
    if key:
        return hmac.new(key.encode(), content, hashlib.sha256).hexdigest()
    return hashlib.sha256(content).hexdigest()


def snapshot(dest, key=None):
    """The tree under `dest`: every directory and file with its attributes and digest."""
    tree = {"dirs": {}, "files": {}}
    if not os.path.isdir(dest):
        return tree
    for root, _dirs, names in os.walk(dest):
        relroot = os.path.relpath(root, dest)
        tree["dirs"][relroot] = _attributes(os.stat(root))
        for name in names:
            path = os.path.join(root, name)
            try:
                if not stat.S_ISREG(os.stat(path).st_mode):
                    continue  # a FIFO or device would block or never end: not a config file
                with open(path, "rb") as handle:
                    content_digest = digest(handle.read(), key)
                    st = os.fstat(handle.fileno())
            except OSError:
                continue  # a dangling link or a file that went away: not a file of the tree
            mode, uid, gid = _attributes(st)
            tree["files"][os.path.normpath(os.path.join(relroot, name))] = {
                "digest": content_digest,
                "mode": mode,
                "uid": uid,
                "gid": gid,
                "mtime": st.st_mtime,
            }
    return tree


def parse_mode(mode):
    if isinstance(mode, int):
        return mode
    return int(str(mode), 8)


def safe_relpath(relpath):
    normalized = os.path.normpath(relpath)
    if os.path.isabs(relpath) or normalized.startswith(".."):
        raise ValueError(f"file path {relpath!r} must stay inside dest")
    return normalized


class WantedFile:
    """One file the caller wants, with its content and attributes.

    `ids(kind, name)` gives the ID of a user or group (kind 'user' or 'group'),
    None for one that does not exist yet (check mode on a fresh host), or raises
    ValueError naming it.
    """

    def __init__(self, relpath, spec, defaults, ids):
        if isinstance(spec, dict):
            if "content" not in spec:
                raise ValueError(f"files[{relpath!r}] has no 'content'")
            content = spec["content"]
        else:
            content, spec = spec, {}
        self.relpath = relpath
        self.content = str(content).encode("utf-8")
        self.show_diff = bool(spec.get("diff", True))
        self.mode = parse_mode(spec.get("mode", defaults["mode"]))
        self.uid = ids("user", spec.get("owner", defaults["owner"]))
        self.gid = ids("group", spec.get("group", defaults["group"]))


class WantedDirectory:
    """The attributes of dest and of the directories created in it."""

    def __init__(self, params, ids):
        self.mode = parse_mode(params["directory_mode"])
        self.uid = ids("user", params["directory_owner"])
        self.gid = ids("group", params["directory_group"])

    def differs(self, tree):
        """Whether the tree's root is missing or lacks these attributes."""
        return tree["dirs"].get(ROOT) != [self.mode, self.uid, self.gid]


def matches(pattern, relpath):
    """Whether `relpath` matches a glob `pattern` as glob.glob would find it.

    Component by component: `*` never crosses a `/`, and a name that starts
    with a dot is matched only by a pattern component that does too.
    """
    pattern_parts, path_parts = pattern.split("/"), relpath.split("/")
    if len(pattern_parts) != len(path_parts):
        return False
    return all(
        fnmatch.fnmatchcase(name, part) and (not name.startswith(".") or part.startswith("."))
        # Lengths checked above; no strict=: targets may run Python < 3.10.
        for part, name in zip(pattern_parts, path_parts)  # noqa: B905
    )


def plan(tree, wanted, prune=(), owned=(), key=None):
    """What differs: (content changes, attribute-only changes, prune candidates).

    `key` is the one the tree's digests were made with.
    Candidates are the unwanted files in an `owned` subdirectory (removed
    whatever they hold) and those matching a `prune` pattern (removed only when
    they carry the marker, which the caller checks on the file itself).
    Returns the candidates as (relpath, owned) pairs, sorted.
    """
    content_changes, attribute_changes = [], []
    for item in wanted.values():
        live = tree["files"].get(item.relpath)
        if live is None or live["digest"] != digest(item.content, key):
            content_changes.append(item)
        elif [live["mode"], live["uid"], live["gid"]] != [item.mode, item.uid, item.gid]:
            attribute_changes.append(item)
    candidates = {}
    for relpath in tree["files"]:
        if relpath in wanted:
            continue
        if any(relpath.startswith(subdirectory + "/") for subdirectory in owned):
            candidates[relpath] = True
        elif any(matches(pattern, relpath) for pattern in prune):
            candidates.setdefault(relpath, False)
    return content_changes, attribute_changes, sorted(candidates.items())


def stale_files(tree, wanted, content_changes, started_at, started_at_by_subdir):
    """Live files, unchanged by this run, that were written after their service started."""
    changing = {item.relpath for item in content_changes}
    stale = []
    for relpath in sorted(wanted):
        subdir = relpath.split("/", 1)[0] if "/" in relpath else None
        service_started = float(started_at_by_subdir.get(subdir, started_at) or 0)
        live = tree["files"].get(relpath)
        if service_started and relpath not in changing and live and live["mtime"] > service_started:
            stale.append(relpath)
    return stale


def owner_text(mode, uid, gid, name=None):
    """`0640 root:prometheus`: a file's mode, owner and group as ls shows them.

    `name(kind, id)` turns an ID into a name; without it, IDs are shown.
    """

    def shown(kind, ident):
        if ident is None:
            return "(not created yet)"
        return name(kind, ident) if name else str(ident)

    return f"{mode:04o} {shown('user', uid)}:{shown('group', gid)}"


class Reader:
    """A system user, and whether it may read or search a path with given attributes."""

    READ, SEARCH = 4, 1

    def __init__(self, name, uid, gids):
        self.name = name
        self.uid = uid
        self.gids = set(gids)

    def may(self, mode, uid, gid, permission):
        # As the kernel decides: the owner's bits for the owner, else the group's, else others'.
        if self.uid == 0:
            return True
        if uid == self.uid:
            return bool((mode >> 6) & permission)
        if gid in self.gids:
            return bool((mode >> 3) & permission)
        return bool(mode & permission)


def unreadable(dest, tree, wanted, directory, reader, name=None):
    """Wanted files `reader` could not read once live, each with the reason."""
    problems = []
    for item in sorted(wanted.values(), key=lambda i: i.relpath):
        # dest gets the wanted directory attributes; a subdirectory keeps its own, or
        # gets them when it is created.
        path_attributes = [(dest, directory.mode, directory.uid, directory.gid)]
        relative = ""
        for part in item.relpath.split(os.sep)[:-1]:
            relative = os.path.join(relative, part)
            mode, uid, gid = tree["dirs"].get(
                relative, [directory.mode, directory.uid, directory.gid]
            )
            path_attributes.append((os.path.join(dest, relative), mode, uid, gid))
        path_attributes.append((None, item.mode, item.uid, item.gid))
        if any(uid is None or gid is None for _path, _mode, uid, gid in path_attributes):
            continue  # check mode on a fresh host: the owner does not exist yet
        for path, mode, uid, gid in path_attributes:
            permission = Reader.READ if path is None else Reader.SEARCH
            if not reader.may(mode, uid, gid, permission):
                where = f"its directory {path} is" if path else "it would be"
                problems.append(f"{item.relpath} ({where} {owner_text(mode, uid, gid, name)})")
                break
    return problems


def nothing_to_do(known, params, ids, key=None):
    """staged_config's no-change result when `known` (a look's entry) proves it; else None.

    `params` are the module's, defaults filled in; `key` is the look's digest key.
    Any doubt gives None (the module runs): a file with basic-auth users (its
    hashes are checked against the live file's), a user, group or reader the
    look did not find, a reload marker it did not check or found, a file to
    change, prune or reread, the root's attributes, a file the reader could not
    read.
    """
    files = params.get("files") or {}
    if any(isinstance(spec, dict) and "basic_auth_users" in spec for spec in files.values()):
        return None
    try:
        wanted = {}
        for relpath, spec in files.items():
            item = WantedFile(safe_relpath(relpath), spec, params, ids)
            wanted[item.relpath] = item
        directory = WantedDirectory(params, ids)
        owned = [safe_relpath(subdirectory) for subdirectory in params["owned"]]
    except ValueError:
        return None
    tree, marker, reader = known["tree"], params.get("reload_marker"), params.get("readable_by")
    entry = known["readers"].get(reader) if reader else None
    in_place = (
        all(i.uid is not None and i.gid is not None for i in [directory, *wanted.values()])
        and not directory.differs(tree)
        and not any(plan(tree, wanted, params["prune"], owned, key))
        and not (marker and known["reload_markers"].get(marker, True))
        and not stale_files(
            tree, wanted, [], params["service_started_at"], params["services_started_at"]
        )
        and not (reader and entry is None)
        and not (
            entry
            and unreadable(
                params["dest"], tree, wanted, directory, Reader(reader, entry["uid"], entry["gids"])
            )
        )
    )
    if not in_place:
        return None
    return {
        "changed": False,
        "changed_files": [],
        "removed_files": [],
        "directory_changed": False,
        "reload_pending": False,
        "stale_files": [],
    }


# --- The registry: which trees the next run's look should take -------------------------


def record_path(registry, dest):
    return os.path.join(registry, hashlib.sha1(dest.encode()).hexdigest() + ".json")


def read_record(path):
    try:
        with open(path) as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("dest"), str):
        return None
    return record


def register(registry, dest, reload_marker=None, reader=None):
    """Record `dest` (and the reload marker and reader its calls use) in `registry`.

    Markers and readers accumulate: several calls may share one dest. Written
    only when something is new, atomically; returns whether it wrote.
    """
    path = record_path(registry, dest)
    old = read_record(path) or {"dest": dest}
    record = {
        "dest": dest,
        "reload_markers": sorted(set(old.get("reload_markers") or []) | {reload_marker} - {None}),
        "readers": sorted(set(old.get("readers") or []) | {reader} - {None}),
    }
    if record == old:
        return False
    write_json(path, record)
    return True


def write_json(path, record, durable=False):
    """Write `record` as JSON to `path` (0644) by an atomic rename, creating its directory.

    `durable`: the content and the rename reach the disk before this returns.
    """
    parent = os.path.dirname(path)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".json-", dir=parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle)
            handle.write("\n")
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if durable:
        directory_fd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)


def registered(registry):
    """The records in `registry`, one per dest: each under the name its dest gives."""
    try:
        names = sorted(os.listdir(registry))
    except OSError:
        return []
    records = []
    for name in names:
        record = read_record(os.path.join(registry, name))
        if record and os.path.basename(record_path(registry, record["dest"])) == name:
            records.append(record)
    return records


def look(registry, key=None):
    """{dest: {tree, reload_markers: {path: exists}, readers: {user: {uid, gids}}}}.

    What monitoring_host_facts reports of every tree in `registry`, digests made
    with `key`. A reader that does not exist (yet) is left out.
    """
    trees = {}
    for record in registered(registry):
        readers = {}
        for user in record.get("readers") or []:
            try:
                entry = pwd.getpwnam(user)
            except KeyError:
                continue
            readers[user] = {"uid": entry.pw_uid, "gids": os.getgrouplist(user, entry.pw_gid)}
        trees[record["dest"]] = {
            "tree": snapshot(record["dest"], key),
            "reload_markers": {
                path: os.path.exists(path) for path in record.get("reload_markers") or []
            },
            "readers": readers,
        }
    return trees
