"""site.yml with TLS and basic auth on (README "Security").

Every component listens on loopback only and serves the host's certificate;
plain HTTP and requests without valid credentials are refused wherever the
component supports it; Prometheus scrapes every target of the stack over TLS
and sends alerts to Alertmanager the same way, and an alert still reaches
the receiver; the roles' reloads and the operations playbooks get through;
no secret is in a world-readable file, a unit or a command line; a converge
that rotates every secret shows none of them, with -v and --diff, and the
services take the new ones; a rerun changes nothing and check mode is
clean; every unit keeps a low systemd exposure score. Tests run in this
file's order: the rotation test puts generation 1 back before the last ones.
"""

import os
import re
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from molecule_helpers import (
    changed_tasks,
    recap,
    run_playbook,
    stopped,
    wait_for,
    wait_for_notification,
)

SCENARIO = Path(__file__).resolve().parents[1]
SITE = "molecule/security/converge.yml"
RELEASE = os.environ.get("MOLECULE_DISTRO") or "bookworm"
HOST_NAME = f"security-{RELEASE}"
PKI = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "pki"
INVENTORY = yaml.safe_load((SCENARIO / "inventory/group_vars/all/security.yml").read_text())

CA = "/etc/prometheus/web/ca.crt"
PROMETHEUS = "https://127.0.0.1:9090"
ALERTMANAGER = "https://127.0.0.1:9093"
RECEIVER = "http://127.0.0.1:8080/notifications"
REDIS_EXPORTER = "/usr/bin/prometheus-redis-exporter"

# Port, unit, config directory and group of each component of the stack.
COMPONENTS = {
    "prometheus": (9090, "prometheus", "/etc/prometheus", "prometheus"),
    "alertmanager": (9093, "prometheus-alertmanager", "/etc/alertmanager", "alertmanager"),
    "node-exporter": (
        9100,
        "prometheus-node-exporter",
        "/etc/prometheus-node-exporter",
        "node-exporter",
    ),
    "docker-exporter": (9417, "docker-exporter", "/etc/docker-exporter", "docker-exporter"),
    "dragonflydb": (
        9121,
        "prometheus-redis-exporter",
        "/etc/prometheus-redis-exporter",
        "redis-exporter",
    ),
    "blackbox": (
        9115,
        "prometheus-blackbox-exporter",
        "/etc/prometheus-blackbox-exporter",
        "blackbox-exporter",
    ),
}
# The stack's own jobs (https) and the stand-ins Prometheus scrapes as written (http).
STACK_JOBS = {
    "prometheus",
    "alertmanager",
    "node-exporter",
    "docker-exporter",
    "dragonflydb",
    "blackbox",
}
OWN_JOBS = {"trading-bot", "data-consumer"}
# Every secret value of the inventory starts with one of these.
SECRET_PREFIXES = ("secweb-", "secredis-", "secsmtp-", "secwebhook-", "secslack-", "secpagerduty-")


def render(value, generation):
    return value.replace("{{ security_secret_generation }}", str(generation))


def web_password(user, generation=1):
    return render(INVENTORY["monitoring_web_users"][user], generation)


def redis_password(generation):
    return render(INVENTORY["dragonflydb_exporter_targets"][0]["password"], generation)


def secret_values(generation):
    """Every secret of one generation, as the inventory gives it, by what it is."""
    receivers = {r["name"]: r for r in INVENTORY["alertmanager_receivers"]}
    values = {
        "web password of prometheus": web_password("prometheus", generation),
        "web password of grafana": web_password("grafana", generation),
        "DragonflyDB password": redis_password(generation),
        "SMTP password": INVENTORY["alertmanager_smtp_auth_password"],
        "webhook bearer token": receivers["critical-alerts"]["webhook"]["bearer_token"],
        "Slack webhook URL": receivers["unrouted-secrets"]["slack"]["api_url"],
        "PagerDuty routing key": receivers["unrouted-secrets"]["pagerduty"]["routing_key"],
    }
    values = {what: render(value, generation) for what, value in values.items()}
    # The TLS key: each line of its body (base64) but those the certificate
    # holds too (an EC key embeds its public key, which is no secret).
    key = (PKI / f"{HOST_NAME}-{generation}.key").read_text()
    cert = (PKI / f"{HOST_NAME}-{generation}.crt").read_text()
    for index, line in enumerate(key.splitlines()):
        if "PRIVATE KEY" not in line and line not in cert:
            values[f"TLS key line {index}"] = line
    return values


