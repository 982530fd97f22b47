"""Role docs: defaults/ and meta/argument_specs.yml agree, and every role's README is
what scripts/role_docs.py generates from them.

Fast and offline: YAML only, except one ansible-playbook run against localhost
that runs nothing but Ansible's own argument validation.
"""

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_script():
    spec = importlib.util.spec_from_file_location("role_docs", ROOT / "scripts" / "role_docs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["role_docs"] = module
    spec.loader.exec_module(module)
    return module


role_docs = _load_script()
ROLES = role_docs.load_roles(ROOT)
ROLE_NAMES = [role.name for role in ROLES]
FIX = "fix meta/argument_specs.yml or defaults/, then run scripts/role_docs.py"


# --- The repository ----------------------------------------------------------


@pytest.mark.parametrize("role", ROLES, ids=ROLE_NAMES)
def test_defaults_and_argument_specs_agree(role):
    problems = role_docs.check_role(role)

    assert not problems, f"{FIX}:\n" + "\n".join(problems)


def test_shared_inventory_variables_are_listed_described_and_documented_alike():
    problems = role_docs.check_shared(ROLES)

    assert not problems, "\n".join(problems)


def test_every_tag_of_a_role_is_in_the_readme_tags_table():
    problems = role_docs.check_tags(
        ROLES, role_docs.readme_tags(ROOT), role_docs.playbook_uses(ROOT)
    )

    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_the_committed_readme_is_what_the_generator_writes(role):
    path, text = role_docs.readmes(ROOT)[role]

    committed = path.read_text(encoding="utf-8") if path.is_file() else ""
    assert committed == text, f"roles/{role}/README.md is stale: run scripts/role_docs.py"


def test_every_role_has_a_readme_with_its_variables_entry_points_tags_and_example():
    for role in ROLES:
        text = (role.path / "README.md").read_text(encoding="utf-8")
        for entry_point, spec in role.specs.items():
            assert f"`{entry_point}`" in text
            for name in spec.get("options") or {}:
                assert f"| `{name}` |" in text, f"{role.name}: {name} is not in its README"
        assert "## Tags" in text
        assert f"prometheus_alerting.stack.{role.name}" in text
        assert "(../../README.md)" in text


def test_check_mode_passes_on_the_repository():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "role_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr


def test_ansible_accepts_every_role_default_against_its_argument_specs(tmp_path):
    """Ansible's own validator, on the rendered defaults: only the validation runs."""
    roles = [r.name for r in ROLES if (r.path / "tasks" / "main.yml").is_file()]
    playbook = tmp_path / "validate.yml"
    playbook.write_text(
        textwrap.dedent(
            """\
            - name: Validate the roles' arguments, nothing else
              hosts: localhost
              connection: local
              gather_facts: false
              roles:
            """
        )
        + "".join(f"    - role: prometheus_alerting.stack.{name}\n" for name in roles)
    )
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")

    result = subprocess.run(
        # No task has this tag: only the tasks tagged `always`, the argument
        # validation among them, run.
        ["ansible-playbook", "-i", "localhost,", str(playbook), "--tags", "role-docs-none"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=0" in result.stdout
    for name in roles:
        assert f"{name} : Validating arguments against arg spec 'main'" in result.stdout


# --- The rules, on a role made up for each --------------------------------------

SPECS = """\
---
argument_specs:
  main:
    short_description: Run demo.
    options:
      demo_port:
        type: int
        default: 9100
        description: Port.
      demo_listen_address:
        type: str
        description: Address; defaults to C(monitoring_address).
      demo_mode:
        type: str
        default: fast
        choices: [fast, slow]
        description: Mode.
      demo_targets:
        type: list
        elements: dict
        default: [{address: a}]
        description: Targets.
        options:
          address:
            type: str
            required: true
            description: Address.
      monitoring_tls_cert:
        type: str
        description: Shared. The certificate.
"""

DEFAULTS = """\
---
demo_port: 9100
demo_listen_address: "{{ monitoring_address | default('127.0.0.1') }}"
demo_mode: fast
demo_targets:
  - address: a
"""


def make_role(root, specs=SPECS, defaults=DEFAULTS, name="demo", tasks=None):
    path = root / "roles" / name
    (path / "meta").mkdir(parents=True)
    (path / "defaults").mkdir()
    (path / "meta" / "argument_specs.yml").write_text(specs)
    (path / "meta" / "main.yml").write_text(
        "---\ngalaxy_info:\n  description: A demo\n"
        "  platforms: [{name: Debian, versions: [trixie]}]\n"
    )
    if isinstance(defaults, dict):
        (path / "defaults" / "main").mkdir()
        for file, text in defaults.items():
            (path / "defaults" / "main" / file).write_text(text)
    else:
        (path / "defaults" / "main.yml").write_text(defaults)
    if tasks is not None:
        (path / "tasks").mkdir()
        (path / "tasks" / "main.yml").write_text(tasks)
    return role_docs.load_role(path)


def problems_of(tmp_path, specs=SPECS, defaults=DEFAULTS):
    return role_docs.check_role(make_role(tmp_path, specs, defaults))


def test_a_role_whose_defaults_and_specs_agree_passes(tmp_path):
    assert problems_of(tmp_path) == []


def test_a_variable_in_defaults_but_in_no_option_of_main_fails(tmp_path):
    problems = problems_of(tmp_path, defaults=DEFAULTS + "demo_extra: 3\n")

    assert problems == [
        "demo: `demo_extra` is set in defaults/main.yml (to 3) but is no option of entry point "
        "`main` in meta/argument_specs.yml"
    ]


def test_an_option_of_main_without_a_value_in_defaults_fails(tmp_path):
    defaults = DEFAULTS.replace("demo_mode: fast\n", "")

    problems = problems_of(tmp_path, defaults=defaults)

    assert len(problems) == 1
    assert 'demo: entry point `main` gives `demo_mode` the default "fast"' in problems[0]
    assert "defaults/ value: none" in problems[0]


def test_a_default_that_differs_names_the_role_the_variable_and_both_values(tmp_path):
    problems = problems_of(tmp_path, defaults=DEFAULTS.replace("9100", "9101"))

    assert problems == [
        "demo: `demo_port` (entry point `main`): the spec's default is 9100 but "
        "defaults/main.yml has 9101"
    ]


def test_a_quoted_number_is_not_the_number(tmp_path):
    problems = problems_of(tmp_path, defaults=DEFAULTS.replace("9100", '"9100"'))

    assert 'the spec\'s default is 9100 but defaults/main.yml has "9100"' in problems[0]
    assert any('"9100" is a str, not of the spec\'s type `int`' in p for p in problems)


def test_a_value_not_of_the_spec_type_fails(tmp_path):
    specs = SPECS.replace("type: int\n        default: 9100", "type: str\n        default: 1.10")
    defaults = DEFAULTS.replace("9100", "1.10")

    problems = problems_of(tmp_path, specs, defaults)

    assert problems == [
        "demo: `demo_port` (entry point `main`): 1.1 is a float, not of the spec's type `str` "
        "(value of defaults/main.yml)",
        "demo: `demo_port` (entry point `main`): 1.1 is a float, not of the spec's type `str` "
        "(the spec's default)",
    ]


def test_a_value_outside_the_choices_fails(tmp_path):
    specs = SPECS.replace("default: fast", "default: medium")

    problems = problems_of(tmp_path, specs, DEFAULTS.replace("mode: fast", "mode: medium"))

    assert any('"medium" is not one of the spec\'s choices ["fast", "slow"]' in p for p in problems)


def test_list_items_are_checked_against_the_sub_options(tmp_path):
    defaults = DEFAULTS.replace("  - address: a\n", "  - {host: a}\n")
    specs = SPECS.replace("default: [{address: a}]", "default: [{host: a}]")

    problems = problems_of(tmp_path, specs, defaults)

    assert (
        "demo: `demo_targets` (entry point `main`)[0]: key `host` is no sub-option" in problems[0]
    )
    assert any("the required sub-option `address` is missing" in p for p in problems)


def test_a_templated_default_must_have_no_default_in_the_spec(tmp_path):
    specs = SPECS.replace(
        "      demo_listen_address:\n        type: str\n",
        "      demo_listen_address:\n        type: str\n        default: 127.0.0.1\n",
    )

    problems = problems_of(tmp_path, specs)

    assert problems == [
        "demo: `demo_listen_address` (entry point `main`): defaults/main.yml has the templated "
        "value \"{{ monitoring_address | default('127.0.0.1') }}\", so the spec must give no "
        'default, but it gives "127.0.0.1"'
    ]


def test_a_templated_default_must_say_what_it_derives_from(tmp_path):
    specs = SPECS.replace("Address; defaults to C(monitoring_address).", "Address.")

    problems = problems_of(tmp_path, specs)

    assert len(problems) == 1
    assert "the description must say what it derives from" in problems[0]


def test_a_literal_default_missing_from_the_spec_fails(tmp_path):
    specs = SPECS.replace("        default: 9100\n", "")

    problems = problems_of(tmp_path, specs)

    assert problems == [
        "demo: `demo_port` (entry point `main`): the spec gives no default but "
        "defaults/main.yml has 9100"
    ]


def test_a_shared_inventory_variable_in_defaults_fails(tmp_path):
    problems = problems_of(tmp_path, defaults=DEFAULTS + 'monitoring_tls_cert: ""\n')

    assert problems == [
        "demo: `monitoring_tls_cert` is a shared inventory variable (SHARED_INVENTORY_VARIABLES), "
        'set in inventory, but defaults/main.yml sets it to ""'
    ]


def test_an_option_described_as_shared_must_be_listed_as_shared(tmp_path):
    specs = SPECS.replace(
        "      demo_mode:\n",
        "      monitoring_site:\n        type: str\n"
        "        description: Shared. The site.\n      demo_mode:\n",
    )
    role = make_role(tmp_path, specs)

    problems = role_docs.check_shared([role])

    assert problems == [
        "demo: `monitoring_site` (entry point `main`): described as 'Shared' but not in "
        "SHARED_INVENTORY_VARIABLES (scripts/role_docs.py): add it there or reword the description"
    ]


def test_a_role_must_list_the_shared_variables_its_code_reads(tmp_path):
    tasks = (
        '---\n- name: Use the CA\n  ansible.builtin.debug:\n    msg: "{{ monitoring_tls_ca }}"\n'
    )
    role = make_role(tmp_path, tasks=tasks)

    problems = role_docs.check_shared([role])

    assert problems == [
        "demo: entry point `main` lists the shared `monitoring_tls_cert`, which its code never "
        "reads",
        "demo: its code reads the shared `monitoring_tls_ca` but entry point `main` does not "
        "list it",
    ]


def test_a_variable_set_in_two_defaults_files_fails(tmp_path):
    role = make_role(tmp_path, defaults={"a.yml": DEFAULTS, "b.yml": "---\ndemo_port: 9100\n"})

    assert role_docs.check_role(role) == [
        "demo: `demo_port` is set in both defaults/main/a.yml and defaults/main/b.yml; Ansible "
        "keeps the value of defaults/main/b.yml only"
    ]


def test_the_catalog_is_exempt_from_repeating_its_value_but_must_name_its_file(
    tmp_path, monkeypatch
):
    monkeypatch.setitem(role_docs.CATALOG_DEFAULTS, "demo", {"demo_rules": "defaults/main.yml"})
    specs = SPECS + "      demo_rules:\n        type: dict\n        description: The rules.\n"
    defaults = DEFAULTS + "demo_rules: {name: x, rules: [{alert: A, expr: !unsafe '{{ y }}'}]}\n"

    problems = problems_of(tmp_path, specs, defaults)

    assert problems == [
        "demo: `demo_rules` (entry point `main`): the description must name main.yml "
        "(defaults/main.yml), where its value is"
    ]


def test_an_entry_point_default_that_no_defaults_file_backs_fails(tmp_path):
    specs = SPECS + (
        "  unit:\n    options:\n      demo_timeout:\n        type: str\n        default: 30s\n"
        "        description: Timeout.\n"
    )

    problems = problems_of(tmp_path, specs)

    assert problems == [
        'demo: entry point `unit` gives `demo_timeout` the default "30s" but defaults/ does not '
        "set it (defaults/ value: none); Ansible never applies a spec's default"
    ]


# --- The generator -------------------------------------------------------------


def test_ansible_markup_becomes_markdown():
    text = (
        "C(a|b) I(it) O(opt=1) V(v) B(bold) U(https://x.example) L(the docs, https://d.example) <x>"
    )

    assert role_docs.markup(text) == (
        "`a|b` *it* `opt=1` `v` **bold** <https://x.example> [the docs](https://d.example) &lt;x>"
    )
    assert role_docs.markup("C(a|b) or c|d", table=True) == "`a\\|b` or c\\|d"


def test_a_spec_change_makes_the_readme_stale_and_check_mode_fail(tmp_path, capsys):
    make_role(
        tmp_path,
        tasks=(
            "---\n- name: Install\n  ansible.builtin.debug:\n"
            "    msg: \"{{ monitoring_tls_cert | default('') }}\"\n  tags: [demo_install]\n"
        ),
    )
    (tmp_path / "README.md").write_text(
        "## Tags\n\n| Tag | Runs |\n|---|---|\n| `<role>_install` | Install |\n\n## Next\n"
    )
    assert role_docs.main(["--root", str(tmp_path)]) == 0
    readme = (tmp_path / "roles" / "demo" / "README.md").read_text()
    assert "| `demo_port` | int | `9100` | Port. |" in readme
    assert "| `demo_install` | Install | Install |" in readme
    assert role_docs.main(["--check", "--root", str(tmp_path)]) == 0

    spec = tmp_path / "roles" / "demo" / "meta" / "argument_specs.yml"
    spec.write_text(spec.read_text().replace("description: Port.", "description: The port."))

    assert role_docs.main(["--check", "--root", str(tmp_path)]) == 1
    assert "roles/demo/README.md is stale" in capsys.readouterr().err


def test_an_undocumented_tag_fails(tmp_path):
    role = make_role(
        tmp_path, tasks="---\n- name: Do it\n  ansible.builtin.debug: {}\n  tags: [demo_x]\n"
    )

    assert role_docs.check_tags([role], rows=[], uses={}) == [
        "demo: tag `demo_x` is not in README.md's Tags table"
    ]


def test_an_entry_points_examples_come_from_its_spec_and_must_set_its_required_options(
    tmp_path,
):
    specs = SPECS.replace(
        "argument_specs:\n  main:\n",
        "argument_specs:\n  main:\n    examples: |\n      - hosts: all\n        roles: [demo]\n",
    )
    role = make_role(tmp_path, specs=specs)

    assert role_docs.example_for(role, "main", []) == "- hosts: all\n  roles: [demo]\n"
    role.specs["main"]["options"]["demo_port"]["required"] = True
    with pytest.raises(ValueError, match="does not set the required `demo_port`"):
        role_docs.example_for(role, "main", [])
