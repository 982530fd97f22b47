"""The collection as a user gets it: built, installed into a playbook repository of theirs,
and used by fully qualified names only, without this repository's ansible.cfg."""

import json
import os
import re
import subprocess
import sys
import tarfile

import pytest
import yaml
from conftest import ROOT, start_prometheus

NAMESPACE = "prometheus_alerting.stack"
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir())
MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py"))

# A user's playbook, of the kind the README shows: roles, modules and filters by FQCN.
USER_PLAYBOOK = """
- name: Monitoring from the collection
  hosts: monitoring
  gather_facts: false
  roles:
    - role: prometheus_alerting.stack.node_exporter
    - role: prometheus_alerting.stack.prometheus
  tasks:
    - name: Reload Prometheus through the collection's module
      prometheus_alerting.stack.config_reload:
        service: prometheus
        url: "{{ '127.0.0.1' | prometheus_alerting.stack.api_url(9090, '', 'http') }}"

- name: The collection's own full rollout
  ansible.builtin.import_playbook: prometheus_alerting.stack.site
"""


def run(argv, project, **kwargs):
    """Run an ansible command as in the user's project: their ansible.cfg, their collections."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(project / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    result = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=project, check=False, **kwargs
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    output = tmp_path_factory.mktemp("dist")
    subprocess.run(
        ["ansible-galaxy", "collection", "build", "--output-path", str(output), str(ROOT)],
        check=True,
        capture_output=True,
        env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg")),
    )
    (path,) = output.glob("*.tar.gz")
    return path


@pytest.fixture(scope="module")
def project(tarball, tmp_path_factory):
    """A user's playbook repository with the collection installed into its own path."""
    project = tmp_path_factory.mktemp("user-project")
    (project / "ansible.cfg").write_text(
        "[defaults]\ncollections_path = collections\ninterpreter_python = auto_silent\n"
    )
    (project / "inventory.yml").write_text(
        yaml.safe_dump({"all": {"children": {"monitoring": {"hosts": {"mon1": None}}}}})
    )
    (project / "site.yml").write_text(USER_PLAYBOOK)
    run(
        ["ansible-galaxy", "collection", "install", str(tarball), "-p", "collections"],
        project,
    )
    return project


def test_the_tarball_holds_the_collection_and_nothing_of_the_workshop(tarball):
    with tarfile.open(tarball) as archive:
        names = archive.getnames()

    assert tarball.name == f"prometheus_alerting-stack-{GALAXY['version']}.tar.gz"
    for needed in (
        "MANIFEST.json",
        "meta/runtime.yml",
        "playbooks/site.yml",
        "plugins/doc_fragments/http_api.py",
        "plugins/action/staged_config.py",
        "roles/prometheus/defaults/main/alerts_system.yml",
        "roles/prometheus/README.md",
        "docker_exporter/requirements.lock",
        "exporter_web/src/exporter_web/cli.py",
        "alert_relay/src/alert_relay/schema.py",
        "CHANGELOG.md",
    ):
        assert needed in names, needed
    for kept_out in (
        ".collections",
        ".venv",
        "molecule",
        "tests/unit",
        "inventory",
        "ansible.cfg",
        "exporter_web/tests",
    ):
        assert not [n for n in names if n == kept_out or n.startswith(kept_out + "/")], kept_out


def test_a_users_playbook_of_fully_qualified_names_parses(project):
    result = run(["ansible-playbook", "-i", "inventory.yml", "site.yml", "--syntax-check"], project)

    assert "playbook: site.yml" in result.stdout


