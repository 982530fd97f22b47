"""The blackbox_exporter role's filters (filter blackbox.py): probes -> checks -> modules, job.

What the exporter really does with the modules is tested in test_blackbox_live.py.
"""

import copy

import blackbox
import pytest
from ansible.errors import AnsibleFilterError

BASE_MODULES = copy.deepcopy(blackbox.BASE_MODULES)


def checks(**lists):
    return blackbox.blackbox_checks(
        lists.get("http"),
        lists.get("dragonflydb"),
        lists.get("notification"),
        lists.get("dns"),
        lists.get("dns_server", ""),
    )


def by_check(result):
    """{(probe, check): check} of a list of checks."""
    return {(c["probe"], c["check"]): c for c in result}


def test_the_filter_plugin_offers_every_filter():
    assert set(blackbox.FilterModule().filters()) == {
        "blackbox_dragonflydb_probes",
        "blackbox_notification_probes",
        "blackbox_dns_probes",
        "blackbox_checks",
        "blackbox_modules",
        "blackbox_scrape_configs",
    }


# --- Probes the inventory implies -----------------------------------------------------


DRAGONFLY_GROUPS = {"dragonflydb_hosts": ["db1", "db2", "db3"]}
DRAGONFLY_HOSTVARS = {
    "db1": {
        "dragonflydb_exporter_targets": [
            {"address": "rediss://:s3cret-pass@cache.example.com:6380"},
            {"address": "redis://plain.example.com:6379"},
            {"address": "rediss://10.0.0.7:6380", "tls_server_name": "cache.internal"},
            {"address": "rediss://default-port.example.com"},
        ]
    },
    # The same address from another host: one probe.
    "db2": {"dragonflydb_exporter_targets": [{"address": "rediss://cache.example.com:6380"}]},
    "db3": {},
}

SMTP = {"smarthost": "smtp.example.com", "port": 587, "require_tls": True}

RELAY_DESTINATIONS = {
    "ops": {"url": "https://ops.example.com/alerts"},
    "chat": {"secret_url": "https://chat.example.com/hook/T000/relay-secret?key=relay-key"},
    "no-url": {"headers": {"X": "y"}},
}


class TestDragonflydbProbes:
    def test_one_tls_probe_per_distinct_rediss_address(self):
        probes = blackbox.blackbox_dragonflydb_probes(DRAGONFLY_GROUPS, DRAGONFLY_HOSTVARS)

        assert probes == [
            {
                "name": "dragonflydb-cache.example.com-6380",
                "address": "cache.example.com:6380",
                "server_name": "cache.example.com",
            },
            {
                "name": "dragonflydb-10.0.0.7-6380",
                "address": "10.0.0.7:6380",
                "server_name": "cache.internal",
            },
            {
                "name": "dragonflydb-default-port.example.com-6379",
                "address": "default-port.example.com:6379",
                "server_name": "default-port.example.com",
            },
        ]
        # The password in the URL stays out of the probes.
        assert "s3cret" not in repr(probes)

    def test_the_probes_are_valid_tls_probes(self):
        probes = blackbox.blackbox_dragonflydb_probes(DRAGONFLY_GROUPS, DRAGONFLY_HOSTVARS)

        found = by_check(checks(dragonflydb=probes))

        tls = found[("dragonflydb-10.0.0.7-6380", "tls")]
        assert tls["module"] == "tls_dragonflydb-10.0.0.7-6380"
        assert tls["settings"]["tcp"]["tls_config"] == {"server_name": "cache.internal"}
        assert found[("dragonflydb-10.0.0.7-6380", "connect")]["module"] == "tcp_connect"

    def test_an_ipv6_address_gives_a_valid_name(self):
        hostvars = {"db1": {"dragonflydb_exporter_targets": [{"address": "rediss://[::1]:6380"}]}}

        probes = blackbox.blackbox_dragonflydb_probes({"dragonflydb_hosts": ["db1"]}, hostvars)

        assert probes == [
            {"name": "dragonflydb-..1-6380", "address": "[::1]:6380", "server_name": "::1"}
        ]
        assert len(checks(dragonflydb=probes)) == 2

    def test_no_group_or_no_rediss_target_gives_no_probe(self):
        assert blackbox.blackbox_dragonflydb_probes({}, {}) == []
        hostvars = {"db1": {"dragonflydb_exporter_targets": [{"address": "redis://h:6379"}]}}
        assert blackbox.blackbox_dragonflydb_probes({"dragonflydb_hosts": ["db1"]}, hostvars) == []


