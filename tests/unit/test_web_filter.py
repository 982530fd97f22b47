"""The web filters: TLS and basic-auth files every role writes from the shared variables.

Pure checks of the filters, then their files in use: a real Prometheus and
Alertmanager (Debian's, on the controller) serve HTTPS with basic auth from
them, promtool accepts them, and config_reload reaches both through them.
"""

import base64
import importlib.util
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import config_reload
import pytest
import web
import yaml
from ansible.errors import AnsibleFilterError
from conftest import ModuleFailed, free_port, require_binary, run_module
from cryptography.hazmat.primitives import serialization

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import pki

# staged_config's action plugin, which turns basic_auth_users into hashes (loaded by
# path: the module of the same name is on sys.path too).
_ACTION = Path(__file__).resolve().parents[2] / "plugins" / "action" / "staged_config.py"
_spec = importlib.util.spec_from_file_location("staged_config_action", _ACTION)
staged_config_action = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(staged_config_action)

USERS = {"prometheus": 'scrape-pw $with "quotes"', "grafana": "grafana-pw"}


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A CA and two certificates for 127.0.0.1 (both hosts named `mon1`)."""
    ca_cert, ca_key = pki.make_ca()
    cert, key = pki.make_server_cert(ca_cert, ca_key, "mon1")
    other_cert, other_key = pki.make_server_cert(ca_cert, ca_key, "mon1")
    return {
        "ca": ca_cert,
        "cert": cert,
        "key": key,
        "other_cert": other_cert,
        "other_key": other_key,
    }


def resolved(spec, live_text=""):
    """A file spec as the module gets it: users hashed by the action plugin."""
    return staged_config_action.with_hashes(spec, live_text) if isinstance(spec, dict) else spec


# --- the files ------------------------------------------------------------------------


def test_nothing_set_means_no_files_and_no_flag():
    assert web.web_config_files("", "", {}, "mon1/prometheus") == {}
    assert web.web_config_files(None, None, None, "mon1/prometheus") == {}
    assert web.web_config_path("", {}) == ""
    assert web.web_tls_files("", "", "mon1/prometheus") == {}
    assert web.web_secrets("", {}) == []


def test_tls_and_users_give_certificate_key_and_a_web_config_naming_them(tls):
    files = web.web_config_files(tls["cert"], tls["key"], USERS, "mon1/prometheus")

    assert sorted(files) == ["web/server.crt", "web/server.key", "web/web-config-tls.yml"]
    assert files["web/server.crt"] == {"content": tls["cert"].strip() + "\n", "mode": "0644"}
    assert files["web/server.key"] == {"content": tls["key"].strip() + "\n", "diff": False}
    spec = files["web/web-config-tls.yml"]
    assert spec["diff"] is False
    # The passwords go to the action plugin, never into the content.
    assert spec["basic_auth_users"] == USERS
    assert not any(password in spec["content"] for password in USERS.values())
    config = yaml.safe_load(resolved(spec)["content"])
    assert config["tls_server_config"] == {"cert_file": "server.crt", "key_file": "server.key"}
    hashes = config["basic_auth_users"]
    assert sorted(hashes) == ["grafana", "prometheus"]
    for user, password in USERS.items():
        assert hashes[user].startswith("$2b$10$")
        assert bcrypt.checkpw(password.encode(), hashes[user].encode())
    assert web.web_config_path(tls["cert"], USERS) == "web/web-config-tls.yml"


def test_the_filter_derives_nothing_from_a_password(tls):
    first = web.web_config_files(tls["cert"], tls["key"], USERS, "mon1/prometheus")
    other = web.web_config_files(tls["cert"], tls["key"], USERS, "mon1/alertmanager")

    # The same files for every service: no hash, no salt, nothing computed from a password.
    assert first == other
    assert "bcrypt_hash" not in web.FilterModule().filters()


def test_the_ca_file_is_public_and_absent_without_a_ca(tls):
    assert web.web_ca_files("") == {}
    assert web.web_ca_files(tls["ca"] + "\n\n") == {
        "web/ca.crt": {"content": tls["ca"].strip() + "\n", "mode": "0644"}
    }


def test_users_without_tls_get_the_plain_web_config():
    files = web.web_config_files("", "", USERS, "app1/node")

    assert list(files) == ["web/web-config.yml"]
    config = yaml.safe_load(resolved(files["web/web-config.yml"])["content"])
    assert "tls_server_config" not in config
    assert sorted(config["basic_auth_users"]) == ["grafana", "prometheus"]
    assert web.web_config_path("", USERS) == "web/web-config.yml"


def test_tls_without_users_has_no_basic_auth(tls):
    files = web.web_config_files(tls["cert"], tls["key"], {}, "app1/node")

    config = yaml.safe_load(files["web/web-config-tls.yml"]["content"])
    assert "basic_auth_users" not in config


@pytest.mark.parametrize(
    ("cert", "key", "message"),
    [
        ("cert", "", "monitoring_tls_key is not set"),
        ("", "key", "monitoring_tls_cert is not set"),
        ("not a certificate", "key", "monitoring_tls_cert is not a PEM certificate"),
        ("cert", "not a key", "monitoring_tls_key is not a PEM private key"),
        ("cert", "other_key", "monitoring_tls_key is not the key of monitoring_tls_cert"),
    ],
)
def test_a_wrong_certificate_or_key_names_the_variable_and_never_the_key(tls, cert, key, message):
    cert_text = tls.get(cert, cert)
    key_text = tls.get(key, key)

    with pytest.raises(AnsibleFilterError, match=message) as failure:
        web.web_tls_files(cert_text, key_text, "app1/node")

    assert "app1/node" in str(failure.value)
    key_body = tls["other_key"].splitlines()[1]
    assert key_body not in str(failure.value)


def test_an_encrypted_key_is_refused(tls):
    key = serialization.load_pem_private_key(tls["key"].encode(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    ).decode()

    with pytest.raises(AnsibleFilterError, match="monitoring_tls_key is encrypted"):
        web.web_tls_files(tls["cert"], encrypted, "app1/node")


@pytest.mark.parametrize(
    ("users", "message"),
    [
        ({"a:b": "pw"}, "user name 'a:b'"),
        ({"": "pw"}, "user name ''"),
        ({"prometheus": ""}, r"monitoring_web_users\[prometheus\] needs a password"),
        ({"prometheus": {"nested": 1}}, r"monitoring_web_users\[prometheus\] needs a password"),
        ({"prometheus": " padded"}, "starts or ends with white space"),
        ({"prometheus": "x" * 73}, "longer than bcrypt's 72 bytes"),
        (["prometheus"], "must map user names to passwords"),
    ],
)
def test_wrong_users_are_refused_without_showing_a_password(users, message):
    with pytest.raises(AnsibleFilterError, match=message) as failure:
        web.web_config_files("", "", users, "app1/node")

    assert "x" * 73 not in str(failure.value)
    assert "padded" not in str(failure.value)


def test_the_client_password_is_the_client_users_own():
    assert web.web_client_password(USERS, "prometheus") == USERS["prometheus"]
    assert web.web_client_password({}, "prometheus") == ""
    with pytest.raises(AnsibleFilterError, match="monitoring_web_client_user is 'scraper'"):
        web.web_client_password(USERS, "scraper")


def test_secrets_are_the_key_and_every_password(tls):
    secrets = web.web_secrets(tls["key"], USERS)

    assert sorted(secrets) == sorted([tls["key"].strip(), *USERS.values()])


# --- the files in use: real services --------------------------------------------------


def write_files(directory, files):
    for relpath, spec in files.items():
        path = directory / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(resolved(spec)["content"] if isinstance(spec, dict) else spec)


def https_get(url, ca, user=None, password=None):
    """(status, body) of a GET through TLS verified against `ca`, with basic auth if given."""
    context = ssl.create_default_context(cadata=ca)
    request = urllib.request.Request(url)
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def wait_for_tls(url, ca, process, deadline=30):
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            https_get(url, ca)
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer over TLS in {deadline}s")


@pytest.fixture(params=["prometheus", "alertmanager"])
def protected_service(request, tmp_path, tls):
    """Prometheus or Alertmanager serving HTTPS with basic auth from the filters' files."""
    files = web.web_config_files(tls["cert"], tls["key"], USERS, f"mon1/{request.param}")
    write_files(tmp_path, files)
    port = free_port()
    if request.param == "prometheus":
        (tmp_path / "prometheus.yml").write_text("global: {}\n")
        argv = [
            require_binary("prometheus"),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            "--web.enable-lifecycle",
        ]
    else:
        (tmp_path / "alertmanager.yml").write_text("route: {receiver: r}\nreceivers: [{name: r}]\n")
        argv = [
            shutil.which("prometheus-alertmanager") or require_binary("alertmanager"),
            f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'data'}",
            "--cluster.listen-address=",
        ]
    argv += [
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.config.file={tmp_path / 'web' / 'web-config-tls.yml'}",
    ]
    with open(tmp_path / "service.log", "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        url = f"https://127.0.0.1:{port}"
        try:
            wait_for_tls(url + "/-/ready", tls["ca"], process)
            # The CA file as the roles write it for their reload handlers.
            (ca_file,) = web.web_ca_files(tls["ca"]).values()
            (tmp_path / "ca.crt").write_text(ca_file["content"])
            yield request.param, url, tmp_path
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_the_service_refuses_plain_http_and_unauthenticated_requests(protected_service, tls):
    _name, url, _directory = protected_service

    assert https_get(url + "/metrics", tls["ca"])[0] == 401
    assert https_get(url + "/metrics", tls["ca"], "prometheus", "wrong")[0] == 401
    assert https_get(url + "/metrics", tls["ca"], "grafana", USERS["grafana"])[0] == 200
    plain = url.replace("https://", "http://")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(plain + "/metrics", timeout=5)
    assert refused.value.code == 400


def test_config_reload_reaches_the_service_through_tls_and_basic_auth(protected_service):
    name, url, directory = protected_service
    reach = {"url": url, "ca_path": str(directory / "ca.crt"), "ready_timeout": 5}

    result = run_module(
        config_reload,
        {
            **reach,
            "service": name,
            "url_username": "prometheus",
            "url_password": USERS["prometheus"],
        },
    )

    assert result["changed"] is True
    with pytest.raises(ModuleFailed) as failure:
        run_module(
            config_reload,
            {**reach, "service": name, "url_username": "prometheus", "url_password": "wrong"},
        )
    assert "HTTP 401" in failure.value.result["msg"]
    assert "wrong" not in failure.value.result["msg"]


def test_promtool_accepts_the_web_config_and_rejects_a_foreign_key(tmp_path, tls):
    promtool = require_binary("promtool")
    files = web.web_config_files(tls["cert"], tls["key"], USERS, "mon1/prometheus")
    write_files(tmp_path, files)
    config = tmp_path / "web" / "web-config-tls.yml"

    accepted = subprocess.run([promtool, "check", "web-config", str(config)], check=False)
    (tmp_path / "web" / "server.key").write_text(tls["other_key"])
    rejected = subprocess.run(
        [promtool, "check", "web-config", str(config)], capture_output=True, check=False
    )

    assert accepted.returncode == 0
    assert rejected.returncode != 0
