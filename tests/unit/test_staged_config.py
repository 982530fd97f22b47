"""staged_config: validate the whole new tree, then swap; never half-apply."""

import json
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


# --- the reload owed, readability, attribute diffs ---------------------------------------


def test_a_change_leaves_a_reload_marker_that_a_rerun_reports_until_removed(live, tmp_path):
    marker = tmp_path / "state" / "reload-pending" / "prometheus"
    new_rules = GOOD_RULES.replace("good", "second")
    wanted = {"rules/good.yml": GOOD_RULES, "rules/second.yml": new_rules}

    first = run_module(staged_config, args(live, wanted, reload_marker=str(marker)))

    assert first["changed"] is True and first["reload_pending"] is True
    record = json.loads(marker.read_text())
    assert record["files"] == ["rules/second.yml"]
    # The run died before its reload: the next one, with nothing to write, still owes it.
    rerun = run_module(staged_config, args(live, wanted, reload_marker=str(marker)))
    assert rerun["changed"] is True and rerun["reload_pending"] is True
    assert rerun["changed_files"] == []
    predicted = run_module(
        staged_config, args(live, wanted, reload_marker=str(marker)), check_mode=True
    )
    assert predicted["changed"] is True
    # config_reload removes it once the service confirms the reload.
    marker.unlink()
    settled = run_module(staged_config, args(live, wanted, reload_marker=str(marker)))
    assert settled["changed"] is False and settled["reload_pending"] is False


def test_an_invalid_tree_writes_no_reload_marker(live, tmp_path):
    marker = tmp_path / "reload-pending"

    with pytest.raises(ModuleFailed):
        run_module(
            staged_config, args(live, {"rules/good.yml": BROKEN_RULES}, reload_marker=str(marker))
        )

    assert not marker.exists()


def test_check_mode_writes_no_reload_marker(live, tmp_path):
    marker = tmp_path / "reload-pending"
    new_rules = GOOD_RULES.replace("good", "second")

    result = run_module(
        staged_config,
        args(live, {"rules/second.yml": new_rules}, reload_marker=str(marker)),
        check_mode=True,
    )

    assert result["reload_pending"] is True
    assert not marker.exists()


def test_a_file_the_service_user_could_not_read_fails_before_going_live(live):
    before = snapshot(live)
    key = {"content": "secret\n", "mode": "0600", "diff": False}

    with pytest.raises(ModuleFailed) as failure:
        run_module(
            staged_config,
            args(live, {"web/server.key": key, "rules/good.yml": GOOD_RULES}, readable_by="nobody"),
        )

    message = failure.value.result["msg"]
    assert "nothing was changed: nobody could not read web/server.key" in message
    assert "(it would be 0600 root:root)" in message
    assert snapshot(live) == before


def test_a_directory_the_service_user_cannot_enter_fails_too(live):
    with pytest.raises(ModuleFailed) as failure:
        run_module(
            staged_config,
            args(live, {"rules/good.yml": GOOD_RULES}, readable_by="nobody", directory_mode="0750"),
        )

    assert f"its directory {live} is 0750 root:root" in failure.value.result["msg"]


def test_files_the_service_user_reads_through_its_group_pass(live):
    result = run_module(
        staged_config,
        args(
            live,
            {"rules/good.yml": GOOD_RULES, "web/server.key": {"content": "k\n", "diff": False}},
            readable_by="nobody",
            group="nogroup",
            mode="0640",
            directory_mode="0750",
            directory_group="nogroup",
        ),
    )

    assert result["changed"] is True
    assert stat.S_IMODE((live / "web" / "server.key").stat().st_mode) == 0o640


def test_a_readable_by_user_that_does_not_exist_is_a_clear_error(live):
    with pytest.raises(ModuleFailed) as failure:
        run_module(staged_config, args(live, {}, readable_by="no-such-user"))

    assert "readable_by: user 'no-such-user' does not exist" in failure.value.result["msg"]


def test_the_diff_shows_a_change_of_mode_or_group(live):
    os.chmod(live / "rules" / "good.yml", 0o666)
    secret = {"content": "secret\n", "diff": False, "mode": "0600"}
    (live / "key").write_text("secret\n")

    result = run_module(
        staged_config,
        args(live, {"rules/good.yml": GOOD_RULES, "key": secret}),
        check_mode=True,
        diff=True,
    )

    by_header = {entry["before_header"]: entry for entry in result["diff"]}
    rules = by_header[f"{live}/rules/good.yml (mode owner:group)"]
    assert (rules["before"], rules["after"]) == ("0666 root:root\n", "0644 root:root\n")
    key = by_header[f"{live}/key (mode owner:group)"]
    assert (key["before"], key["after"]) == ("0644 root:root\n", "0600 root:root\n")
    assert "secret" not in repr(result["diff"])


def test_a_file_written_after_its_service_started_is_stale_until_it_restarts(tmp_path):
    """service_started_at: one service; services_started_at: one per subdirectory."""
    dest = tmp_path / "exporters"
    files = {"a/conf": "a\n", "b/conf": "b\n", "shared": "s\n"}
    run_module(staged_config, {"dest": str(dest), "files": files})
    written = (dest / "a" / "conf").stat().st_mtime

    before = run_module(
        staged_config, {"dest": str(dest), "files": files, "service_started_at": written - 10}
    )
    by_subdir = run_module(
        staged_config,
        {
            "dest": str(dest),
            "files": files,
            "service_started_at": written + 10,
            "services_started_at": {"a": written - 10, "b": written + 10},
        },
    )
    after = run_module(
        staged_config, {"dest": str(dest), "files": files, "service_started_at": written + 10}
    )

    assert before["changed"] is True
    assert before["stale_files"] == ["a/conf", "b/conf", "shared"]
    assert by_subdir["changed"] is True
    assert by_subdir["stale_files"] == ["a/conf"]
    assert after["changed"] is False and after["stale_files"] == []
