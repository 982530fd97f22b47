"""Silences older than Alertmanager keeps: a 7-day report against real Alertmanagers.

Alertmanager keeps a silence for its --data.retention after the silence ended,
then forgets it. A 7-day report read from an Alertmanager that keeps them 120h
(Debian's default) cannot know the silences of days 6 and 7: it must say so,
not count that firing time as unsilenced.

The silence is made 6 days old in a real Alertmanager: it is created at the
real time, Alertmanager is stopped (it writes its snapshot), every time in the
snapshot (start, end, update, expiry) is moved 6 days back, exactly what an
Alertmanager whose clock ran 6 days behind would have written, and
Alertmanager is started at the real time on that data directory. libfaketime
cannot do this here: Debian's Alertmanager is a Go program, which reads the
clock through the vDSO, not through the C library libfaketime replaces.
Alertmanager forgets expired silences in its maintenance (every 15 minutes and
at shutdown), not when it loads them: it is stopped and started once more, as
an Alertmanager that ran through those 6 days would be.

The history: BackupFailed fired 3 h from about 6 days 1 h ago (the silence,
30 minutes, lies inside it) and 1 h from 2 days ago.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from conftest import ROOT, Service, free_port, http_get, require_binary

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
from synthetic_history import History, HistoryPrometheus, backfill, rule_file

HOST = "mon-retention"
S, MIN, HOUR, DAY = 1000, 60 * 1000, 3600 * 1000, 86400 * 1000
STEP = 15 * S
NOW0 = int(time.time() * 1000)
BASE = (NOW0 // HOUR) * HOUR - 7 * DAY
AGE = 6 * DAY
LABELS = {"alertname": "BackupFailed", "instance": "db1", "severity": "warning"}


def g(k):
    """The k-th evaluation, in ms."""
    return BASE + 7250 + STEP * k


def k_at(moment):
    return (moment - BASE - 7250) // STEP


OLD_FIRST = k_at(NOW0 - AGE - HOUR)
OLD_LAST = OLD_FIRST + 719  # 3 h
RECENT_FIRST = k_at(NOW0 - 2 * DAY)
RECENT_LAST = RECENT_FIRST + 239  # 1 h


def rfc3339(ms):
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# --- An Alertmanager snapshot, moved back in time ------------------------------------------
# The snapshot is a sequence of length-delimited protobuf messages MeshSilence
# {1: Silence, 2: expires_at}, Silence {3: starts_at, 4: ends_at, 5: updated_at},
# each time a Timestamp {1: seconds, 2: nanos}.


def _varint(data, position):
    value = shift = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, position


def _encode_varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def _fields(data):
    position, found = 0, []
    while position < len(data):
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(data, position)
        elif wire == 2:
            size, position = _varint(data, position)
            value, position = data[position : position + size], position + size
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
        found.append((number, wire, value))
    return found


def _encode(found):
    out = bytearray()
    for number, wire, value in found:
        out += _encode_varint(number << 3 | wire)
        out += _encode_varint(value) if wire == 0 else _encode_varint(len(value)) + value
    return bytes(out)


def _timestamp_moved(message, seconds):
    return _encode([(n, w, v - seconds if n == 1 else v) for n, w, v in _fields(message)])


def _silence_moved(message, seconds):
    times = (3, 4, 5)  # starts_at, ends_at, updated_at
    return _encode(
        [(n, w, _timestamp_moved(v, seconds) if n in times else v) for n, w, v in _fields(message)]
    )


def _mesh_silence_moved(message, seconds):
    moved = {1: _silence_moved, 2: _timestamp_moved}
    return _encode(
        [(n, w, moved[n](v, seconds) if n in moved else v) for n, w, v in _fields(message)]
    )


def age_snapshot(path, seconds):
    data, position, out = path.read_bytes(), 0, bytearray()
    while position < len(data):
        size, position = _varint(data, position)
        message = _mesh_silence_moved(data[position : position + size], seconds)
        position += size
        out += _encode_varint(len(message)) + message
    path.write_bytes(bytes(out))


# --- The services --------------------------------------------------------------------------


def post_silence(url, starts, ends):
    body = {
        "matchers": [{"name": "alertname", "value": "BackupFailed", "isRegex": False}],
        "startsAt": rfc3339(starts),
        "endsAt": rfc3339(ends),
        "createdBy": "test",
        "comment": "backup window",
    }
    request = urllib.request.Request(
        url + "/api/v2/silences",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["silenceID"]


def aged_alertmanager(directory, retention):
    """An Alertmanager with --data.retention=`retention` whose one silence is 6 days old."""
    binary = shutil.which("prometheus-alertmanager") or require_binary("alertmanager")
    config = directory / "alertmanager.yml"
    config.write_text("route: {receiver: r}\nreceivers: [{name: r}]\n")
    port = free_port()
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.path={directory / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        f"--data.retention={retention}",
    ]

    def start():
        log = open(directory / "am.log", "ab")  # noqa: SIM115 - closed by Service.stop()
        return Service(argv, config, f"http://127.0.0.1:{port}", log)

    service = start()
    # Starting a few seconds ahead, on a whole second: Alertmanager keeps it as given.
    starts = (int(time.time()) + 5) * 1000
    post_silence(service.url, starts, starts + 30 * MIN)
    service.stop()  # writes the snapshot
    age_snapshot(directory / "data" / "silences", AGE // 1000)
    service = start()
    service.stop()  # its maintenance at shutdown forgets what it no longer keeps
    return start(), starts - AGE


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    history = History()
    history.alert(LABELS, OLD_FIRST, OLD_LAST, g)
    history.alert(LABELS, RECENT_FIRST, RECENT_LAST, g)
    directory = tmp_path_factory.mktemp("retention-prometheus")
    backfill(history, directory)
    rules = rule_file({"backup.rules": ("15s", [("BackupFailed", None, {"severity": "warning"})])})
    prometheus = HistoryPrometheus(directory, rules)
    services = {"prometheus": prometheus}
    try:
        for retention in ("120h", "720h"):
            am, silence_start = aged_alertmanager(
                tmp_path_factory.mktemp(f"am-{retention}"), retention
            )
            services[retention] = am
            services["silence_start"] = silence_start
        yield services
    finally:
        for name in ("120h", "720h"):
            if name in services:
                services[name].stop()
        prometheus.stop()


def run_report(tmp_path, stack, alertmanager, host_vars=None):
    """playbooks/report.yml with its defaults (the last 7 days) as monitoring host HOST."""
    inventory = tmp_path / "inventory.json"
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "prometheus_port": urlsplit(stack["prometheus"].url).port,
        "alertmanager_port": urlsplit(alertmanager.url).port,
        **(host_vars or {}),
    }
    inventory.write_text(json.dumps({"monitoring": {"hosts": {HOST: host}}}))
    argv = ["ansible-playbook", "-i", str(inventory), str(ROOT / "playbooks" / "report.yml")]
    argv += ["-e", json.dumps({"report_dir": str(tmp_path / "reports")})]
    environment = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    began = int(time.time() * 1000)
    completed = subprocess.run(argv, capture_output=True, text=True, env=environment, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    (json_file,) = (tmp_path / "reports" / HOST).glob("*.json")
    return {
        "data": json.loads(json_file.read_text()),
        "html": json_file.with_suffix(".html").read_text(),
        "md": json_file.with_suffix(".md").read_text(),
        "stdout": completed.stdout,
        "began": began,
        "ended": int(time.time() * 1000),
    }


def stamp(ms):
    """As the report writes a time in its sentences: 2026-12-02 11:40:00Z."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def test_silences_older_than_alertmanager_keeps_are_unknown_not_unsilenced(tmp_path, stack):
    silences = json.loads(http_get(stack["120h"].url + "/api/v2/silences"))
    assert silences == []  # 6 days old, kept 120h: Alertmanager forgot it

    report = run_report(tmp_path, stack, stack["120h"], {"alertmanager_data_retention": "120h"})

    # Said plainly, in every format.
    for text in (report["stdout"], report["html"], report["md"]):
        assert re.search(r"Silences before [-0-9]+ [:0-9]+Z are unknown", text)
    data = report["data"]
    known = data["silences"]
    assert (known["retention"], known["complete"]) == ("120h", False)
    known_from = int(datetime.fromisoformat(known["known_from"]).timestamp() * 1000)
    assert report["began"] - 120 * HOUR - 1000 <= known_from <= report["ended"] - 120 * HOUR
    (alert,) = data["alerts"]
    # The firings themselves are all known: 3 h and 1 h.
    assert (alert["fired"], alert["firing_seconds"]) == (2, 14400.0)
    # Only the firing 2 days ago lies where silences are known: it was not silenced.
    assert (alert["silenced_seconds"], alert["silenced_share"]) == (0.0, 0.0)
    assert alert["acknowledged"] == 0
    sentence = f"Silences before {stamp(known_from)} are unknown"
    assert known["note"].startswith(sentence)
    for text in (report["stdout"], report["html"], report["md"]):
        assert sentence in text


def test_silences_alertmanager_still_keeps_are_counted(tmp_path, stack):
    (silence,) = json.loads(http_get(stack["720h"].url + "/api/v2/silences"))
    assert silence["status"]["state"] == "expired"

    # No alertmanager_data_retention in the inventory: the role's default, 720h.
    report = run_report(tmp_path, stack, stack["720h"])

    data = report["data"]
    assert data["silences"]["retention"] == "720h"
    assert data["silences"]["complete"] is True
    assert data["silences"]["known_from"] is None
    (alert,) = data["alerts"]
    assert (alert["silenced_seconds"], alert["silenced_share"]) == (1800.0, 0.125)
    # Silenced an hour (and the part of a second the evaluation lies off it) after it fired.
    assert alert["acknowledged"] == 1
    assert alert["time_to_silence"]["median"] == (stack["silence_start"] - g(OLD_FIRST)) / 1000
    for text in (report["stdout"], report["html"], report["md"]):
        assert "are unknown" not in text
