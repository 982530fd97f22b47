"""Filters for the web configuration (TLS and basic auth) of the stack's services.

Every role builds the same files from the same shared variables (README
"Security"): the host's certificate and key (monitoring_tls_cert,
monitoring_tls_key) and the users (monitoring_web_users). They go to
``<config dir>/web/`` through the role's staged_config call:

- ``server.crt`` (public) and ``server.key`` (secret);
- for the services built on Prometheus' exporter-toolkit (Prometheus,
  Alertmanager, node_exporter) and for the project's Docker exporter, which
  reads the same format, a web config file (secret: it holds the users'
  bcrypt hashes) that names the two by paths relative to itself.

The users' hashes are not made here: the web config's spec carries
``basic_auth_users`` (name -> password), which staged_config's action plugin
(plugins/action/staged_config.py) turns into bcrypt hashes on the controller,
keeping a live hash that still verifies its password so that a rerun changes
nothing. A filter cannot see the live file, and a hash made here would need a
salt that is the same on every run: derived from the password, it would let
one fast HMAC per guess test a password without paying bcrypt's cost.
"""

import yaml
from ansible.errors import AnsibleFilterError

# The controller's requirements.txt pins it; a controller without it can
# still load the other filters, and fails only where a certificate is read.
try:
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
except ImportError as err:
    CRYPTOGRAPHY_IMPORT_ERROR = err
else:
    CRYPTOGRAPHY_IMPORT_ERROR = None

# bcrypt reads only the first 72 bytes of a password; longer ones are refused
# rather than silently cut.
_BCRYPT_MAX_BYTES = 72

# exporter-toolkit decides between HTTP and HTTPS once, when the service
# starts, and rereads the file (users, certificate, key) on every connection
# after that. The file's name says which of the two it is, so that turning
# TLS on or off changes the unit's --web.config.file and so restarts the
# service once, while new passwords and certificates need no restart.
WEB_CONFIG_TLS = "web-config-tls.yml"
WEB_CONFIG_PLAIN = "web-config.yml"
CERT_FILE = "server.crt"
KEY_FILE = "server.key"
CA_FILE = "ca.crt"

_HEADER = (
    "# Managed by Ansible: TLS and basic auth of this service, from monitoring_tls_cert,\n"
    "# monitoring_tls_key and monitoring_web_users (README, Security). Paths are\n"
    "# relative to this file.\n"
)


def _text(value):
    return "" if value is None else str(value).strip()


def _public_key_bytes(key):
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_pair(cert, key, where):
    """Fail unless `cert` is PEM certificates and `key` the unencrypted PEM key of the first.

    The messages never quote the key, nor the library's own words about it.
    """
    if CRYPTOGRAPHY_IMPORT_ERROR:
        raise AnsibleFilterError(
            f"{where}: checking monitoring_tls_cert and monitoring_tls_key needs the Python "
            f"package cryptography on the controller ({CRYPTOGRAPHY_IMPORT_ERROR})"
        )
    try:
        certificates = x509.load_pem_x509_certificates(cert.encode())
    except ValueError:
        raise AnsibleFilterError(
            f"{where}: monitoring_tls_cert is not a PEM certificate (-----BEGIN CERTIFICATE-----)"
        ) from None
    try:
        private_key = serialization.load_pem_private_key(key.encode(), password=None)
    except TypeError:
        raise AnsibleFilterError(
            f"{where}: monitoring_tls_key is encrypted; the services read only unencrypted keys "
            "(keep it in ansible-vault instead)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise AnsibleFilterError(
            f"{where}: monitoring_tls_key is not a PEM private key "
            "(-----BEGIN ... PRIVATE KEY-----)"
        ) from None
    if _public_key_bytes(certificates[0].public_key()) != _public_key_bytes(
        private_key.public_key()
    ):
        raise AnsibleFilterError(
            f"{where}: monitoring_tls_key is not the key of monitoring_tls_cert "
            f"(certificate subject {certificates[0].subject.rfc4514_string()})"
        )


def web_tls_files(tls_cert, tls_key, where, directory="web"):
    """The certificate and key as staged_config ``files``; {} when neither is set.

    The certificate (with its chain, as given) is public, mode 0644; the key
    is a secret file, never diffed. Both or neither must be set, and the key
    must belong to the certificate. ``where`` (e.g. host/service) names the
    place in error messages.
    """
    cert, key = _text(tls_cert), _text(tls_key)
    if not cert and not key:
        return {}
    if not cert or not key:
        missing = "monitoring_tls_key" if cert else "monitoring_tls_cert"
        raise AnsibleFilterError(
            f"{where}: monitoring_tls_cert and monitoring_tls_key go together; {missing} is not set"
        )
    _check_pair(cert, key, where)
    return {
        f"{directory}/{CERT_FILE}": {"content": cert + "\n", "mode": "0644"},
        f"{directory}/{KEY_FILE}": {"content": key + "\n", "diff": False},
    }


