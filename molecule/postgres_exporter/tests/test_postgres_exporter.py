"""postgres_exporter against Debian's PostgreSQL: the exporters, the least-privilege login,
the secrets, every alert of postgres.rules faulted for real, bad inventory, and the cost.

The alerts are judged by their expressions, as the catalog renders them (the project's
filter prometheus_rule_files, with the params the test names: shorter windows and
thresholds, as an operator would set them with prometheus_alert_overrides), evaluated by
the test's own Prometheus (prepare.yml), which scrapes node_exporter and the exporters every
2 seconds with the scrape job the filter postgres_static_configs generates. That is the rule
Prometheus runs on the exporters' real series, in seconds rather than the hours an alert's
`for:` and windows take in production (promtool's tests in tests/rules/postgres.test.yml
cover `for:` and the labels). The tests run in file order: the faults build on the
converged host, and each test leaves it as it found it.
"""

import hashlib
import json
import re
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml
from molecule_helpers import PROJECT, catalog_metrics, changed_tasks, recap, run_playbook, wait_for

sys.path.insert(0, str(PROJECT / ".collections"))
sys.path.insert(0, str(PROJECT / "tests" / "fixtures"))
import pki  # tests/fixtures
from ansible_collections.prometheus_alerting.stack.plugins.filter.prometheus import (
    prometheus_rule_files,
)

SCENARIO = Path(__file__).resolve().parents[1]
CONVERGE = "molecule/postgres_exporter/converge.yml"
INVENTORY_VARS = yaml.safe_load((SCENARIO / "inventory/group_vars/postgres_hosts.yml").read_text())
TARGETS = INVENTORY_VARS["postgres_exporter_targets"]
PASSWORD = TARGETS[0]["password"]
WRONG_PASSWORD = "pgx-Wrong-Pa55-k3Xw"
PROMETHEUS = f"http://127.0.0.1:{INVENTORY_VARS['pgtest_prometheus_port']}"
CONFIG_DIR = "/etc/prometheus-postgres-exporter"
UNIT = "prometheus-postgres-exporter@{}"
PORTS = {"postgres": 9187, "trading": 9188, "replica": 9189}
CATALOG = PROJECT / "roles/prometheus/defaults/main"


# --- Helpers -------------------------------------------------------------------------


class _CatalogLoader(yaml.SafeLoader):
    """The catalog's !unsafe strings (Prometheus templates) as plain strings."""


_CatalogLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def rendered_expr(alert, **params):
    """The alert's expression as the stack's Prometheus gets it, with these params."""
    group = yaml.load((CATALOG / "alerts_postgres.yml").read_text(), Loader=_CatalogLoader)
    jobs = yaml.load((CATALOG / "main.yml").read_text(), Loader=_CatalogLoader)
    files = prometheus_rule_files(
        list(group.values()),
        {alert: params} if params else None,
        None,
        {"job": jobs["prometheus_alert_jobs"], "metric": {}},
        "https://runbooks.example.com",
    )
    rules = yaml.safe_load(next(iter(files.values())))["groups"][0]["rules"]
    # A warning/critical pair renders twice: the warning (first) is the one tested.
    return next(rule["expr"] for rule in rules if rule["alert"] == alert)


