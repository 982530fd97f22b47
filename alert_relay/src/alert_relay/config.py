"""The configuration file (``--config.file``): receivers, destinations, hooks, settings.

Unknown keys are errors, as in Prometheus' own files. Secrets (tokens, keys,
passwords, header values, URLs that carry a key) are never in this file: it
names files that hold them (``*_file``), which are read when needed and read
again when they change, so rotating a secret needs no reload. Relative file
names are relative to the configuration file's directory.
"""

from __future__ import annotations

import os
import re
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from alert_relay import schema


class ConfigError(Exception):
    """The configuration file is invalid; the message says where and why."""


class SecretError(Exception):
    """A secret file cannot be read."""


_DURATION = re.compile(
    r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?"
)
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Headers the relay sets itself, or that HTTP framing owns.
_RESERVED_HEADERS = {
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "idempotency-key",
}


def parse_duration(text: Any, where: str) -> float:
    """A Prometheus duration (``1h30m``, ``500ms``, ``7d``) -> seconds."""
    if not isinstance(text, str) or not text:
        raise ConfigError(f"{where}: not a duration (write e.g. 30s, 5m, 7d)")
    match = _DURATION.fullmatch(text)
    if match is None or not any(match.groups()):
        raise ConfigError(f"{where}: {text!r} is not a duration (write e.g. 30s, 5m, 7d)")
    return sum(int(n) * unit for n, unit in zip(match.groups(), _DURATION_UNITS, strict=True) if n)


# Per file: (inode, size, mtime, ctime) in nanoseconds.
_Signature = tuple[int, int, int, int]


