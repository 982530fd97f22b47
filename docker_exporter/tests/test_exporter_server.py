"""The HTTP layer: paths, listen addresses, TLS, client certificates, basic auth."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from exporter_web.listen import parse_listen_address
from exporter_web.webconfig import WebConfig, WebConfigWatcher, load_web_config
from exporter_web_tests.support import (
    Certs,
    make_certs,
    new_server_pair,
    serve_in_thread,
    stop_server,
)
from prometheus_client import Gauge
from prometheus_client.registry import CollectorRegistry

from docker_exporter.server import ExporterServer

PASSWORD = "correct horse"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    Gauge("dxtest_value", "A value.", registry=reg).set(42)
    return reg


@pytest.fixture
def serve() -> Iterator[Callable[..., ExporterServer]]:
    servers: list[ExporterServer] = []

    def start(listen: str = "127.0.0.1:0", **kwargs: object) -> ExporterServer:
        server = serve_in_thread(ExporterServer(listen, registry(), **kwargs))  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        stop_server(server)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9417", ("127.0.0.1", 9417)),
        ("[::1]:9417", ("::1", 9417)),
        ("[::]:0", ("::", 0)),
        (":9417", ("", 9417)),
        ("localhost:80", ("localhost", 80)),
    ],
)
def test_parse_listen_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(address) == expected


@pytest.mark.parametrize("address", ["9417", "127.0.0.1", "::1:9417", "host:port", "h:70000"])
def test_parse_listen_address_rejects(address: str) -> None:
    with pytest.raises(ValueError):
        parse_listen_address(address)


def test_paths(serve: Callable[..., ExporterServer]) -> None:
    server = serve(telemetry_path="/custom")
    metrics = requests.get(server.url + "/custom", timeout=10)
    assert metrics.status_code == 200
    assert "dxtest_value 42.0" in metrics.text
    assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert metrics.headers.get("Content-Encoding") == "gzip"  # requests asks for it
    openmetrics = requests.get(
        server.url + "/custom", headers={"Accept": "application/openmetrics-text"}, timeout=10
    )
    assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")
    landing = requests.get(server.url + "/", timeout=10)
    assert landing.status_code == 200 and 'href="/custom"' in landing.text
    assert requests.get(server.url + "/metrics", timeout=10).status_code == 404
    assert requests.get(server.url + "/favicon.ico", timeout=10).status_code == 404


def test_keep_alive(serve: Callable[..., ExporterServer]) -> None:
    server = serve()
    with requests.Session() as session:
        for _ in range(3):
            assert session.get(server.url + "/metrics", timeout=10).status_code == 200


def test_ipv6_listen_address(serve: Callable[..., ExporterServer]) -> None:
    if not socket.has_ipv6:
        pytest.fail("this machine has no IPv6 loopback; the exporter must support [::1]")
    server = serve("[::1]:0")
    assert server.url.startswith("http://[::1]:")
    response = requests.get(server.url + "/metrics", timeout=10)
    assert response.status_code == 200 and "dxtest_value" in response.text


def test_basic_auth(serve: Callable[..., ExporterServer]) -> None:
    server = serve(web_config=WebConfig(users={"prometheus": HASH.encode()}))
    for path in ("/metrics", "/", "/nothing"):
        anonymous = requests.get(server.url + path, timeout=10)
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"] == "Basic"
    assert (
        requests.get(server.url + "/metrics", auth=("prometheus", "nope"), timeout=10).status_code
        == 401
    )
    assert (
        requests.get(server.url + "/metrics", auth=("root", PASSWORD), timeout=10).status_code
        == 401
    )
    good = requests.get(server.url + "/metrics", auth=("prometheus", PASSWORD), timeout=10)
    assert good.status_code == 200 and "dxtest_value 42.0" in good.text


def test_extra_headers(serve: Callable[..., ExporterServer], tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n")
    server = serve(web_config=load_web_config(str(path)))
    assert requests.get(server.url + "/", timeout=10).headers["X-Content-Type-Options"] == "nosniff"


# TLS ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _web_config(directory: Path, text: str) -> WebConfig:
    path = directory / "web-config.yml"
    path.write_text(text)
    return load_web_config(str(path))


def test_tls(serve: Callable[..., ExporterServer], certs: Certs) -> None:
    # File names relative to the config file, as exporter-toolkit resolves them.
    config = _web_config(
        certs.ca.parent, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    )
    server = serve(web_config=config)
    assert server.url.startswith("https://127.0.0.1:")
    response = requests.get(server.url + "/metrics", verify=str(certs.ca), timeout=10)
    assert response.status_code == 200 and "dxtest_value 42.0" in response.text
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(server.url + "/metrics", timeout=10)  # not trusted without the CA
    plain = server.url.replace("https://", "http://") + "/metrics"
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(plain, timeout=10)


def test_tls_min_version(serve: Callable[..., ExporterServer], certs: Certs) -> None:
    config = _web_config(
        certs.ca.parent,
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
        "  min_version: TLS13\n",
    )
    server = serve(web_config=config)
    host, port = server.server_address[:2]

    def handshake(maximum: ssl.TLSVersion) -> str:
        context = ssl.create_default_context(cafile=str(certs.ca))
        context.maximum_version = maximum
        with (
            socket.create_connection((host, port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            return tls.version() or ""

    assert handshake(ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(ssl.TLSVersion.TLSv1_2)


def test_tls_client_certificates(serve: Callable[..., ExporterServer], certs: Certs) -> None:
    config = _web_config(
        certs.ca.parent,
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
        f"  client_ca_file: {certs.ca}\n  client_auth_type: RequireAndVerifyClientCert\n",
    )
    server = serve(web_config=config)
    url = server.url + "/metrics"
    good = requests.get(
        url, verify=str(certs.ca), cert=(str(certs.client_cert), str(certs.client_key)), timeout=10
    )
    assert good.status_code == 200
    for cert in (None, (str(certs.stranger_cert), str(certs.stranger_key))):
        with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
            requests.get(url, verify=str(certs.ca), cert=cert, timeout=10)


def test_tls_with_basic_auth(serve: Callable[..., ExporterServer], certs: Certs) -> None:
    config = _web_config(
        certs.ca.parent,
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
        f"basic_auth_users:\n  prometheus: '{HASH}'\n",
    )
    server = serve(web_config=config)
    url = server.url + "/metrics"
    assert requests.get(url, verify=str(certs.ca), timeout=10).status_code == 401
    response = requests.get(url, verify=str(certs.ca), auth=("prometheus", PASSWORD), timeout=10)
    assert response.status_code == 200


def test_stalled_tls_client_does_not_block_others(
    serve: Callable[..., ExporterServer], certs: Certs
) -> None:
    config = _web_config(
        certs.ca.parent,
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n",
    )
    server = serve(web_config=config)
    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=10):  # connects, never says hello
        response = requests.get(server.url + "/metrics", verify=str(certs.ca), timeout=5)
        assert response.status_code == 200


# A changed web config file applies without a restart ------------------------


def replace(path: Path, text: str | bytes) -> None:
    """Put new content in place by rename, as the Ansible role's staged_config does.

    The short sleep keeps two rewrites in one test from landing in the same
    filesystem timestamp tick with a recycled inode number, which no real
    rotation does.
    """
    time.sleep(0.05)
    partial = path.with_name(f".{path.name}.partial")
    if isinstance(text, bytes):
        partial.write_bytes(text)
    else:
        partial.write_text(text)
    os.replace(partial, path)


def served_certificate(server: ExporterServer, ca: Path) -> bytes:
    host, port = server.server_address[:2]
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.getpeercert(binary_form=True) or b""


def test_new_passwords_apply_without_restart(
    serve: Callable[..., ExporterServer], tmp_path: Path
) -> None:
    path = tmp_path / "web-config.yml"
    path.write_text(f"basic_auth_users:\n  prometheus: '{HASH}'\n")
    watcher = WebConfigWatcher(str(path))
    server = serve(web_config=watcher)
    url = server.url + "/metrics"
    with requests.Session() as session:  # one kept-alive connection, like Prometheus
        assert session.get(url, auth=("prometheus", PASSWORD), timeout=10).status_code == 200

        new_hash = bcrypt.hashpw(b"new password", bcrypt.gensalt(rounds=4)).decode()
        replace(path, f"basic_auth_users:\n  prometheus: '{new_hash}'\n  grafana: '{HASH}'\n")

        # Checked per request: the same connection sees the new users at once.
        assert session.get(url, auth=("prometheus", PASSWORD), timeout=10).status_code == 401
        assert session.get(url, auth=("prometheus", "new password"), timeout=10).status_code == 200
        assert session.get(url, auth=("grafana", PASSWORD), timeout=10).status_code == 200
    assert watcher.last_reload_successful


def test_a_broken_change_keeps_the_previous_config(
    serve: Callable[..., ExporterServer], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "web-config.yml"
    path.write_text(f"basic_auth_users:\n  prometheus: '{HASH}'\n")
    watcher = WebConfigWatcher(str(path))
    server = serve(web_config=watcher)
    url = server.url + "/metrics"

    replace(path, "basic_auth_users:\n  prometheus: plaintext\n")
    assert requests.get(url, auth=("prometheus", PASSWORD), timeout=10).status_code == 200
    assert not watcher.last_reload_successful
    assert "keeping the previous config: basic_auth_users.prometheus: not a bcrypt hash" in (
        caplog.text
    )

    new_hash = bcrypt.hashpw(b"fixed", bcrypt.gensalt(rounds=4)).decode()
    replace(path, f"basic_auth_users:\n  prometheus: '{new_hash}'\n")
    assert requests.get(url, auth=("prometheus", "fixed"), timeout=10).status_code == 200
    assert watcher.last_reload_successful


def test_a_new_certificate_applies_without_restart(
    serve: Callable[..., ExporterServer],
    certs: Certs,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="exporter_web.webconfig")
    directory = tmp_path / "web"
    directory.mkdir()
    (directory / "server.crt").write_bytes(certs.server_cert.read_bytes())
    (directory / "server.key").write_bytes(certs.server_key.read_bytes())
    path = directory / "web-config.yml"
    path.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    watcher = WebConfigWatcher(str(path))
    server = serve(web_config=watcher)
    first = served_certificate(server, certs.ca)
    assert "reloaded" not in caplog.text  # nothing changed yet: nothing read again

    new_cert, new_key = new_server_pair(certs)
    # Halfway through a rotation the certificate does not match the key: the
    # previous pair stays in force until the key follows.
    replace(directory / "server.crt", new_cert)
    assert served_certificate(server, certs.ca) == first
    assert not watcher.last_reload_successful
    replace(directory / "server.key", new_key)
    second = served_certificate(server, certs.ca)
    assert second != first
    assert second == x509.load_pem_x509_certificate(new_cert).public_bytes(
        serialization.Encoding.DER
    )
    assert watcher.last_reload_successful
    assert "reloaded --web.config.file" in caplog.text


def test_switching_tls_off_takes_a_restart(
    serve: Callable[..., ExporterServer], certs: Certs, tmp_path: Path
) -> None:
    path = tmp_path / "web-config.yml"
    path.write_text(
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
    )
    watcher = WebConfigWatcher(str(path))
    server = serve(web_config=watcher)
    replace(path, f"basic_auth_users:\n  prometheus: '{HASH}'\n")
    response = requests.get(server.url + "/metrics", verify=str(certs.ca), timeout=10)
    assert response.status_code == 200  # still TLS, still no auth: the old config
    assert not watcher.last_reload_successful
