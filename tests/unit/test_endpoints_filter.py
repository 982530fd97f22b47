"""api_url: where a service's API is reached from its listen address and port."""

import endpoints
import pytest
from ansible.errors import AnsibleFilterError


@pytest.mark.parametrize(
    ("address", "port", "external_url", "expected"),
    [
        ("127.0.0.1", 9090, "", "http://127.0.0.1:9090"),
        ("10.0.0.5", "9093", None, "http://10.0.0.5:9093"),
        ("0.0.0.0", 9090, "", "http://127.0.0.1:9090"),
        ("", 9093, "", "http://127.0.0.1:9093"),
        (None, 9093, "", "http://127.0.0.1:9093"),
        ("::", 9090, "", "http://[::1]:9090"),
        ("[::]", 9090, "", "http://[::1]:9090"),
        ("fd00::5", 9093, "", "http://[fd00::5]:9093"),
        ("[fd00::5]", 9093, "", "http://[fd00::5]:9093"),
        ("mon1.example.com", 9093, "", "http://mon1.example.com:9093"),
        ("0.0.0.0", 9093, "http://127.0.0.1:9093/", "http://127.0.0.1:9093"),
        (
            "0.0.0.0",
            9093,
            "https://am.example.com/alertmanager/",
            "http://127.0.0.1:9093/alertmanager",
        ),
        ("::", 9090, "https://example.com/prom", "http://[::1]:9090/prom"),
    ],
)
def test_api_url(address, port, external_url, expected):
    assert endpoints.api_url(address, port, external_url) == expected


def test_api_url_with_another_scheme():
    assert endpoints.api_url("0.0.0.0", 9090, scheme="https") == "https://127.0.0.1:9090"


@pytest.mark.parametrize("port", [None, "", "ninety", "9090a"])
def test_api_url_needs_a_port_number(port):
    with pytest.raises(AnsibleFilterError, match="api_url needs a port number"):
        endpoints.api_url("127.0.0.1", port)


def test_the_filter_is_registered():
    assert endpoints.FilterModule().filters() == {"api_url": endpoints.api_url}
