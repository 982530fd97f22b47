"""Critical twins (filter prometheus.py): a warning alert with `critical:` renders as two rules.

The twin has the same alert name and labels but `severity: critical`, its own
params and `for`; Alertmanager's warning/critical inhibition then mutes the
warning while the critical one fires.
"""

import subprocess

import prometheus
import pytest
import yaml
from ansible.errors import AnsibleFilterError
from conftest import require_binary

CERT_EXPIRING = {
    "alert": "CertExpiring",
    "expr": 'expiry{check=~"{{ checks }}"} - time() < 86400 * {{ days }}',
    "params": {"days": 14, "checks": "tls|http"},
    "critical": {"days": 3},
    "for": "10m",
    "severity": "warning",
    "service": "probes",
    "summary": "Certificate expires in {{ $value | humanizeDuration }}",
    "description": "The certificate of {{ $labels.instance }} expires soon.",
    "labels": {"team": "ops"},
}
PROBE_DOWN = {
    "alert": "ProbeDown",
    "expr": "probe_success == 0",
    "for": "2m",
    "severity": "critical",
    "service": "probes",
    "summary": "s",
    "description": "d",
}


def catalog(*rules):
    return [{"name": "probes.rules", "rules": list(rules)}]


def render(overrides=None, groups=None):
    """The rules of the one rule file, as Prometheus reads them."""
    files = prometheus.prometheus_rule_files(
        groups or catalog(CERT_EXPIRING, PROBE_DOWN), overrides, None, {}, "https://rb.example"
    )
    [text] = files.values()
    return yaml.safe_load(text)["groups"][0]["rules"]


def expr(days, checks="tls|http"):
    return f'expiry{{check=~"{checks}"}} - time() < 86400 * {days}'


def test_the_twin_is_a_second_rule_with_the_same_name_severity_critical_and_its_params():
    warning, critical, down = render()

    assert warning == {
        "alert": "CertExpiring",
        "expr": expr(14),
        "for": "10m",
        "labels": {"severity": "warning", "service": "probes", "team": "ops"},
        "annotations": {
            "summary": "Certificate expires in {{ $value | humanizeDuration }}",
            "description": "The certificate of {{ $labels.instance }} expires soon.",
            "runbook_url": "https://rb.example#certexpiring",
        },
    }
    assert critical == {
        **warning,
        "expr": expr(3),
        "labels": {"severity": "critical", "service": "probes", "team": "ops"},
    }
    # An alert without a twin stays one rule.
    assert down["alert"] == "ProbeDown"


def test_the_twin_has_its_own_for_or_the_warnings():
    own_for = dict(CERT_EXPIRING, critical={"days": 3, "for": "1m"})
    warning, critical = render(groups=catalog(own_for))
    assert (warning["for"], critical["for"]) == ("10m", "1m")
    assert critical["expr"] == expr(3)

    # Without its own `for`, the twin follows the warning's, overrides included.
    warning, critical, _ = render({"CertExpiring": {"for": "30m"}})
    assert (warning["for"], critical["for"]) == ("30m", "30m")

    # And without any `for`, neither has one.
    no_for = {k: v for k, v in CERT_EXPIRING.items() if k != "for"}
    assert ["for" in rule for rule in render(groups=catalog(no_for))] == [False, False]


def test_an_override_of_critical_changes_only_the_twin():
    warning, critical, _ = render({"CertExpiring": {"critical": {"days": 7}}})
    assert (warning["expr"], critical["expr"]) == (expr(14), expr(7))

    warning, critical, _ = render({"CertExpiring": {"critical": {"for": "5m"}}})
    assert (warning["for"], critical["for"]) == ("10m", "5m")
    assert critical["expr"] == expr(3)


def test_overrides_of_the_warning_leave_the_twins_own_params_and_share_the_rest():
    warning, critical, _ = render(
        {"CertExpiring": {"days": 21, "checks": "tls", "labels": {"env": "prod"}}}
    )

    assert (warning["expr"], critical["expr"]) == (expr(21, "tls"), expr(3, "tls"))
    assert warning["labels"]["env"] == critical["labels"]["env"] == "prod"


def test_the_catalog_is_not_changed():
    render({"CertExpiring": {"critical": {"days": 7, "for": "1m"}}})
    assert CERT_EXPIRING["critical"] == {"days": 3}


def test_a_disabled_alert_drops_both_rules_and_is_named_once():
    assert [r["alert"] for r in render({"CertExpiring": {"enabled": False}})] == ["ProbeDown"]
    assert prometheus.prometheus_alert_names(catalog(CERT_EXPIRING, PROBE_DOWN)) == [
        "CertExpiring",
        "ProbeDown",
    ]


def test_promtool_accepts_the_pair(tmp_path):
    promtool = require_binary("promtool")
    [text] = prometheus.prometheus_rule_files(catalog(CERT_EXPIRING), context={}).values()
    (tmp_path / "rules.yml").write_text(text)

    result = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "rules.yml")],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rules found" in result.stdout


@pytest.mark.parametrize(
    ("overrides", "groups", "message"),
    [
        (
            {"ProbeDown": {"critical": {"for": "1m"}}},
            None,
            r"prometheus_alert_overrides\[ProbeDown\] sets 'critical', but alert ProbeDown "
            r"has no critical twin",
        ),
        (
            None,
            catalog(dict(PROBE_DOWN, critical={"for": "1m"})),
            "alert ProbeDown in group probes.rules has a critical twin: it must be a warning",
        ),
        (
            None,
            catalog(dict(CERT_EXPIRING, critical={"hours": 1})),
            "alert CertExpiring in group probes.rules: critical sets hours, which alert "
            "CertExpiring does not have; it takes: checks, days, for",
        ),
        (
            {"CertExpiring": {"critical": {"dayz": 7, "severity": "page"}}},
            None,
            r"prometheus_alert_overrides\[CertExpiring\]: critical sets dayz, severity, which "
            "alert CertExpiring does not have; it takes: checks, days, for",
        ),
        (
            None,
            catalog(dict(CERT_EXPIRING, critical=3)),
            "alert CertExpiring in group probes.rules: critical must be a mapping, got 3",
        ),
        (
            {"CertExpiring": {"critical": 7}},
            None,
            r"prometheus_alert_overrides\[CertExpiring\]: critical must be a mapping, got 7",
        ),
        (
            {"CertExpiring": {"severity": "critical"}},
            None,
            r"prometheus_alert_overrides\[CertExpiring\] sets severity critical, but alert "
            "CertExpiring has a critical twin: it must stay a warning",
        ),
    ],
)
def test_mistakes_with_critical_fail_clearly(overrides, groups, message):
    with pytest.raises(AnsibleFilterError, match=message):
        render(overrides, groups)
