"""Every metric an alert of the catalog reads is served by the component that should serve
it, in the versions this scenario runs (Debian 12's packages here; the archive scenario runs
these tests against upstream's releases on Debian 13): a renamed metric would make its
alert silently never fire."""

import re

import pytest
from molecule_helpers import catalog_metrics, get_text

# Series that exist only with a setting this scenario does not turn on.
CONDITIONAL = {
    # remote_write (prometheus_remote_write): the cluster scenario sets it.
    "prometheus_remote_storage_highest_timestamp_in_seconds",
    "prometheus_remote_storage_queue_highest_sent_timestamp_seconds",
    "prometheus_remote_storage_samples_failed_total",
    # A cluster of Alertmanagers (two monitoring hosts): the cluster scenario.
    "alertmanager_cluster_members",
    "alertmanager_cluster_failed_peers",
}


SERVICES = [
    ("prometheus_", "http://127.0.0.1:9090/metrics"),
    ("alertmanager_", "http://127.0.0.1:9093/metrics"),
]


@pytest.mark.parametrize(("prefix", "url"), SERVICES)
def test_every_metric_the_catalog_reads_is_served(host, prefix, url):
    wanted = catalog_metrics(prefix)
    assert wanted
    served = set(re.findall(rf"^({prefix}[A-Za-z0-9_]+)", get_text(host, url), re.MULTILINE))
    missing = wanted - served - CONDITIONAL
    assert not missing, f"alerts read metrics {url} does not serve: {sorted(missing)}"
