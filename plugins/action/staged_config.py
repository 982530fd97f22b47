"""Action plugin of staged_config: what is decided on the controller.

Nothing to do: with ``known_state``, the look monitoring_host_facts took at the
start of the run, the plugin plans from it with the module's own functions
(module_utils/config_tree.py). When every wanted file is in place and nothing
else is owed, it returns the module's unchanged result without a round trip to
the host; any doubt runs the module, which plans again on the live files.
The look no longer holds for a tree the module changed since: such a change
is recorded in this run's own temporary directory on the controller (Ansible's
local tmp, which goes with the run), and the tree's next task in the run (a
role applied twice) runs the module again.

Basic-auth users: bcrypt hashes of web users, made on the controller.

A web config file given to staged_config with ``basic_auth_users`` (user name
-> password) gets those users appended to its YAML content as bcrypt hashes
before the module runs on the host. A hash that is already in the live file
and verifies the user's password is kept, so a rerun writes the same file and
changes nothing; any other user gets a new hash with a random salt (bcrypt's
own). The passwords never reach the host, and nothing but bcrypt's hash is
derived from them.
"""

import base64
import hashlib
import os

import yaml
from ansible import constants as C
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.config_tree import (
    ARGUMENT_SPEC,
    nothing_to_do,
)

# The controller's requirements.txt pins it; only basic-auth users need it.
try:
    import bcrypt
except ImportError as err:
    BCRYPT_IMPORT_ERROR = err
else:
    BCRYPT_IMPORT_ERROR = None

DEFAULT_ROUNDS = 10


def existing_hashes(live_text):
    """{user: hash} of the ``basic_auth_users`` in a live web config; {} when unreadable."""
    try:
        document = yaml.safe_load(live_text or "")
    except yaml.YAMLError:
        return {}
    users = document.get("basic_auth_users") if isinstance(document, dict) else None
    if not isinstance(users, dict):
        return {}
    return {str(user): str(hashed) for user, hashed in users.items() if hashed}


def _verifies(password, hashed):
    try:
        return bcrypt.checkpw(password, hashed.encode())
    except ValueError:  # not a bcrypt hash
        return False


def hash_users(users, existing, rounds=DEFAULT_ROUNDS):
    """{user: bcrypt hash} for {user: password}: the existing hash where it still verifies."""
    hashes = {}
    for user, password in sorted(users.items()):
        secret = str(password).encode()
        current = existing.get(user)
        if current and _verifies(secret, current):
            hashes[user] = current
        else:
            hashes[user] = bcrypt.hashpw(secret, bcrypt.gensalt(int(rounds))).decode()
    return hashes


def with_hashes(spec, live_text):
    """A staged_config file spec with its ``basic_auth_users`` turned into content."""
    resolved = {k: v for k, v in spec.items() if k not in ("basic_auth_users", "bcrypt_rounds")}
    users = spec.get("basic_auth_users") or {}
    if users:
        hashes = hash_users(
            users, existing_hashes(live_text), spec.get("bcrypt_rounds", DEFAULT_ROUNDS)
        )
        resolved["content"] = str(spec.get("content", "")) + yaml.safe_dump(
            {"basic_auth_users": hashes}, sort_keys=False, default_flow_style=False
        )
    return resolved


def looked_ids(known):
    """ids(kind, name) for config_tree from a look: None for a name it did not find."""

    def ids(kind, name):
        return known["user_ids" if kind == "user" else "group_ids"].get(name)

    return ids


def answer_from_look(args, known):
    """The module's unchanged result when the look `known` proves it; else None."""
    params = {name: spec.get("default") for name, spec in ARGUMENT_SPEC.items()}
    params.update(args)
    entry = (known.get("trees") or {}).get(params["dest"])
    if entry is None:
        return None
    result = nothing_to_do(entry, params, looked_ids(known), known.get("digest_key"))
    if result is not None:
        result["from_known_state"] = True
    return result


def changed_in_this_run(host, dest):
    """The file whose existence says that the module changed `dest` on `host` in this run."""
    name = hashlib.sha1(f"{host}\0{dest}".encode()).hexdigest()
    return os.path.join(C.DEFAULT_LOCAL_TMP, "staged-config-changed", name)


class ActionModule(ActionBase):
    """Answer from the look when it proves nothing to do; else resolve
    ``basic_auth_users`` of the wanted files and run the module on the host."""

    def _read_live(self, path, task_vars):
        """The live file's text, or '' when it is missing or unreadable."""
        result = self._execute_module(
            module_name="ansible.builtin.slurp", module_args={"src": path}, task_vars=task_vars
        )
        if result.get("failed") or "content" not in result:
            return ""
        return base64.b64decode(result["content"]).decode("utf-8", "replace")

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        known = args.pop("known_state", None)
        record = changed_in_this_run(task_vars.get("inventory_hostname"), str(args.get("dest")))
        if known and not os.path.exists(record):
            answer = answer_from_look(args, known)
            if answer is not None:
                result.update(answer)
                return result
        files = dict(args.get("files") or {})
        for relpath, spec in files.items():
            if isinstance(spec, dict) and "basic_auth_users" in spec:
                if BCRYPT_IMPORT_ERROR:
                    raise AnsibleActionFail(
                        f"files[{relpath!r}] has basic_auth_users, whose hashes need the Python "
                        f"package bcrypt on the controller ({BCRYPT_IMPORT_ERROR})"
                    )
                if not isinstance(spec["basic_auth_users"], dict):
                    raise AnsibleActionFail(
                        f"files[{relpath!r}].basic_auth_users must map user names to passwords"
                    )
                live = self._read_live(os.path.join(str(args.get("dest", "")), relpath), task_vars)
                files[relpath] = with_hashes(spec, live)
        args["files"] = files
        result.update(
            self._execute_module(
                module_name=self._task.action, module_args=args, task_vars=task_vars
            )
        )
        result["from_known_state"] = False
        if not self._task.check_mode and (
            result.get("changed_files")
            or result.get("removed_files")
            or result.get("directory_changed")
        ):
            os.makedirs(os.path.dirname(record), exist_ok=True)
            with open(record, "w"):
                pass
        return result
