"""The postgres_exporter role's filters (filter postgres.py, plugin_utils/postgres_targets.py).

A target is checked and completed before anything changes on a host; a bad one
fails naming it (its index and name) and never showing a password. The
scrape job `postgres` of prometheus_scrape_configs reads the targets the same
way. The exporter itself, against a real PostgreSQL, is tested in the Molecule
scenario postgres_exporter.
"""

import postgres
import prometheus
import pytest
from ansible.errors import AnsibleFilterError

SECRET = "pgx-Unit-Pa55-w0rd"


def targets(*items, base_port=9187, secrets=True):
    return postgres.postgres_exporter_targets(list(items), base_port, secrets)


def test_the_filter_plugin_offers_every_filter():
    assert set(postgres.FilterModule().filters()) == {
        "postgres_exporter_targets",
        "postgres_data_source_uri",
        "postgres_static_configs",
    }


class TestTargets:
    def test_a_target_gets_its_defaults_its_exporter_port_and_connection_string(self):
        (target,) = targets({"host": "db.example.com", "password": SECRET})

        assert target == {
            "name": "postgres",
            "host": "db.example.com",
            "port": 5432,
            "database": "postgres",
            "user": "postgres_exporter",
            "password": SECRET,
            "sslmode": "require",
            "ca_file": "",
            "exporter_port": 9187,
            "host_instance": "",
            "data_mountpoint": "/",
            "timescaledb_jobs": "auto",
            "create_login": False,
            "admin_user": "postgres",
            "admin_password": "",
            "endpoint": "db.example.com:5432",
            # No credentials: the exporter reads the user and password from files.
            "data_source_uri": "db.example.com:5432/postgres?sslmode=require"
            "&connect_timeout=3&application_name=postgres_exporter",
        }

    def test_each_target_has_the_next_port_unless_it_sets_its_own(self):
        result = targets(
            {"host": "127.0.0.1", "database": "postgres"},
            {"host": "127.0.0.1", "database": "trading", "port": "5433"},
            {"host": "127.0.0.1", "database": "reports", "exporter_port": 9300},
            base_port=9200,
        )

        assert [(t["name"], t["port"], t["exporter_port"]) for t in result] == [
            ("postgres", 5432, 9200),
            ("trading", 5433, 9201),
            ("reports", 5432, 9300),
        ]

    def test_the_ca_the_database_name_and_an_ipv6_host_are_escaped_in_the_uri(self):
        (target,) = targets(
            {
                "name": "odd",
                "host": "2001:db8::5",
                "database": "trading/eu?x",
                "sslmode": "verify-full",
                "ca_file": "/etc/ssl/certs/db-ca.pem",
            }
        )

        assert target["endpoint"] == "[2001:db8::5]:5432"
        assert target["data_source_uri"] == (
            "[2001:db8::5]:5432/trading%2Feu%3Fx?sslmode=verify-full"
            "&sslrootcert=/etc/ssl/certs/db-ca.pem&connect_timeout=3"
            "&application_name=postgres_exporter"
        )

    def test_without_secrets_the_passwords_are_left_out(self):
        (target,) = targets({"host": "127.0.0.1", "password": SECRET}, secrets=False)

        assert "password" not in target and "admin_password" not in target
        assert SECRET not in repr(target)


