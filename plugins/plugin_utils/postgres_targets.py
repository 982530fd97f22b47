"""PostgreSQL targets of the postgres_exporter role, for its filters and the scrape job.

Shared by plugins/filter/postgres.py (the role) and plugins/filter/prometheus.py
(job ``postgres`` of prometheus_scrape_configs), so that both read a target alike.

Each database target of ``postgres_exporter_targets`` gets an exporter process
of its own (Debian 12's postgres_exporter 0.11 has no multi-target mode, and
its ``pg_up`` covers all the data sources of one process together), on its own
port, so that ``pg_up`` and everything else is per database.

- ``postgres_exporter_targets``: the inventory's targets checked and completed
  with their defaults, the exporter's port and connection string. A bad target
  (no host, a port that is not a number, credentials in a host or database
  name, a value postgres_exporter cannot use) fails naming it, and no message
  ever shows a password.
- ``postgres_data_source_uri``: the exporter's ``DATA_SOURCE_URI`` of a target:
  ``host:port/database?sslmode=...``, without credentials (the user and
  password are files of their own).
- ``postgres_static_configs``: a host's targets as Prometheus ``static_configs``
  entries of job ``postgres``: one per database, at the host's
  ``monitoring_address`` and the target's exporter port, labelled ``instance``
  (the exporter's host, which Prometheus scrapes: NetworkConnectivityIssue
  counts its targets there), ``host_instance`` (the inventory name of the
  database's own host: the exporter's host unless the target sets
  ``host_instance``), ``target``, ``database``, ``endpoint`` (the database's
  host:port) and ``data_mountpoint``.
"""

import re
from urllib.parse import quote

from ansible.errors import AnsibleFilterError
from ansible_collections.prometheus_alerting.stack.plugins.module_utils.plain_data import (
    plain as _plain,
)
from ansible_collections.prometheus_alerting.stack.plugins.plugin_utils.addresses import host_port

# What a target may set; anything else is a typo that would otherwise be ignored.
TARGET_KEYS = {
    "name",
    "host",
    "port",
    "database",
    "user",
    "password",
    "sslmode",
    "ca_file",
    "exporter_port",
    "host_instance",
    "data_mountpoint",
    "timescaledb_jobs",
    "create_login",
    "admin_user",
    "admin_password",
}
DEFAULTS = {
    "port": 5432,
    "database": "postgres",
    "user": "postgres_exporter",
    "sslmode": "require",
    "ca_file": "",
    "host_instance": "",
    "data_mountpoint": "/",
    "timescaledb_jobs": "auto",
    "create_login": False,
    "admin_user": "postgres",
}
# lib/pq, which postgres_exporter uses, knows only these (not libpq's allow/prefer).
SSLMODES = ("disable", "require", "verify-ca", "verify-full")
TIMESCALEDB_JOBS = ("auto", "enabled", "disabled")
# A name is a systemd instance name and a directory name.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# `web` is the directory of the exporters' shared TLS and basic-auth files.
RESERVED_NAMES = {"web"}
# A host name or an IP address: no scheme, user, path or spaces.
_HOST = re.compile(r"^[A-Za-z0-9_.:%-]+$")
# How long the exporter waits for the database: a scrape of a database that
# does not answer takes this, plus a second the exporter waits before it gives
# up, well below Prometheus' scrape timeout (10s), so that it is pg_up 0 and
# not a failed scrape.
CONNECT_TIMEOUT_SECONDS = 3
APPLICATION_NAME = "postgres_exporter"


def _where(index, target):
    name = target.get("name") if isinstance(target, dict) else None
    return f"postgres_exporter_targets[{index}]" + (f" ({name})" if name else "")


def _fail(index, target, message):
    raise AnsibleFilterError(f"{_where(index, target)}: {message}")


