"""Shared fixtures: run the project's modules in-process, start real services.

The modules are tested against real Prometheus and Alertmanager processes
(Debian's packages, installed on the controller by scripts/prepare-machine),
listening on loopback ports chosen at random.
"""

import importlib.util
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

ROOT = Path(__file__).resolve().parents[2]

# The collection's own paths (ansible_collections.prometheus_alerting.stack...,
# through the symlink ansible.cfg uses), as the modules import their
# module_utils; and the modules and filters importable by name.
sys.path.insert(0, str(ROOT / ".collections"))
sys.path.insert(0, str(ROOT / "plugins" / "modules"))
sys.path.insert(0, str(ROOT / "plugins" / "filter"))


class ModuleFailed(Exception):
    def __init__(self, result):
        super().__init__(result.get("msg"))
        self.result = result


def run_module(module, args, check_mode=False, diff=False):
    """Run an Ansible module's main() in-process; return its result dict.

    Raises ModuleFailed with the result when the module calls fail_json.
    """
    module_args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    stdout = io.StringIO()
    with patch_module_args(module_args), redirect_stdout(stdout), pytest.raises(SystemExit):
        module.main()
    result = json.loads(stdout.getvalue())
    if result.get("failed"):
        raise ModuleFailed(result)
    return result


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def wait_until_ready(url, process, deadline=30):
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            http_get(url + "/-/ready", timeout=1)
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready in {deadline}s")


def require_binary(name):
    path = shutil.which(name)
    if path is None:
        # Not a skip: the machine preparation installs these; a missing one is a broken setup.
        pytest.fail(f"{name} is not installed; run scripts/prepare-machine")
    return path