def test_the_relay_config_filter_reads_the_relays_rules_from_the_installed_collection(project):
    # The filter loads alert_relay/src/alert_relay/schema.py beside it in the collection.
    expression = (
        "{{ {'_leading': {}} | prometheus_alerting.stack.alert_relay_config({}, {}, {}, "
        "'/etc/alert-relay/secrets', 'token') }}"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(project / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    argv = ["ansible", "localhost", "-m", "ansible.builtin.debug"]
    result = subprocess.run(
        [*argv, "-a", json.dumps({"msg": expression})],
        capture_output=True,
        text=True,
        env=env,
        cwd=project,
        check=False,
    )
    assert result.returncode != 0
    assert "'_leading' is not a name the relay takes" in result.stdout + result.stderr


def test_the_collections_site_playbook_runs_by_its_name(project):
    result = run(
        [
            "ansible-playbook",
            "-i",
            "inventory.yml",
            f"{NAMESPACE}.site",
            "--list-tasks",
            "--tags",
            "rules",
        ],
        project,
    )

    assert "Put the alert rules live once promtool accepts them" in result.stdout


def test_every_module_and_role_is_documented_from_the_installed_collection(project):
    modules = run(
        ["ansible-doc", "--json", "-t", "module", *[f"{NAMESPACE}.{m}" for m in MODULES]],
        project,
    )
    roles = run(
        ["ansible-doc", "--json", "-t", "role", *[f"{NAMESPACE}.{r}" for r in ROLES]], project
    )

    assert sorted(json.loads(modules.stdout)) == [f"{NAMESPACE}.{m}" for m in MODULES]
    assert sorted(json.loads(roles.stdout)) == [f"{NAMESPACE}.{r}" for r in ROLES]
    assert "ERROR" not in modules.stderr + roles.stderr


def test_a_module_of_the_installed_collection_reloads_a_real_prometheus(project, tmp_path):
    # module_utils, the doc fragment's options and the module itself, all from the tarball.
    prometheus = start_prometheus(tmp_path, "global:\n  scrape_interval: 1m\n")
    try:
        (project / "reload.yml").write_text(
            yaml.safe_dump(
                [
                    {
                        "hosts": "localhost",
                        "gather_facts": False,
                        "tasks": [
                            {
                                "name": "Reload",
                                f"{NAMESPACE}.config_reload": {
                                    "service": "prometheus",
                                    "url": prometheus.url,
                                },
                            }
                        ],
                    }
                ]
            )
        )
        result = run(
            [
                "ansible-playbook",
                "-i",
                "localhost,",
                "-c",
                "local",
                "-e",
                f"ansible_python_interpreter={sys.executable}",
                "reload.yml",
            ],
            project,
        )
    finally:
        prometheus.stop()

    assert "changed: [localhost]" in result.stdout


def test_requirements_yml_is_satisfied_and_names_every_collection_used():
    requirements = yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))

    installed = subprocess.run(
        ["ansible-galaxy", "collection", "install", "--offline", "-r", "requirements.yml"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )

    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "All requested collections are already installed" in installed.stdout
    # Every collection referenced anywhere in the repository, except ansible.builtin and
    # this one, and the Molecule docker driver's (ansible.posix.synchronize).
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout.split()
    used = {"ansible.posix"}
    fqcn = re.compile(r"(?<![\w./])(community|ansible)\.([a-z_]+)\.[a-z_]+(?![\w.])")
    for name in files:
        path = ROOT / name
        if path.suffix in (".yml", ".yaml", ".py", ".j2", ".cfg") and path.is_file():
            for match in fqcn.finditer(path.read_text(errors="replace")):
                if match[2] not in ("builtin", "legacy", "module_utils", "plugins", "errors"):
                    used.add(f"{match[1]}.{match[2]}")
    assert {r["name"] for r in requirements} == used


def test_requirements_yml_fails_when_the_installed_collections_do_not_satisfy_it(tmp_path):
    unsatisfied = tmp_path / "requirements.yml"
    unsatisfied.write_text("collections:\n  - name: community.docker\n    version: '>=999.0.0'\n")

    result = subprocess.run(
        ["ansible-galaxy", "collection", "install", "--offline", "-r", str(unsatisfied)],
        capture_output=True,
        text=True,
        env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg")),
        check=False,
    )

    assert result.returncode != 0
    assert "community.docker" in result.stdout + result.stderr
