"""The web config file: parsing, checks and the basic-auth verifier."""

from __future__ import annotations

import base64
from pathlib import Path

import bcrypt
import pytest
from exporter_web.webconfig import BasicAuth, WebConfigError, load_web_config, parse_web_config

from exporter_web import webconfig

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()


def test_empty_config_is_plain_http_without_auth() -> None:
    for text in ("", "{}", "tls_server_config: {}\nbasic_auth_users: {}\n"):
        config = parse_web_config(text)
        assert config.tls is None and config.users == {} and config.headers == {}


def test_full_config(tmp_path: Path) -> None:
    config = parse_web_config(
        f"""
tls_server_config:
  cert_file: server.crt
  key_file: /etc/keys/server.key
  client_ca_file: ca.crt
  client_auth_type: RequireAndVerifyClientCert
  min_version: TLS13
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    Strict-Transport-Security: max-age=31536000
basic_auth_users:
  prometheus: {HASH}
""",
        directory=str(tmp_path),
    )
    assert config.tls is not None
    assert config.tls.cert_file == str(tmp_path / "server.crt")  # relative to the file
    assert config.tls.key_file == "/etc/keys/server.key"
    assert config.tls.client_ca_file == str(tmp_path / "ca.crt")
    assert config.tls.client_auth_type == "RequireAndVerifyClientCert"
    assert (config.tls.min_version, config.tls.max_version) == ("TLS13", "TLS13")
    assert config.users == {"prometheus": HASH.encode()}
    assert config.headers["X-Frame-Options"] == "deny"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "must be a mapping"),
        ("tls_config: {}\n", "unknown field 'tls_config'"),
        ("rate_limit: {burst: 1, interval: 1s}\n", "rate_limit is not supported"),
        ("tls_server_config: {cert_file: a.crt}\n", "key_file is required"),
        ("tls_server_config: {key_file: a.key}\n", "cert_file is required"),
        ("tls_server_config: {cert_file: a, key_file: b, min_version: SSL3}\n", "min_version"),
        (
            "tls_server_config: {cert_file: a, key_file: b, min_version: TLS13, "
            "max_version: TLS12}\n",
            "above max_version",
        ),
        ("tls_server_config: {cert_file: a, key_file: b, client_auth_type: Maybe}\n", "invalid"),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: RequestClientCert, "
            "client_ca_file: c}\n",
            "not supported",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_ca_file: c}\n",
            "client_auth_type is NoClientCert",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, "
            "client_auth_type: RequireAndVerifyClientCert}\n",
            "needs client_ca_file",
        ),
        ("tls_server_config: {cert_file: a, key_file: b, cipher_suites: [X]}\n", "not supported"),
        ("tls_server_config: {cert_file: a, key_file: b, colour: blue}\n", "unknown field"),
        ("http_server_config: {headers: {X-Powered-By: me}}\n", "can not be configured"),
        ("http_server_config: {headers: {X-Frame-Options: allow}}\n", "invalid value"),
        ("basic_auth_users: {alice: plaintext}\n", "not a bcrypt hash"),
        ("basic_auth_users: [alice]\n", "must be a mapping"),
        ("basic_auth_users: {alice: [\n", "invalid YAML"),
    ],
)
def test_invalid_configs(text: str, message: str) -> None:
    with pytest.raises(WebConfigError, match=message):
        parse_web_config(text)


def test_load_web_config_checks_tls_files(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("tls_server_config: {cert_file: missing.crt, key_file: missing.key}\n")
    with pytest.raises(WebConfigError, match="cannot load cert_file"):
        load_web_config(str(path))
    with pytest.raises(WebConfigError, match="cannot read"):
        load_web_config(str(tmp_path / "absent.yml"))


def header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_checks() -> None:
    auth = BasicAuth({"prometheus": HASH.encode()})
    assert auth.enabled
    assert auth.check_header(header("prometheus", "s3cret"))
    assert not auth.check_header(header("prometheus", "wrong"))
    assert not auth.check_header(header("nobody", "s3cret"))
    assert not auth.check_header(header("prometheus", "s3cret" + "x" * 80))  # > 72 bytes
    assert not auth.check_header(None)
    assert not auth.check_header("Bearer abc")
    assert not auth.check_header("Basic !!!notbase64")
    assert not auth.check_header("Basic " + base64.b64encode(b"no-colon").decode())
    assert not BasicAuth({}).enabled


def test_basic_auth_caches_successes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real_checkpw = bcrypt.checkpw

    def counting_checkpw(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return real_checkpw(password, hashed)

    monkeypatch.setattr(webconfig.bcrypt, "checkpw", counting_checkpw)
    auth = BasicAuth({"prometheus": HASH.encode()})
    for _ in range(5):
        assert auth.check("prometheus", b"s3cret")
    assert calls == [b"s3cret"]  # one bcrypt round, then the cache
    for _ in range(3):
        assert not auth.check("prometheus", b"wrong")
    assert calls.count(b"wrong") == 3  # failures are never cached
    for _ in range(2):
        assert not auth.check("mallory", b"s3cret")  # unknown users still pay bcrypt
    assert len(calls) == 6


def test_basic_auth_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webconfig.bcrypt, "checkpw", lambda password, hashed: True)
    auth = BasicAuth({"prometheus": HASH.encode()})
    auth.CACHE_SIZE = 10
    for n in range(50):
        assert auth.check("prometheus", str(n).encode())
    assert len(auth._cache) == 10