def web_ca_files(tls_ca, directory="web"):
    """The CA the clients verify the certificates with, as staged_config ``files``.

    ``{directory}/ca.crt`` (public, mode 0644), or {} when ``tls_ca`` is empty.
    """
    ca = _text(tls_ca)
    if not ca:
        return {}
    return {f"{directory}/{CA_FILE}": {"content": ca + "\n", "mode": "0644"}}


def _users(users, where):
    """The users as {name: password}, checked; the messages never show a password."""
    if users in (None, ""):
        return {}
    if not isinstance(users, dict):
        raise AnsibleFilterError(
            f"{where}: monitoring_web_users must map user names to passwords, "
            f"got a {type(users).__name__}"
        )
    checked = {}
    for key, password in users.items():
        name = str(key)
        if not name or ":" in name or name != name.strip():
            raise AnsibleFilterError(
                f"{where}: monitoring_web_users has the user name {name!r}: basic auth "
                "needs a non-empty name without ':' or surrounding spaces"
            )
        if isinstance(password, dict | list) or _text(password) == "":
            raise AnsibleFilterError(
                f"{where}: monitoring_web_users[{name}] needs a password (a string)"
            )
        if str(password) != str(password).strip():
            # Prometheus trims a password file: the password would not match.
            raise AnsibleFilterError(
                f"{where}: the password of monitoring_web_users[{name}] starts or ends with "
                "white space"
            )
        if len(str(password).encode()) > _BCRYPT_MAX_BYTES:
            raise AnsibleFilterError(
                f"{where}: the password of monitoring_web_users[{name}] is longer than bcrypt's "
                f"{_BCRYPT_MAX_BYTES} bytes"
            )
        checked[name] = str(password)
    return checked


def web_config_path(tls_cert, users, directory="web"):
    """Path (under the config directory) of the web config file; '' when there is none.

    Cheap, for the unit's --web.config.file: nothing is hashed here.
    """
    if _text(tls_cert):
        return f"{directory}/{WEB_CONFIG_TLS}"
    if users:
        return f"{directory}/{WEB_CONFIG_PLAIN}"
    return ""


def web_config_files(tls_cert, tls_key, users, where, directory="web", rounds=10):
    """staged_config ``files`` of an exporter-toolkit web config; {} when nothing is set.

    The certificate and key (web_tls_files) and the web config file
    (web_config_path), which names them relative to itself. Its spec lists
    every user of ``users`` ({name: password}) under ``basic_auth_users``,
    which staged_config's action plugin writes into it as bcrypt hashes of
    ``rounds`` rounds. The web config is a secret file.
    """
    files = web_tls_files(tls_cert, tls_key, where, directory)
    checked = _users(users, where)
    path = web_config_path(tls_cert, checked, directory)
    if not path:
        return {}
    config = {}
    if files:
        config["tls_server_config"] = {"cert_file": CERT_FILE, "key_file": KEY_FILE}
    text = _HEADER + (
        yaml.safe_dump(config, sort_keys=False, default_flow_style=False) if config else ""
    )
    files[path] = {"content": text, "diff": False}
    if checked:
        files[path].update(
            basic_auth_users=dict(sorted(checked.items())), bcrypt_rounds=int(rounds)
        )
    return files


def web_client_password(users, user):
    """The password of `user`, the one Prometheus and the playbooks use; '' without users."""
    if not users:
        return ""
    checked = _users(users, "monitoring_web_users")
    if str(user) not in checked:
        raise AnsibleFilterError(
            f"monitoring_web_client_user is {user!r}, which monitoring_web_users does not list: "
            "Prometheus, the roles' reloads and the operations playbooks authenticate as that user"
        )
    return checked[str(user)]


def web_secrets(tls_key, users):
    """Every value of the web settings that must never be shown: the key and the passwords."""
    values = [_text(tls_key)] + [str(p) for p in (users or {}).values() if p not in (None, "")]
    return sorted({value for value in values if value})


class FilterModule:
    def filters(self):
        return {
            "web_tls_files": web_tls_files,
            "web_ca_files": web_ca_files,
            "web_config_path": web_config_path,
            "web_config_files": web_config_files,
            "web_client_password": web_client_password,
            "web_secrets": web_secrets,
        }
