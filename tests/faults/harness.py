"""The fault matrix's test bench: the stack's real services on loopback, and faults.

Each test builds what its row needs from these pieces:

- ``render_catalog``: the real rule files and routing tree, rendered once by
  playbooks/render.yml from tests/faults/inventory.yml (time accelerated:
  short `for:`, 1 s scrapes and evaluations).
- ``Recorder``: the places notifications go. Every Alertmanager receiver is
  rewritten into a webhook to it (``/receivers/<name>``), so that a test sees
  which receiver paged, with what; a receiver can be made to fail (a
  destination down).
- ``Service``: one process of a Debian package (prometheus, alertmanager,
  the exporters), with what systemd gives it in production: restarted
  ``restart_sec`` after it dies (``Restart=on-failure``), started again on
  the same data directory.
- ``Prometheus`` and ``Alertmanager``: those services configured as the roles
  configure them (the flags that matter for faults come from the roles'
  defaults, so a change there changes what is tested).
- Faults: ``kill -9`` (``Service.kill``), a full data directory (``tmpfs``),
  a read-only one (``Ext4Image``: ext4 on a loop device, aborted), another
  clock (``FAKETIME``), a peer frozen (``Service.freeze``).

Pages: every notification a receiver got is recorded; ``pages()`` are the
distinct alerts (by receiver, name and labels) that arrived firing,
``duplicates()`` the notifications that repeated an earlier one of the same
group without anything in it having changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = Path(__file__).resolve().parent / "inventory.yml"
FAKETIME_LIBRARY = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def role_default(role: str, name: str) -> Any:
    """A variable of a role's defaults (defaults/main.yml or defaults/main/*.yml)."""
    base = ROOT / "roles" / role / "defaults"
    files = [base / "main.yml"] if (base / "main.yml").exists() else sorted(base.glob("main/*.yml"))
    for path in files:
        values = yaml.load(path.read_text(), Loader=_Loader) or {}
        if name in values:
            return values[name]
    raise KeyError(f"{name} is not a default of role {role}")


class _Loader(yaml.SafeLoader):
    """YAML with Ansible's !unsafe (a plain string here)."""


_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], Any], timeout: float, what: str | Callable[[], str]) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"not within {timeout:.0f} s: {said}")
        time.sleep(0.25)


def http_json(url: str, method: str = "GET", body: Any = None, timeout: float = 5) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read().decode()
    return json.loads(text) if text.strip().startswith(("{", "[")) else text


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except (urllib.error.URLError, OSError):
        return False


# --- The catalog, rendered as site.yml would --------------------------------------------------


def render_catalog(directory: Path) -> Path:
    """Render the monitoring host's configuration into ``directory``; return the host's dir.

    Also a command: ``python3 tests/faults/harness.py DIR`` (what `make faults` runs).
    """
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    result = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(INVENTORY),
            str(ROOT / "playbooks" / "render.yml"),
            "-e",
            f"render_dir={directory}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"rendering the catalog failed:\n{result.stdout[-3000:]}")
    return directory / "faults"


# --- Where notifications go -------------------------------------------------------------------