class TestNotificationProbes:
    @pytest.mark.parametrize(
        ("port", "require_tls", "tls"),
        [(587, True, "starttls"), (465, True, "tls"), (465, False, "tls"), (25, False, "none")],
    )
    def test_email_probes_the_smarthost_with_the_tls_alertmanager_uses(
        self, port, require_tls, tls
    ):
        smtp = {"smarthost": "smtp.example.com", "port": port, "require_tls": require_tls}

        probes = blackbox.blackbox_notification_probes(
            [{"name": "ops", "email": {"to": "ops@example.com"}}], smtp
        )

        assert probes == [
            {
                "name": f"smtp-smtp.example.com-{port}",
                "address": f"smtp.example.com:{port}",
                "tls": tls,
            }
        ]

    def test_email_without_a_smarthost_gives_no_probe(self):
        assert blackbox.blackbox_notification_probes([{"name": "ops", "email": {"to": "a"}}]) == []

    def test_every_email_receiver_shares_one_smtp_probe(self):
        receivers = [
            {"name": "a", "email": {"to": "a@example.com"}},
            {"name": "b", "email": [{"to": "b@example.com"}, {"to": "c@example.com"}]},
        ]

        probes = blackbox.blackbox_notification_probes(receivers, SMTP)

        assert [p["name"] for p in probes] == ["smtp-smtp.example.com-587"]

    def test_webhooks_slack_and_pagerduty_are_probed_at_host_and_port(self):
        receivers = [
            {
                "name": "hooks",
                "webhook": [
                    {"url": "http://hooks.example.com:8080/alerts?token=hook-token"},
                    {"url": "https://secure.example.com/alerts/hook-path-secret"},
                ],
            },
            {"name": "chat", "slack": {"api_url": "https://hooks.slack.com/services/T0/B0/XYZ"}},
            {"name": "pager", "pagerduty": {"routing_key": "pd-key"}},
            {"name": "pager-eu", "pagerduty": {"url": "https://events.eu.pagerduty.com/v2/x"}},
            {"name": "nothing"},
        ]

        probes = blackbox.blackbox_notification_probes(receivers)

        assert probes == [
            {
                "name": "webhook-hooks.example.com-8080",
                "address": "hooks.example.com:8080",
                "tls": "none",
            },
            {
                "name": "webhook-secure.example.com-443",
                "address": "secure.example.com:443",
                "tls": "tls",
            },
            {"name": "slack-hooks.slack.com-443", "address": "hooks.slack.com:443", "tls": "tls"},
            {
                "name": "pagerduty-events.pagerduty.com-443",
                "address": "events.pagerduty.com:443",
                "tls": "tls",
            },
            {
                "name": "pagerduty-events.eu.pagerduty.com-443",
                "address": "events.eu.pagerduty.com:443",
                "tls": "tls",
            },
        ]

    def test_relay_destinations_only_where_the_relay_runs(self):
        assert blackbox.blackbox_notification_probes([], None, RELAY_DESTINATIONS) == []

        probes = blackbox.blackbox_notification_probes(
            [], None, RELAY_DESTINATIONS, relay_used=True
        )

        assert probes == [
            {"name": "relay-ops.example.com-443", "address": "ops.example.com:443", "tls": "tls"},
            {"name": "relay-chat.example.com-443", "address": "chat.example.com:443", "tls": "tls"},
        ]

    def test_one_probe_per_address_the_first_kind_names_it(self):
        receivers = [
            {"name": "a", "webhook": {"url": "https://ops.example.com/a"}},
            {"name": "b", "webhook": {"url": "https://ops.example.com:443/b"}},
        ]

        probes = blackbox.blackbox_notification_probes(
            receivers, None, RELAY_DESTINATIONS, relay_used=True
        )

        assert [p["name"] for p in probes] == [
            "webhook-ops.example.com-443",
            "relay-chat.example.com-443",
        ]

    def test_no_path_or_query_of_a_url_reaches_a_probe_or_a_check(self):
        receivers = [
            {
                "name": "hooks",
                "webhook": {"url": "https://u:secret1@hooks.example.com/secret2?t=secret3"},
            },
            {"name": "chat", "slack": {"api_url": "https://hooks.slack.com/services/secret4"}},
            {"name": "pager", "pagerduty": {"url": "https://events.pagerduty.com/x?k=secret5"}},
        ]
        destinations = {"d": {"secret_url": "https://relay.example.com/secret6/a?key=secret7"}}

        probes = blackbox.blackbox_notification_probes(receivers, SMTP, destinations, True)
        result = checks(notification=probes)
        text = repr(probes) + repr(result) + repr(blackbox.blackbox_modules(result))
        text += repr(blackbox.blackbox_scrape_configs(result, "127.0.0.1:9115"))

        assert len(probes) == 4
        assert "secret" not in text
        assert "?" not in text

    def test_a_malformed_secret_url_is_not_shown_in_the_error(self):
        receivers = [{"name": "chat", "slack": {"api_url": "hooks.slack.com/services/T0/B0/XYZ"}}]

        with pytest.raises(AnsibleFilterError, match="receiver chat: slack: the url must") as err:
            blackbox.blackbox_notification_probes(receivers)
        assert "XYZ" not in str(err.value)

        destinations = {"chat": {"secret_url": "ftp://relay.example.com/relay-secret"}}
        with pytest.raises(AnsibleFilterError, match="alert relay destination chat") as err:
            blackbox.blackbox_notification_probes([], None, destinations, relay_used=True)
        assert "relay-secret" not in str(err.value)

    def test_the_role_default_probes_are_valid_probes(self):
        """The role's default: every derived probe goes through blackbox_checks."""
        receivers = [
            {"name": "mail", "email": {"to": "a@example.com"}},
            {"name": "hook", "webhook": {"url": "http://127.0.0.1:8080/webhooks/critical"}},
        ]
        probes = blackbox.blackbox_notification_probes(receivers, SMTP)

        found = by_check(checks(notification=probes))

        assert sorted(found) == [
            ("smtp-smtp.example.com-587", "connect"),
            ("smtp-smtp.example.com-587", "tls"),
            ("webhook-127.0.0.1-8080", "connect"),
        ]
        assert found[("smtp-smtp.example.com-587", "tls")]["module"] == "smtp_starttls"