class Service:
    """A real service process with a config file the test can rewrite."""

    def __init__(self, argv, config, url, log):
        self.config = config
        self.url = url
        self._log = log
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        wait_until_ready(url, self.process)

    @property
    def pid(self):
        return self.process.pid

    def write_config(self, text):
        self.config.write_text(text)

    def reload(self, text):
        """Write a new config and make the service load it (POST /-/reload)."""
        self.write_config(text)
        request = urllib.request.Request(self.url + "/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=5):
            pass

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


PROMETHEUS_CONFIG = """\
global:
  scrape_interval: 1m
  external_labels:
    marker: {marker}
"""

ALERTMANAGER_CONFIG = """\
route:
  receiver: {receiver}
receivers:
  - name: {receiver}
"""


@pytest.fixture
def prometheus(tmp_path):
    binary = require_binary("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(PROMETHEUS_CONFIG.format(marker="initial"))
    service = Service(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        config,
        f"http://127.0.0.1:{port}",
        open(tmp_path / "prometheus.log", "wb"),  # noqa: SIM115 - closed by stop()
    )
    yield service
    service.stop()


@pytest.fixture
def alertmanager(tmp_path):
    service = start_alertmanager(tmp_path, ALERTMANAGER_CONFIG.format(receiver="initial"))
    yield service
    service.stop()


def start_alertmanager(directory, config_text):
    """An Alertmanager on a free loopback port, without gossip, its config in `directory`."""
    binary = shutil.which("prometheus-alertmanager") or require_binary("alertmanager")
    port = free_port()
    config = directory / "alertmanager.yml"
    config.write_text(config_text)
    return Service(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={directory / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        config,
        f"http://127.0.0.1:{port}",
        open(directory / "alertmanager.log", "wb"),
    )


def run_local_playbook(playbook, extra_vars, env=None, verbose=False):
    """Run a playbook on this machine (connection local) with the project's ansible.cfg.

    The plays target `all`, which is localhost here; extra_vars go in as JSON.
    """
    argv = [
        "ansible-playbook",
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        "-e",
        json.dumps(extra_vars),
        str(playbook),
    ]
    environment = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    environment.update(env or {})
    return subprocess.run(
        [*argv, "-v"] if verbose else argv,
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )


def start_prometheus(directory, config_text, files=None, **values):
    """A Prometheus on a free loopback port, with its config (and rule files) in `directory`.

    `config_text` is formatted with `values` and {port}, the port Prometheus listens on.
    """
    binary = require_binary("prometheus")
    port = free_port()
    for name, text in (files or {}).items():
        (directory / name).write_text(text)
    config = directory / "prometheus.yml"
    config.write_text(config_text.format(port=port, **values))
    return Service(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        config,
        f"http://127.0.0.1:{port}",
        # Closed by Service.stop().
        open(directory / "prometheus.log", "wb"),
    )


def wait_for(check, deadline=15, what="condition"):
    """Poll `check()` until it returns a truthy value; return that value."""
    stop = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= stop:
            raise AssertionError(f"timed out after {deadline}s waiting for {what}")
        time.sleep(0.2)


# A Prometheus with something to report: one alert firing (vector(1)), one
# pending (a `for:` that never ends), one recording rule that fails at every
# evaluation, a target that is up (itself) and one that is down (a closed port).
LOADED_PROMETHEUS_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
scrape_configs:
  - job_name: self
    static_configs: [{{targets: ["127.0.0.1:{port}"]}}]
  - job_name: closed
    static_configs: [{{targets: ["127.0.0.1:{closed_port}"]}}]
"""
LOADED_PROMETHEUS_RULES = """\
groups:
  - name: ops-test.rules
    rules:
      - alert: AlwaysFiring
        expr: vector(1)
        labels: {severity: warning, service: ops}
        annotations: {summary: always firing}
      - alert: AlwaysPending
        expr: vector(1)
        for: 1h
        labels: {severity: critical}
  - name: ops-test-records.rules
    rules:
      - record: ops:many_to_one
        # Two series on the left, no group_left: fails at every evaluation.
        expr: >-
          (label_replace(vector(1), "a", "x", "", "") or label_replace(vector(1), "a", "y", "", ""))
          * on() vector(1)
"""


@pytest.fixture(scope="session")
def loaded_prometheus(tmp_path_factory):
    """A Prometheus whose rules have been evaluated and targets scraped at least once.

    Shared by every test that only reads it: Prometheus takes about 5 s to sync its
    first targets.
    """
    directory = tmp_path_factory.mktemp("loaded-prometheus")
    service = start_prometheus(
        directory,
        LOADED_PROMETHEUS_CONFIG,
        {"rules.yml": LOADED_PROMETHEUS_RULES},
        closed_port=free_port(),
    )

    def settled():
        rules = json.loads(http_get(service.url + "/api/v1/rules"))["data"]["groups"]
        targets = json.loads(http_get(service.url + "/api/v1/targets"))["data"]["activeTargets"]
        healths = [r["health"] for g in rules for r in g["rules"]] + [t["health"] for t in targets]
        return len(targets) == 2 and "unknown" not in healths

    try:
        wait_for(settled, what="the first rule evaluation and scrapes")
        yield service
    finally:
        service.stop()


@pytest.fixture
def webhook_receiver(tmp_path):
    """The project's webhook receiver fixture on a free port; .url takes webhooks."""
    port = free_port()
    log = open(tmp_path / "webhook.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "fixtures" / "webhook_receiver.py"),
            "--listen",
            f"127.0.0.1:{port}",
            "--file",
            str(tmp_path / "notifications.jsonl"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(base + "/-/healthy"), what="the webhook receiver")
        yield WebhookReceiver(base)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _answers(url):
    try:
        http_get(url, timeout=1)
        return True
    except (urllib.error.URLError, OSError):
        return False


class WebhookReceiver:
    def __init__(self, base):
        self.url = base + "/webhooks/test"
        self._base = base

    def alerts(self):
        """Every alert of every notification received so far."""
        records = json.loads(http_get(self._base + "/notifications"))
        return [alert for record in records for alert in record["body"]["alerts"]]


def documented_options(module):
    """The options a module documents, its doc fragments' (plugins/doc_fragments) included."""
    documentation = yaml.safe_load(module.DOCUMENTATION)
    options = {}
    for name in documentation.get("extends_documentation_fragment") or []:
        path = ROOT / "plugins" / "doc_fragments" / f"{name.rsplit('.', 1)[-1]}.py"
        spec = importlib.util.spec_from_file_location(f"doc_fragment_{name}", path)
        fragment = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(fragment)
        options.update(yaml.safe_load(fragment.ModuleDocFragment.DOCUMENTATION)["options"])
    options.update(documentation.get("options") or {})
    return options


def assert_documented(module):
    """The module's DOCUMENTATION describes exactly its ARGUMENT_SPEC."""
    documented = documented_options(module)
    assert set(documented) == set(module.ARGUMENT_SPEC)
    for name, spec in module.ARGUMENT_SPEC.items():
        doc = documented[name]
        for key in ("type", "default", "choices", "required", "elements", "aliases"):
            if key in spec or key in doc:
                assert doc.get(key) == spec.get(key), f"{name}: {key}"
