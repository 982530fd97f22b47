"""The web configuration file: TLS and basic auth, in exporter-toolkit's format.

The YAML format is the one Prometheus and its exporters read with
``--web.config.file`` (https://prometheus.io/docs/prometheus/latest/configuration/https/).
Like exporter-toolkit, unknown keys are errors and relative file names are
relative to the config file's directory. Settings that the Python standard
library cannot honour exactly (Go cipher-suite names, curve preferences,
client certificates that are requested but not verified, ...) are refused at
start rather than silently ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import ssl
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import bcrypt
import yaml


class WebConfigError(Exception):
    """The web config file is invalid."""


TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# client_auth_type -> verify mode; None: exporter-toolkit knows it, we cannot do it.
CLIENT_AUTH_TYPES: dict[str, ssl.VerifyMode | None] = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    "RequestClientCert": None,
    "RequireAnyClientCert": None,
    "RequireClientCert": None,
}

# Response headers exporter-toolkit lets a config set, with their allowed values.
EXTRA_HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

_TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users"}
_TOP_UNSUPPORTED = {"rate_limit"}
_TLS_KEYS = {
    "cert_file",
    "key_file",
    "client_ca_file",
    "client_auth_type",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
}
_TLS_UNSUPPORTED = {
    "cert",
    "key",
    "client_ca",
    "cipher_suites",
    "curve_preferences",
    "client_allowed_sans",
}
_HTTP_KEYS = {"http2", "headers"}
_BCRYPT_HASH = re.compile(r"\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}")


@dataclass
class TLSSettings:
    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    prefer_server_cipher_suites: bool = True

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side SSLContext; raises WebConfigError on unreadable files."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[self.min_version]
        context.maximum_version = TLS_VERSIONS[self.max_version]
        if self.prefer_server_cipher_suites:
            context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as err:
            raise WebConfigError(f"cannot load cert_file/key_file: {err}") from err
        mode = CLIENT_AUTH_TYPES[self.client_auth_type]
        if mode is None:
            raise WebConfigError(f"client_auth_type {self.client_auth_type} is not supported")
        if self.client_ca_file:
            try:
                context.load_verify_locations(cafile=self.client_ca_file)
            except (OSError, ssl.SSLError) as err:
                raise WebConfigError(f"cannot load client_ca_file: {err}") from err
        context.verify_mode = mode
        return context


@dataclass
class WebConfig:
    tls: TLSSettings | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{where} must be a mapping")
    return value


def _check_keys(
    section: dict[str, Any], allowed: set[str], where: str, unsupported: set[str] | None = None
) -> None:
    for key in section:
        if key in (unsupported or set()):
            raise WebConfigError(f"{where}.{key} is not supported by this exporter")
        if key not in allowed:
            raise WebConfigError(f"unknown field {key!r} in {where}")


def _string(section: dict[str, Any], key: str, where: str) -> str | None:
    value = section.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise WebConfigError(f"{where}.{key} must be a string")
    return value


def _parse_tls(section: dict[str, Any], directory: str) -> TLSSettings | None:
    where = "tls_server_config"
    _check_keys(section, _TLS_KEYS, where, _TLS_UNSUPPORTED)
    values = {
        key: _string(section, key, where) for key in _TLS_KEYS - {"prefer_server_cipher_suites"}
    }
    if not any(values.values()):
        return None  # exporter-toolkit: an empty TLS section means plain HTTP
    cert_file, key_file = values["cert_file"], values["key_file"]
    if cert_file is None:
        raise WebConfigError(f"{where}.cert_file is required")
    if key_file is None:
        raise WebConfigError(f"{where}.key_file is required")
    auth_type = values["client_auth_type"] or "NoClientCert"
    if auth_type not in CLIENT_AUTH_TYPES:
        raise WebConfigError(f"invalid {where}.client_auth_type {auth_type!r}")
    if CLIENT_AUTH_TYPES[auth_type] is None:
        raise WebConfigError(
            f"{where}.client_auth_type {auth_type} is not supported: use "
            "RequireAndVerifyClientCert or VerifyClientCertIfGiven"
        )
    client_ca = values["client_ca_file"]
    if client_ca and auth_type == "NoClientCert":
        raise WebConfigError("client_ca_file is set but client_auth_type is NoClientCert")
    if not client_ca and auth_type != "NoClientCert":
        raise WebConfigError(f"client_auth_type {auth_type} needs client_ca_file")
    versions = {}
    for key, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        version = values[key] or default
        if version not in TLS_VERSIONS:
            raise WebConfigError(
                f"invalid {where}.{key} {version!r}: one of {sorted(TLS_VERSIONS)}"
            )
        versions[key] = version
    if TLS_VERSIONS[versions["min_version"]] > TLS_VERSIONS[versions["max_version"]]:
        raise WebConfigError(f"{where}.min_version is above max_version")
    prefer = section.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError(f"{where}.prefer_server_cipher_suites must be true or false")

    def resolve(path: str | None) -> str | None:
        return None if path is None else os.path.join(directory, path)

    return TLSSettings(
        cert_file=resolve(cert_file) or "",
        key_file=resolve(key_file) or "",
        client_ca_file=resolve(client_ca),
        client_auth_type=auth_type,
        min_version=versions["min_version"],
        max_version=versions["max_version"],
        prefer_server_cipher_suites=prefer,
    )


def _parse_headers(section: dict[str, Any]) -> dict[str, str]:
    _check_keys(section, _HTTP_KEYS, "http_server_config")
    if not isinstance(section.get("http2", True), bool):
        raise WebConfigError("http_server_config.http2 must be true or false")
    headers = _mapping(section.get("headers"), "http_server_config.headers")
    for name, value in headers.items():
        if name not in EXTRA_HEADERS:
            raise WebConfigError(f"HTTP header {name!r} can not be configured")
        if not isinstance(value, str):
            raise WebConfigError(f"HTTP header {name!r} must have a string value")
        allowed = EXTRA_HEADERS[name]
        if allowed and value not in allowed:
            raise WebConfigError(f"invalid value for {name}: expected one of {list(allowed)}")
    return dict(headers)


def _parse_users(section: dict[str, Any]) -> dict[str, bytes]:
    users = {}
    for user, hashed in section.items():
        if not isinstance(user, str) or not isinstance(hashed, str):
            raise WebConfigError("basic_auth_users maps user names to bcrypt hashes (strings)")
        if not _BCRYPT_HASH.fullmatch(hashed):
            raise WebConfigError(f"basic_auth_users.{user}: not a bcrypt hash")
        users[user] = hashed.encode("ascii")
    return users


def parse_web_config(text: str, directory: str = ".") -> WebConfig:
    """Parse the YAML text of a web config; relative paths are joined to ``directory``."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise WebConfigError(f"invalid YAML: {err}") from err
    document = _mapping(document, "the web config")
    _check_keys(document, _TOP_KEYS, "the web config", _TOP_UNSUPPORTED)
    tls = _parse_tls(_mapping(document.get("tls_server_config"), "tls_server_config"), directory)
    headers = _parse_headers(_mapping(document.get("http_server_config"), "http_server_config"))
    users = _parse_users(_mapping(document.get("basic_auth_users"), "basic_auth_users"))
    return WebConfig(tls=tls, users=users, headers=headers)


