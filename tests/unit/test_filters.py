"""The project's filter plugins: command lines, units, rule files, scrape jobs."""

import cli
import prometheus
import pytest
import systemd
import yaml
from ansible.errors import AnsibleFilterError

CATALOG = [
    {
        "name": "system-resources.rules",
        "rules": [
            {
                "alert": "HighCPUUsage",
                "expr": 'cpu{job="{{ job.node }}"} > {{ threshold }}',
                "params": {"threshold": 80},
                "for": "5m",
                "severity": "warning",
                "service": "system",
                "summary": "High CPU usage: {{ $value }}%",
                "description": "CPU usage is {{ $value }}% on {{ $labels.instance }}.",
            },
            {
                "alert": "HighLoad",
                "expr": "load > 1",
                "severity": "warning",
                "service": "system",
                "summary": "s",
                "description": "d",
            },
        ],
    }
]
CONTEXT = {"job": {"node": "node-exporter"}}
# A clock alert whose threshold is milliseconds, whole numbers in a range.
CLOCK = [
    {
        "name": "system-resources.rules",
        "rules": [
            {
                "alert": "HostClockInaccurate",
                "expr": "abs(node_timex_offset_seconds) * 1000 > {{ offset_ms }}",
                "params": {"offset_ms": 10},
                "param_ranges": {"offset_ms": [1, 60000]},
                "severity": "warning",
                "critical": {"offset_ms": 100},
                "service": "system",
                "summary": "s",
                "description": "d",
            }
        ],
    }
]


def render(overrides=None, group_overrides=None, groups=CATALOG):
    files = prometheus.prometheus_rule_files(
        groups, overrides, group_overrides, CONTEXT, "https://runbooks.example.com", "# head\n"
    )
    return {path: yaml.safe_load(text) for path, text in files.items()}, files


class TestCliFlags:
    def test_values_bare_flags_lists_and_omissions(self):
        assert cli.cli_flags(
            {
                "web.listen-address": "127.0.0.1:9100",
                "web.enable-lifecycle": True,
                "cluster.peer": ["a:9094", "b:9094"],
                "off": False,
                "empty": "",
                "none": None,
            }
        ) == [
            "--cluster.peer=a:9094",
            "--cluster.peer=b:9094",
            "--web.enable-lifecycle",
            "--web.listen-address=127.0.0.1:9100",
        ]

    def test_rejects_anything_but_a_mapping(self):
        with pytest.raises(AnsibleFilterError):
            cli.cli_flags(["--x"])

    @pytest.mark.parametrize(
        ("address", "expected"),
        [
            ("127.0.0.1", "127.0.0.1:9100"),
            ("::1", "[::1]:9100"),
            ("[::1]", "[::1]:9100"),
            ("host.example.com", "host.example.com:9100"),
        ],
    )
    def test_host_port_brackets_ipv6(self, address, expected):
        assert cli.host_port(address, 9100) == expected


class TestSystemd:
    def test_plain_arguments_stay_plain(self):
        assert systemd.systemd_quote("--web.listen-address=127.0.0.1:9100") == (
            "--web.listen-address=127.0.0.1:9100"
        )

    def test_specifiers_and_variables_are_escaped(self):
        assert systemd.systemd_quote("^/(dev|proc)($|/)") == "^/(dev|proc)($$|/)"
        assert systemd.systemd_quote("50%") == "50%%"

    def test_whitespace_quotes_and_backslashes_are_quoted(self):
        assert systemd.systemd_quote('a "b"\\c d') == '"a \\"b\\"\\\\c d"'
        assert systemd.systemd_quote("") == '""'

    def test_command_line_puts_one_argument_per_line(self):
        assert systemd.systemd_command_line(["/usr/bin/x", "--a=1", "--b=2"]) == (
            "/usr/bin/x \\\n    --a=1 \\\n    --b=2"
        )

    def test_command_line_needs_a_binary(self):
        with pytest.raises(AnsibleFilterError):
            systemd.systemd_command_line([])