def leaks(output, generations=(1, 2)):
    """What of the secrets (any generation, or their common prefixes) occurs in `output`."""
    found = [prefix for prefix in SECRET_PREFIXES if prefix in output]
    for generation in generations:
        found += [what for what, value in secret_values(generation).items() if value in output]
    if "PRIVATE KEY-----" in output:
        found.append("a PEM private key")
    return found


def curl(host, url, *options, user=None, password=None):
    """(HTTP status, curl's exit code) of a GET from inside the target."""
    argv = ["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", *options]
    if user:
        argv += ["-u", f"{user}:{password}"]
    argv.append(url)
    result = host.run(" ".join(["%s"] * len(argv)), *argv)
    return result.stdout.strip(), result.rc


def api(host, url, user="prometheus", generation=1):
    """A JSON document from a protected API, verified against the CA, with basic auth."""
    output = host.check_output(
        "curl -fsS --max-time 10 --cacert %s -u %s %s",
        CA,
        f"{user}:{web_password(user, generation)}",
        url,
    )
    return yaml.safe_load(output)


def targets(host, generation=1):
    return api(host, f"{PROMETHEUS}/api/v1/targets", generation=generation)["data"]["activeTargets"]


def all_targets_up(host, generation=1):
    def check():
        active = targets(host, generation)
        return active if active and all(t["health"] == "up" for t in active) else None

    return wait_for(check, timeout=120, what="every target up")


def served_fingerprint(host, port):
    """SHA-256 fingerprint of the certificate the component on `port` serves."""
    output = host.check_output(
        "openssl s_client -connect 127.0.0.1:%s </dev/null 2>/dev/null"
        " | openssl x509 -noout -fingerprint -sha256",
        str(port),
    )
    return output.split("=", 1)[1].replace(":", "").lower()


def issued_fingerprint(generation):
    cert = x509.load_pem_x509_certificate((PKI / f"{HOST_NAME}-{generation}.crt").read_bytes())
    return cert.fingerprint(hashes.SHA256()).hex()


def main_pid(host, unit):
    return host.check_output("systemctl show -P MainPID %s", unit)


def redis_exporter_has_basic_auth(host):
    """Whether the installed redis_exporter knows basic auth; if not, that it is 1.45.

    Debian 12's 1.45 has none (README "Security"); any other version without
    it is a surprise this test must not pass over.
    """
    supported = "basic-auth-username" in host.run("%s --help", REDIS_EXPORTER).stderr
    if not supported:
        version = host.check_output("dpkg-query -W -f '${Version}' prometheus-redis-exporter")
        assert version.startswith("1.45."), f"redis_exporter {version} has no basic auth"
    return supported


@pytest.fixture(scope="module", autouse=True)
def converged(host):
    """Every target is up before the tests look at anything."""
    return all_targets_up(host)


# --- what listens where, and how --------------------------------------------------------


def test_every_component_listens_on_loopback_only(host):
    listening = host.check_output("ss -Hltn")
    for name, (port, *_rest) in COMPONENTS.items():
        addresses = re.findall(rf"^\S+\s+\d+\s+\d+\s+(\S+):{port}\s", listening, re.M)
        assert addresses == ["127.0.0.1"], (name, addresses)


