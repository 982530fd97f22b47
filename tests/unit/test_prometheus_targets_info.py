"""prometheus_targets_info against a real Prometheus with one target up and one down."""

import prometheus_targets_info
import pytest
from conftest import ModuleFailed, assert_documented, free_port, run_module


def read(prometheus, **args):
    return run_module(prometheus_targets_info, {"url": prometheus.url, **args})


def test_reports_each_target_with_job_instance_and_health(loaded_prometheus):
    result = read(loaded_prometheus)

    assert result["changed"] is False
    targets = {target["job"]: target for target in result["targets"]}
    assert set(targets) == {"self", "closed"}
    up = targets["self"]
    assert up["health"] == "up"
    assert up["instance"] == loaded_prometheus.url.removeprefix("http://")
    assert up["scrape_url"] == loaded_prometheus.url + "/metrics"
    assert up["last_error"] == ""
    assert up["labels"]["job"] == "self"
    assert result["counts"] == {"targets": 2, "up": 1, "down": 1, "unknown": 0}
    assert result["jobs"] == {
        "closed": {"up": 0, "down": 1, "unknown": 0},
        "self": {"up": 1, "down": 0, "unknown": 0},
    }


def test_a_target_that_is_down_is_listed_with_its_error(loaded_prometheus):
    result = read(loaded_prometheus)

    (down,) = result["down"]
    assert down["job"] == "closed"
    assert down["health"] == "down"
    assert "connection refused" in down["last_error"]
    assert down["instance"] in down["scrape_url"]


def test_reads_the_targets_of_some_jobs_only(loaded_prometheus):
    result = read(loaded_prometheus, jobs=["self", "no-such-job"])

    assert [target["job"] for target in result["targets"]] == ["self"]
    assert result["down"] == []
    assert result["missing_jobs"] == ["no-such-job"]


def test_an_unreachable_prometheus_fails_with_the_url_and_reason():
    url = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(ModuleFailed) as failure:
        run_module(prometheus_targets_info, {"url": url, "timeout": 2})

    message = failure.value.result["msg"]
    assert message.startswith("cannot read the scrape targets from Prometheus: ")
    assert f"{url}/api/v1/targets" in message
    assert "Connection refused" in message


def test_documentation_matches_the_options():
    assert_documented(prometheus_targets_info)