class TestRuleFiles:
    def test_renders_one_file_per_group_with_labels_annotations_and_runbook(self):
        documents, files = render()

        assert list(files) == ["rules/system-resources.yml"]
        assert files["rules/system-resources.yml"].startswith("# head\n")
        rule = documents["rules/system-resources.yml"]["groups"][0]["rules"][0]
        assert rule == {
            "alert": "HighCPUUsage",
            "expr": 'cpu{job="node-exporter"} > 80',
            "for": "5m",
            "labels": {"severity": "warning", "service": "system"},
            "annotations": {
                "summary": "High CPU usage: {{ $value }}%",
                "description": "CPU usage is {{ $value }}% on {{ $labels.instance }}.",
                "runbook_url": "https://runbooks.example.com#highcpuusage",
            },
        }

    def test_overrides_change_params_and_rule_keys_without_copying_the_catalog(self):
        documents, _ = render(
            {"HighCPUUsage": {"threshold": 95, "for": "10m", "labels": {"team": "ops"}}}
        )

        rule = documents["rules/system-resources.yml"]["groups"][0]["rules"][0]
        assert rule["expr"] == 'cpu{job="node-exporter"} > 95'
        assert rule["for"] == "10m"
        assert rule["labels"] == {"severity": "warning", "service": "system", "team": "ops"}
        assert CATALOG[0]["rules"][0]["params"]["threshold"] == 80

    def test_disabled_alerts_and_groups_are_left_out(self):
        documents, _ = render({"HighCPUUsage": {"enabled": False}})
        names = [r["alert"] for r in documents["rules/system-resources.yml"]["groups"][0]["rules"]]
        assert names == ["HighLoad"]

        _, files = render(group_overrides={"system-resources.rules": {"enabled": False}})
        assert files == {}

    def test_group_interval(self):
        documents, _ = render(group_overrides={"system-resources.rules": {"interval": "30s"}})
        assert documents["rules/system-resources.yml"]["groups"][0]["interval"] == "30s"

    @pytest.mark.parametrize(
        ("overrides", "group_overrides", "message"),
        [
            ({"HighCPUUsag": {"threshold": 1}}, None, "alerts that do not exist: HighCPUUsag"),
            ({"HighCPUUsage": {"treshold": 1}}, None, "sets 'treshold', which alert HighCPUUsage"),
            ({"HighCPUUsage": 90}, None, "must be a mapping"),
            (None, {"nope.rules": {"enabled": False}}, "groups that do not exist: nope.rules"),
            (None, {"system-resources.rules": {"enable": False}}, "unknown keys: enable"),
        ],
    )
    def test_mistakes_name_the_variable_and_the_key(self, overrides, group_overrides, message):
        with pytest.raises(AnsibleFilterError, match=message):
            render(overrides, group_overrides)

    def test_an_expression_using_an_unknown_name_fails_clearly(self):
        broken = [{"name": "x.rules", "rules": [dict(CATALOG[0]["rules"][1], expr="{{ nope }}")]}]
        with pytest.raises(AnsibleFilterError, match="alert HighLoad: cannot render"):
            render(groups=broken)

    def test_incomplete_and_duplicate_alerts_are_refused(self):
        incomplete = [{"name": "x.rules", "rules": [{"alert": "A", "expr": "up"}]}]
        with pytest.raises(AnsibleFilterError, match="lacks severity, service, summary"):
            render(groups=incomplete)
        twice = [CATALOG[0], {"name": "other.rules", "rules": CATALOG[0]["rules"][:1]}]
        with pytest.raises(AnsibleFilterError, match="HighCPUUsage is defined twice"):
            render(groups=twice)

    def test_a_threshold_in_range_renders(self):
        documents, _ = render({"HostClockInaccurate": {"offset_ms": 5}}, groups=CLOCK)
        rules = documents["rules/system-resources.yml"]["groups"][0]["rules"]
        assert [r["expr"] for r in rules] == [
            "abs(node_timex_offset_seconds) * 1000 > 5",
            "abs(node_timex_offset_seconds) * 1000 > 100",
        ]

    @pytest.mark.parametrize(
        ("override", "message"),
        [
            # Seconds where milliseconds are meant: refused, naming the variable and the unit.
            (
                {"offset_ms": 0.01},
                r"prometheus_alert_overrides\[HostClockInaccurate\]: offset_ms must be a whole "
                r"number from 1 to 60000 \(ms\), got 0.01",
            ),
            ({"offset_ms": "10"}, r"offset_ms must be a whole number .* got '10'"),
            ({"offset_ms": True}, r"offset_ms must be a whole number .* got True"),
            ({"critical": {"offset_ms": 0}}, r"critical.offset_ms must be a whole number"),
        ],
    )
    def test_a_threshold_in_the_wrong_unit_fails_naming_it(self, override, message):
        with pytest.raises(AnsibleFilterError, match=message):
            render({"HostClockInaccurate": override}, groups=CLOCK)

    def test_ranges_apply_to_the_catalog_itself_and_name_real_params(self):
        broken = [
            {
                **CLOCK[0],
                "rules": [{**CLOCK[0]["rules"][0], "params": {"offset_ms": 0.5}}],
            }
        ]
        with pytest.raises(AnsibleFilterError, match="alert HostClockInaccurate: offset_ms"):
            render(groups=broken)
        unknown = [
            {
                **CLOCK[0],
                "rules": [{**CLOCK[0]["rules"][0], "param_ranges": {"x_ms": [1, 2]}}],
            }
        ]
        with pytest.raises(
            AnsibleFilterError, match="param_ranges names params it does not have: x_ms"
        ):
            render(groups=unknown)

    def test_ranges_cannot_be_overridden(self):
        with pytest.raises(AnsibleFilterError, match="sets 'param_ranges'"):
            render({"HostClockInaccurate": {"param_ranges": {}}}, groups=CLOCK)