def test_every_component_serves_the_hosts_certificate_which_the_ca_verifies(host):
    for name, (port, *_rest) in COMPONENTS.items():
        assert served_fingerprint(host, port) == issued_fingerprint(1), name
        # Without the CA, the certificate is not trusted: it is the scenario's own.
        status, rc = curl(host, f"https://127.0.0.1:{port}/metrics")
        assert rc == 60, (name, status, rc)


def test_plain_http_is_refused_everywhere(host):
    for name, (port, *_rest) in COMPONENTS.items():
        status, rc = curl(host, f"http://127.0.0.1:{port}/metrics")
        # Go's servers answer 400; the Docker exporter's closes the connection.
        assert status in ("400", "000"), (name, status, rc)


def test_requests_without_valid_credentials_are_refused(host):
    for name, (port, *_rest) in COMPONENTS.items():
        url = f"https://127.0.0.1:{port}/metrics"
        anonymous = curl(host, url, "--cacert", CA)[0]
        wrong = curl(host, url, "--cacert", CA, user="prometheus", password="wrong")[0]
        grafana = curl(host, url, "--cacert", CA, user="grafana", password=web_password("grafana"))
        prometheus = curl(
            host, url, "--cacert", CA, user="prometheus", password=web_password("prometheus")
        )
        assert prometheus[0] == "200", name
        if name == "dragonflydb" and not redis_exporter_has_basic_auth(host):
            # 1.45: TLS only, open to anyone who reaches it (README "Security").
            assert (anonymous, wrong) == ("200", "200"), name
            continue
        assert (anonymous, wrong) == ("401", "401"), name
        # redis_exporter knows one user only: the one Prometheus scrapes as.
        assert grafana[0] == ("401" if name == "dragonflydb" else "200"), name


def test_redis_exporter_gets_the_password_exactly_through_its_environment(host):
    pid = main_pid(host, "prometheus-redis-exporter")
    environment = host.check_output("tr '\\0' '\\n' < /proc/%s/environ", pid).splitlines()

    assert f"REDIS_EXPORTER_BASIC_AUTH_PASSWORD={web_password('prometheus')}" in environment
    assert "REDIS_EXPORTER_BASIC_AUTH_USERNAME=prometheus" in environment


# --- Prometheus follows -----------------------------------------------------------------


def test_prometheus_scrapes_every_target_of_the_stack_over_tls(host, converged):
    by_job = {}
    for target in converged:
        by_job.setdefault(target["labels"]["job"], []).append(target["scrapeUrl"])

    assert set(by_job) == STACK_JOBS | OWN_JOBS
    for job in STACK_JOBS:
        assert all(url.startswith("https://127.0.0.1:") for url in by_job[job]), by_job[job]
    for job in OWN_JOBS:
        assert all(url.startswith("http://") for url in by_job[job]), by_job[job]


def test_prometheus_sends_alerts_to_alertmanager_over_tls(host):
    active = api(host, f"{PROMETHEUS}/api/v1/alertmanagers")["data"]["activeAlertmanagers"]

    assert [a["url"] for a in active] == ["https://127.0.0.1:9093/api/v2/alerts"]
    wait_for(
        lambda: api(host, f"{ALERTMANAGER}/api/v2/alerts?filter=alertname%3D%22Watchdog%22"),
        timeout=60,
        what="the Watchdog in Alertmanager",
    )


def test_an_alert_still_reaches_the_receiver(host):
    with stopped(host, "prometheus-node-exporter"):
        record, alert = wait_for_notification(host, "NodeExporterDown", "firing")

    assert record["path"] == "/webhooks/critical"
    assert alert["labels"]["job"] == "node-exporter"
    assert alert["generatorURL"].startswith("https://127.0.0.1:9090/")
    all_targets_up(host)