class Target:
    """The container, reached with `docker exec` (fast enough to poll)."""

    def __init__(self, name):
        self.name = name

    def sh(self, command, check=True, timeout=120):
        result = subprocess.run(
            ["docker", "exec", self.name, "sh", "-c", command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{command!r} failed ({result.returncode}): {result.stderr}")
        return result

    def psql(self, sql, db="postgres", port=5432):
        return self.sh(
            "runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 "
            f"-p {port} -d {db} -c {shlex.quote(sql)}"
        ).stdout.strip()

    def query(self, expr):
        """Prometheus' answer to an instant query: [{metric, value}]."""
        text = self.sh(
            f"curl -fsS -G --max-time 10 {PROMETHEUS}/api/v1/query "
            f"--data-urlencode {shlex.quote('query=' + expr)}"
        ).stdout
        return json.loads(text)["data"]["result"]

    def metrics(self, port):
        return self.sh(f"curl -fsS --max-time 10 http://127.0.0.1:{port}/metrics").stdout

    def start(self, unit, command):
        self.sh(f"systemd-run --quiet --collect --unit={unit} {command}")

    def stop(self, unit):
        self.sh(f"systemctl stop {unit}", check=False)

    def main_pid(self, unit):
        return int(self.unit(unit)["MainPID"])

    def unit(self, unit):
        """systemd's properties of a unit: {name: value}."""
        text = self.sh(f"systemctl show {unit}").stdout
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def labels_of(result):
    return [series["metric"] for series in result]


def wait_expr(target, expr, firing, match=None, timeout=90, what=""):
    """Wait until the expression returns a series matching `match` (firing) or none (not)."""

    def matching():
        return [
            m
            for m in labels_of(target.query(expr))
            if all(m.get(k) == v for k, v in (match or {}).items())
        ]

    if firing:
        return wait_for(matching, timeout=timeout, interval=1, what=f"{what or expr} to be true")
    wait_for(
        lambda: not matching(), timeout=timeout, interval=1, what=f"{what or expr} to be false"
    )
    return []


def converge(*args, targets=None, **extra):
    extra_vars = dict(extra)
    if targets is not None:
        extra_vars["postgres_exporter_targets"] = targets
    # Plain output to search (Molecule may force colours).
    env = {"ANSIBLE_FORCE_COLOR": "0"}
    return run_playbook(CONVERGE, *args, extra_vars=extra_vars or None, env=env)


def with_changes(**changes):
    """The scenario's targets with some keys changed, by target name: {name: {key: value}}."""
    return [dict(t, **changes.get(t["name"], {})) for t in TARGETS]


def checksums(target, *paths):
    text = target.sh(f"find {' '.join(paths)} -type f -exec sha256sum {{}} + | sort -k 2").stdout
    return dict(reversed(line.split()) for line in text.splitlines())


@pytest.fixture(scope="module")
def target(host):
    return Target(host.backend.host)


@pytest.fixture(scope="module")
def version(target):
    """postgres_exporter's version on the host (0.11.1 on Debian 12, 0.17.1 on Debian 13)."""
    text = target.sh("dpkg-query -W -f '${Version}' prometheus-postgres-exporter").stdout
    return re.match(r"[0-9.]+", text).group(0).rstrip(".")


@pytest.fixture(scope="module")
def pg_version(target):
    return target.sh("pg_lsclusters --no-header | head -1").stdout.split()[0]


def wait_until_scraped(target):
    """Every exporter answers Prometheus and reaches its database."""
    wait_for(
        lambda: len([r for r in target.query('pg_up{job="postgres"} == 1')]) == 3,
        timeout=60,
        interval=1,
        what="pg_up 1 for the three targets",
    )


# --- The exporters as the role runs them ------------------------------------------------


def test_one_unit_per_database_as_its_own_user_on_loopback_and_the_packages_unit_off(target):
    for name, port in PORTS.items():
        unit = UNIT.format(name)
        state = target.unit(unit)
        assert state["ActiveState"] == "active"
        assert state["UnitFileState"] == "enabled"
        assert state["User"] == "postgres-exporter"
        assert state["FragmentPath"] == f"/etc/systemd/system/{unit}.service"
        listeners = target.sh(f"ss -Hltn sport = :{port}").stdout.split("\n")[0].split()
        assert listeners[3] == f"127.0.0.1:{port}"
    package_unit = target.unit("prometheus-postgres-exporter")
    assert (package_unit["ActiveState"], package_unit["UnitFileState"]) == ("inactive", "disabled")
    security = target.sh(
        f"systemd-analyze security --no-pager {UNIT.format('trading')}", check=False
    ).stdout
    exposure = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", security).group(1))
    assert exposure <= 3.0, security


def test_the_role_created_a_least_privilege_login(target):
    row = target.psql(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolcanlogin "
        "FROM pg_roles WHERE rolname = 'pgx_monitor'"
    )
    assert row == "f|f|f|f|f|t"
    groups = target.psql(
        "SELECT string_agg(g.rolname, ',' ORDER BY g.rolname) FROM pg_auth_members m "
        "JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member "
        "WHERE u.rolname = 'pgx_monitor'"
    )
    assert groups == "pg_monitor"


def test_every_exporter_reaches_its_database_with_it(target):
    wait_until_scraped(target)
    for name, port in PORTS.items():
        text = target.metrics(port)
        assert re.search(r"^pg_up 1$", text, re.MULTILINE), name
        assert re.search(r"^pg_exporter_last_scrape_error 0$", text, re.MULTILINE), name
    sessions = target.psql(
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
        "WHERE a.usename = 'pgx_monitor' AND a.application_name = 'postgres_exporter' AND s.ssl"
    )
    assert int(sessions) >= 2, "the exporters of the primary connect over TLS"


# Series that need what the test databases do not have, with the reason: none. The
# scenario has a replica (pg_stat_replication_*, pg_standby_* of a standby) and the
# stand-in for TimescaleDB's job statistics (pg_timescaledb_job_stats_*), and the
# role's queries return a row for every database and state while nothing is wrong.
CONDITIONAL: dict[str, str] = {}


def test_every_pg_metric_an_alert_reads_is_served(target, version):
    wanted = catalog_metrics("pg_")
    assert len(wanted) >= 12
    served = set()
    for port in PORTS.values():
        served |= set(re.findall(r"^(pg_[A-Za-z0-9_]+)", target.metrics(port), re.MULTILINE))
    missing = wanted - served - set(CONDITIONAL)
    assert not missing, f"postgres_exporter {version} does not serve {sorted(missing)}"


def test_timescaledbs_job_statistics_where_the_view_is_and_once_it_is_created(target):
    """`auto`: the query looks for the view as it runs, so a database where TimescaleDB
    comes later is seen without a rerun of the role."""
    marker = "pg_timescaledb_job_stats:"
    for name in ("trading", "postgres"):
        assert marker in target.sh(f"cat {CONFIG_DIR}/{name}/queries.yaml").stdout
    assert "pg_timescaledb_job_stats_last_run_failed{" in target.metrics(PORTS["trading"])
    served = target.metrics(PORTS["postgres"])
    assert "pg_timescaledb_" not in served
    assert re.search(r"^pg_exporter_last_scrape_error 0$", served, re.MULTILINE)

    target.psql(
        "CREATE SCHEMA timescaledb_information; "
        "CREATE VIEW timescaledb_information.job_stats AS SELECT "
        "'public'::name AS hypertable_schema, 'late'::name AS hypertable_name, 1001 AS job_id, "
        "'Success'::text AS last_run_status, "
        "'Scheduled'::text AS job_status, now() + interval '1 hour' AS next_start, "
        "0::bigint AS total_failures; "
        "GRANT USAGE ON SCHEMA timescaledb_information TO PUBLIC; "
        "GRANT SELECT ON timescaledb_information.job_stats TO PUBLIC"
    )
    try:
        wait_for(
            lambda: (
                'pg_timescaledb_job_stats_last_run_failed{hypertable="public.late",job_id="1001"'
                in target.metrics(PORTS["postgres"])
            ),
            timeout=30,
            interval=1,
            what="the new view's job in the postgres database's exporter",
        )
    finally:
        target.psql("DROP SCHEMA timescaledb_information CASCADE")
    assert "pg_timescaledb_" not in target.metrics(PORTS["postgres"])


def test_the_password_is_only_in_its_file_readable_by_the_exporters_group(target):
    for name in PORTS:
        pid = target.main_pid(UNIT.format(name))
        for what in ("cmdline", "environ"):
            assert PASSWORD not in target.sh(f"tr '\\0' ' ' < /proc/{pid}/{what}").stdout
    everything = target.sh(
        "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f 2>/dev/null; echo; done; "
        "cat /etc/systemd/system/prometheus-postgres-exporter@*.service; "
        "journalctl --no-pager -o cat -u 'prometheus-postgres-exporter@*'"
    ).stdout
    assert PASSWORD not in everything
    world_readable = target.sh(
        "find /etc /srv /var/lib/postgresql -xdev -type f -perm -o=r "
        f"-exec grep -lF -e {PASSWORD} {{}} +",
        check=False,
    )
    assert world_readable.stdout == "" and world_readable.stderr == ""
    stat = target.sh(
        f"stat -c '%a %U %G' {CONFIG_DIR} {CONFIG_DIR}/trading "
        f"{CONFIG_DIR}/trading/data-source-pass"
    )
    assert stat.stdout.split("\n")[:3] == [
        "750 root postgres-exporter",
        "750 root postgres-exporter",
        "640 root postgres-exporter",
    ]
    assert target.sh(f"cat {CONFIG_DIR}/trading/data-source-pass").stdout == PASSWORD


# --- Each alert, faulted for real -------------------------------------------------------


def test_postgresql_stopped_is_postgresql_down_per_database_and_the_replica_lost_its_primary(
    target, pg_version
):
    down = rendered_expr("PostgreSQLDown")
    lost = rendered_expr("PostgreSQLReplicaLostPrimary")
    wait_until_scraped(target)
    assert not target.query(down)
    assert not target.query(lost)

    target.sh(f"systemctl stop postgresql@{pg_version}-main")
    try:
        wait_for(
            lambda: (
                sorted(m["target"] for m in labels_of(target.query(down)))
                == ["postgres", "trading"]
            ),
            timeout=60,
            interval=1,
            what="PostgreSQLDown for both databases of the primary, not the replica",
        )
        # One alert for the replica's server, whichever of its databases are targets.
        (series,) = wait_expr(
            target, lost, True, {"endpoint": "127.0.0.1:5433"}, what="PostgreSQLReplicaLostPrimary"
        )
        assert series["instance"] == target.name
        (trading,) = [m for m in labels_of(target.query(down)) if m["target"] == "trading"]
        assert trading["database"] == "trading" and trading["endpoint"] == "127.0.0.1:5432"
    finally:
        target.sh(f"systemctl start postgresql@{pg_version}-main")
    wait_expr(target, down, False, what="PostgreSQLDown")
    wait_expr(target, lost, False, what="PostgreSQLReplicaLostPrimary")


def test_connections_up_to_the_threshold_are_too_many_connections(target):
    expr = rendered_expr("PostgreSQLTooManyConnections")  # 80% of max_connections (20 here)
    wait_until_scraped(target)
    assert target.psql("SHOW max_connections") == "20"
    assert not target.query(expr)
    in_use = max(
        float(r["value"][1])
        for r in target.query(
            'sum by (target) (pg_stat_database_numbackends{endpoint="127.0.0.1:5432"})'
        )
    )
    # Above 80% of 20: 17 connections.
    target.start(
        "pgtest-connections",
        f"runuser -u postgres -- pgtest --db postgres hold-connections {17 - int(in_use)} 300",
    )
    try:
        (series,) = wait_expr(
            target, expr, True, {"endpoint": "127.0.0.1:5432"}, what="17 of 20 connections"
        )
        assert series["instance"] == target.name
        assert float(target.query(expr)[0]["value"][1]) > 80
    finally:
        target.stop("pgtest-connections")
    wait_expr(target, expr, False, what="PostgreSQLTooManyConnections")


def test_two_sessions_deadlocking_are_deadlocks(target):
    expr = rendered_expr("PostgreSQLDeadlocks", window="20s")
    wait_expr(target, expr, False)
    output = target.sh("runuser -u postgres -- pgtest --db trading deadlock").stdout
    assert "deadlock detected" in output
    wait_expr(
        target,
        expr,
        True,
        {"datname": "trading", "endpoint": "127.0.0.1:5432"},
        what="PostgreSQLDeadlocks",
    )
    wait_expr(target, expr, False, timeout=60, what="PostgreSQLDeadlocks once the window passed")


@pytest.mark.parametrize(
    ("alert", "command"),
    [
        ("PostgreSQLLongRunningTransaction", "long-transaction"),
        ("PostgreSQLIdleInTransaction", "idle-in-transaction"),
    ],
)
def test_a_transaction_held_open_past_the_threshold(target, alert, command):
    expr = rendered_expr(alert, threshold_seconds=8)
    other = rendered_expr(
        "PostgreSQLIdleInTransaction"
        if command == "long-transaction"
        else "PostgreSQLLongRunningTransaction",
        threshold_seconds=8,
    )
    wait_expr(target, expr, False)
    target.start("pgtest-transaction", f"runuser -u postgres -- pgtest --db trading {command} 300")
    try:
        time.sleep(4)
        assert not target.query(expr), "4 s is below the threshold"
        wait_expr(target, expr, True, {"datname": "trading"}, what=alert)
        assert float(target.query(expr)[0]["value"][1]) > 8
        assert not target.query(other), "the other state's alert stays quiet"
    finally:
        target.stop("pgtest-transaction")
    wait_expr(target, expr, False, what=alert)


def test_a_failing_or_late_timescaledb_job_row(target):
    failed = rendered_expr("TimescaleDBJobFailed")
    late = rendered_expr("TimescaleDBJobNotRunOnSchedule")  # 900 s
    wait_expr(target, failed, False)
    wait_expr(target, late, False)
    rows = "pgtest.job_stats_rows"
    target.psql(
        f"UPDATE {rows} SET last_run_status = 'Failed', total_failures = total_failures + 1, "
        "next_start = now() - interval '1 hour' WHERE job_id = 1000",
        "trading",
    )
    try:
        match = {"job_id": "1000", "hypertable": "public.ticks", "database": "trading"}
        wait_expr(target, failed, True, match, what="TimescaleDBJobFailed")
        wait_expr(target, late, True, match, what="TimescaleDBJobNotRunOnSchedule")
        # A paused job is not late.
        target.psql(
            f"UPDATE {rows} SET job_status = 'Paused', next_start = NULL WHERE job_id = 1000",
            "trading",
        )
        wait_expr(target, late, False, what="TimescaleDBJobNotRunOnSchedule of a paused job")
    finally:
        target.psql(
            f"UPDATE {rows} SET last_run_status = 'Success', job_status = 'Scheduled', "
            "next_start = now() + interval '1 hour' WHERE job_id = 1000",
            "trading",
        )
    wait_expr(target, failed, False, what="TimescaleDBJobFailed")
    wait_expr(target, late, False, what="TimescaleDBJobNotRunOnSchedule")


def test_failing_wal_archiving(target):
    expr = rendered_expr("PostgreSQLWALArchivingFailing", window="30s")
    wait_expr(target, expr, False)
    switch = (
        "CREATE TABLE IF NOT EXISTS pgtest_wal (x int); INSERT INTO pgtest_wal VALUES (1); "
        "SELECT pg_switch_wal()"
    )
    target.psql("ALTER SYSTEM SET archive_command = '/bin/false'")
    target.psql("SELECT pg_reload_conf()")
    try:
        target.psql(switch, "trading")
        (series,) = wait_expr(
            target, expr, True, {"endpoint": "127.0.0.1:5432"}, what="PostgreSQLWALArchivingFailing"
        )
        assert series["instance"] == target.name
    finally:
        target.psql("ALTER SYSTEM SET archive_command = '/bin/true'")
        target.psql("SELECT pg_reload_conf()")
    target.psql(switch, "trading")
    wait_expr(target, expr, False, what="PostgreSQLWALArchivingFailing once a segment is archived")


def test_replication_lag(target):
    expr = rendered_expr("PostgreSQLReplicationLag", max_seconds=3, max_bytes=4 * 1024 * 1024)
    wait_expr(target, expr, False)
    target.psql("SELECT pg_wal_replay_pause()", port=5433)
    try:
        target.sh("runuser -u postgres -- pgtest --db trading fill 8 4")
        found = wait_expr(target, expr, True, what="PostgreSQLReplicationLag")
        wait_for(
            lambda: (
                {"replica", "primary"}
                <= {
                    "primary" if m.get("application_name") else "replica"
                    for m in labels_of(target.query(expr))
                }
            ),
            timeout=30,
            interval=1,
            what="lag seen from the primary (bytes) and the replica (seconds)",
        )
        assert found
    finally:
        target.psql("SELECT pg_wal_replay_resume()", port=5433)
        target.psql("DROP TABLE IF EXISTS pgtest_fill", "trading")
    wait_expr(target, expr, False, what="PostgreSQLReplicationLag")


def test_the_databases_outgrowing_their_file_system(target):
    expr = rendered_expr("PostgreSQLOutgrowingDisk", window="20s", hours=1)
    wait_expr(target, expr, False)
    target.start("pgtest-fill", "runuser -u postgres -- pgtest --db trading fill 40 20")
    try:
        (series,) = wait_expr(
            target,
            expr,
            True,
            {"mountpoint": "/var/lib/postgresql", "endpoint": "127.0.0.1:5432"},
            what="PostgreSQLOutgrowingDisk",
        )
        assert series["device"] == "tmpfs"
    finally:
        target.stop("pgtest-fill")
    wait_expr(target, expr, False, what="PostgreSQLOutgrowingDisk once the growth stopped")
    target.psql("DROP TABLE IF EXISTS pgtest_fill", "trading")


def test_a_query_the_login_may_not_run_is_exporter_errors(target):
    expr = rendered_expr("PostgreSQLExporterErrors")
    wait_expr(target, expr, False)
    target.psql("REVOKE SELECT ON timescaledb_information.job_stats FROM PUBLIC", "trading")
    try:
        (series,) = wait_expr(
            target, expr, True, {"target": "trading"}, what="PostgreSQLExporterErrors"
        )
        assert series["database"] == "trading"
    finally:
        target.psql("GRANT SELECT ON timescaledb_information.job_stats TO PUBLIC", "trading")
    wait_expr(target, expr, False, what="PostgreSQLExporterErrors")


# --- Inventory: what an alert is, what fails the run -------------------------------------


def test_a_wrong_password_and_an_unreachable_database_are_alerts_not_a_failed_run(target):
    down = rendered_expr("PostgreSQLDown")
    before = {name: target.main_pid(UNIT.format(name)) for name in PORTS}
    # Only the configuration: the handler restarts the exporters whose files changed.
    rc, output = converge(
        "--tags",
        "postgres_exporter_configure",
        "--diff",
        "-vvv",
        targets=with_changes(trading={"password": WRONG_PASSWORD}, replica={"port": 5499}),
    )
    try:
        assert rc == 0, output
        assert WRONG_PASSWORD not in output and PASSWORD not in output
        assert recap(output)["failed"] == 0
        assert "postgres_exporter : Restart the exporters for their new files" in changed_tasks(
            output
        )
        after = {name: target.main_pid(UNIT.format(name)) for name in PORTS}
        assert after["postgres"] == before["postgres"], (
            "an exporter whose files did not change keeps running"
        )
        assert after["trading"] != before["trading"] and after["replica"] != before["replica"]
        wait_for(
            lambda: (
                sorted(m["target"] for m in labels_of(target.query(down))) == ["replica", "trading"]
            ),
            timeout=60,
            interval=1,
            what="PostgreSQLDown for the wrong password and the unreachable port",
        )
        journal = target.sh(
            "journalctl --no-pager -o cat -u prometheus-postgres-exporter@trading"
        ).stdout
        assert "password authentication failed" in journal and WRONG_PASSWORD not in journal
    finally:
        rc, output = converge()
        assert rc == 0, output
    wait_until_scraped(target)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"host": None}, r"postgres_exporter_targets\[1\] \(trading\): has no `host`"),
        (
            {"port": "fivefourthree"},
            r"postgres_exporter_targets\[1\] \(trading\): `port` must be a whole number",
        ),
        (
            {"host": "postgresql://pgx_monitor:pgx-InDsn-Pa55@127.0.0.1:5432/trading"},
            r"postgres_exporter_targets\[1\] \(trading\): `host` holds a connection string",
        ),
        (
            {"password": "pgx with spaces"},
            r"postgres_exporter_targets\[1\] \(trading\): `password` contains white space",
        ),
    ],
    ids=["no-host", "port-not-a-number", "password-in-the-dsn", "password-with-spaces"],
)
def test_a_bad_target_fails_the_run_naming_it_and_nothing_changes(target, change, message):
    trading = {k: v for k, v in {**TARGETS[1], **change}.items() if v is not None}
    before = checksums(target, CONFIG_DIR, "/etc/systemd/system")
    pids = {name: target.main_pid(UNIT.format(name)) for name in PORTS}

    rc, output = converge("--diff", "-vvv", targets=[TARGETS[0], trading, TARGETS[2]])

    assert rc != 0
    assert re.search(message, output), output[-3000:]
    for secret in ("pgx-InDsn-Pa55", "pgx with spaces", PASSWORD):
        assert secret not in output
    assert checksums(target, CONFIG_DIR, "/etc/systemd/system") == before
    assert {name: target.main_pid(UNIT.format(name)) for name in PORTS} == pids


