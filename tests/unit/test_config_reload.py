"""config_reload against real Prometheus and Alertmanager processes."""

import json
import time

import config_reload
import pytest
from conftest import (
    ALERTMANAGER_CONFIG,
    PROMETHEUS_CONFIG,
    ModuleFailed,
    free_port,
    http_get,
    run_module,
)


def prometheus_marker(prometheus):
    config = json.loads(http_get(prometheus.url + "/api/v1/status/config"))["data"]["yaml"]
    return "marker: changed" in config, config


def alertmanager_receivers(alertmanager):
    status = json.loads(http_get(alertmanager.url + "/api/v2/status"))
    return status["config"]["original"]


def test_prometheus_reload_takes_the_new_config_without_a_restart(prometheus):
    pid = prometheus.pid
    prometheus.write_config(PROMETHEUS_CONFIG.format(marker="changed"))
    before_request = int(time.time())

    result = run_module(config_reload, {"service": "prometheus", "url": prometheus.url})

    assert result["changed"] is True
    assert result["reload_timestamp"] >= before_request
    assert prometheus_marker(prometheus)[0]
    assert prometheus.process.poll() is None
    assert prometheus.pid == pid


def test_prometheus_rejects_a_broken_config_and_keeps_the_old_one(prometheus):
    prometheus.write_config("global:\n  scrape_interval: not-a-duration\n")

    with pytest.raises(ModuleFailed) as failure:
        run_module(config_reload, {"service": "prometheus", "url": prometheus.url})

    message = failure.value.result["msg"]
    assert "prometheus rejected the new configuration" in message
    assert "not-a-duration" in message
    assert "marker: initial" in prometheus_marker(prometheus)[1]
    assert prometheus.process.poll() is None


def test_alertmanager_reload_takes_the_new_config(alertmanager):
    alertmanager.write_config(ALERTMANAGER_CONFIG.format(receiver="changed"))

    result = run_module(config_reload, {"service": "alertmanager", "url": alertmanager.url})

    assert result["changed"] is True
    assert "name: changed" in alertmanager_receivers(alertmanager)


def test_alertmanager_rejects_a_broken_config(alertmanager):
    alertmanager.write_config("route:\n  receiver: nowhere\nreceivers: []\n")

    with pytest.raises(ModuleFailed) as failure:
        run_module(config_reload, {"service": "alertmanager", "url": alertmanager.url})

    assert "alertmanager rejected the new configuration" in failure.value.result["msg"]
    assert 'undefined receiver "nowhere"' in failure.value.result["msg"]
    assert "name: initial" in alertmanager_receivers(alertmanager)


def test_check_mode_does_not_reload(prometheus):
    prometheus.write_config(PROMETHEUS_CONFIG.format(marker="changed"))

    result = run_module(
        config_reload, {"service": "prometheus", "url": prometheus.url}, check_mode=True
    )

    assert result["changed"] is True
    assert not prometheus_marker(prometheus)[0]


def test_an_unreachable_service_fails_with_the_url_and_reason():
    url = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(ModuleFailed) as failure:
        run_module(config_reload, {"service": "prometheus", "url": url, "ready_timeout": 1})

    message = failure.value.result["msg"]
    assert url in message
    assert "Connection refused" in message


def test_the_reload_marker_goes_only_with_a_confirmed_reload(prometheus, tmp_path):
    marker = tmp_path / "reload-pending" / "prometheus"
    marker.parent.mkdir()
    marker.write_text('{"files": ["prometheus.yml"]}\n')
    reload = {"service": "prometheus", "url": prometheus.url, "reload_marker": str(marker)}

    run_module(config_reload, reload, check_mode=True)
    assert marker.exists()

    prometheus.write_config("global:\n  scrape_interval: not-a-duration\n")
    with pytest.raises(ModuleFailed):
        run_module(config_reload, reload)
    assert marker.exists()

    prometheus.write_config(PROMETHEUS_CONFIG.format(marker="changed"))
    run_module(config_reload, reload)
    assert not marker.exists()
    # Nothing left to remove: still a plain, confirmed reload.
    assert run_module(config_reload, reload)["changed"] is True