def load_web_config(path: str) -> WebConfig:
    """Read and check a web config file, including that its TLS files load."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as err:
        raise WebConfigError(f"cannot read {path}: {err}") from err
    config = parse_web_config(text, os.path.dirname(os.path.abspath(path)))
    if config.tls is not None:
        config.tls.ssl_context()
    return config


# A bcrypt hash (cost 10, like exporter-toolkit's) checked for unknown users so
# that the answer takes as long as for a known one: no user enumeration by timing.
_DUMMY_HASH = b"$2b$10$b419YsCxjSoXFRWczLRRw.ayfJHMoDXCWdvmWrxgTXs381Gpr9r6W"


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes.

    A bcrypt check costs tens of milliseconds by design, so successful checks
    are remembered (as an HMAC of user, hash and password under a key that
    lives only in this process) and a scrape every few seconds does not pay
    for one each time. Failed checks are never cached, and bcrypt runs one at
    a time, so a flood of wrong passwords costs one core at most.
    """

    CACHE_SIZE = 256

    def __init__(self, users: dict[str, bytes]) -> None:
        self._users = users
        self._key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def _cache_key(self, user: bytes, hashed: bytes, password: bytes) -> bytes:
        message = b"\0".join((user, hashed, password))
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def check(self, user: str, password: bytes) -> bool:
        """True when ``password`` is the password of ``user``."""
        hashed = self._users.get(user)
        known = hashed is not None
        hashed = hashed if known else _DUMMY_HASH
        key = self._cache_key(user.encode("utf-8", "surrogateescape"), hashed, password)
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return known
        with self._bcrypt_lock:
            try:
                ok = bcrypt.checkpw(password, hashed)
            except ValueError:  # longer than bcrypt's 72 bytes, or a broken hash
                ok = False
        if not (ok and known):
            return False
        with self._cache_lock:
            self._cache[key] = None
            while len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        return True

    def check_header(self, header: str | None) -> bool:
        """True when an Authorization header carries valid credentials."""
        if not header:
            return False
        scheme, _, encoded = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        if not sep:
            return False
        return self.check(user.decode("utf-8", "surrogateescape"), password)