BAD_TARGETS = [
    pytest.param(
        {"name": "trading", "database": "trading"},
        r"postgres_exporter_targets\[1\] \(trading\): has no `host`",
        id="no-host",
    ),
    pytest.param(
        {"name": "trading", "host": ""},
        r"postgres_exporter_targets\[1\] \(trading\): has no `host`",
        id="empty-host",
    ),
    pytest.param(
        {"name": "trading", "host": "127.0.0.1", "port": "fivefourthree"},
        r"postgres_exporter_targets\[1\] \(trading\): `port` must be a whole number from 1 "
        r"to 65535, got 'fivefourthree'",
        id="port-not-a-number",
    ),
    pytest.param(
        {"name": "trading", "host": "127.0.0.1", "port": 70000},
        r"\(trading\): `port` must be a whole number",
        id="port-out-of-range",
    ),
    pytest.param(
        {"name": "trading", "host": "127.0.0.1", "port": True},
        r"\(trading\): `port` must be a whole number",
        id="port-a-boolean",
    ),
    pytest.param(
        {"name": "trading", "host": f"postgresql://monitor:{SECRET}@127.0.0.1:5432/trading"},
        r"postgres_exporter_targets\[1\] \(trading\): `host` holds a connection string",
        id="password-in-a-dsn-as-host",
    ),
    pytest.param(
        {"name": "trading", "host": "127.0.0.1", "database": f"dbname=trading password={SECRET}"},
        r"postgres_exporter_targets\[1\] \(trading\): `database` holds a connection string",
        id="password-in-a-dsn-as-database",
    ),
    pytest.param(
        {"name": "trading", "host": "127.0.0.1", "password": f"{SECRET} with spaces"},
        r"\(trading\): `password` contains white space",
        id="password-with-spaces",
    ),
    pytest.param(
        {"name": "trading", "host": "127.0.0.1", "dsn": f"postgresql://u:{SECRET}@h/db"},
        r"\(trading\): unknown key\(s\) dsn; a target takes ",
        id="unknown-key",
    ),
    pytest.param(
        {"name": "trading", "host": "/var/run/postgresql"},
        r"\(trading\): `host` must be a host name or an IP address",
        id="socket-path",
    ),
    pytest.param(
        {"name": "trading", "host": "127.0.0.1", "sslmode": "prefer"},
        r"\(trading\): `sslmode` must be one of disable, require, verify-ca, verify-full",
        id="sslmode-lib-pq-lacks",
    ),
    pytest.param(
        {"name": "trading", "host": "127.0.0.1", "sslmode": "verify-ca"},
        r"\(trading\): sslmode verify-ca needs `ca_file`",
        id="verify-without-ca",
    ),
    pytest.param(
        {"name": "trading", "host": "127.0.0.1", "ca_file": "certs/ca.pem"},
        r"\(trading\): `ca_file` must be an absolute path",
        id="relative-ca",
    ),
    pytest.param(
        {"name": "web", "host": "127.0.0.1"},
        r"postgres_exporter_targets\[1\] \(web\): `name` must be",
        id="reserved-name",
    ),
    pytest.param(
        {"host": "127.0.0.1", "database": "my db"},
        r"postgres_exporter_targets\[1\]: `name` must be .* set `name`",
        id="database-name-no-unit-name",
    ),
    pytest.param(
        {"name": "trading", "host": "127.0.0.1", "create_login": "yes"},
        r"\(trading\): `create_login` must be true or false",
        id="create-login-not-a-bool",
    ),
    pytest.param(
        {"name": "trading", "host": "127.0.0.1", "timescaledb_jobs": "on"},
        r"\(trading\): `timescaledb_jobs` must be one of auto, enabled, disabled",
        id="timescaledb-jobs-choice",
    ),
    pytest.param(
        {"name": "trading", "host": "127.0.0.1", "data_mountpoint": "data"},
        r"\(trading\): `data_mountpoint` must be an absolute path or empty",
        id="relative-mountpoint",
    ),
    pytest.param(
        {"name": "postgres", "host": "127.0.0.1", "password": SECRET},
        r"postgres_exporter_targets\[1\] \(postgres\) has the same name \(postgres\) as "
        r"postgres_exporter_targets\[0\]",
        id="duplicate-name",
    ),
    pytest.param(
        {"name": "trading", "host": "127.0.0.1", "exporter_port": 9187},
        r"postgres_exporter_targets\[1\] \(trading\) has the same exporter port \(9187\)",
        id="duplicate-exporter-port",
    ),
    pytest.param(
        "postgresql://monitor@127.0.0.1/trading",
        r"postgres_exporter_targets\[1\] must be a mapping .*, got a str",
        id="not-a-mapping",
    ),
]