def test_a_target_removed_from_the_inventory_goes_and_comes_back(target):
    rc, output = converge(targets=TARGETS[:2])
    try:
        assert rc == 0, output
        assert (
            target.sh(f"systemctl is-active {UNIT.format('replica')}", check=False).stdout.strip()
            != "active"
        )
        assert target.sh(
            f"test -e /etc/systemd/system/{UNIT.format('replica')}.service", check=False
        ).returncode
        assert target.sh(f"test -e {CONFIG_DIR}/replica", check=False).returncode
        assert target.sh(f"systemctl is-active {UNIT.format('trading')}").stdout.strip() == "active"
    finally:
        rc, output = converge()
        assert rc == 0, output
    wait_until_scraped(target)


def test_tls_and_basic_auth_of_the_web_endpoint(target):
    ca_cert, ca_key = pki.make_ca()
    cert, key = pki.make_server_cert(ca_cert, ca_key, target.name)
    users = {"prometheus": "pgx-Web-Pa55-z8Yq"}
    target.sh(f"mkdir -p /tmp/pgtest && printf %s {shlex.quote(ca_cert)} > /tmp/pgtest/ca.crt")
    rc, output = converge(
        monitoring_tls_cert=cert, monitoring_tls_key=key, monitoring_web_users=users
    )
    try:
        assert rc == 0, output
        assert "pgx-Web-Pa55-z8Yq" not in output and "PRIVATE KEY" not in output
        for port in PORTS.values():
            url = f"https://127.0.0.1:{port}/metrics"
            ok = target.sh(
                f"curl -sS --cacert /tmp/pgtest/ca.crt -u prometheus:pgx-Web-Pa55-z8Yq {url}"
            ).stdout
            assert re.search(r"^pg_up 1$", ok, re.MULTILINE)
            no_auth = target.sh(
                f"curl -sS -o /dev/null -w '%{{http_code}}' --cacert /tmp/pgtest/ca.crt {url}"
            )
            assert no_auth.stdout == "401"
            assert (
                target.sh(f"curl -fsS http://127.0.0.1:{port}/metrics", check=False).returncode != 0
            )
        config = target.sh(
            f"stat -c '%a %U %G' {CONFIG_DIR}/web/web-config-tls.yml {CONFIG_DIR}/web/server.key"
        ).stdout
        assert config.split("\n")[:2] == ["640 root postgres-exporter"] * 2
    finally:
        rc, output = converge()
        assert rc == 0, output
    assert target.sh(f"ls {CONFIG_DIR}/web", check=False).stdout.strip() == ""
    wait_until_scraped(target)


