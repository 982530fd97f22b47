"""prometheus_rules_info against a real Prometheus with a firing, a pending and a broken rule."""

import prometheus_rules_info
import pytest
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.http_api import parse_time
from conftest import ModuleFailed, assert_documented, free_port, run_module


def read(prometheus, **args):
    return run_module(prometheus_rules_info, {"url": prometheus.url, **args})


def by_name(items):
    return {item["name"]: item for item in items}


def test_reports_every_group_and_rule_with_health_state_and_evaluation(loaded_prometheus):
    result = read(loaded_prometheus)

    assert result["changed"] is False
    groups = by_name(result["groups"])
    assert set(groups) == {"ops-test.rules", "ops-test-records.rules"}
    assert groups["ops-test.rules"]["rule_count"] == 2
    assert groups["ops-test.rules"]["interval"] == 1
    assert groups["ops-test.rules"]["file"].endswith("rules.yml")
    rules = by_name(result["rules"])
    firing = rules["AlwaysFiring"]
    assert (firing["type"], firing["health"], firing["state"]) == ("alerting", "ok", "firing")
    assert firing["group"] == "ops-test.rules"
    assert firing["query"] == "vector(1)"
    assert firing["evaluation_time"] >= 0
    assert parse_time(firing["last_evaluation"]).year >= 2024
    assert rules["AlwaysPending"]["state"] == "pending"
    assert rules["AlwaysPending"]["duration"] == 3600
    assert result["counts"] == {"groups": 2, "rules": 3, "ok": 2, "err": 1, "unknown": 0}


def test_a_rule_that_fails_to_evaluate_is_unhealthy_with_its_error(loaded_prometheus):
    result = read(loaded_prometheus)

    (broken,) = result["unhealthy_rules"]
    assert broken["name"] == "ops:many_to_one"
    assert broken["type"] == "recording"
    assert broken["health"] == "err"
    assert "many-to-one matching must be explicit" in broken["last_error"]


def test_reports_firing_and_pending_alerts_and_counts_them(loaded_prometheus):
    result = read(loaded_prometheus)

    alerts = by_name(result["alerts"])
    assert set(alerts) == {"AlwaysFiring", "AlwaysPending"}
    assert alerts["AlwaysFiring"]["state"] == "firing"
    assert alerts["AlwaysFiring"]["labels"] == {
        "alertname": "AlwaysFiring",
        "severity": "warning",
        "service": "ops",
    }
    assert alerts["AlwaysFiring"]["annotations"] == {"summary": "always firing"}
    assert parse_time(alerts["AlwaysFiring"]["active_at"]).year >= 2024
    assert alerts["AlwaysPending"]["state"] == "pending"
    assert result["summary"] == {
        "firing": 1,
        "pending": 1,
        "firing_by_severity": {"warning": 1},
        "firing_by_service": {"ops": 1},
    }


def test_reads_one_kind_of_rule_or_some_groups_only(loaded_prometheus):
    records = read(loaded_prometheus, rule_type="record")
    assert [rule["name"] for rule in records["rules"]] == ["ops:many_to_one"]
    assert records["alerts"] == []

    one_group = read(loaded_prometheus, rule_groups=["ops-test.rules", "no-such.rules"])
    assert [group["name"] for group in one_group["groups"]] == ["ops-test.rules"]
    assert one_group["unhealthy_rules"] == []
    assert one_group["missing_groups"] == ["no-such.rules"]


def test_check_mode_reads_the_same(loaded_prometheus):
    result = run_module(prometheus_rules_info, {"url": loaded_prometheus.url}, check_mode=True)

    assert result["changed"] is False
    assert result["counts"]["rules"] == 3


def test_an_unreachable_prometheus_fails_with_the_url_and_reason():
    url = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(ModuleFailed) as failure:
        run_module(prometheus_rules_info, {"url": url, "timeout": 2})

    message = failure.value.result["msg"]
    assert message.startswith("cannot read the rules from Prometheus: ")
    assert f"{url}/api/v1/rules" in message
    assert "Connection refused" in message


def test_documentation_matches_the_options():
    assert_documented(prometheus_rules_info)
