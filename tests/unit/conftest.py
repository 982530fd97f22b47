"""Shared fixtures: run the project's modules in-process, start real services.

The modules are tested against real Prometheus and Alertmanager processes
(Debian's packages, installed on the controller by scripts/prepare-machine),
listening on loopback ports chosen at random.
"""

import io
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import redirect_stdout
from pathlib import Path

import ansible.module_utils
import pytest
from ansible.module_utils.testing import patch_module_args

ROOT = Path(__file__).resolve().parents[2]

# Make `ansible.module_utils.<name>` resolve to plugins/module_utils, as
# Ansible does when it packages a module, and the modules importable by name.
ansible.module_utils.__path__.append(str(ROOT / "plugins" / "module_utils"))
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
    binary = shutil.which("prometheus-alertmanager") or require_binary("alertmanager")
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(ALERTMANAGER_CONFIG.format(receiver="initial"))
    service = Service(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        config,
        f"http://127.0.0.1:{port}",
        open(tmp_path / "alertmanager.log", "wb"),  # noqa: SIM115 - closed by stop()
    )
    yield service
    service.stop()
