"""staged_config's answer from the look: never "nothing to do" where the module would act.

Each case puts a tree live with the module (which records it in a registry),
takes the look monitoring_host_facts takes at the start of a run, makes one
difference on the host, and asks the action plugin's decision and the module.
The controller may answer alone only when the module reports no change.
"""

import glob
import grp
import importlib.util
import os
import pwd
from pathlib import Path

import monitoring_host_facts
import pytest
import staged_config
from ansible_collections.prometheus_alerting.stack.plugins.module_utils import config_tree
from conftest import ModuleFailed, run_local_playbook, run_module

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "staged_config_action", ROOT / "plugins" / "action" / "staged_config.py"
)
action = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(action)

MARKER = "# Managed by the test"
KEY = "a-key-for-this-run"


@pytest.fixture
def host(tmp_path):
    """dest, registry and reload marker paths of one tree on this machine."""
    return {
        "dest": tmp_path / "exporter",
        "registry": tmp_path / "state" / "staged-config",
        "marker": tmp_path / "state" / "reload-pending" / "exporter",
    }


def wanted_args(host, **extra):
    return {
        "dest": str(host["dest"]),
        "files": {
            "exporter.yml": f"{MARKER}\nlisten: 9100\n",
            "conf.d/extra.yml": f"{MARKER}\nextra: true\n",
            "secrets/password": {"content": "hunter2\n", "mode": "0640", "diff": False},
        },
        "prune": ["conf.d/*.yml"],
        "prune_marker": MARKER,
        "owned": ["secrets"],
        "group": "nogroup",
        "mode": "0640",
        "directory_mode": "0750",
        "directory_group": "nogroup",
        "readable_by": "nobody",
        "reload_marker": str(host["marker"]),
        "registry": str(host["registry"]),
        **extra,
    }


def look(host, key=KEY):
    result = run_module(
        monitoring_host_facts,
        {"config_registry": str(host["registry"]), "digest_key": key},
        check_mode=True,
    )
    return dict(result["host"]["config_trees"], digest_key=key)


def decisions(host, **extra):
    """(the controller's answer from a fresh look, the module's result) for the same args."""
    args = wanted_args(host, **extra)
    answer = action.answer_from_look(args, look(host))
    return answer, run_module(staged_config, args, check_mode=True)


@pytest.fixture
def settled(host):
    run_module(staged_config, wanted_args(host))
    host["marker"].unlink()  # as config_reload does once the service reloaded
    return host


def test_a_settled_tree_is_answered_on_the_controller_as_the_module_would(settled):
    answer, module = decisions(settled)

    assert module["changed"] is False
    assert answer.pop("from_known_state") is True
    # Every key the module returns for no change, with the module's own values.
    assert answer == {key: module[key] for key in answer}
    assert set(answer) == set(module) - {"invocation", "warnings"}


def change_content(host):
    (host["dest"] / "exporter.yml").write_text("edited by hand\n")


def change_mode(host):
    os.chmod(host["dest"] / "secrets" / "password", 0o644)


def change_owner(host):
    os.chown(host["dest"] / "exporter.yml", 0, 0)


def remove_a_file(host):
    (host["dest"] / "conf.d" / "extra.yml").unlink()


def add_a_marked_file(host):
    (host["dest"] / "conf.d" / "old.yml").write_text(f"{MARKER}\nold: true\n")


def add_a_file_to_an_owned_directory(host):
    (host["dest"] / "secrets" / "stray").write_text("x\n")


def change_the_directory(host):
    os.chmod(host["dest"], 0o755)


def leave_a_reload_owed(host):
    host["marker"].parent.mkdir(parents=True, exist_ok=True)
    host["marker"].write_text("{}\n")


def hide_a_directory_from_the_reader(host):
    os.chmod(host["dest"] / "conf.d", 0o700)


@pytest.mark.parametrize(
    "difference",
    [
        change_content,
        change_mode,
        change_owner,
        remove_a_file,
        add_a_marked_file,
        add_a_file_to_an_owned_directory,
        change_the_directory,
        leave_a_reload_owed,
    ],
)
def test_any_difference_on_the_host_runs_the_module(settled, difference):
    difference(settled)

    answer, module = decisions(settled)

    assert module["changed"] is True
    assert answer is None