class SecretFile:
    """A file holding a secret, read again when it changes (one stat() per use).

    The value is the file's content without surrounding whitespace (a
    trailing newline from an editor or ``echo`` is not part of a token).
    Never logged, never part of an error message.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: _Signature | None = None
        self._value = b""

    def read(self) -> bytes:
        try:
            st = os.stat(self.path)
            signature = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            with self._lock:
                if signature != self._seen:
                    with open(self.path, "rb") as handle:
                        self._value = handle.read().strip()
                    self._seen = signature
                return self._value
        except OSError as err:
            raise SecretError(f"cannot read {self.path}: {err.strerror}") from None

    def text(self) -> str:
        try:
            return self.read().decode("utf-8")
        except UnicodeDecodeError:
            raise SecretError(f"{self.path} is not UTF-8 text") from None

    def lines(self) -> list[bytes]:
        """Non-empty lines: several tokens in one file let a token be rotated."""
        return [line.strip() for line in self.read().splitlines() if line.strip()]


@dataclass(frozen=True)
class Retry:
    initial_backoff: float = 1.0
    max_backoff: float = 300.0
    max_age: float = 86400.0


@dataclass(frozen=True)
class Destination:
    name: str
    url: str | None
    url_file: SecretFile | None
    headers: dict[str, str]
    header_files: dict[str, SecretFile]
    hmac_key_file: SecretFile | None
    hmac_header: str
    basic_auth_username: str | None
    basic_auth_password_file: SecretFile | None
    bearer_token_file: SecretFile | None
    timeout: float
    max_concurrency: int
    retry: Retry
    ssl_context: ssl.SSLContext | None  # None: the system's CA bundle, verified

    def resolve_url(self) -> str:
        """The URL to post to; raises SecretError when url_file cannot be read."""
        if self.url is not None:
            return self.url
        assert self.url_file is not None
        url = self.url_file.text()
        if not _valid_url(url):
            raise SecretError(f"{self.url_file.path} does not hold an http(s) URL")
        return url


@dataclass(frozen=True)
class Hook:
    name: str
    command: tuple[str, ...]
    alertnames: frozenset[str]
    receivers: frozenset[str] | None  # None: every receiver
    send_resolved: bool
    timeout: float
    max_attempts: int
    max_concurrency: int
    retry: Retry

    @property
    def target(self) -> str:
        return f"hook:{self.name}"

    def applies(self, receiver: str, alertname: str, status: str) -> bool:
        return (
            alertname in self.alertnames
            and (self.receivers is None or receiver in self.receivers)
            and (status == "firing" or self.send_resolved)
        )


@dataclass(frozen=True)
class Receiver:
    name: str
    token_file: SecretFile | None
    destinations: tuple[str, ...]
    forward_repeats: bool
    repeat_min_interval: float


@dataclass(frozen=True)
class Config:
    receivers: dict[str, Receiver] = field(default_factory=dict)
    destinations: dict[str, Destination] = field(default_factory=dict)
    hooks: dict[str, Hook] = field(default_factory=dict)
    max_request_bytes: int = 1 << 20
    history_retention: float = 30 * 86400.0
    prune_interval: float = 3600.0
    hook_concurrency: int = 4
    retry: Retry = field(default_factory=Retry)  # global.retry: for targets no longer configured

    def targets(self, receiver: Receiver, alertname: str, status: str) -> list[str]:
        """Where an alert that came in through ``receiver`` goes: destinations, then hooks."""
        hooks = self.hooks.values()
        applying = [h.target for h in hooks if h.applies(receiver.name, alertname, status)]
        return [*receiver.destinations, *applying]

    def target_limits(self) -> dict[str, int]:
        """Deliveries in flight at once, per target."""
        limits = {name: d.max_concurrency for name, d in self.destinations.items()}
        limits.update({h.target: h.max_concurrency for h in self.hooks.values()})
        return limits


# --- Parsing ---------------------------------------------------------------------------------


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping")
    return value


def _keys(section: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in section:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown field {key!r}")


def _bool(section: dict[str, Any], key: str, where: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}: must be true or false")
    return value


def _int(section: dict[str, Any], key: str, where: str, default: int, minimum: int = 1) -> int:
    value = section.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{where}.{key}: must be a whole number of at least {minimum}")
    return value


def _duration(section: dict[str, Any], key: str, where: str, default: float) -> float:
    if key not in section:
        return default
    seconds = parse_duration(section[key], f"{where}.{key}")
    if seconds <= 0:
        raise ConfigError(f"{where}.{key}: must be above 0")
    return seconds


def _str(section: dict[str, Any], key: str, where: str) -> str | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key}: must be a non-empty string")
    return value


def _valid_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class _Loader:
    """Parses one configuration document; relative paths are joined to ``directory``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def secret(self, section: dict[str, Any], key: str, where: str) -> SecretFile | None:
        path = _str(section, key, where)
        if path is None:
            return None
        secret = SecretFile(os.path.join(self.directory, path))
        try:
            secret.read()  # unreadable at load: an error now, not at the first alert
        except SecretError as err:
            raise ConfigError(f"{where}.{key}: {err}") from None
        return secret

    def path(self, section: dict[str, Any], key: str, where: str) -> str | None:
        path = _str(section, key, where)
        return None if path is None else os.path.join(self.directory, path)

    def retry(self, section: Any, where: str, default: Retry) -> Retry:
        section = _mapping(section, where)
        _keys(section, {"initial_backoff", "max_backoff", "max_age"}, where)
        retry = Retry(
            initial_backoff=_duration(section, "initial_backoff", where, default.initial_backoff),
            max_backoff=_duration(section, "max_backoff", where, default.max_backoff),
            max_age=_duration(section, "max_age", where, default.max_age),
        )
        if retry.max_backoff < retry.initial_backoff:
            raise ConfigError(f"{where}: max_backoff is below initial_backoff")
        return retry

    def tls(self, section: Any, where: str) -> ssl.SSLContext | None:
        section = _mapping(section, where)
        if not section:
            return None
        _keys(
            section,
            {"ca_file", "cert_file", "key_file", "server_name", "insecure_skip_verify"},
            where,
        )
        if _str(section, "server_name", where) is not None:
            raise ConfigError(f"{where}.server_name: not supported; put the name in the url")
        context = ssl.create_default_context(cafile=None)
        ca_file = self.path(section, "ca_file", where)
        cert_file = self.path(section, "cert_file", where)
        key_file = self.path(section, "key_file", where)
        try:
            if ca_file is not None:
                context = ssl.create_default_context(cafile=ca_file)
            if (cert_file is None) != (key_file is None):
                raise ConfigError(f"{where}: cert_file and key_file go together")
            if cert_file is not None:
                context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(f"{where}: cannot load: {err}") from None
        if _bool(section, "insecure_skip_verify", where, False):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def headers(self, section: Any, where: str, files: bool) -> dict[str, Any]:
        section = _mapping(section, where)
        headers: dict[str, Any] = {}
        for name, value in section.items():
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
                raise ConfigError(f"{where}: {name!r} is not a header name")
            if name.lower() in _RESERVED_HEADERS:
                raise ConfigError(f"{where}.{name}: set by the relay itself")
            if not files and name.lower() == "authorization":
                raise ConfigError(
                    f"{where}.Authorization: credentials go in files: use header_files, "
                    "basic_auth or bearer_token_file"
                )
            if not isinstance(value, str) or not value or "\n" in value or "\r" in value:
                raise ConfigError(f"{where}.{name}: must be a one-line string")
            headers[name] = self.secret(section, name, where) if files else value
        return headers

    def destination(self, name: str, section: Any, defaults: dict[str, Any]) -> Destination:
        where = f"destinations.{name}"
        section = _mapping(section, where)
        _keys(section, schema.DESTINATION_KEYS, where)
        url = _str(section, "url", where)
        url_file = self.secret(section, "url_file", where)
        if (url is None) == (url_file is None):
            raise ConfigError(f"{where}: set one of url and url_file")
        if url is not None and not _valid_url(url):
            raise ConfigError(f"{where}.url: not an http:// or https:// URL")
        if url_file is not None and not _valid_url(url_file.text()):
            raise ConfigError(f"{where}.url_file: the file does not hold an http(s) URL")
        headers = self.headers(section.get("headers"), f"{where}.headers", files=False)
        header_files = self.headers(section.get("header_files"), f"{where}.header_files", True)
        both = {h.lower() for h in headers} & {h.lower() for h in header_files}
        if both:
            raise ConfigError(f"{where}: {sorted(both)[0]} is in both headers and header_files")

        hmac_section = _mapping(section.get("hmac"), f"{where}.hmac")
        _keys(hmac_section, schema.HMAC_KEYS, f"{where}.hmac")
        hmac_key = self.secret(hmac_section, "key_file", f"{where}.hmac")
        if hmac_section and hmac_key is None:
            raise ConfigError(f"{where}.hmac.key_file: missing")
        hmac_header = _str(hmac_section, "header", f"{where}.hmac") or "X-Alert-Relay-Signature"
        if not _HEADER_NAME.fullmatch(hmac_header):
            raise ConfigError(f"{where}.hmac.header: not a header name")

        basic = _mapping(section.get("basic_auth"), f"{where}.basic_auth")
        _keys(basic, schema.BASIC_AUTH_KEYS, f"{where}.basic_auth")
        username = _str(basic, "username", f"{where}.basic_auth")
        if username is not None and ":" in username:
            # Basic auth separates the user from the password with the first ':'.
            raise ConfigError(f"{where}.basic_auth.username: must not contain ':'")
        password_file = self.secret(basic, "password_file", f"{where}.basic_auth")
        if basic and (username is None or password_file is None):
            raise ConfigError(f"{where}.basic_auth: needs username and password_file")
        bearer = self.secret(section, "bearer_token_file", where)
        authorizations = [
            basic != {},
            bearer is not None,
            any(h.lower() == "authorization" for h in header_files),
        ]
        if sum(authorizations) > 1:
            raise ConfigError(
                f"{where}: one of basic_auth, bearer_token_file and an Authorization header file"
            )
        return Destination(
            name=name,
            url=url,
            url_file=url_file,
            headers=headers,
            header_files=header_files,
            hmac_key_file=hmac_key,
            hmac_header=hmac_header,
            basic_auth_username=username,
            basic_auth_password_file=password_file,
            bearer_token_file=bearer,
            timeout=_duration(section, "timeout", where, defaults["timeout"]),
            max_concurrency=_int(section, "max_concurrency", where, defaults["max_concurrency"]),
            retry=self.retry(section.get("retry"), f"{where}.retry", defaults["retry"]),
            ssl_context=self.tls(section.get("tls_config"), f"{where}.tls_config"),
        )

    def hook(self, name: str, section: Any, defaults: dict[str, Any]) -> Hook:
        where = f"hooks.{name}"
        section = _mapping(section, where)
        _keys(section, schema.HOOK_KEYS, where)
        command = section.get("command")
        if isinstance(command, str):
            command = [command]
        if (
            not isinstance(command, list)
            or not command
            or not all(isinstance(arg, str) and arg for arg in command)
        ):
            raise ConfigError(f"{where}.command: a list: the executable, then its arguments")
        executable = os.path.join(self.directory, command[0])
        if not os.path.isfile(executable) or not os.access(executable, os.X_OK):
            raise ConfigError(f"{where}.command: {executable} is not an executable file")
        alertnames = section.get("alertnames")
        if (
            not isinstance(alertnames, list)
            or not alertnames
            or not all(isinstance(n, str) and n for n in alertnames)
        ):
            raise ConfigError(f"{where}.alertnames: a list of alert names")
        receivers = section.get("receivers")
        if receivers is not None and (
            not isinstance(receivers, list) or not all(isinstance(r, str) for r in receivers)
        ):
            raise ConfigError(f"{where}.receivers: a list of receiver names")
        return Hook(
            name=name,
            command=(executable, *command[1:]),
            alertnames=frozenset(alertnames),
            receivers=None if receivers is None else frozenset(receivers),
            send_resolved=_bool(section, "send_resolved", where, True),
            timeout=_duration(section, "timeout", where, defaults["hook_timeout"]),
            max_attempts=_int(section, "max_attempts", where, 1),
            max_concurrency=_int(section, "max_concurrency", where, 1),
            retry=self.retry(section.get("retry"), f"{where}.retry", defaults["retry"]),
        )

    def receiver(self, name: str, section: Any, defaults: dict[str, Any]) -> Receiver:
        where = f"receivers.{name}"
        section = _mapping(section, where)
        _keys(section, schema.RECEIVER_KEYS, where)
        destinations = section.get("destinations", [])
        if not isinstance(destinations, list) or not all(isinstance(d, str) for d in destinations):
            raise ConfigError(f"{where}.destinations: a list of destination names")
        token_file = self.secret(section, "bearer_token_file", where)
        if token_file is not None and not token_file.lines():
            raise ConfigError(f"{where}.bearer_token_file: the file holds no token")
        return Receiver(
            name=name,
            token_file=token_file,
            destinations=tuple(dict.fromkeys(destinations)),
            forward_repeats=_bool(section, "forward_repeats", where, defaults["forward_repeats"]),
            repeat_min_interval=_duration(
                section, "repeat_min_interval", where, defaults["repeat_min_interval"]
            ),
        )