SPECS = [
    {
        "job_name": "node-exporter",
        "group": "exporters",
        "port_variable": "node_exporter_port",
        "port": 9100,
    },
    {
        "job_name": "dragonflydb",
        "group": "dragonflydb_hosts",
        "port_variable": "dragonflydb_exporter_port",
        "port": 9121,
        "multi_target_path": "/scrape",
        "targets_variable": "dragonflydb_exporter_targets",
        "default_targets": [{"address": "redis://127.0.0.1:6379"}],
    },
]


class TestScrapeConfigs:
    def test_one_target_per_host_with_instance_and_host_labels(self):
        groups = {"exporters": ["mon1", "app1"], "dragonflydb_hosts": []}
        hostvars = {
            "mon1": {},
            "app1": {
                "monitoring_address": "192.0.2.11",
                "node_exporter_port": 9101,
                "monitoring_labels": {"environment": "production"},
            },
        }

        configs = prometheus.prometheus_scrape_configs(SPECS, groups, hostvars, "mon1")

        assert configs == [
            {
                "job_name": "node-exporter",
                "static_configs": [
                    {"targets": ["127.0.0.1:9100"], "labels": {"instance": "mon1"}},
                    {
                        "targets": ["192.0.2.11:9101"],
                        "labels": {"environment": "production", "instance": "app1"},
                    },
                ],
            }
        ]

    def test_multi_target_exporter_gets_one_target_per_database(self):
        groups = {"exporters": [], "dragonflydb_hosts": ["db1", "db2"]}
        hostvars = {
            "db1": {},
            "db2": {
                "dragonflydb_exporter_targets": [
                    {"address": "redis://127.0.0.1:6379"},
                    {"address": "rediss://127.0.0.1:6380"},
                ]
            },
        }

        (config,) = prometheus.prometheus_scrape_configs(SPECS, groups, hostvars)

        assert "metrics_path" not in config
        # `endpoint`: the database's own host:port, which its blackbox probes carry too.
        assert [c["labels"] for c in config["static_configs"]] == [
            {"instance": "db1", "endpoint": "127.0.0.1:6379"},
            {"instance": "db2:6379", "endpoint": "127.0.0.1:6379"},
            {
                "instance": "db2:6380",
                "endpoint": "127.0.0.1:6380",
                "__metrics_path__": "/scrape",
                "__param_target": "rediss://127.0.0.1:6380",
            },
        ]

    def test_native_database_metrics_scrape_each_database_at_its_port(self):
        native = {
            "job_name": "dragonfly",
            "group": "dragonflydb_hosts",
            "enabled": True,
            "scrape_database": True,
            "targets_variable": "dragonflydb_exporter_targets",
            "default_targets": [{"address": "redis://127.0.0.1:6379"}],
        }
        groups = {"dragonflydb_hosts": ["db1"]}
        hostvars = {"db1": {"monitoring_address": "192.0.2.20"}}

        (config,) = prometheus.prometheus_scrape_configs([native], groups, hostvars)

        assert config == {
            "job_name": "dragonfly",
            "static_configs": [
                {
                    "targets": ["192.0.2.20:6379"],
                    "labels": {"instance": "db1", "endpoint": "127.0.0.1:6379"},
                }
            ],
        }
        disabled = dict(native, enabled=False)
        assert prometheus.prometheus_scrape_configs([disabled], groups, hostvars) == []

    def test_a_remote_host_on_loopback_is_an_error_naming_the_fix(self):
        groups = {"exporters": ["mon1", "app1"]}
        with pytest.raises(AnsibleFilterError, match="set monitoring_address for app1"):
            prometheus.prometheus_scrape_configs(
                SPECS[:1], groups, {"mon1": {}, "app1": {}}, "mon1"
            )