def test_a_file_the_reader_could_no_longer_read_runs_the_module_which_fails(settled):
    hide_a_directory_from_the_reader(settled)

    answer = action.answer_from_look(wanted_args(settled), look(settled))

    assert answer is None
    with pytest.raises(ModuleFailed) as failure:
        run_module(staged_config, wanted_args(settled), check_mode=True)
    assert "nobody could not read conf.d/extra.yml" in failure.value.result["msg"]


def test_an_owned_directory_written_with_a_trailing_slash_is_the_same(settled):
    add_a_file_to_an_owned_directory(settled)

    answer = action.answer_from_look(wanted_args(settled, owned=["secrets/"]), look(settled))

    assert answer is None


def test_an_operators_unmarked_file_only_costs_the_module_run(settled):
    (settled["dest"] / "conf.d" / "mine.yml").write_text("# mine\n")

    answer, module = decisions(settled)

    assert module["changed"] is False  # the module keeps it
    assert answer is None


def test_a_file_newer_than_its_service_runs_the_module(settled):
    written = (settled["dest"] / "exporter.yml").stat().st_mtime

    answer, module = decisions(settled, service_started_at=written - 10)
    settled_answer, _ = decisions(settled, service_started_at=written + 10)

    assert module["changed"] is True and module["stale_files"]
    assert answer is None
    assert settled_answer is not None


def test_what_the_look_cannot_tell_runs_the_module(settled):
    unknown_dest = action.answer_from_look(
        wanted_args(settled, dest=str(settled["dest"]) + "-other"), look(settled)
    )
    unknown_marker = action.answer_from_look(
        wanted_args(settled, reload_marker=str(settled["marker"]) + "-other"), look(settled)
    )
    unknown_reader = action.answer_from_look(
        wanted_args(settled, readable_by="daemon"), look(settled)
    )
    unknown_group = action.answer_from_look(
        wanted_args(settled, group="no-such-group"), look(settled)
    )
    basic_auth = wanted_args(settled)
    basic_auth["files"]["web.yml"] = {"content": "", "basic_auth_users": {"u": "p"}}

    assert unknown_dest is None
    assert unknown_marker is None
    assert unknown_reader is None
    assert unknown_group is None
    assert action.answer_from_look(basic_auth, look(settled)) is None


def test_the_look_digests_files_with_the_runs_key_and_never_shows_it(settled):
    trees = look(settled)
    password = trees["trees"][str(settled["dest"])]["tree"]["files"]["secrets/password"]
    result = run_module(
        monitoring_host_facts,
        {"config_registry": str(settled["registry"]), "digest_key": KEY},
        check_mode=True,
    )

    assert password["digest"] == config_tree.digest(b"hunter2\n", KEY)
    assert password["digest"] != config_tree.digest(b"hunter2\n")
    assert KEY not in repr(result["host"])
    # Another run's key: another digest, so the answer needs the key of its own look.
    other = look(settled, key="another-key")
    assert (
        other["trees"][str(settled["dest"])]["tree"]["files"]["secrets/password"]["digest"]
        != password["digest"]
    )
    assert action.answer_from_look(wanted_args(settled), dict(other, digest_key=KEY)) is None


def test_a_registry_that_cannot_be_written_warns_and_leaves_the_files_live(host, tmp_path, capfd):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the registry's parent should be\n")

    result = run_module(staged_config, wanted_args(host, registry=str(blocked / "registry")))

    assert result["changed"] is True
    assert (host["dest"] / "exporter.yml").read_text().endswith("listen: 9100\n")
    # In-process, Ansible shows a module's warning at once instead of returning it.
    shown = capfd.readouterr()
    assert "not recorded in" in shown.out + shown.err + str(result.get("warnings", ""))


def test_check_mode_and_a_failed_validation_record_nothing(host, tmp_path):
    run_module(staged_config, wanted_args(host), check_mode=True)
    assert not host["registry"].exists()

    failing = wanted_args(host, validate=["false"])
    with pytest.raises(ModuleFailed):
        run_module(staged_config, failing)
    assert not host["registry"].exists()