class TestDnsProbes:
    def test_host_names_once_without_addresses_and_localhost(self):
        names = blackbox.blackbox_dns_probes(
            [{"url": "https://api.example.com/health"}, {"url": "http://127.0.0.1:8080/"}],
            [
                {"address": "cache.example.com:6380"},
                {"address": "[2001:db8::1]:6380"},
                {"address": "localhost:25"},
            ],
            [{"address": "API.example.com:443"}, {"name": "no-address"}],
            None,
        )

        assert names == [{"name": "api.example.com"}, {"name": "cache.example.com"}]

    def test_the_names_are_valid_dns_probes(self):
        names = blackbox.blackbox_dns_probes([{"url": "https://api.example.com/"}])

        result = checks(dns=names, dns_server="127.0.0.53:53")

        assert [(c["probe"], c["check"], c["target"]) for c in result] == [
            ("api.example.com", "dns", "127.0.0.53:53")
        ]


# --- Checks ---------------------------------------------------------------------------


class TestHttpChecks:
    def test_a_plain_url_uses_http_2xx(self):
        url = "http://10.0.0.5:8082/health"

        assert checks(http=[{"name": "bot", "url": url}]) == [
            {
                "probe": "bot",
                "purpose": "service",
                "check": "http",
                "target": url,
                "instance": url,
                "module": "http_2xx",
                "settings": BASE_MODULES["http_2xx"],
                "labels": {},
            }
        ]

    def test_status_body_and_method_make_a_module_of_its_own(self):
        probe = {
            "name": "bot",
            "url": "http://10.0.0.5:8082/health",
            "status": [200, "204"],
            "body": '"status": ?"ok"',
            "method": "post",
            "labels": {"team": "trading"},
        }

        [check] = checks(http=[probe])

        assert check["module"] == "http_bot"
        assert check["labels"] == {"team": "trading"}
        assert check["settings"] == {
            "prober": "http",
            "http": {
                "preferred_ip_protocol": "ip4",
                "valid_status_codes": [200, 204],
                "fail_if_body_not_matches_regexp": ['"status": ?"ok"'],
                "method": "POST",
            },
        }

    def test_a_single_status_and_the_ca_of_an_https_url(self):
        probe = {"name": "api", "url": "https://api.example.com/", "status": 401, "ca_file": "/ca"}

        [check] = checks(http=[probe])

        assert check["settings"]["http"]["valid_status_codes"] == [401]
        assert check["settings"]["http"]["tls_config"] == {"ca_file": "/ca"}

    @pytest.mark.parametrize("url", ["bot.example.com/health", "ftp://bot.example.com/", "http://"])
    def test_a_url_without_scheme_or_host_is_refused(self, url):
        with pytest.raises(
            AnsibleFilterError, match=r"service probe 0 \('bot'\): url .* must start"
        ):
            checks(http=[{"name": "bot", "url": url}])

    def test_a_url_with_a_bad_port_is_refused(self):
        with pytest.raises(
            AnsibleFilterError, match=r"service probe 0 \('bot'\): url .*: Port out of range"
        ):
            checks(http=[{"name": "bot", "url": "http://bot.example.com:99999/"}])