@pytest.mark.parametrize(("bad", "message"), BAD_TARGETS)
def test_a_bad_target_fails_naming_it_and_never_shows_a_password(bad, message):
    good = {"name": "postgres", "host": "127.0.0.1", "password": SECRET}

    with pytest.raises(AnsibleFilterError, match=message) as error:
        targets(good, bad)

    assert SECRET not in str(error.value)


@pytest.mark.parametrize("value", [None, [], "", {}])
def test_no_targets_at_all_fail(value):
    with pytest.raises(AnsibleFilterError, match="must list at least one database"):
        postgres.postgres_exporter_targets(value)


def test_a_bad_base_port_fails_naming_the_variable():
    with pytest.raises(AnsibleFilterError, match="postgres_exporter_port must be a whole number"):
        targets({"host": "127.0.0.1"}, base_port="nine")


class TestStaticConfigs:
    def test_one_target_per_database_at_its_exporter_with_both_hosts_named(self):
        entries = postgres.postgres_static_configs(
            [
                {"host": "127.0.0.1", "database": "trading", "password": SECRET},
                {
                    "name": "reports",
                    "host": "10.0.0.4",
                    "database": "reports",
                    "host_instance": "db4.example.com",
                    "data_mountpoint": "",
                },
            ],
            "mon1.example.com",
            "192.0.2.10",
            9187,
            {"environment": "production"},
        )

        assert entries == [
            {
                "targets": ["192.0.2.10:9187"],
                "labels": {
                    "environment": "production",
                    "instance": "mon1.example.com",
                    "host_instance": "mon1.example.com",
                    "target": "trading",
                    "database": "trading",
                    "endpoint": "127.0.0.1:5432",
                    "data_mountpoint": "/",
                },
            },
            {
                # No data_mountpoint: no disk forecast for it.
                "targets": ["192.0.2.10:9188"],
                "labels": {
                    "environment": "production",
                    "instance": "mon1.example.com",
                    "host_instance": "db4.example.com",
                    "target": "reports",
                    "database": "reports",
                    "endpoint": "10.0.0.4:5432",
                },
            },
        ]
        assert SECRET not in repr(entries)

    def test_a_bad_target_fails_naming_the_host_too(self):
        with pytest.raises(
            AnsibleFilterError, match=r"^db1: postgres_exporter_targets\[0\]: has no `host`"
        ):
            postgres.postgres_static_configs([{"database": "x"}], "db1", "127.0.0.1")


POSTGRES_JOB = {
    "job_name": "postgres",
    "group": "postgres_hosts",
    "port_variable": "postgres_exporter_port",
    "port": 9187,
    "targets_variable": "postgres_exporter_targets",
    "targets_kind": "postgres",
    "default_targets": [{"host": "127.0.0.1", "port": 5432, "database": "postgres"}],
}


def test_the_scrape_job_postgres_comes_from_each_hosts_targets():
    groups = {"postgres_hosts": ["db1", "db2"]}
    hostvars = {
        "db1": {},
        "db2": {
            "monitoring_address": "192.0.2.12",
            "postgres_exporter_port": 9300,
            "monitoring_labels": {"environment": "production"},
            "postgres_exporter_targets": [
                {"host": "127.0.0.1", "database": "trading", "password": SECRET},
                {"name": "replica", "host": "127.0.0.1", "port": 5433},
            ],
        },
    }

    (config,) = prometheus.prometheus_scrape_configs([POSTGRES_JOB], groups, hostvars)

    assert config["job_name"] == "postgres"
    assert [(c["targets"], c["labels"]["target"]) for c in config["static_configs"]] == [
        (["127.0.0.1:9187"], "postgres"),
        (["192.0.2.12:9300"], "trading"),
        (["192.0.2.12:9301"], "replica"),
    ]
    assert config["static_configs"][1]["labels"]["environment"] == "production"
    assert SECRET not in repr(config)
