"""staged_config: validate the whole new tree, then swap; never half-apply."""

import os
import stat

import pytest
import staged_config
from conftest import ModuleFailed, require_binary, run_module

MARKER = "# Managed by the test"
PROMETHEUS_YML = "rule_files:\n  - rules/*.yml\n"
GOOD_RULES = f"""{MARKER}
groups:
  - name: good
    rules:
      - alert: Up
        expr: up == 0
"""
BROKEN_RULES = f"""{MARKER}
groups:
  - name: broken
    rules:
      - alert: Broken
        expr: up ==
"""


@pytest.fixture
def live(tmp_path):
    """A live Prometheus config directory with one managed and one foreign rule file."""
    dest = tmp_path / "prometheus"
    (dest / "rules").mkdir(parents=True)
    (dest / "prometheus.yml").write_text(PROMETHEUS_YML)
    (dest / "rules" / "good.yml").write_text(GOOD_RULES)
    (dest / "rules" / "operator.yml").write_text(GOOD_RULES.replace(MARKER, "# mine"))
    return dest


def args(dest, files, **extra):
    promtool = require_binary("promtool")
    return {
        "dest": str(dest),
        "files": files,
        "validate": [f"{promtool} check config %s/prometheus.yml"],
        "prune": ["rules/*.yml"],
        "prune_marker": MARKER,
        **extra,
    }


def snapshot(directory):
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def test_writes_new_files_then_reports_no_change(live):
    new_rules = GOOD_RULES.replace("good", "second")

    first = run_module(
        staged_config, args(live, {"rules/good.yml": GOOD_RULES, "rules/second.yml": new_rules})
    )
    second = run_module(
        staged_config, args(live, {"rules/good.yml": GOOD_RULES, "rules/second.yml": new_rules})
    )

    assert first["changed"] is True
    assert first["changed_files"] == ["rules/second.yml"]
    assert (live / "rules" / "second.yml").read_text() == new_rules
    assert stat.S_IMODE((live / "rules" / "second.yml").stat().st_mode) == 0o644
    assert second["changed"] is False


def test_an_invalid_tree_fails_and_leaves_every_live_file_untouched(live):
    before = snapshot(live)

    with pytest.raises(ModuleFailed) as failure:
        run_module(staged_config, args(live, {"rules/good.yml": BROKEN_RULES}))

    message = failure.value.result["msg"]
    assert "nothing was changed" in message
    # promtool names the live file the operator knows, not the staging copy.
    assert f"{live}/rules/good.yml" in message
    assert snapshot(live) == before
    assert not [p for p in live.parent.iterdir() if ".staging-" in p.name]


def test_validation_sees_files_the_run_did_not_write(live):
    # A config change is checked together with the rule files already live.
    (live / "rules" / "operator.yml").write_text(BROKEN_RULES.replace(MARKER, "# mine"))

    with pytest.raises(ModuleFailed) as failure:
        run_module(staged_config, args(live, {"prometheus.yml": PROMETHEUS_YML + "\n"}))

    assert "operator.yml" in failure.value.result["msg"]
    assert (live / "prometheus.yml").read_text() == PROMETHEUS_YML


def test_prunes_only_files_that_carry_the_marker(live):
    result = run_module(staged_config, args(live, {}))

    assert result["removed_files"] == ["rules/good.yml"]
    assert not (live / "rules" / "good.yml").exists()
    assert (live / "rules" / "operator.yml").exists()


def test_check_mode_validates_but_writes_nothing(live):
    before = snapshot(live)

    result = run_module(
        staged_config,
        args(live, {"rules/new.yml": GOOD_RULES.replace("good", "new")}),
        check_mode=True,
        diff=True,
    )

    assert result["changed"] is True
    assert result["validation"][0]["rc"] == 0
    assert snapshot(live) == before
    assert result["diff"][0]["after_header"].endswith("rules/new.yml")

    with pytest.raises(ModuleFailed):
        run_module(staged_config, args(live, {"rules/new.yml": BROKEN_RULES}), check_mode=True)


def test_secrets_never_appear_in_the_diff(live):
    secret = "s3cr3t-smtp-password"
    files = {"secret.yml": {"content": f"password: {secret}\n", "mode": "0600"}}

    result = run_module(staged_config, args(live, files, secrets=[secret]), diff=True)

    assert secret not in repr(result)
    assert "password: ********" in result["diff"][0]["after"]
    assert (live / "secret.yml").read_text() == f"password: {secret}\n"
    assert stat.S_IMODE((live / "secret.yml").stat().st_mode) == 0o600


def test_attribute_changes_are_fixed_without_rewriting(live):
    os.chmod(live / "rules" / "good.yml", 0o666)

    result = run_module(staged_config, args(live, {"rules/good.yml": GOOD_RULES}))

    assert result["changed_files"] == ["rules/good.yml"]
    assert stat.S_IMODE((live / "rules" / "good.yml").stat().st_mode) == 0o644


@pytest.mark.parametrize("path", ["../escape.yml", "/etc/passwd"])
def test_paths_outside_dest_are_refused(live, path):
    with pytest.raises(ModuleFailed) as failure:
        run_module(staged_config, args(live, {path: "x"}))

    assert "must stay inside dest" in failure.value.result["msg"]


def test_an_unknown_owner_is_a_clear_error(live):
    with pytest.raises(ModuleFailed) as failure:
        run_module(staged_config, args(live, {"rules/good.yml": GOOD_RULES}, owner="nobody-here"))

    assert "user 'nobody-here' does not exist" in failure.value.result["msg"]


def test_prune_needs_a_marker_but_plain_writes_do_not(live):
    with pytest.raises(ModuleFailed, match="prune needs prune_marker"):
        run_module(staged_config, args(live, {}, prune_marker=None))

    result = run_module(
        staged_config, {"dest": str(live), "files": {"prometheus.yml": PROMETHEUS_YML}}
    )
    assert result["changed"] is False


def test_dest_is_created_and_kept_with_the_directory_attributes(tmp_path):
    dest = tmp_path / "alertmanager" / "secrets"
    args = {
        "dest": str(dest),
        "files": {"smtp": "p4ss"},
        "directory_mode": "0750",
        "mode": "0640",
        "secrets": ["p4ss"],
    }

    first = run_module(staged_config, args)
    os.chmod(dest, 0o755)
    second = run_module(staged_config, args)
    third = run_module(staged_config, args)

    assert first["directory_changed"] and first["changed_files"] == ["smtp"]
    assert stat.S_IMODE(dest.stat().st_mode) == 0o750
    assert second["changed"] and second["directory_changed"] and not second["changed_files"]
    assert third["changed"] is False


def test_owned_directories_keep_only_wanted_files_and_never_show_secrets(tmp_path):
    dest = tmp_path / "alertmanager"
    (dest / "secrets").mkdir(parents=True)
    (dest / "secrets" / "old.password").write_text("old-secret")
    (dest / "operator.txt").write_text("mine")
    files = {
        "alertmanager.yml": "password_file: secrets/smtp\n",
        "secrets/smtp": {"content": "new-secret", "diff": False, "mode": "0640"},
    }

    result = run_module(
        staged_config, {"dest": str(dest), "files": files, "owned": ["secrets"]}, diff=True
    )

    assert result["removed_files"] == ["secrets/old.password"]
    assert sorted(p.name for p in (dest / "secrets").iterdir()) == ["smtp"]
    assert (dest / "operator.txt").exists()
    shown = repr(result["diff"])
    assert "old-secret" not in shown and "new-secret" not in shown
    assert "password_file: secrets/smtp" in shown