class TestEndpointChecks:
    def test_a_tls_endpoint_gets_a_connect_and_a_tls_check(self):
        probe = {"name": "cache", "address": "cache.example.com:6380", "labels": {"env": "prod"}}

        connect, tls = checks(dragonflydb=[probe])

        assert connect == {
            "probe": "cache",
            "purpose": "dragonflydb",
            "check": "connect",
            "target": "cache.example.com:6380",
            "instance": "cache.example.com:6380",
            "module": "tcp_connect",
            "settings": BASE_MODULES["tcp_connect"],
            "labels": {"env": "prod"},
        }
        assert tls == dict(connect, check="tls", module="tcp_tls", settings=BASE_MODULES["tcp_tls"])

    def test_server_name_and_ca_file_make_a_tls_module_of_its_own(self):
        probe = {
            "name": "cache",
            "address": "10.0.0.7:6380",
            "server_name": "cache.internal",
            "ca_file": "/etc/ssl/cache-ca.pem",
        }

        _, tls = checks(dragonflydb=[probe])

        assert tls["module"] == "tls_cache"
        assert tls["settings"] == {
            "prober": "tcp",
            "tcp": {
                "preferred_ip_protocol": "ip4",
                "tls": True,
                "tls_config": {"server_name": "cache.internal", "ca_file": "/etc/ssl/cache-ca.pem"},
            },
        }

    def test_smtp_starttls_keeps_the_smtp_dialogue_with_its_own_tls_settings(self):
        probe = {"name": "mail", "address": "10.0.0.9:587", "tls": "starttls", "server_name": "m"}

        connect, tls = checks(notification=[probe])

        assert connect["module"] == "tcp_connect"
        assert tls["module"] == "tls_mail"
        assert tls["settings"]["tcp"] == {
            **BASE_MODULES["smtp_starttls"]["tcp"],
            "tls_config": {"server_name": "m"},
        }

    def test_notification_tls_follows_the_url_unless_set(self):
        result = checks(
            notification=[
                {"name": "plain", "address": "hooks.example.com:80"},
                {"name": "https", "url": "https://hooks.example.com/x"},
                {"name": "forced", "url": "https://hooks.example.com:8443/", "tls": "none"},
            ]
        )

        assert [(c["probe"], c["check"], c["target"], c["module"]) for c in result] == [
            ("plain", "connect", "hooks.example.com:80", "tcp_connect"),
            ("https", "connect", "hooks.example.com:443", "tcp_connect"),
            ("https", "tls", "hooks.example.com:443", "tcp_tls"),
            ("forced", "connect", "hooks.example.com:8443", "tcp_connect"),
        ]

    @pytest.mark.parametrize(
        ("purpose", "probe"),
        [
            ("dragonflydb", {"name": "cache", "address": "10.0.0.7:6380"}),
            ("notification", {"name": "cache", "url": "https://10.0.0.7/"}),
            ("notification", {"name": "cache", "address": "[2001:db8::7]:465", "tls": "tls"}),
        ],
    )
    def test_tls_to_an_ip_address_needs_a_server_name(self, purpose, probe):
        with pytest.raises(AnsibleFilterError, match=r"probe 0 \('cache'\): .* is an IP address"):
            checks(**{purpose: [probe]})

    def test_an_ip_address_without_tls_needs_no_server_name(self):
        [connect] = checks(notification=[{"name": "hook", "address": "10.0.0.7:8080"}])
        assert connect["module"] == "tcp_connect"

    @pytest.mark.parametrize("tls", ["ssl", True, "TLS"])
    def test_tls_must_be_none_tls_or_starttls(self, tls):
        probe = {"name": "mail", "address": "mail.example.com:25", "tls": tls}
        with pytest.raises(AnsibleFilterError, match="tls must be one of none, tls, starttls"):
            checks(notification=[probe])

    @pytest.mark.parametrize(
        ("probe", "message"),
        [
            ({"name": "mail"}, r"notification probe 0 \('mail'\) needs an address"),
            ({"name": "mail", "address": "mail.example.com"}, "must be host:port"),
            ({"name": "mail", "address": "mail.example.com:smtp"}, "must be host:port"),
        ],
    )
    def test_an_endpoint_needs_host_and_port(self, probe, message):
        with pytest.raises(AnsibleFilterError, match=message):
            checks(notification=[probe])