def test_records_accumulate_markers_and_readers_of_calls_sharing_a_dest(settled):
    run_module(
        staged_config,
        {
            "dest": str(settled["dest"]),
            "files": {},
            "reload_marker": str(settled["marker"]) + "-second",
            "registry": str(settled["registry"]),
            "directory_mode": "0750",
            "directory_group": "nogroup",
        },
    )
    [record] = config_tree.registered(str(settled["registry"]))

    assert record["reload_markers"] == [str(settled["marker"]), str(settled["marker"]) + "-second"]
    assert record["readers"] == ["nobody"]
    # A copy under another name is no record.
    path = config_tree.record_path(str(settled["registry"]), str(settled["dest"]))
    Path(path).with_name("copy.json").write_text(Path(path).read_text())
    assert len(config_tree.registered(str(settled["registry"]))) == 1


@pytest.mark.parametrize(
    "pattern",
    ["*.yml", "conf.d/*.yml", "*/*.yml", "conf.d/*", "*", ".*", "conf.d/.*", "*/extra.yml"],
)
def test_prune_patterns_match_what_glob_finds(tmp_path, pattern):
    for relpath in ["a.yml", ".hidden.yml", "conf.d/extra.yml", "conf.d/.x.yml", "deep/er/z.yml"]:
        (tmp_path / relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relpath).write_text("x\n")
    tree = config_tree.snapshot(str(tmp_path))

    found = {
        os.path.relpath(path, tmp_path)
        for path in glob.glob(os.path.join(tmp_path, pattern))
        if os.path.isfile(path)
    }

    assert {relpath for relpath in tree["files"] if config_tree.matches(pattern, relpath)} == found


def test_a_fifo_in_a_tree_is_no_file_of_it(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "real.yml").write_text("x\n")

    assert set(config_tree.snapshot(str(tmp_path))["files"]) == {"real.yml"}


LOOK_THEN_CHANGE_TWICE = """
- hosts: all
  gather_facts: false
  tasks:
    - name: Look
      prometheus_alerting.stack.monitoring_host_facts:
        config_registry: "{{ registry }}"
        digest_key: "{{ key }}"
      register: look
    - name: Keep it
      ansible.builtin.set_fact:
        known: "{{ look.host.config_trees | combine({'digest_key': key}) }}"
    - name: Nothing to do, answered from the look
      prometheus_alerting.stack.staged_config:
        dest: "{{ dest }}"
        files: {exporter.yml: "one\\n"}
        known_state: "{{ known }}"
        registry: "{{ registry }}"
      register: first
    - name: A change
      prometheus_alerting.stack.staged_config:
        dest: "{{ dest }}"
        files: {exporter.yml: "two\\n"}
        known_state: "{{ known }}"
        registry: "{{ registry }}"
      register: second
    - name: Back to what the look saw, later in the same run
      prometheus_alerting.stack.staged_config:
        dest: "{{ dest }}"
        files: {exporter.yml: "one\\n"}
        known_state: "{{ known }}"
        registry: "{{ registry }}"
      register: third
    - name: Show what each did
      ansible.builtin.debug:
        msg: "{{ [first, second, third] | map(attribute='from_known_state') | list }}
              {{ [first, second, third] | map(attribute='changed') | list }}"
"""


def test_a_tree_changed_earlier_in_the_run_is_checked_on_the_host_again(tmp_path):
    dest, registry = tmp_path / "exporter", tmp_path / "registry"
    owner = {
        "owner": pwd.getpwuid(os.getuid()).pw_name,
        "group": grp.getgrgid(os.getgid()).gr_name,
        "directory_owner": pwd.getpwuid(os.getuid()).pw_name,
        "directory_group": grp.getgrgid(os.getgid()).gr_name,
    }
    run_module(
        staged_config,
        {"dest": str(dest), "files": {"exporter.yml": "one\n"}, "registry": str(registry), **owner},
    )
    playbook = tmp_path / "playbook.yml"
    playbook.write_text(
        LOOK_THEN_CHANGE_TWICE.replace(
            'registry: "{{ registry }}"\n      register',
            'registry: "{{ registry }}"\n'
            + "".join(f"        {k}: {v}\n" for k, v in owner.items())
            + "      register",
        )
    )

    result = run_local_playbook(
        playbook, {"dest": str(dest), "registry": str(registry), "key": KEY}
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # From the look, then the module twice: the third task saw the look was stale.
    assert "[True, False, False] [False, True, True]" in output
    assert (dest / "exporter.yml").read_text() == "one\n"