class Recorder:
    """An HTTP server that records what Alertmanager sends to each receiver."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.failing: set[str] = set()  # receivers that answer 500 (a destination down)
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                receiver = self.path.rsplit("/", 1)[-1]
                with recorder.lock:
                    failing = receiver in recorder.failing
                    recorder.records.append(
                        {"receiver": receiver, "time": time.time(), "body": body, "ok": not failing}
                    )
                self.send_response(HTTPStatus.INTERNAL_SERVER_ERROR if failing else HTTPStatus.OK)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                # A healthy scrape target: the stand-in for every job a test does not run.
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.target = f"127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def delivered(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Notifications a receiver accepted, since ``since``."""
        with self.lock:
            return [r for r in self.records if r["ok"] and r["time"] >= since]

    def alerts(self, since: float = 0.0, status: str = "firing") -> list[tuple[str, dict]]:
        """(receiver, alert) of every alert with ``status`` in an accepted notification."""
        return [
            (record["receiver"], alert)
            for record in self.delivered(since)
            for alert in record["body"].get("alerts", [])
            if alert["status"] == status
        ]

    def relayed(self, since: float = 0.0) -> list[dict]:
        """Alerts the alert relay forwarded (one alert per request, its own format)."""
        return [r["body"]["alert"] for r in self.delivered(since) if "alert" in r["body"]]

    def pages(self, since: float = 0.0, *, watchdog: bool = False) -> dict[tuple, dict]:
        """The distinct alerts that arrived firing: (receiver, labels) -> the first one."""
        seen: dict[tuple, dict] = {}
        for receiver, alert in self.alerts(since):
            if alert["labels"].get("alertname") == "Watchdog" and not watchdog:
                continue
            key = (receiver, tuple(sorted(alert["labels"].items())))
            seen.setdefault(key, alert)
        return seen

    def page_names(self, since: float = 0.0) -> list[str]:
        return sorted(dict(key[1])["alertname"] for key in self.pages(since))

    def duplicates(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Notifications that repeat the previous one of their group unchanged (a notification
        sent twice), but for Alertmanager's deliberate reminders (repeat_interval)."""
        last: dict[tuple, tuple] = {}
        repeated = []
        for record in self.delivered(since):
            body = record["body"]
            if "groupKey" not in body:
                continue  # the relay's own requests: counted by relayed()
            group = (record["receiver"], body["groupKey"])
            state = tuple(
                sorted((a["fingerprint"], a["status"], a["startsAt"]) for a in body["alerts"])
            )
            if last.get(group) == state and not _is_reminder(body):
                repeated.append(record)
            last[group] = state
        return repeated

    def resolved(self, alertname: str, since: float = 0.0) -> list[tuple[str, dict]]:
        """(receiver, alert) of every notification that ``alertname`` resolved."""
        return [
            (receiver, alert)
            for receiver, alert in self.alerts(since, status="resolved")
            if alert["labels"]["alertname"] == alertname
        ]

    def wait_for_resolved(self, alertname: str, since: float = 0.0, timeout: float = 60) -> None:
        wait_for(lambda: self.resolved(alertname, since), timeout, f"{alertname} resolved")

    def wait_for_page(self, alertname: str, since: float = 0.0, timeout: float = 60) -> dict:
        def arrived() -> dict | None:
            for (_receiver, labels), alert in self.pages(since, watchdog=True).items():
                if dict(labels)["alertname"] == alertname:
                    return alert
            return None

        return wait_for(
            arrived,
            timeout,
            lambda: f"{alertname} paged; pages so far: {self.page_names(since)}",
        )


def _is_reminder(body: dict) -> bool:
    # The Watchdog's route repeats every minute by design: that is its heartbeat.
    return all(a["labels"].get("alertname") == "Watchdog" for a in body["alerts"])


# --- Processes, supervised as systemd would -----------------------------------------------------


class Service:
    """A process restarted ``restart_sec`` after it dies, as Restart=on-failure does."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_dir: Path,
        ready_url: str,
        env: dict[str, str] | None = None,
        restart_sec: float = 1.0,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = {**os.environ, **(env or {})}
        self.ready_url = ready_url
        self.restart_sec = restart_sec
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._stopping = False
        self._supervisor: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self, wait: bool = True) -> Service:
        self._stopping = False
        self._spawn()
        if self._supervisor is None or not self._supervisor.is_alive():
            self._supervisor = threading.Thread(target=self._supervise, daemon=True)
            self._supervisor.start()
        if wait:
            self.wait_ready()
        return self

    def _spawn(self) -> None:
        with self._lock:
            log = self.log_path.open("ab")
            log.write(f"--- start {self.starts + 1}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
            log.close()
            self.starts += 1

    def _supervise(self) -> None:
        while not self._stopping:
            process = self.process
            if process is not None and process.poll() is not None and not self._stopping:
                time.sleep(self.restart_sec)
                if not self._stopping:
                    self._spawn()
            time.sleep(0.1)

    def wait_ready(self, timeout: float = 60) -> None:
        wait_for(lambda: answers(self.ready_url), timeout, f"{self.name} ready ({self.log_tail()})")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """kill -9: the supervisor starts it again after restart_sec."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def freeze(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        """A stop, not a failure: not restarted."""
        self._stopping = True
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log_tail(self, lines: int = 15) -> str:
        if not self.log_path.exists():
            return "no log"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed; run scripts/prepare-machine")
    return path


# --- Prometheus and Alertmanager, configured as the roles configure them ------------------------


# Every job the catalog's alerts expect a target for (prometheus_alert_jobs).
CATALOG_JOBS = (
    "node-exporter",
    "docker-exporter",
    "dragonflydb",
    "trading-bot",
    "data-consumer",
    "alertmanager",
    "alert-relay",
    "blackbox",
    "prometheus",
)


class Prometheus(Service):
    """Prometheus with the rendered rule files, scraping the jobs a test gives it, and a
    healthy stand-in (the recorder's /metrics) for every other job of the catalog, so that
    only the fault under test raises anything."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        catalog: Path,
        alertmanagers: list[str],
        jobs: dict[str, list[str]],
        stand_in: str,
        scrape_configs: list[dict] | None = None,
        data_dir: Path | None = None,
        resend_delay: str = "2s",
        extra_flags: list[str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_dir = workdir / name
        shutil.copytree(catalog / "prometheus" / "rules", self.config_dir / "rules")
        self.data_dir = data_dir or workdir / f"{name}-data"
        self.jobs = {job: [stand_in] for job in CATALOG_JOBS if job != "prometheus"}
        self.jobs["prometheus"] = [f"127.0.0.1:{self.port}"]
        self.jobs.update(jobs)
        # Jobs as the roles generate them (the project's filters), in place of a stand-in.
        self.scrape_configs = scrape_configs or []
        for config in self.scrape_configs:
            self.jobs.pop(config["job_name"], None)
        self.metric_relabel: dict[str, list[dict]] = {}
        self.alertmanagers = alertmanagers
        self.write_config()
        argv = [
            binary("prometheus"),
            f"--config.file={self.config_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            # As the prometheus role sets it (roles/prometheus/defaults).
            "--rules.alert.for-grace-period="
            + str(role_default("prometheus", "prometheus_alert_for_grace_period")),
            # How often a firing alert is sent again, and so how long Alertmanager keeps
            # one that is no longer sent (4 x this): 1m in production, accelerated here.
            f"--rules.alert.resend-delay={resend_delay}",
            *(extra_flags or []),
        ]
        super().__init__(name, argv, workdir, f"{self.url}/-/ready")

    def start(self, wait: bool = True) -> Prometheus:
        self.write_config()  # with the jobs as the test left them
        super().start(wait)
        return self

    def write_config(self) -> None:
        config = {
            "global": {
                "scrape_interval": "1s",
                "evaluation_interval": "1s",
                "scrape_timeout": "900ms",
            },
            "rule_files": ["rules/*.yml"],
            # Prometheus sends each batch to every Alertmanager and waits for all: a
            # hung one holds the others' updates for this timeout, which must stay well
            # below an alert's validity (4 resend delays), as 10s is below 4m in production.
            "alerting": {
                "alertmanagers": [
                    {"timeout": "2s", "static_configs": [{"targets": list(self.alertmanagers)}]}
                ]
            }
            if self.alertmanagers
            else {},
            "scrape_configs": [
                {
                    "job_name": job,
                    "static_configs": [
                        {"targets": [target], "labels": labels}
                        for target, labels in (_target(t) for t in targets)
                    ],
                    **(
                        {"metric_relabel_configs": self.metric_relabel[job]}
                        if job in self.metric_relabel
                        else {}
                    ),
                }
                for job, targets in self.jobs.items()
            ]
            + self.scrape_configs,
        }
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    def reload(self) -> None:
        self.write_config()
        http_json(f"{self.url}/-/reload", method="POST")

    def query(self, expr: str) -> list[dict]:
        url = f"{self.url}/api/v1/query?query={urllib.request.quote(expr)}"
        return http_json(url)["data"]["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def alerts(self, state: str = "firing") -> list[dict]:
        return [
            a
            for a in http_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]
            if a["state"] == state
        ]

    def firing(self, alertname: str) -> list[dict]:
        return [a for a in self.alerts() if a["labels"]["alertname"] == alertname]


def _target(target: str | tuple[str, dict]) -> tuple[str, dict]:
    """A scrape target as ``host:port`` or ``(host:port, labels)``."""
    if isinstance(target, tuple):
        return target
    return target, {"instance": "faults"}


class Alertmanager(Service):
    """Alertmanager with the rendered routing tree; every receiver posts to the recorder."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        catalog: Path,
        recorder: Recorder,
        data_dir: Path | None = None,
        peers: list[str] | None = None,
        cluster_port: int | None = None,
        relayed: dict[str, tuple[str, Path]] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.address = f"127.0.0.1:{self.port}"
        self.cluster_port = cluster_port or free_port()
        self.config_dir = workdir / name
        self.config_dir.mkdir(parents=True, exist_ok=True)
        config = yaml.safe_load((catalog / "alertmanager" / "alertmanager.yml").read_text())
        # Every receiver, whatever its channels, posts to the recorder under its own name.
        config["receivers"] = [
            {
                "name": receiver["name"],
                "webhook_configs": [
                    {
                        "url": f"{recorder.url}/receivers/{receiver['name']}",
                        "send_resolved": True,
                        "max_alerts": 0,
                    }
                ],
            }
            for receiver in config["receivers"]
        ]
        # Receivers marked alert_relay post to the relay instead: (its webhook URL, token file).
        for receiver in config["receivers"]:
            if receiver["name"] in (relayed or {}):
                url, token_file = (relayed or {})[receiver["name"]]
                receiver["webhook_configs"] = [
                    {
                        "url": url,
                        "send_resolved": True,
                        "http_config": {"authorization": {"credentials_file": str(token_file)}},
                    }
                ]
        config.pop("templates", None)
        config["global"] = {
            "resolve_timeout": config.get("global", {}).get("resolve_timeout", "5m")
        }
        (self.config_dir / "alertmanager.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.data_dir = data_dir or workdir / f"{name}-data"
        cluster = (
            [f"--cluster.listen-address=127.0.0.1:{self.cluster_port}"]
            + [f"--cluster.peer={peer}" for peer in peers or []]
            # Gossip accelerated; each member waits its position x peer-timeout for the
            # notification log of those before it: 5 s leaves a member that just came
            # back (and a loaded machine) time to hear what the other sent (15s upstream).
            + ["--cluster.peer-timeout=5s", "--cluster.gossip-interval=200ms"]
            if peers is not None
            else ["--cluster.listen-address="]
        )
        argv = [
            binary("prometheus-alertmanager"),
            f"--config.file={self.config_dir / 'alertmanager.yml'}",
            f"--storage.path={self.data_dir}",
            f"--web.listen-address={self.address}",
            # As the alertmanager role sets them (roles/alertmanager/defaults).
            "--data.retention=" + str(role_default("alertmanager", "alertmanager_data_retention")),
            "--data.maintenance-interval="
            + str(role_default("alertmanager", "alertmanager_data_maintenance_interval")),
            *cluster,
        ]
        super().__init__(name, argv, workdir, f"{self.url}/-/ready")

    def alerts(self, active: bool = True) -> list[dict]:
        query = "?active=true&silenced=false&inhibited=false" if active else ""
        return http_json(f"{self.url}/api/v2/alerts{query}")

    def post_alerts(self, alerts: list[dict]) -> None:
        http_json(f"{self.url}/api/v2/alerts", method="POST", body=alerts)

    def silence(self, matchers: dict[str, str], hours: float) -> str:
        now = time.time()
        body = {
            "matchers": [
                {"name": k, "value": v, "isRegex": False, "isEqual": True}
                for k, v in matchers.items()
            ],
            "startsAt": _rfc3339(now),
            "endsAt": _rfc3339(now + hours * 3600),
            "createdBy": "fault matrix",
            "comment": "a silence that must survive the fault",
        }
        return http_json(f"{self.url}/api/v2/silences", "POST", body)["silenceID"]

    def silences(self) -> list[dict]:
        return http_json(f"{self.url}/api/v2/silences")

    def metric(self, name: str) -> float | None:
        """A sample's value; None while it does not answer (a member settling says 503)."""
        try:
            with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
                text = response.read().decode()
        except (urllib.error.URLError, OSError):
            return None
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None


def node_exporter(workdir: Path) -> tuple[Service, str]:
    """The machine's node_exporter (Debian's), as a service of the bench: (service, target)."""
    port = free_port()
    service = Service(
        "node-exporter",
        [
            binary("prometheus-node-exporter"),
            f"--web.listen-address=127.0.0.1:{port}",
            "--no-collector.systemd",
        ],  # no systemd here
        workdir,
        f"http://127.0.0.1:{port}/metrics",
    )
    return service, f"127.0.0.1:{port}"


def only_filesystems_under(path: Path) -> list[dict]:
    """metric_relabel_configs that keep node_exporter's file system series of the mounts
    under ``path`` only: the test's disks, not the machine's own (which may be full)."""
    return [
        {
            "source_labels": ["mountpoint"],
            "regex": f"{path}(/.*)?",
            "target_label": "__tmp_under_test",
            "replacement": "yes",
        },
        {"source_labels": ["mountpoint", "__tmp_under_test"], "regex": ".+;", "action": "drop"},
    ]


# Two critical alerts as Prometheus would send them, for tests that send alerts themselves.
CRITICAL = {
    "alertname": "TradingBotDown",
    "severity": "critical",
    "service": "trading-bot",
    "instance": "bot1",
    "job": "trading-bot",
}
ANOTHER = {
    "alertname": "DataConsumerDown",
    "severity": "critical",
    "service": "data-consumer",
    "instance": "consumer1",
    "job": "data-consumer",
}


class Sender:
    """Sends alerts to Alertmanagers the way Prometheus does: again every ``every`` seconds,
    each valid for ``valid_for`` (4 of those, as Prometheus), until resolved (``resolve``) or
    stopped (``stop``). Each Alertmanager has a loop of its own: one that hangs does not
    delay the others past the alerts' validity, which would resolve them."""

    def __init__(
        self, alertmanagers: list[str], every: float = 1.0, valid_for: float | None = None
    ) -> None:
        self.alertmanagers = alertmanagers
        self.every = every
        self.valid_for = valid_for or 4 * every
        self.firing: dict[str, dict] = {}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(address,), daemon=True)
            for address in alertmanagers
        ]
        for thread in self._threads:
            thread.start()

    def fire(self, labels: dict[str, str], annotations: dict[str, str] | None = None) -> None:
        key = json.dumps(labels, sort_keys=True)
        self.firing[key] = {
            "labels": labels,
            "annotations": annotations or {"summary": "a test alert"},
            "startsAt": _rfc3339(time.time()),
        }
        self._post(self._current())

    def resolve(self, labels: dict[str, str]) -> None:
        alert = self.firing.pop(json.dumps(labels, sort_keys=True))
        self._post([{**alert, "endsAt": _rfc3339(time.time())}])

    def _current(self) -> list[dict]:
        until = _rfc3339(time.time() + self.valid_for)
        return [{**alert, "endsAt": until} for alert in list(self.firing.values())]

    def _post(self, alerts: list[dict]) -> None:
        for address in self.alertmanagers:
            self._post_to(address, alerts)

    @staticmethod
    def _post_to(address: str, alerts: list[dict]) -> None:
        with contextlib.suppress(OSError, urllib.error.URLError):
            http_json(f"http://{address}/api/v2/alerts", "POST", alerts, timeout=2)

    def _run(self, address: str) -> None:
        while not self._stop.wait(self.every):
            self._post_to(address, self._current())

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def _rfc3339(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"


RELAY_TOKEN = "fault-matrix-relay-token"


def alert_relay(workdir: Path, storage: Path, destination: str) -> tuple[Service, str, Path]:
    """The project's alert relay, from its sources, taking receiver critical-alerts and
    forwarding to ``destination``: (service, its webhook URL, the token file)."""
    port = free_port()
    token = workdir / "relay-token"
    token.write_text(RELAY_TOKEN + "\n")
    config = workdir / "relay.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {
                    "retry": {"initial_backoff": "200ms", "max_backoff": "1s", "max_age": "10m"}
                },
                "receivers": {
                    "critical-alerts": {"bearer_token_file": str(token), "destinations": ["sink"]}
                },
                "destinations": {"sink": {"url": destination, "timeout": "2s"}},
            }
        )
    )
    sources = os.pathsep.join(str(ROOT / d / "src") for d in ("alert_relay", "exporter_web"))
    service = Service(
        "alert-relay",
        [
            sys.executable,
            "-m",
            "alert_relay",
            f"--config.file={config}",
            f"--storage.path={storage}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        workdir,
        f"http://127.0.0.1:{port}/-/ready",
        env={"PYTHONPATH": sources},
    )
    return service, f"http://127.0.0.1:{port}/webhooks/critical-alerts", token


# --- Disk faults ----------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A size-limited tmpfs at ``path`` (a disk that can be filled)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> Path:
    """Fill the file system of ``path`` to the last byte; returns the filler to delete."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 4096, 1024, 128, 1):  # whatever the block size
            chunk = b"\0" * size
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, chunk)
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
    return filler


class Ext4Image:
    """An ext4 file system on a loop device, mounted errors=remount-ro, that can be made
    read-only under the processes that use it (``abort``) and repaired (``repair``)."""

    def __init__(self, path: Path, size_mb: int = 64) -> None:
        self.path = path
        self.image = Path(tempfile.mkdtemp(prefix="faults-ext4-")) / "disk.img"
        with self.image.open("wb") as handle:
            handle.truncate(size_mb << 20)
        # -m 0: no blocks reserved for root, so "full" is full for the root-run services too.
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(self.image)], check=True)
        self.path.mkdir(parents=True, exist_ok=True)
        self.mount()

    def mount(self) -> None:
        subprocess.run(
            ["mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.path)], check=True
        )
        shutil.rmtree(self.path / "lost+found", ignore_errors=True)

    def remount_read_only(self) -> None:
        """What the kernel does after an I/O error with errors=remount-ro (possible here only
        while no process holds a file open for writing there)."""
        subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)

    def abort(self) -> None:
        """Read-only from now on, under processes that hold files open for writing (which a
        plain remount refuses). The mount options then say `emergency_ro`, not `ro`: the
        file system alert of node_exporter does not see it (a real error's remount does)."""
        subprocess.run(["mount", "-o", "remount,abort", str(self.path)], check=True)

    def repair(self) -> None:
        """What an operator does: unmount, check, mount again (processes must have let go)."""
        subprocess.run(["umount", str(self.path)], check=True)
        subprocess.run(["e2fsck", "-fy", str(self.image)], capture_output=True, check=False)
        self.mount()

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)
        shutil.rmtree(self.image.parent, ignore_errors=True)


def faketime_env(offset: str) -> dict[str, str]:
    """Environment that runs a (C or Python, not Go) process at another time, e.g. '+1d'."""
    return {"LD_PRELOAD": FAKETIME_LIBRARY, "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


if __name__ == "__main__":
    print(render_catalog(Path(sys.argv[1]).resolve()))