class TestDnsChecks:
    def test_a_dns_probe_asks_the_dns_server_for_a_record_of_its_type(self):
        [check] = checks(dns=[{"name": "api.example.com", "type": "aaaa"}], dns_server="[::1]:53")

        assert check == {
            "probe": "api.example.com",
            "purpose": "dns",
            "check": "dns",
            "target": "[::1]:53",
            "instance": "api.example.com",
            "module": "dns_api.example.com",
            "settings": {
                "prober": "dns",
                "dns": {
                    "preferred_ip_protocol": "ip4",
                    "query_name": "api.example.com",
                    "query_type": "AAAA",
                    "valid_rcodes": ["NOERROR"],
                    "validate_answer_rrs": {"fail_if_none_matches_regexp": [r".*\tAAAA\t.*"]},
                },
            },
            "labels": {},
        }

    def test_the_type_defaults_to_a(self):
        [check] = checks(dns=[{"name": "api.example.com"}], dns_server="127.0.0.53:53")
        assert check["settings"]["dns"]["query_type"] == "A"

    @pytest.mark.parametrize(
        ("dns_server", "message"),
        [
            (
                "",
                r"dns probe 0 \('api.example.com'\): no DNS server to ask: set blackbox_exp",
            ),
            ("127.0.0.53", "blackbox_exporter_dns_server: address '127.0.0.53' must be host:port"),
        ],
    )
    def test_dns_probes_need_a_dns_server_with_a_port(self, dns_server, message):
        with pytest.raises(AnsibleFilterError, match=message):
            checks(dns=[{"name": "api.example.com"}], dns_server=dns_server)

    def test_no_dns_probe_needs_no_dns_server(self):
        assert checks(http=[{"name": "bot", "url": "http://bot.example.com/"}], dns=[]) != []


class TestTimeoutAndModule:
    def test_a_timeout_gives_the_main_check_a_module_of_its_own(self):
        result = by_check(
            checks(
                http=[{"name": "bot", "url": "http://bot.example.com/", "timeout": "3s"}],
                dragonflydb=[
                    {"name": "cache", "address": "cache.example.com:6380", "timeout": "2s"}
                ],
                notification=[{"name": "hook", "address": "h.example.com:80", "timeout": "1s"}],
                dns=[{"name": "api.example.com", "timeout": "4s"}],
                dns_server="127.0.0.53:53",
            )
        )

        modules = {key: (c["module"], c["settings"].get("timeout")) for key, c in result.items()}
        assert modules == {
            ("bot", "http"): ("http_bot", "3s"),
            # The connect check of a TLS endpoint keeps the shared module.
            ("cache", "connect"): ("tcp_connect", None),
            ("cache", "tls"): ("tls_cache", "2s"),
            ("hook", "connect"): ("connect_hook", "1s"),
            ("api.example.com", "dns"): ("dns_api.example.com", "4s"),
        }
        assert result[("bot", "http")]["settings"] == {**BASE_MODULES["http_2xx"], "timeout": "3s"}

    def test_a_timeout_never_changes_a_built_in_module(self):
        result = checks(
            http=[
                {"name": "slow", "url": "http://slow.example.com/", "timeout": "30s"},
                {"name": "fast", "url": "http://fast.example.com/"},
            ],
            dragonflydb=[{"name": "cache", "address": "cache.example.com:6380", "timeout": "2s"}],
        )

        modules = blackbox.blackbox_modules(result)

        assert blackbox.BASE_MODULES == BASE_MODULES
        for name, module in BASE_MODULES.items():
            assert modules[name] == module
        assert modules["http_slow"]["timeout"] == "30s"
        assert modules["tls_cache"]["timeout"] == "2s"
        assert by_check(result)[("fast", "http")]["module"] == "http_2xx"

    def test_module_names_the_module_of_the_main_check(self):
        result = checks(
            http=[{"name": "bot", "url": "http://bot.example.com/", "module": "http_post_2xx"}],
            dragonflydb=[{"name": "cache", "address": "cache.example.com:6380", "module": "redis"}],
        )

        found = by_check(result)
        assert (found[("bot", "http")]["module"], found[("bot", "http")]["settings"]) == (
            "http_post_2xx",
            None,
        )
        assert found[("cache", "connect")]["module"] == "tcp_connect"
        assert found[("cache", "tls")]["module"] == "redis"

        extra = {
            "http_post_2xx": {"prober": "http", "http": {"method": "POST"}},
            "redis": {"prober": "tcp", "tcp": {"tls": True}},
        }
        modules = blackbox.blackbox_modules(result, extra)
        assert modules["http_post_2xx"] == extra["http_post_2xx"]
        assert modules["redis"] == extra["redis"]

    def test_module_may_name_a_built_in_module(self):
        probe = {"name": "cache", "address": "cache.example.com:6380", "module": "tcp_connect"}
        modules = blackbox.blackbox_modules(checks(dragonflydb=[probe]))
        assert modules == BASE_MODULES