def test_the_archive_method(target, version, tmp_path):
    """The upstream layout built from the host's own binary, served from a file:// path."""
    stem = f"postgres_exporter-{version}.linux-amd64"
    binary = tmp_path / "postgres_exporter"
    subprocess.run(
        ["docker", "cp", f"{target.name}:/usr/bin/prometheus-postgres-exporter", str(binary)],
        check=True,
    )
    archive = tmp_path / f"{stem}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(binary, arcname=f"{stem}/postgres_exporter")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    (tmp_path / "sha256sums.txt").write_text(f"{digest}  {archive.name}\n")
    settings = {
        "postgres_exporter_install_method": "archive",
        "postgres_exporter_version": version,
        "postgres_exporter_archive_url": f"file://{tmp_path}/postgres_exporter-"
        "{{ postgres_exporter_version }}.{{ monitoring_service_archive_os }}-"
        "{{ monitoring_service_archive_arch }}.tar.gz",
        "postgres_exporter_archive_checksum": f"file://{tmp_path}/sha256sums.txt",
        "monitoring_service_archive_cache": str(tmp_path / "cache"),
    }
    rc, output = converge(**settings)
    try:
        assert rc == 0, output
        installed = f"/opt/prometheus-alerting/postgres_exporter/{version}/postgres_exporter"
        for name in PORTS:
            unit = target.sh(f"systemctl cat {UNIT.format(name)}").stdout
            assert f"ExecStart={installed}" in unit
            pid = target.main_pid(UNIT.format(name))
            command = target.sh(f"tr '\\0' ' ' < /proc/{pid}/cmdline").stdout
            assert command.startswith(installed + " ")
        wait_until_scraped(target)
        rc, output = converge(**settings)
        assert rc == 0 and recap(output)["changed"] == 0, changed_tasks(output)
    finally:
        rc, output = converge()
        assert rc == 0, output
    assert target.sh("test -e /opt/prometheus-alerting/postgres_exporter", check=False).returncode
    wait_until_scraped(target)