def _whole_number(value, low, high):
    """`value` as an int in [low, high], or None (a bool, a float, text that is no number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()):
        number = int(value.strip())
    else:
        return None
    return number if low <= number <= high else None


def _text(index, target, key, value, allow_empty=False):
    if isinstance(value, dict | list) or value is None:
        _fail(index, target, f"`{key}` must be a string")
    value = str(value)
    if not value and not allow_empty:
        _fail(index, target, f"`{key}` must not be empty")
    return value


def _credentials_in(value):
    """Whether a host or database name holds a connection string or URL with credentials."""
    lowered = value.lower()
    return "@" in value or "://" in value or "password=" in lowered or "user=" in lowered


def _check_secret(index, target, key, value):
    """A password postgres_exporter can use; the message never shows it."""
    if isinstance(value, dict | list):
        _fail(index, target, f"`{key}` must be a string")
    value = "" if value is None else str(value)
    if re.search(r"\s", value):
        # The exporter turns its connection URL into key=value pairs and splits
        # them on spaces: the connection fails, and its error message (logged)
        # holds the whole string, the password included.
        _fail(
            index,
            target,
            f"`{key}` contains white space, which postgres_exporter cannot use (it splits its "
            "connection string on spaces and logs the string, password included, when that "
            "fails): choose a password without spaces",
        )
    return value


def _check_host(index, target, merged):
    if "host" not in target or target["host"] in (None, ""):
        _fail(index, target, "has no `host` (the database's host name or address)")
    host = _text(index, target, "host", merged["host"]).strip()
    if _credentials_in(host):
        _fail(
            index,
            target,
            "`host` holds a connection string or a URL with credentials: give `host`, `port` and "
            "`database` apart, and the password in `password` (kept in a file of its own)",
        )
    if host.startswith("/") or not _HOST.match(host):
        _fail(
            index,
            target,
            f"`host` must be a host name or an IP address (TCP; no socket path), got {host!r}",
        )
    return host


def _check_port(index, target, key, value):
    port = _whole_number(value, 1, 65535)
    if port is None:
        _fail(index, target, f"`{key}` must be a whole number from 1 to 65535, got {value!r}")
    return port


def _check_names(index, target, merged):
    """(database, name, user): no credentials, nothing postgres_exporter cannot use."""
    database = _text(index, target, "database", merged["database"])
    if _credentials_in(database):
        _fail(
            index,
            target,
            "`database` holds a connection string or a URL with credentials: give the database's "
            "name only, and the password in `password`",
        )
    name = _text(index, target, "name", merged.get("name", database))
    if not _NAME.match(name) or name in RESERVED_NAMES:
        hint = "" if "name" in target else ": set `name`, the database's name cannot be one"
        _fail(
            index,
            target,
            f"`name` must be letters, digits, '_', '.' or '-' (not "
            f"{', '.join(sorted(RESERVED_NAMES))}), got {name!r}{hint}",
        )
    user = _text(index, target, "user", merged["user"])
    for key, value in (("user", user), ("database", database), ("ca_file", merged["ca_file"])):
        if re.search(r"\s", str(value)):
            _fail(
                index,
                target,
                f"`{key}` contains white space, which postgres_exporter cannot use (it splits its "
                "connection string on spaces)",
            )
    return database, name, user


def _check_tls(index, target, merged):
    """(sslmode, ca_file)."""
    sslmode = merged["sslmode"]
    if sslmode not in SSLMODES:
        _fail(index, target, f"`sslmode` must be one of {', '.join(SSLMODES)}, got {sslmode!r}")
    ca_file = _text(index, target, "ca_file", merged["ca_file"], allow_empty=True)
    if ca_file and not ca_file.startswith("/"):
        _fail(index, target, f"`ca_file` must be an absolute path on the host, got {ca_file!r}")
    if sslmode in ("verify-ca", "verify-full") and not ca_file:
        _fail(
            index,
            target,
            f"sslmode {sslmode} needs `ca_file`, the CA that signed the server's certificate",
        )
    return sslmode, ca_file


def _check_options(index, target, merged):
    """(timescaledb_jobs, create_login, data_mountpoint)."""
    if merged["timescaledb_jobs"] not in TIMESCALEDB_JOBS:
        _fail(
            index,
            target,
            f"`timescaledb_jobs` must be one of {', '.join(TIMESCALEDB_JOBS)}, "
            f"got {merged['timescaledb_jobs']!r}",
        )
    if not isinstance(merged["create_login"], bool):
        _fail(index, target, "`create_login` must be true or false")
    mountpoint = _text(
        index, target, "data_mountpoint", merged["data_mountpoint"], allow_empty=True
    )
    if mountpoint and not mountpoint.startswith("/"):
        _fail(
            index,
            target,
            f"`data_mountpoint` must be an absolute path or empty, got {mountpoint!r}",
        )
    return merged["timescaledb_jobs"], merged["create_login"], mountpoint


def _normalize(index, target, base_port, secrets):
    if not isinstance(target, dict):
        raise AnsibleFilterError(
            f"postgres_exporter_targets[{index}] must be a mapping (host, port, database, ...), "
            f"got a {type(target).__name__}"
        )
    unknown = sorted(set(target) - TARGET_KEYS)
    if unknown:
        _fail(
            index,
            target,
            f"unknown key(s) {', '.join(unknown)}; a target takes {', '.join(sorted(TARGET_KEYS))}",
        )
    merged = {**DEFAULTS, **{k: v for k, v in target.items() if v is not None}}
    host = _check_host(index, target, merged)
    port = _check_port(index, target, "port", merged["port"])
    database, name, user = _check_names(index, target, merged)
    sslmode, ca_file = _check_tls(index, target, merged)
    exporter_port = _check_port(
        index, target, "exporter_port", merged.get("exporter_port", base_port + index)
    )
    timescaledb_jobs, create_login, mountpoint = _check_options(index, target, merged)
    normalized = {
        "name": name,
        "host": host,
        "port": port,
        "database": database,
        "user": user,
        "sslmode": sslmode,
        "ca_file": ca_file,
        "exporter_port": exporter_port,
        "host_instance": _text(
            index, target, "host_instance", merged["host_instance"], allow_empty=True
        ),
        "data_mountpoint": mountpoint,
        "timescaledb_jobs": timescaledb_jobs,
        "create_login": create_login,
        "admin_user": _text(index, target, "admin_user", merged["admin_user"]),
        "endpoint": host_port(host, port),
    }
    if secrets:
        normalized["password"] = _check_secret(index, target, "password", merged.get("password"))
        normalized["admin_password"] = _check_secret(
            index, target, "admin_password", merged.get("admin_password")
        )
    normalized["data_source_uri"] = postgres_data_source_uri(normalized)
    return normalized


def postgres_data_source_uri(target):
    """The exporter's DATA_SOURCE_URI: ``host:port/database?options``, no credentials.

    The exporter prepends ``postgresql://user:password@`` itself (from
    DATA_SOURCE_USER_FILE and DATA_SOURCE_PASS_FILE, URL-escaped), so the
    database name and the options are escaped here as the rest of a URL.
    """
    options = [("sslmode", target["sslmode"])]
    if target.get("ca_file"):
        options.append(("sslrootcert", target["ca_file"]))
    options += [
        ("connect_timeout", str(CONNECT_TIMEOUT_SECONDS)),
        ("application_name", APPLICATION_NAME),
    ]
    query = "&".join(f"{key}={quote(str(value), safe='/')}" for key, value in options)
    return (
        f"{host_port(target['host'], target['port'])}/{quote(target['database'], safe='')}?{query}"
    )


def postgres_exporter_targets(targets, base_port=9187, secrets=True, where=""):
    """The targets checked and completed (see the module's docstring), in order.

    ``secrets=False`` leaves the passwords out and unchecked: for the scrape
    job, built on the monitoring host, which needs neither.
    """
    targets = _plain(targets)
    prefix = f"{where}: " if where else ""
    if not isinstance(targets, list) or not targets:
        raise AnsibleFilterError(
            f"{prefix}postgres_exporter_targets must list at least one database "
            "(host, port, database, ...)"
        )
    base = _whole_number(base_port, 1, 65535)
    if base is None:
        raise AnsibleFilterError(
            f"{prefix}postgres_exporter_port must be a whole number from 1 to 65535, "
            f"got {base_port!r}"
        )
    try:
        normalized = [_normalize(i, t, base, secrets) for i, t in enumerate(targets)]
    except AnsibleFilterError as error:
        raise AnsibleFilterError(f"{prefix}{error.message}") from None
    for key, what in (("name", "name"), ("exporter_port", "exporter port")):
        seen = {}
        for index, target in enumerate(normalized):
            if target[key] in seen:
                raise AnsibleFilterError(
                    f"{prefix}postgres_exporter_targets[{index}] ({target['name']}) has the same "
                    f"{what} ({target[key]}) as postgres_exporter_targets[{seen[target[key]]}]: "
                    "each database has an exporter of its own"
                )
            seen[target[key]] = index
    return normalized


def postgres_static_configs(targets, host, address, base_port=9187, labels=None):
    """static_configs entries of one host's targets for job ``postgres`` (module docstring).

    ``address`` is the host's monitoring_address, ``labels`` its monitoring_labels.
    """
    entries = []
    for target in postgres_exporter_targets(targets, base_port, secrets=False, where=str(host)):
        target_labels = {
            **_plain(labels or {}),
            # Where the exporter runs and is scraped: with the host's other
            # targets, what NetworkConnectivityIssue counts.
            "instance": str(host),
            # Where the database runs: what PostgreSQLDown yields to (that
            # host's NetworkConnectivityIssue) and whose file system the disk
            # forecast reads.
            "host_instance": target["host_instance"] or str(host),
            "target": target["name"],
            "database": target["database"],
            # The database's own host:port, as the runbooks and the other
            # exporters of the stack name an endpoint.
            "endpoint": target["endpoint"],
        }
        if target["data_mountpoint"]:
            target_labels["data_mountpoint"] = target["data_mountpoint"]
        entries.append(
            {"targets": [host_port(address, target["exporter_port"])], "labels": target_labels}
        )
    return entries
