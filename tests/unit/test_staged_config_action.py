"""staged_config's action plugin: basic-auth users hashed on the controller with bcrypt.

Pure checks of the hashing, then the plugin in a real ansible-playbook run
against this machine: a rerun keeps the hash, the same password gets another
salt on another host or for another user, a new password gets a new hash.
"""

import grp
import importlib.util
import os
import pwd
from pathlib import Path

import bcrypt
import pytest
import staged_config
import yaml
from conftest import ModuleFailed, run_local_playbook, run_module

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "staged_config_action", ROOT / "plugins" / "action" / "staged_config.py"
)
action = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(action)

ROUNDS = 4  # bcrypt's cheapest: the tests check salts and reuse, not the cost


def salt(hashed):
    """The 22 characters of a bcrypt hash that are its salt."""
    return hashed[7:29]


# --- hashing -------------------------------------------------------------------------


def test_a_hash_that_verifies_the_password_is_kept():
    first = action.hash_users({"prometheus": "pw-1"}, {}, ROUNDS)

    assert action.hash_users({"prometheus": "pw-1"}, first, ROUNDS) == first


def test_a_new_password_gets_a_new_hash_that_verifies():
    first = action.hash_users({"prometheus": "pw-1"}, {}, ROUNDS)

    rotated = action.hash_users({"prometheus": "pw-2"}, first, ROUNDS)

    assert rotated["prometheus"] != first["prometheus"]
    assert bcrypt.checkpw(b"pw-2", rotated["prometheus"].encode())
    assert not bcrypt.checkpw(b"pw-1", rotated["prometheus"].encode())


def test_every_hash_has_a_random_salt():
    users = {"prometheus": "shared", "grafana": "shared"}

    one = action.hash_users(users, {}, ROUNDS)
    two = action.hash_users(users, {}, ROUNDS)

    salts = {salt(h) for h in [*one.values(), *two.values()]}
    assert len(salts) == 4


def test_a_broken_or_foreign_live_file_only_means_new_hashes():
    assert action.existing_hashes("") == {}
    assert action.existing_hashes("{not: [yaml") == {}
    assert action.existing_hashes("- a list") == {}
    assert action.existing_hashes("basic_auth_users: {prometheus: not-a-hash}") == {
        "prometheus": "not-a-hash"
    }
    hashes = action.hash_users({"prometheus": "pw"}, {"prometheus": "not-a-hash"}, ROUNDS)
    assert bcrypt.checkpw(b"pw", hashes["prometheus"].encode())


def test_the_spec_becomes_content_without_the_passwords():
    spec = {
        "content": "# header\ntls_server_config: {cert_file: server.crt}\n",
        "diff": False,
        "basic_auth_users": {"prometheus": "pw-1"},
        "bcrypt_rounds": ROUNDS,
    }

    resolved = action.with_hashes(spec, "")

    assert set(resolved) == {"content", "diff"}
    assert "pw-1" not in resolved["content"]
    config = yaml.safe_load(resolved["content"])
    assert config["tls_server_config"] == {"cert_file": "server.crt"}
    assert bcrypt.checkpw(b"pw-1", config["basic_auth_users"]["prometheus"].encode())


# --- in a real run -------------------------------------------------------------------

PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - prometheus_alerting.stack.staged_config:
        dest: "{{ dest }}"
        owner: "{{ owner }}"
        group: "{{ group }}"
        files:
          web/web-config.yml:
            content: "# web config\\n"
            diff: false
            basic_auth_users: "{{ users }}"
            bcrypt_rounds: 4
        secrets: "{{ users.values() | list }}"
"""


@pytest.fixture
def run(tmp_path):
    """run(host, users) -> (changed, {user: hash} of the live file) for one dest per host."""
    playbook = tmp_path / "playbook.yml"
    playbook.write_text(PLAYBOOK)

    def run_on(host, users):
        dest = tmp_path / host
        extra = {
            "dest": str(dest),
            "users": users,
            "owner": pwd.getpwuid(os.getuid()).pw_name,
            "group": grp.getgrgid(os.getgid()).gr_name,
        }
        result = run_local_playbook(playbook, extra, verbose=True)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        for password in users.values():
            assert password not in output
        text = (dest / "web" / "web-config.yml").read_text()
        for password in users.values():
            assert password not in text
        changed = "changed=1" in output
        return changed, yaml.safe_load(text)["basic_auth_users"]

    return run_on


def test_a_rerun_keeps_the_hashes_and_changes_nothing(run):
    users = {"prometheus": "scrape-pw", "grafana": "grafana-pw"}

    changed, first = run("mon1", users)
    again, second = run("mon1", users)

    assert changed is True
    assert again is False
    assert second == first
    for user, password in users.items():
        assert bcrypt.checkpw(password.encode(), first[user].encode())


def test_one_password_on_two_hosts_or_for_two_users_gets_two_salts(run):
    users = {"prometheus": "one-password", "grafana": "one-password"}

    _changed, mon1 = run("mon1", users)
    _changed, mon2 = run("mon2", users)

    salts = {salt(h) for h in [*mon1.values(), *mon2.values()]}
    assert len(salts) == 4


def test_a_rotated_password_gets_a_new_hash_and_the_others_stay(run):
    _changed, before = run("mon1", {"prometheus": "old-pw", "grafana": "grafana-pw"})

    changed, after = run("mon1", {"prometheus": "new-pw", "grafana": "grafana-pw"})

    assert changed is True
    assert after["grafana"] == before["grafana"]
    assert after["prometheus"] != before["prometheus"]
    assert bcrypt.checkpw(b"new-pw", after["prometheus"].encode())


def test_the_module_without_its_action_plugin_refuses_the_passwords(tmp_path, capsys):
    spec = {"content": "# web config\n", "basic_auth_users": {"prometheus": "a-distinct-password"}}

    with pytest.raises(ModuleFailed) as failure:
        run_module(
            staged_config,
            {
                "dest": str(tmp_path),
                "files": {"web/web-config.yml": spec},
                "secrets": ["a-distinct-password"],
            },
        )

    assert "only the staged_config action plugin resolves" in failure.value.result["msg"]
    # Masked as the module's secrets, although the module had it in its arguments.
    assert "a-distinct-password" not in repr(failure.value.result)
    assert not (tmp_path / "web").exists()