def test_the_roles_reload_prometheus_and_alertmanager_through_tls(host):
    overrides = {
        **yaml.safe_load((SCENARIO / "inventory/group_vars/monitoring.yml").read_text())[
            "prometheus_alert_overrides"
        ],
        "HighRejectionRate": {"threshold": 91},
    }

    rc, rules = run_playbook(
        SITE, "--tags", "rules", extra_vars={"prometheus_alert_overrides": overrides}
    )
    rc_routing, routing = run_playbook(
        SITE, "--tags", "routing", extra_vars={"alertmanager_repeat_interval": "7h"}
    )
    rc_back, back = run_playbook(SITE, "--tags", "rules,routing")

    assert rc == 0, rules
    assert "prometheus : Reload prometheus" in changed_tasks(rules)
    assert rc_routing == 0, routing
    assert "alertmanager : Reload alertmanager" in changed_tasks(routing)
    assert rc_back == 0, back
    for output in (rules, routing, back):
        assert not leaks(output)


def test_the_operations_playbooks_use_tls_and_credentials(host):
    rc, verified = run_playbook("playbooks/verify.yml")
    rc_alert, alerted = run_playbook(
        "playbooks/test_alert.yml", extra_vars={"test_alert_receiver_url": RECEIVER}
    )
    rc_silence, silenced = run_playbook(
        "playbooks/maintenance.yml",
        extra_vars={"silence_instance": "security-test", "silence_duration": "5m"},
    )
    rc_lift, lifted = run_playbook(
        "playbooks/maintenance.yml", extra_vars={"silence_instance": "security-test", "lift": True}
    )

    assert rc == 0, verified
    assert "Prometheus https://127.0.0.1:9090" in verified
    assert re.search(r"All \d+ rules evaluate, all \d+ targets are up, and Prometheus", verified)
    assert "Alertmanager runs the configuration on disk" in verified
    assert rc_alert == 0, alerted
    assert rc_silence == 0, silenced
    assert rc_lift == 0, lifted
    assert "Lifted silence" in lifted
    for output in (verified, alerted, silenced, lifted):
        assert not leaks(output)


# --- secrets ------------------------------------------------------------------------------


def web_files():
    """Every file of the web settings, and the mode, owner and group it must have."""
    wanted = {}
    for _port, _unit, directory, group in COMPONENTS.values():
        wanted[f"{directory}/web/server.crt"] = ("644", "root", group)
        wanted[f"{directory}/web/server.key"] = ("640", "root", group)
        if group != "redis-exporter":
            wanted[f"{directory}/web/web-config-tls.yml"] = ("640", "root", group)
    wanted["/etc/prometheus/web/ca.crt"] = ("644", "root", "prometheus")
    wanted["/etc/prometheus/web/client-password"] = ("640", "root", "prometheus")
    wanted["/etc/alertmanager/web/ca.crt"] = ("644", "root", "alertmanager")
    wanted["/etc/prometheus-blackbox-exporter/web/ca.crt"] = ("644", "root", "blackbox-exporter")
    wanted["/etc/prometheus-redis-exporter/web/basic-auth.env"] = ("640", "root", "redis-exporter")
    return wanted


def test_the_web_files_are_readable_by_their_service_only(host):
    directories = [f"{c[2]}/web" for c in COMPONENTS.values()]
    listing = host.check_output(
        "find " + " ".join(["%s"] * len(directories)) + " -type f -printf '%%m %%u %%g %%p\\n'",
        *directories,
    )
    found = {}
    for line in listing.splitlines():
        mode, owner, group, path = line.split(" ", 3)
        found[path] = (mode, owner, group)

    assert found == web_files()
    for _port, _unit, directory, group in COMPONENTS.values():
        if directory != "/etc/prometheus":
            assert host.file(directory).mode == 0o750
            assert host.file(directory).group == group


