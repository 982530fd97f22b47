"""Filters behind TLS and basic auth (README "Security"): scrape jobs that follow the
components' protection, and the environment file of redis_exporter's basic auth."""

import prometheus
import pytest
import systemd
from ansible.errors import AnsibleFilterError

JOBS = [
    {"job_name": "node-exporter", "group": "exporters", "port": 9100},
    {
        "job_name": "dragonfly",
        "group": "exporters",
        "scrape_database": True,
        "targets_variable": "dragonflydb_exporter_targets",
        "default_targets": [{"address": "redis://127.0.0.1:6379"}],
    },
    {"job_name": "stand-alone", "group": "exporters", "port": 9999, "web_config": False},
]
CLIENT = {
    "ca_file": "web/ca.crt",
    "username": "prometheus",
    "password_file": "web/client-password",
}
CERT = "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----"


def jobs(hostvars, client=CLIENT, specs=JOBS):
    groups = {"exporters": list(hostvars)}
    configs = prometheus.prometheus_scrape_configs(specs, groups, hostvars, None, client)
    return {config["job_name"]: config for config in configs}


class TestScrapeConfigsOfProtectedComponents:
    def test_hosts_with_certificates_are_scraped_over_https_with_the_ca_and_credentials(self):
        hostvars = {
            "mon1": {"monitoring_tls_cert": CERT},
            "app1": {"monitoring_tls_cert": CERT, "monitoring_address": "192.0.2.11"},
        }

        node = jobs(hostvars)["node-exporter"]

        assert node == {
            "job_name": "node-exporter",
            "scheme": "https",
            "tls_config": {"ca_file": "web/ca.crt"},
            "basic_auth": {"username": "prometheus", "password_file": "web/client-password"},
            "static_configs": [
                {"targets": ["127.0.0.1:9100"], "labels": {"instance": "mon1"}},
                {"targets": ["192.0.2.11:9100"], "labels": {"instance": "app1"}},
            ],
        }

    def test_where_only_some_hosts_have_certificates_the_others_keep_http(self):
        hostvars = {"mon1": {"monitoring_tls_cert": CERT}, "app1": {"monitoring_tls_cert": " "}}

        node = jobs(hostvars)["node-exporter"]

        assert node["scheme"] == "https"
        assert [entry["labels"] for entry in node["static_configs"]] == [
            {"instance": "mon1"},
            {"instance": "app1", "__scheme__": "http"},
        ]

    def test_basic_auth_alone_keeps_http_and_sends_the_credentials(self):
        node = jobs({"mon1": {}})["node-exporter"]

        assert "scheme" not in node
        assert "tls_config" not in node
        assert node["basic_auth"] == {
            "username": "prometheus",
            "password_file": "web/client-password",
        }

    def test_without_a_ca_the_system_cas_verify(self):
        client = {"username": "prometheus", "password_file": "web/client-password"}

        node = jobs({"mon1": {"monitoring_tls_cert": CERT}}, client)["node-exporter"]

        assert node["scheme"] == "https"
        assert "tls_config" not in node

    def test_databases_and_jobs_marked_so_are_not_the_stacks_and_stay_as_they_are(self):
        configs = jobs({"mon1": {"monitoring_tls_cert": CERT}})

        for name in ("dragonfly", "stand-alone"):
            assert set(configs[name]) == {"job_name", "static_configs"}
            assert all("__scheme__" not in e["labels"] for e in configs[name]["static_configs"])

    def test_nothing_set_gives_the_jobs_of_before(self):
        unprotected = jobs({"mon1": {}}, client=None)
        assert unprotected["node-exporter"] == {
            "job_name": "node-exporter",
            "static_configs": [{"targets": ["127.0.0.1:9100"], "labels": {"instance": "mon1"}}],
        }
        assert jobs({"mon1": {"monitoring_tls_cert": ""}}, client={}) == unprotected


class TestSystemdEnvironment:
    def test_values_are_quoted_so_that_systemd_passes_them_unchanged(self):
        text = systemd.systemd_environment({"B": 'pw $HOME "q" `x` \\ end', "A": "plain"})

        assert text == 'A="plain"\nB="pw \\$HOME \\"q\\" \\`x\\` \\\\ end"\n'

    @pytest.mark.parametrize(
        ("variables", "message"),
        [
            ({"A": "line\nbreak"}, "the value of A holds a line break"),
            ({"1A": "x"}, "'1A' is not a variable name"),
            (["A"], "expects a mapping"),
        ],
    )
    def test_what_systemd_cannot_carry_is_refused(self, variables, message):
        with pytest.raises(AnsibleFilterError, match=message) as failure:
            systemd.systemd_environment(variables)

        assert "break" not in str(failure.value).split("holds")[0]