SECRETS = "/etc/prometheus/secrets"


class TestRemoteEndpoints:
    def test_secrets_move_to_files_and_bearer_tokens_become_authorization(self):
        entries = [
            {
                "url": "https://mimir.example.com/api/v1/push",
                "basic_auth": {"username": "tenant", "password": "s3cret"},
                "queue_config": {"max_shards": 10},
            },
            {"url": "https://vm.example.com/api/v1/write", "bearer_token": "t0ken"},
        ]

        result = prometheus.prometheus_remote_endpoints(
            entries, "/etc/prometheus/secrets", "remote_write"
        )

        assert result["configs"] == [
            {
                "url": "https://mimir.example.com/api/v1/push",
                "basic_auth": {
                    "username": "tenant",
                    "password_file": "/etc/prometheus/secrets/remote_write.0.basic_auth.password",
                },
                "queue_config": {"max_shards": 10},
            },
            {
                "url": "https://vm.example.com/api/v1/write",
                "authorization": {
                    "credentials_file": SECRETS + "/remote_write.1.authorization.credentials"
                },
            },
        ]
        assert result["secret_files"] == {
            "remote_write.0.basic_auth.password": "s3cret",
            "remote_write.1.authorization.credentials": "t0ken",
        }
        assert entries[0]["basic_auth"]["password"] == "s3cret"

    def test_mistakes_are_named(self):
        with pytest.raises(AnsibleFilterError, match="prometheus_remote_write\\[0\\] needs a url"):
            prometheus.prometheus_remote_endpoints([{}], "/s", "remote_write")
        both = [{"url": "http://x", "bearer_token": "a", "basic_auth": {"username": "u"}}]
        with pytest.raises(AnsibleFilterError, match="exclude each other"):
            prometheus.prometheus_remote_endpoints(both, "/s", "remote_write")

    @pytest.mark.parametrize(
        "url", ["victoria:8428/api/v1/write", "ftp://vm/api/v1/write", "http:///api/v1/write"]
    )
    def test_a_url_that_is_not_one_is_named(self, url):
        with pytest.raises(AnsibleFilterError) as failure:
            prometheus.prometheus_remote_endpoints([{"url": url}], "/s", "remote_write")

        assert str(failure.value) == (
            f"prometheus_remote_write[0]: url {url!r} must start with http:// or https:// "
            "and name a host"
        )

    def test_a_password_in_a_bad_url_is_not_shown(self):
        with pytest.raises(AnsibleFilterError) as failure:
            prometheus.prometheus_remote_endpoints(
                [{"url": "http://tenant:s3cret@vm:port/api/v1/write"}], "/s", "remote_write"
            )

        assert "s3cret" not in str(failure.value)
        assert "'http://tenant:***@vm:port/api/v1/write'" in str(failure.value)
