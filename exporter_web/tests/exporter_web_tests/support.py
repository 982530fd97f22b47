"""Test helpers of the services built on exporter_web: polling, an HTTP server run in
a thread, promtool, a CA with server, client and stranger certificates."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from socketserver import BaseServer
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ServerT = TypeVar("ServerT", bound=BaseServer)


def wait_for(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# --- HTTP servers in a thread -----------------------------------------------------------------


def serve_in_thread(server: ServerT) -> ServerT:
    """Serve ``server`` from a daemon thread (polling for shutdown every 50 ms); returns it."""
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def stop_server(server: BaseServer) -> None:
    """Stop a server started with serve_in_thread and close its socket."""
    server.shutdown()
    server.server_close()


# --- promtool ---------------------------------------------------------------------------------


def assert_promtool_clean(text: str) -> None:
    """``promtool check metrics`` finds nothing to say about ``text`` (Prometheus format).

    promtool comes with Debian's prometheus package, which CI installs
    (scripts/prepare-machine): missing, the test fails rather than skips.
    """
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found on PATH (Debian package prometheus)")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    problems = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not problems, f"promtool check metrics:\n{problems}"


# --- Certificates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    """A CA (and its key), a server certificate for localhost and 127.0.0.1 and a client
    certificate signed by it, and a stranger's self-signed certificate."""

    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    stranger_key: Path


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    """A certificate for ``key``, signed by ``issuer`` (self-signed without one), valid
    for a day; ``ca`` a CA's, ``server`` one for localhost and 127.0.0.1."""
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
            critical=False,
        )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(signing_key, hashes.SHA256())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_certs(directory: Path, prefix: str = "") -> Certs:
    """The files of Certs in ``directory``, each name starting with ``prefix``."""
    directory.mkdir(parents=True, exist_ok=True)

    def write(name: str, content: bytes) -> Path:
        path = directory / f"{prefix}{name}"
        path.write_bytes(content)
        return path

    ca_key, server_key, client_key, stranger_key = new_key(), new_key(), new_key(), new_key()
    ca = certificate(f"{prefix}test CA", ca_key, None, ca=True)
    return Certs(
        ca=write("ca.crt", cert_pem(ca)),
        ca_key=write("ca.key", key_pem(ca_key)),
        server_cert=write(
            "server.crt", cert_pem(certificate("localhost", server_key, (ca, ca_key), server=True))
        ),
        server_key=write("server.key", key_pem(server_key)),
        client_cert=write("client.crt", cert_pem(certificate("client", client_key, (ca, ca_key)))),
        client_key=write("client.key", key_pem(client_key)),
        stranger_cert=write("stranger.crt", cert_pem(certificate("stranger", stranger_key, None))),
        stranger_key=write("stranger.key", key_pem(stranger_key)),
    )


def new_server_pair(certs: Certs, name: str = "localhost") -> tuple[bytes, bytes]:
    """Another server certificate from the same CA, and its key, as PEM."""
    ca = x509.load_pem_x509_certificate(certs.ca.read_bytes())
    ca_key = serialization.load_pem_private_key(certs.ca_key.read_bytes(), password=None)
    key = new_key()
    cert = certificate(name, key, (ca, ca_key), server=True)  # type: ignore[arg-type]
    return cert_pem(cert), key_pem(key)
