"""The blackbox filters' modules, run by a real blackbox exporter against stand-ins on loopback.

blackbox.yml is rendered from blackbox_modules(blackbox_checks(...)), as the
role renders it, and Debian's prometheus-blackbox-exporter (installed by
scripts/prepare-machine) probes, on 127.0.0.1 only, stand-ins started here:
TLS servers whose certificates a test CA signed (valid for 2 days, expired,
made out to another name), a closed port, an HTTP server, a DNS server and
an SMTP server that offers STARTTLS (and one that does not).
"""

import contextlib
import datetime
import http.server
import socket
import socketserver
import ssl
import struct
import threading
import time
import urllib.parse
import urllib.request
from types import SimpleNamespace

import blackbox
import pytest
import yaml
from conftest import Service, free_port, require_binary, wait_for
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

EXPORTER = "prometheus-blackbox-exporter"
NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)
# The names the DNS stand-in resolves (A records only); any other is NXDOMAIN.
KNOWN_NAMES = ("known.test", "ipv4-only.test")
# Straight to 127.0.0.1, whatever proxy the environment names.
LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --- Certificates ---------------------------------------------------------------------


class Authority:
    """A test CA (ca.pem in `directory`) that makes TLS server contexts for a name."""

    def __init__(self, directory):
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
        certificate = (
            self._builder(self.name, self.key, NOW - 30 * DAY, NOW + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = str(self._write("ca.pem", certificate))

    def server_context(self, name, not_after):
        """A server context with a certificate for `name`, valid from 3 days ago to not_after."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        certificate = (
            self._builder(subject, key, NOW - 3 * DAY, not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        key_file = self.directory / f"{name}.key"
        key_file.write_bytes(key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self._write(f"{name}.pem", certificate), key_file)
        return context

    def _builder(self, subject, key, not_before, not_after):
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
        )

    def _write(self, name, certificate):
        path = self.directory / name
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return path


# --- Stand-ins ------------------------------------------------------------------------


def start(stack, server):
    """Serve `server` (a socketserver on 127.0.0.1:0) in a thread until the stack closes."""
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    stack.callback(server.server_close)
    stack.callback(server.shutdown)
    return server.server_address[1]


def tcp_server(serve):
    """A threaded TCP server on 127.0.0.1 that runs serve(connection) per connection."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            # A probe that refuses a certificate aborts the handshake: ssl.SSLError, an OSError.
            with contextlib.suppress(OSError):
                serve(self.request)

    return socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)


def tls_endpoint(context):
    def serve(connection):
        with context.wrap_socket(connection, server_side=True) as tls:
            tls.recv(1)  # until the probe hangs up

    return tcp_server(serve)


def read_line(connection):
    line = b""
    while not line.endswith(b"\n"):
        chunk = connection.recv(1)
        if not chunk:
            break
        line += chunk
    return line


def smtp_server(context, offer_starttls=True):
    """Greeting 220; EHLO -> 250 lines (with STARTTLS if offered); STARTTLS -> 220 and TLS."""

    def serve(connection):
        connection.sendall(b"220 smtp.test ESMTP stand-in\r\n")
        while command := read_line(connection).strip().upper():
            if command.startswith(b"EHLO"):
                starttls = b"250-STARTTLS\r\n" if offer_starttls else b""
                connection.sendall(b"250-smtp.test\r\n" + starttls + b"250 SIZE 1000000\r\n")
            elif command == b"STARTTLS" and offer_starttls:
                connection.sendall(b"220 ready to start TLS\r\n")
                with context.wrap_socket(connection, server_side=True) as tls:
                    if read_line(tls).strip().upper() == b"QUIT":
                        tls.sendall(b"221 bye\r\n")
                return
            elif command == b"QUIT":
                connection.sendall(b"221 bye\r\n")
                return
            else:
                connection.sendall(b"502 not implemented\r\n")

    return tcp_server(serve)


class HttpStandIn(http.server.BaseHTTPRequestHandler):
    """/health answers 200 with a JSON body; any other path 500."""

    def do_GET(self):
        status, body = (200, b'{"status": "ok"}') if self.path == "/health" else (500, b"broken")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def dns_answer(query):
    """The answer to a DNS query: an A record of 127.0.0.1 for KNOWN_NAMES, else NXDOMAIN."""
    ident, flags = struct.unpack("!HH", query[:4])
    labels, end = [], 12
    while length := query[end]:
        labels.append(query[end + 1 : end + 1 + length].decode().lower())
        end += 1 + length
    (query_type,) = struct.unpack("!H", query[end + 1 : end + 3])
    question = query[12 : end + 5]  # the name, its type and class
    answers = []
    rcode = 0 if ".".join(labels) in KNOWN_NAMES else 3  # 3: NXDOMAIN
    if rcode == 0 and query_type == 1:
        # Name (a pointer to the question's), type A, class IN, TTL, length, address.
        answers.append(struct.pack("!HHHIH4s", 0xC00C, 1, 1, 60, 4, socket.inet_aton("127.0.0.1")))
    # A response (0x8000), recursion desired as asked (0x0100), available (0x0080).
    flags = 0x8000 | (flags & 0x0100) | 0x0080 | rcode
    header = struct.pack("!HHHHHH", ident, flags, 1, len(answers), 0, 0)
    return header + question + b"".join(answers)


class DnsStandIn(socketserver.BaseRequestHandler):
    def handle(self):
        query, sock = self.request
        sock.sendto(dns_answer(query), self.client_address)


# --- The exporter ---------------------------------------------------------------------


def probe_lists(ports, ca_file):
    """The probes of the test, as an operator would write them, at the stand-ins' ports."""

    def tls(name, port, server_name, **settings):
        address = f"127.0.0.1:{port}"
        return {"name": name, "address": address, "server_name": server_name, **settings}

    web = f"http://127.0.0.1:{ports.http}"
    return {
        "http": [
            {"name": "http-broken", "url": f"{web}/broken"},
            {"name": "http-broken-expected", "url": f"{web}/broken", "status": [500]},
            {"name": "http-body", "url": f"{web}/health", "body": '"status": ?"ok"'},
            {"name": "http-body-mismatch", "url": f"{web}/health", "body": '"status": ?"down"'},
        ],
        "dragonflydb": [
            tls("tls-valid", ports.valid, "valid.test", ca_file=ca_file),
            tls("tls-valid-system-cas", ports.valid, "valid.test"),
            tls("tls-expired", ports.expired, "expired.test", ca_file=ca_file),
            tls("tls-wrong-name", ports.other_name, "service.test", ca_file=ca_file),
            tls("tls-right-name", ports.other_name, "other.test", ca_file=ca_file),
            tls("tls-closed", ports.closed, "closed.test", ca_file=ca_file),
        ],
        "notification": [
            tls("smtp", ports.smtp, "smtp.test", tls="starttls", ca_file=ca_file),
            # Waits for a STARTTLS line that never comes: fails at its timeout.
            tls("smtp-no-starttls", ports.smtp_plain, "smtp.test", tls="starttls", timeout="1s"),
        ],
        "dns": [
            {"name": "known.test"},
            {"name": "unknown.test"},
            # Known, but has no AAAA record: an empty NOERROR answer.
            {"name": "ipv4-only.test", "type": "AAAA"},
        ],
        "dns_server": f"127.0.0.1:{ports.dns}",
    }


class Exporter(Service):
    """The blackbox exporter with blackbox.yml from the filters, on a free loopback port."""

    def __init__(self, directory, checks):
        binary = require_binary(EXPORTER)
        self.checks = {(c["probe"], c["check"]): c for c in checks}
        config = directory / "blackbox.yml"
        config.write_text(yaml.safe_dump({"modules": blackbox.blackbox_modules(checks)}))
        address = f"127.0.0.1:{free_port()}"
        argv = [binary, f"--config.file={config}", f"--web.listen-address={address}"]
        log = open(directory / "exporter.log", "wb")  # noqa: SIM115 - closed by stop()
        super().__init__(argv, config, f"http://{address}", log)
        # Debian's 0.23 answers every path, /-/ready too: wait until it is this
        # exporter, with this config, and not another process on a reused port.
        try:
            wait_for(lambda: "http_http-body:" in self._get("/config"), what=f"{EXPORTER}'s config")
        except AssertionError:
            self.stop()
            pytest.fail(f"{EXPORTER} did not load its config:\n{config.read_text()}")

    def _get(self, path, headers=None):
        request = urllib.request.Request(self.url + path, headers=headers or {})
        with LOCAL.open(request, timeout=10) as response:
            return response.read().decode()

    def _probe(self, probe, check, **params):
        item = self.checks[(probe, check)]
        query = {"module": item["module"], "target": item["target"], **params}
        # As Prometheus sends it: the probe gives up after this.
        timeout = {"X-Prometheus-Scrape-Timeout-Seconds": "5"}
        return self._get("/probe?" + urllib.parse.urlencode(query), timeout)

    def probe(self, probe, check):
        """The metrics of the check (probe name, check kind) as {metric name: value}."""
        metrics = {}
        for line in self._probe(probe, check).splitlines():
            if line and not line.startswith("#"):
                series, value = line.rsplit(" ", 1)
                metrics.setdefault(series.split("{", 1)[0], float(value))
        return metrics

    def debug(self, probe, check):
        """The exporter's log of the check, for a failure's message."""
        return self._probe(probe, check, debug="true")


@pytest.fixture(scope="module")
def exporter(tmp_path_factory):
    directory = tmp_path_factory.mktemp("blackbox")
    ca = Authority(directory)
    with contextlib.ExitStack() as stack:
        in_two_days = NOW + 2 * DAY
        ports = SimpleNamespace(
            valid=start(stack, tls_endpoint(ca.server_context("valid.test", in_two_days))),
            expired=start(stack, tls_endpoint(ca.server_context("expired.test", NOW - DAY))),
            other_name=start(stack, tls_endpoint(ca.server_context("other.test", in_two_days))),
            closed=free_port(),
            smtp=start(stack, smtp_server(ca.server_context("smtp.test", in_two_days))),
            smtp_plain=start(stack, smtp_server(None, offer_starttls=False)),
            http=start(stack, http.server.ThreadingHTTPServer(("127.0.0.1", 0), HttpStandIn)),
            dns=start(stack, socketserver.ThreadingUDPServer(("127.0.0.1", 0), DnsStandIn)),
        )
        service = Exporter(directory, blackbox.blackbox_checks(**probe_lists(ports, ca.ca_file)))
        stack.callback(service.stop)
        yield service


def test_the_exporter_is_installed():
    require_binary(EXPORTER)


@pytest.mark.parametrize(
    ("probe", "check", "success"),
    [
        ("http-broken", "http", 0),
        ("http-broken-expected", "http", 1),
        ("http-body", "http", 1),
        ("http-body-mismatch", "http", 0),
        ("tls-valid", "connect", 1),
        ("tls-valid", "tls", 1),
        # The test CA is not among the system's: without ca_file the handshake fails.
        ("tls-valid-system-cas", "tls", 0),
        ("tls-expired", "connect", 1),
        ("tls-expired", "tls", 0),
        ("tls-wrong-name", "connect", 1),
        ("tls-wrong-name", "tls", 0),
        ("tls-right-name", "tls", 1),
        ("tls-closed", "connect", 0),
        ("tls-closed", "tls", 0),
        ("smtp", "connect", 1),
        ("smtp", "tls", 1),
        ("smtp-no-starttls", "connect", 1),
        ("known.test", "dns", 1),
        ("unknown.test", "dns", 0),
        ("ipv4-only.test", "dns", 0),
    ],
)
def test_probe_outcome(exporter, probe, check, success):
    metrics = exporter.probe(probe, check)

    assert metrics["probe_success"] == success, exporter.debug(probe, check)


def test_a_valid_certificate_reports_its_expiry(exporter):
    metrics = exporter.probe("tls-valid", "tls")

    expires_in = metrics["probe_ssl_earliest_cert_expiry"] - time.time()
    assert 2 * 86400 - 600 < expires_in <= 2 * 86400


def test_an_expired_certificate_fails_the_handshake_and_reports_no_expiry(exporter):
    """TLSCertificateExpiring's series goes; TLSHandshakeFailed (tls 0, connect 1) takes over."""
    metrics = exporter.probe("tls-expired", "tls")

    assert "probe_ssl_earliest_cert_expiry" not in metrics


def test_smtp_starttls_reaches_the_tls_handshake(exporter):
    # The module of its own (for server_name and ca_file) keeps smtp_starttls' dialogue.
    dialogue = exporter.checks[("smtp", "tls")]["settings"]["tcp"]["query_response"]
    assert dialogue == blackbox.BASE_MODULES["smtp_starttls"]["tcp"]["query_response"]

    metrics = exporter.probe("smtp", "tls")

    expires_in = metrics["probe_ssl_earliest_cert_expiry"] - time.time()
    assert 0 < expires_in <= 2 * 86400


def test_an_smtp_server_without_starttls_fails_at_the_probes_timeout(exporter):
    metrics = exporter.probe("smtp-no-starttls", "tls")

    assert metrics["probe_success"] == 0
    assert 0.9 < metrics["probe_duration_seconds"] < 3


def test_http_checks_report_status_and_body_mismatch(exporter):
    assert exporter.probe("http-broken", "http")["probe_http_status_code"] == 500
    assert exporter.probe("http-body-mismatch", "http")["probe_failed_due_to_regex"] == 1
    assert exporter.probe("http-body", "http")["probe_failed_due_to_regex"] == 0


def test_dns_checks_count_the_answers(exporter):
    assert exporter.probe("known.test", "dns")["probe_dns_answer_rrs"] == 1
    assert exporter.probe("unknown.test", "dns")["probe_dns_answer_rrs"] == 0
    # NOERROR without a record of the type asked: a failure (validate_answer_rrs).
    metrics = exporter.probe("ipv4-only.test", "dns")
    assert (metrics["probe_dns_answer_rrs"], metrics["probe_success"]) == (0, 0)
