"""The web configuration file: TLS and basic auth, in exporter-toolkit's format.

Shared by the Docker exporter and the alert relay.

The YAML format is the one Prometheus and its exporters read with
``--web.config.file`` (https://prometheus.io/docs/prometheus/latest/configuration/https/).
Like exporter-toolkit, unknown keys are errors and relative file names are
relative to the config file's directory. Settings that the Python standard
library cannot honour exactly (Go cipher-suite names, curve preferences,
client certificates that are requested but not verified, ...) are refused at
start rather than silently ignored.

The file, and the certificate, key and client CA it names, are watched while
the service runs (WebConfigWatcher): new passwords and certificates take
effect without a restart, as with exporter-toolkit, which reads its config
for every connection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
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

log = logging.getLogger(__name__)


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
        scheme, _space, encoded = header.strip().partition(" ")
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


@dataclass(frozen=True)
class Serving:
    """What the server applies to a connection or request, built from one WebConfig."""

    config: WebConfig
    ssl_context: ssl.SSLContext | None
    auth: BasicAuth

    @classmethod
    def build(cls, config: WebConfig) -> Serving:
        """Raises WebConfigError when the TLS files do not load."""
        context = config.tls.ssl_context() if config.tls is not None else None
        return cls(config, context, BasicAuth(config.users))

    @property
    def files(self) -> tuple[str, ...]:
        """The files this config names, whose changes a reload must see."""
        tls = self.config.tls
        if tls is None:
            return ()
        return tuple(p for p in (tls.cert_file, tls.key_file, tls.client_ca_file) if p)


# Per file: (inode, size, mtime, ctime) in nanoseconds, or None when missing.
# A rename into place (a new inode) or a write in place both change it.
_Signature = tuple[tuple[int, int, int, int] | None, ...]


def _signature(paths: tuple[str, ...]) -> _Signature:
    found: list[tuple[int, int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            found.append(None)
        else:
            found.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(found)


class WebConfigWatcher:
    """The web config in force, re-read when its file or the files it names change.

    :meth:`current` costs one stat() per file (the config file and the
    certificate, key and client CA it names) and reads and checks the files
    again only when one of them changed: a new password or certificate
    applies from the next request or connection, without a restart.

    A changed config that does not load (invalid YAML or field, an unreadable
    file, a certificate that does not match its key, TLS switched on or off,
    which changes the URL scheme and takes a restart) leaves the last good
    one in force; the failure is logged once per change and shows in
    :attr:`last_reload_successful`, until a later change loads.
    """

    def __init__(
        self,
        path: str | None = None,
        config: WebConfig | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        """Without ``path``, ``config`` (default: plain HTTP) stays as it is.

        With ``path``, the file is loaded now and WebConfigError raised if it
        does not: at start, a bad file is an error, not a fallback. Reloads
        are logged to ``logger`` (default: this module's), so that each
        service's log lines carry its own name.
        """
        self.path = path
        self._log = logger or log
        self.last_reload_successful = True
        self._lock = threading.Lock()
        if path is None:
            self._serving = Serving.build(config or WebConfig())
            self._paths: tuple[str, ...] = ()
            self._seen: _Signature | None = ()
            return
        self._serving, self._paths, self._seen = self._load((path,))
        if self._seen is None:  # TLS files named: now their stats are known too
            self._serving, self._paths, self._seen = self._load(self._paths)

    def _load(self, paths: tuple[str, ...]) -> tuple[Serving, tuple[str, ...], _Signature | None]:
        """Load the config; return it, the files it names and their signature.

        The signature is one taken before the read and found the same after
        it, so that a change during the read is seen next time; None when that
        cannot be told (the config names other files than ``paths``, or they
        changed meanwhile): the next request then looks again.
        """
        assert self.path is not None
        before = _signature(paths)
        serving = Serving.build(load_web_config(self.path))
        named = (self.path, *serving.files)
        after = _signature(named)
        return serving, named, after if named == paths and after == before else None

    @property
    def tls(self) -> bool:
        return self._serving.ssl_context is not None

    def current(self) -> Serving:
        """The config to apply now, reloaded first if its files changed."""
        if self.path is None:
            return self._serving
        signature = _signature(self._paths)
        if signature == self._seen:
            return self._serving
        with self._lock:
            # Another thread may have reloaded meanwhile.
            signature = _signature(self._paths)
            if signature != self._seen:
                self._reload(signature)
            return self._serving

    def _reload(self, signature: _Signature) -> None:
        path = self.path
        assert path is not None
        self._seen = signature  # a failure is not retried before the next change
        try:
            serving, paths, seen = self._load(self._paths)
            if seen is None:  # other files named, or a change during the read
                serving, paths, seen = self._load(paths)
            if (serving.ssl_context is not None) != self.tls:
                switched = "on" if serving.ssl_context is not None else "off"
                raise WebConfigError(
                    f"TLS switched {switched}: that changes the URL scheme and takes a restart"
                )
        except WebConfigError as err:
            self._log.error(
                "cannot reload --web.config.file %s, keeping the previous config: %s", path, err
            )
            self.last_reload_successful = False
            return
        self._serving, self._paths, self._seen = serving, paths, seen
        self.last_reload_successful = True
        self._log.info("reloaded --web.config.file %s", path)