# --- Cost ------------------------------------------------------------------------------


def test_a_no_change_rerun_changes_nothing_and_is_cheap(target):
    started = time.monotonic()
    rc, output = converge()
    elapsed = time.monotonic() - started
    assert rc == 0, output
    assert recap(output)["changed"] == 0, changed_tasks(output)
    print(f"\nno-change rerun of the role (3 targets): {elapsed:.1f} s")
    assert elapsed < 60


def scrape_cost(target, port, rounds=5):
    """(median seconds of a scrape, series, RSS in MiB after the scrapes) of one exporter."""
    times = []
    for _ in range(rounds):
        text = target.sh(
            f"curl -fsS -o /tmp/pgtest/scrape.txt -w '%{{time_total}}' http://127.0.0.1:{port}/metrics"
        ).stdout
        times.append(float(text))
    series = int(target.sh("grep -vc '^#' /tmp/pgtest/scrape.txt").stdout)
    pid = target.main_pid(UNIT.format(next(n for n, p in PORTS.items() if p == port)))
    rss_kib = int(
        re.search(r"VmRSS:\s+(\d+)", target.sh(f"cat /proc/{pid}/status").stdout).group(1)
    )
    return sorted(times)[len(times) // 2], series, rss_kib / 1024


def test_scrape_time_and_memory_against_a_thousand_tables(target, version):
    target.sh("mkdir -p /tmp/pgtest")
    # Stop the test's Prometheus: only these scrapes, one at a time.
    target.sh("systemctl stop pgtest-prometheus")
    try:
        baseline = scrape_cost(target, PORTS["trading"])
        # A hundred tables a transaction: the lock table is small with max_connections 20.
        target.psql("CREATE SCHEMA measure", "trading")
        target.psql(
            "DO $$ BEGIN FOR i IN 1..1000 LOOP "
            "EXECUTE format('CREATE TABLE measure.t%s (id bigint PRIMARY KEY, v text)', i); "
            "EXECUTE format('INSERT INTO measure.t%s VALUES (1, ''x'')', i); "
            "IF i % 100 = 0 THEN COMMIT; END IF; END LOOP; END $$",
            "trading",
        )
        target.psql("ANALYZE", "trading")
        assert (
            target.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'measure'", "trading")
            == "1000"
        )
        loaded = scrape_cost(target, PORTS["trading"])
    finally:
        target.psql(
            "DO $$ BEGIN FOR i IN 1..1000 LOOP "
            "EXECUTE format('DROP TABLE IF EXISTS measure.t%s', i); "
            "IF i % 100 = 0 THEN COMMIT; END IF; END LOOP; END $$",
            "trading",
        )
        target.psql("DROP SCHEMA IF EXISTS measure", "trading")
        target.sh("systemctl start pgtest-prometheus")
    print(
        f"\npostgres_exporter {version}, database trading: scrape {baseline[0] * 1000:.0f} ms, "
        f"{baseline[1]} series, RSS {baseline[2]:.1f} MiB; with 1,000 tables: scrape "
        f"{loaded[0] * 1000:.0f} ms, {loaded[1]} series, RSS {loaded[2]:.1f} MiB"
    )
    # Well below Prometheus' scrape timeout (10 s), and a small process.
    assert loaded[0] < 5
    assert loaded[2] < 200