class TestBadProbes:
    @pytest.mark.parametrize(
        ("lists", "message"),
        [
            (
                {"http": [{"name": "bot", "url": "http://b/", "adress": "x", "Status": 1}]},
                r"service probe 0 \('bot'\) has unknown keys Status, adress; it takes: body, ca_",
            ),
            (
                {"dragonflydb": [{"name": "cache", "address": "c:1", "tls": "none"}]},
                r"dragonflydb probe 0 \('cache'\) has unknown keys tls",
            ),
            (
                {
                    "http": [
                        {"name": "bot", "url": "http://a/"},
                        {"name": "bot", "url": "http://b/"},
                    ]
                },
                r"service probe 1 \('bot'\): two service probes are named bot",
            ),
            ({"http": [{"url": "http://a/"}]}, r"service probe 0 \(\{'url'.*\) needs a name"),
            ({"http": ["http://a/"]}, r"service probe 0 \('http://a/'\) needs a name"),
            (
                {"http": [{"name": "bot:8080", "url": "http://a/"}]},
                r"the name may hold letters, digits, '.', '_' and '-' only",
            ),
            ({"http": {"name": "bot"}}, "the service probes must be a list"),
        ],
    )
    def test_mistakes_are_refused_naming_the_probe(self, lists, message):
        with pytest.raises(AnsibleFilterError, match=message):
            checks(**lists)

    def test_probes_of_different_lists_may_share_a_name(self):
        result = checks(
            http=[{"name": "bot", "url": "http://bot.example.com/"}],
            notification=[{"name": "bot", "address": "bot.example.com:80"}],
        )
        assert [(c["probe"], c["purpose"]) for c in result] == [
            ("bot", "service"),
            ("bot", "notification"),
        ]

    def test_an_unknown_module_is_refused_naming_the_probe_and_the_module(self):
        result = checks(http=[{"name": "bot", "url": "http://bot.example.com/", "module": "htp"}])

        with pytest.raises(
            AnsibleFilterError,
            match=r"probe bot names module 'htp', which is not defined: known modules are "
            r"http_2xx, mine, smtp_starttls, tcp_connect, tcp_tls \(add one in "
            r"blackbox_exporter_modules\)",
        ):
            blackbox.blackbox_modules(result, {"mine": {"prober": "http"}})

    def test_two_probes_that_need_the_same_module_name_are_refused(self):
        result = checks(
            dragonflydb=[{"name": "x", "address": "a.example.com:1", "server_name": "a"}],
            notification=[
                {"name": "x", "address": "b.example.com:1", "tls": "tls", "ca_file": "/c"}
            ],
        )

        with pytest.raises(
            AnsibleFilterError,
            match=r"probe x \(notification\) needs a module tls_x of its own, but probe x "
            r"\(dragonflydb\) defines one by that name too",
        ):
            blackbox.blackbox_modules(result)

    def test_a_probe_module_that_clashes_with_an_operator_module_is_refused(self):
        result = checks(http=[{"name": "api", "url": "http://api.example.com/", "status": 401}])

        with pytest.raises(
            AnsibleFilterError,
            match="needs a module http_api of its own, but blackbox_exporter_mod",
        ):
            blackbox.blackbox_modules(result, {"http_api": {"prober": "http"}})


