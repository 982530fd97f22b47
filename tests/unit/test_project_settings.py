"""Settings that keep a production run safe: no default inventory, host keys checked."""

import configparser
import json
import os
import re
import subprocess

from conftest import ROOT


def ansible_cfg():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "ansible.cfg")
    return parser


def test_no_inventory_is_named_and_host_keys_are_checked():
    defaults = ansible_cfg()["defaults"]

    assert "inventory" not in defaults
    assert defaults.get("host_key_checking", "true").lower() in ("true", "yes", "1")


def test_a_run_without_an_inventory_stops_before_any_host_and_says_why(tmp_path):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_INVENTORY", None)

    result = subprocess.run(
        ["ansible-playbook", str(ROOT / "site.yml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )

    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "No hosts: name your inventory" in output
    # Only the implicit localhost ran anything: no play reached a host.
    assert re.findall(r"^(\S+)\s+: ok=", output, re.MULTILINE) == ["localhost"]


def test_every_connection_the_project_uses_pipelines():
    """ssh for real hosts, community.docker.docker for the demo and tests, local for localhost."""
    script = """
import json
from ansible.playbook import play_context
from ansible.plugins.loader import connection_loader, init_plugin_loader

init_plugin_loader()
enabled = {}
for name in ("ansible.builtin.ssh", "community.docker.docker", "ansible.builtin.local"):
    connection = connection_loader.get(name, play_context.PlayContext(), None)
    connection.set_options()
    enabled[name] = connection.is_pipelining_enabled()
print(json.dumps(enabled))
"""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    env.pop("ANSIBLE_PIPELINING", None)
    result = subprocess.run(
        ["python3", "-c", script], env=env, capture_output=True, text=True, check=True, cwd=ROOT
    )

    assert json.loads(result.stdout) == {
        "ansible.builtin.ssh": True,
        "community.docker.docker": True,
        "ansible.builtin.local": True,
    }