def _named(section: Any, where: str) -> dict[str, Any]:
    section = _mapping(section, where)
    for name in section:
        if not schema.is_name(name):
            raise ConfigError(f"{where}: {name!r} is not a name ({schema.NAME_RULE})")
    return section


def parse_config(text: str, directory: str = ".") -> Config:
    """Parse and check a configuration document; raises ConfigError."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid YAML: {err}") from None
    document = _mapping(document, "the configuration")
    _keys(document, schema.TOP_KEYS, "the configuration")
    settings = _mapping(document.get("global"), "global")
    _keys(settings, schema.GLOBAL_KEYS, "global")
    loader = _Loader(directory)
    defaults = {
        "forward_repeats": _bool(settings, "forward_repeats", "global", False),
        "repeat_min_interval": _duration(settings, "repeat_min_interval", "global", 3600.0),
        "timeout": _duration(settings, "timeout", "global", 10.0),
        "max_concurrency": _int(settings, "max_concurrency", "global", 4),
        "retry": loader.retry(settings.get("retry"), "global.retry", Retry()),
        "hook_timeout": _duration(settings, "hook_timeout", "global", 30.0),
    }
    destinations = {
        name: loader.destination(name, section, defaults)
        for name, section in _named(document.get("destinations"), "destinations").items()
    }
    hooks = {
        name: loader.hook(name, section, defaults)
        for name, section in _named(document.get("hooks"), "hooks").items()
    }
    receivers = {
        name: loader.receiver(name, section, defaults)
        for name, section in _named(document.get("receivers"), "receivers").items()
    }
    if not receivers:
        raise ConfigError("receivers: none configured")
    for receiver in receivers.values():
        for destination in receiver.destinations:
            if destination not in destinations:
                raise ConfigError(
                    f"receivers.{receiver.name}.destinations: no destination {destination!r}"
                )
    for hook in hooks.values():
        for name in sorted(hook.receivers or ()):
            if name not in receivers:
                raise ConfigError(f"hooks.{hook.name}.receivers: no receiver {name!r}")
    config = Config(
        receivers=receivers,
        destinations=destinations,
        hooks=hooks,
        max_request_bytes=_int(settings, "max_request_bytes", "global", 1 << 20, minimum=1024),
        history_retention=_duration(settings, "history_retention", "global", 30 * 86400.0),
        prune_interval=_duration(settings, "prune_interval", "global", 3600.0),
        hook_concurrency=_int(settings, "hook_concurrency", "global", 4),
        retry=defaults["retry"],
    )
    retries = [d.retry for d in destinations.values()] + [h.retry for h in hooks.values()]
    oldest = max((retry.max_age for retry in retries), default=0.0)
    if config.history_retention <= oldest:
        # History is pruned only where nothing is pending; keep it longer than any retry.
        raise ConfigError("global.history_retention: must be longer than every retry.max_age")
    return config


def load_config(path: str) -> Config:
    """Read and check the configuration file; raises ConfigError."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from None
    return parse_config(text, os.path.dirname(os.path.abspath(path)))