def assert_no_secret_lies_around(host, generation):
    """No world-readable file under /etc or of systemd, and no command line, holds a secret."""
    patterns = list(SECRET_PREFIXES) + [
        value for what, value in secret_values(generation).items() if what.startswith("TLS key")
    ]
    readable = host.check_output(
        "find /etc /lib/systemd /usr/lib/systemd /run/systemd -xdev -type f -perm -o=r"
        " -exec grep -lF " + " ".join(["-e %s"] * len(patterns)) + " {} + 2>/dev/null || true",
        *patterns,
    )
    assert readable == "", readable
    units = host.check_output("cat /etc/systemd/system/*.service")
    # Every process' command line, from /proc: the target has no ps.
    command_lines = host.check_output(
        "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done 2>/dev/null || true"
    )
    for text in (units, command_lines):
        assert not leaks(text, generations=(generation,))
    # Where the secrets are: in their files, readable by their service only.
    assert host.file("/etc/prometheus/web/client-password").content_string == web_password(
        "prometheus", generation
    )


def test_no_secret_is_in_a_world_readable_file_a_unit_or_a_command_line(host):
    assert_no_secret_lies_around(host, 1)


def set_redis_password(host, old, new):
    """Change the stand-in's password, as the DragonflyDB's operator would."""
    host.check_output("REDISCLI_AUTH=%s redis-cli CONFIG SET requirepass %s", old, new)


def redis_up(host, generation):
    result = api(host, f"{PROMETHEUS}/api/v1/query?query=redis_up", generation=generation)
    return [sample["value"][1] for sample in result["data"]["result"]]


def test_a_converge_that_rotates_every_secret_shows_none_and_the_services_take_them(host):
    pids = {unit: main_pid(host, unit) for unit in ("prometheus", "prometheus-alertmanager")}
    pids["prometheus-node-exporter"] = main_pid(host, "prometheus-node-exporter")
    set_redis_password(host, redis_password(1), redis_password(2))
    try:
        rc, rotated = run_playbook(SITE, "-v", "--diff", "-e", "security_secret_generation=2")
        assert rc == 0, rotated
        # The diffs are shown (the public certificate's), the secret files' are not.
        new_cert = (PKI / f"{HOST_NAME}-2.crt").read_text().splitlines()
        assert f"+{new_cert[1]}" in rotated
        assert "(new content not shown)" in rotated
        assert not leaks(rotated)

        all_targets_up(host, generation=2)
        for name, (port, *_rest) in COMPONENTS.items():
            assert served_fingerprint(host, port) == issued_fingerprint(2), name
        wait_for(lambda: redis_up(host, 2) == ["1"], timeout=60, what="redis_up 1 on new passwords")
        # exporter-toolkit rereads its files: no restart for new secrets.
        assert {unit: main_pid(host, unit) for unit in pids} == pids
        assert_no_secret_lies_around(host, 2)
    finally:
        set_redis_password(host, redis_password(2), redis_password(1))
        rc_back, restored = run_playbook(SITE, "-v", "--diff")

    assert rc_back == 0, restored
    assert not leaks(restored)
    all_targets_up(host)
    wait_for(lambda: redis_up(host, 1) == ["1"], timeout=60, what="redis_up 1 on the old passwords")


def test_a_rerun_changes_nothing_and_check_mode_predicts_no_change(host):
    rc, rerun = run_playbook(SITE)
    rc_check, checked = run_playbook(SITE, "--check", "--diff")

    assert rc == 0, rerun
    assert recap(rerun)["changed"] == 0, changed_tasks(rerun)
    assert rc_check == 0, checked
    assert recap(checked)["changed"] == 0, changed_tasks(checked)
    assert not leaks(checked)


# --- systemd hardening ------------------------------------------------------------------

# What `systemd-analyze security` scores each unit today (README "Security"):
# lower is better, 10 is no sandboxing at all. A change that loosens a unit
# fails here.
EXPOSURE_LIMIT = 2.0


def test_every_unit_keeps_a_low_exposure_score(host):
    scores = {}
    for _port, unit, _directory, _group in COMPONENTS.values():
        output = host.check_output("systemd-analyze security --no-pager %s", unit)
        match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", output)
        assert match, output
        scores[unit] = float(match.group(1))
    print("systemd-analyze security:", scores)

    assert all(score <= EXPOSURE_LIMIT for score in scores.values()), scores
