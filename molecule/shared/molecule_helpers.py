"""Helpers for the Molecule scenarios' testinfra tests.

Each scenario's tests/conftest.py puts this directory on sys.path.
"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[2]
# How Ansible names the project's roles in its output.
COLLECTION = "prometheus_alerting.stack."


def _playbook_command(playbook, args, extra_vars, env_extra=None):
    argv = [
        "ansible-playbook",
        "-i",
        os.environ["MOLECULE_INVENTORY_FILE"],
        str(PROJECT / playbook),
        *args,
    ]
    if extra_vars is not None:
        argv += ["-e", json.dumps(extra_vars)]
    env = dict(os.environ, ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env.update(env_extra or {})
    return argv, env


def run_playbook(playbook, *args, extra_vars=None, env=None):
    """Run a playbook against the scenario's inventory; return (rc, combined output)."""
    argv, environment = _playbook_command(playbook, args, extra_vars, env)
    result = subprocess.run(argv, capture_output=True, text=True, env=environment, check=False)
    return result.returncode, result.stdout + result.stderr


def run_playbook_killed_at(host, path, playbook, *args, extra_vars=None, timeout=300):
    """Run a playbook and kill it (SIGKILL, every process of it) once `path` exists on the target.

    Returns the output up to the kill. Fails if the playbook ends before `path` appears.
    The target's container is asked directly (`docker exec`, tens of milliseconds), not
    through testinfra's Ansible connection (a second or more): a pipelined run goes from
    writing a reload marker to its reload handler in well under a second, and a handler's
    module that has started runs on in the container after the kill.
    """
    argv, env = _playbook_command(playbook, args, extra_vars)
    probe = ["docker", "exec", host.backend.get_hostname(), "test", "-e", path]
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while subprocess.run(probe, check=False).returncode:
            assert process.poll() is None, f"the run ended before {path} appeared"
            assert time.monotonic() < deadline, f"{path} did not appear in {timeout}s"
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        log.seek(0)
        return log.read()


def recap(output):
    """The PLAY RECAP counters of one host: {'ok': 3, 'changed': 1, ...}."""
    match = re.search(r"^\S+\s+:\s+(ok=.*)$", output, re.MULTILINE)
    assert match, f"no PLAY RECAP in:\n{output}"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


def changed_tasks(output):
    """Names of the tasks and handlers that reported `changed`, in order, once each.

    A role's task shows as `<role> : <task>`: Ansible's `prometheus_alerting.stack.`
    before the role's name is left out.
    """
    tasks, current = [], None
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            current = line.split("[", 1)[1].rsplit("]", 1)[0].removeprefix(COLLECTION)
        elif line.startswith("changed:") and current and current not in tasks:
            tasks.append(current)
    return tasks


def get_json(host, url):
    """GET a JSON document from inside the target container."""
    return json.loads(host.check_output("curl -fsS --max-time 10 %s", url))


def notifications(host, alertname, status):
    """(record, alert) pairs the webhook receiver stand-in recorded for an alert and status."""
    found = []
    for record in get_json(host, "http://127.0.0.1:8080/notifications"):
        for alert in record["body"].get("alerts", []):
            if alert["labels"].get("alertname") == alertname and alert["status"] == status:
                found.append((record, alert))
    return found


def wait_for_notification(host, alertname, status, timeout=120):
    """The first (record, alert) the webhook receiver stand-in got for an alert and status."""
    return wait_for(
        lambda: next(iter(notifications(host, alertname, status)), None),
        timeout=timeout,
        what=f"{alertname} ({status}) at the receiver",
    )


@contextmanager
def stopped(host, unit):
    """The unit stopped on the target for the block; started again after it."""
    host.run_expect([0], f"systemctl stop {unit}")
    try:
        yield
    finally:
        host.run_expect([0], f"systemctl start {unit}")


def get_text(host, url):
    return host.check_output("curl -fsS --max-time 10 %s", url)


def metric_value(text, name):
    """The value of an unlabelled sample in exposition text."""
    match = re.search(rf"^{re.escape(name)}\s+(\S+)$", text, re.MULTILINE)
    assert match, f"{name} not found"
    return float(match.group(1))


def file_checksums(host, directory):
    """{path: sha256} of every file under a directory of the target."""
    output = host.check_output(
        "find %s -type f -exec sha256sum {} + | sort -k 2", shlex.quote(directory)
    )
    return {line.split()[1]: line.split()[0] for line in output.splitlines()}


def wait_for(check, timeout=120, interval=2, what="condition"):
    """Poll `check()` until it returns a truthy value; return that value.

    `what` describes the condition; a callable is asked at the timeout, so the
    message can tell what the last poll saw.
    """
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    what = what() if callable(what) else what
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


# Names of the containers the tests start on the CI host's engine. The engine
# is shared by the scenarios that run in parallel, and each one's Docker
# exporter sees the others' fault fixtures.
FIXTURE_CONTAINER = re.compile(r"-fixture-[0-9a-f]{8}$")


def about_a_fixture_container(alert):
    """Whether an alert is about a container that some scenario's test started."""
    return bool(FIXTURE_CONTAINER.search(alert["labels"].get("name", "")))


@contextmanager
def exited_container(prefix, code=3):
    """A container on the CI host's engine that ran and exited with `code`; removed after."""
    name = f"{prefix}-fixture-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [
            "docker",
            "run",
            "--name",
            name,
            "--label",
            "dxtest=1",
            "debian:bookworm",
            "sh",
            "-c",
            f"exit {code}",
        ],
        check=False,
        capture_output=True,
    )
    try:
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)


class _CatalogLoader(yaml.SafeLoader):
    """The catalog's !unsafe strings (Prometheus templates) as plain strings."""


_CatalogLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def catalog_groups():
    """The catalog's rule groups (roles/prometheus/defaults/main/alerts_*.yml): name, rules."""
    for path in sorted((PROJECT / "roles/prometheus/defaults/main").glob("alerts_*.yml")):
        yield from yaml.load(path.read_text(), Loader=_CatalogLoader).values()


def catalog_metrics(prefix):
    """Every metric name starting with `prefix` that an alert of the catalog reads (not a
    job name of the templates, `{{ job.dragonflydb }}`, nor a word of a comment)."""
    names = set()
    for group in catalog_groups():
        for rule in group["rules"]:
            names.update(re.findall(rf"(?<![\w.])({prefix}[A-Za-z0-9_]+)", rule["expr"]))
    return names


if __name__ == "__main__":
    # `python3 molecule/shared/molecule_helpers.py redis_`: the names, one per line, for
    # scenarios verified by Ansible (a pipe lookup).
    print("\n".join(sorted(catalog_metrics(sys.argv[1]))))