# --- Modules and the scrape job -------------------------------------------------------


class TestModules:
    def test_built_in_own_and_operator_modules(self):
        result = checks(
            http=[
                {"name": "bot", "url": "http://bot.example.com/", "body": "ok"},
                {"name": "plain", "url": "http://plain.example.com/"},
            ]
        )
        extra = {"icmp": {"prober": "icmp"}, "tcp_connect": {"prober": "tcp", "timeout": "1s"}}

        modules = blackbox.blackbox_modules(result, extra)

        assert set(modules) == {*BASE_MODULES, "icmp", "http_bot"}
        # An operator module of a built-in name replaces it.
        assert modules["tcp_connect"] == {"prober": "tcp", "timeout": "1s"}
        assert modules["http_bot"] == by_check(result)[("bot", "http")]["settings"]

    def test_no_checks_gives_the_built_in_modules(self):
        assert blackbox.blackbox_modules([]) == BASE_MODULES
        assert blackbox.blackbox_modules(None) == BASE_MODULES


class TestScrapeConfigs:
    CHECKS = checks(
        http=[{"name": "bot", "url": "http://bot.example.com/health", "labels": {"team": "t"}}],
        dragonflydb=[{"name": "cache", "address": "cache.example.com:6380"}],
        dns=[{"name": "api.example.com"}],
        dns_server="127.0.0.53:53",
    )

    def test_one_target_per_check_probed_through_the_exporter(self):
        [config] = blackbox.blackbox_scrape_configs(self.CHECKS, "127.0.0.1:9115")

        assert config == {
            "job_name": "blackbox",
            "metrics_path": "/probe",
            "static_configs": [
                {
                    "targets": ["http://bot.example.com/health"],
                    "labels": {
                        "team": "t",
                        "__param_module": "http_2xx",
                        "probe": "bot",
                        "purpose": "service",
                        "check": "http",
                        "instance": "http://bot.example.com/health",
                    },
                },
                {
                    "targets": ["cache.example.com:6380"],
                    "labels": {
                        "__param_module": "tcp_connect",
                        "probe": "cache",
                        "purpose": "dragonflydb",
                        "check": "connect",
                        "instance": "cache.example.com:6380",
                        # As its exporter's series: DragonflyDB's faults page once.
                        "endpoint": "cache.example.com:6380",
                    },
                },
                {
                    "targets": ["cache.example.com:6380"],
                    "labels": {
                        "__param_module": "tcp_tls",
                        "probe": "cache",
                        "purpose": "dragonflydb",
                        "check": "tls",
                        "instance": "cache.example.com:6380",
                        # As its exporter's series: DragonflyDB's faults page once.
                        "endpoint": "cache.example.com:6380",
                    },
                },
                {
                    "targets": ["127.0.0.53:53"],
                    "labels": {
                        "__param_module": "dns_api.example.com",
                        "probe": "api.example.com",
                        "purpose": "dns",
                        "check": "dns",
                        "instance": "api.example.com",
                    },
                },
            ],
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"target_label": "__address__", "replacement": "127.0.0.1:9115"},
            ],
        }

    def test_the_probe_labels_never_replace_the_checks_own(self):
        probe = {"name": "bot", "url": "http://b/", "labels": {"probe": "x", "instance": "y"}}

        [config] = blackbox.blackbox_scrape_configs(checks(http=[probe]), "e:9115")

        labels = config["static_configs"][0]["labels"]
        assert (labels["probe"], labels["instance"]) == ("bot", "http://b/")

    def test_client_settings_and_job_name_are_passed_through(self):
        client = {
            "scheme": "https",
            "tls_config": {"ca_file": "/etc/prometheus/web/ca.crt"},
            "basic_auth": {"username": "prometheus", "password_file": "/etc/prometheus/pw"},
        }

        [config] = blackbox.blackbox_scrape_configs(self.CHECKS, "mon1:9115", "probes", client)

        assert config["job_name"] == "probes"
        assert {k: config[k] for k in client} == client
        assert config["relabel_configs"][1]["replacement"] == "mon1:9115"

    def test_no_checks_no_job(self):
        assert blackbox.blackbox_scrape_configs([], "127.0.0.1:9115") == []
        assert blackbox.blackbox_scrape_configs(None, "127.0.0.1:9115") == []
