#!/usr/bin/env python3
"""Benchmark of the alert relay: accepting with durable storage, forwarding, memory.

    .venv/bin/python alert_relay/bench/bench.py [--notifications 3000] [--alerts 2]
                                                [--clients 16] [--runs 3]

Each run starts a fresh relay (``python -m alert_relay`` from the sources, a new
database in a temporary directory, synchronous=FULL as always) and a destination
stand-in (a separate aiohttp process that answers 200), then measures:

1. accept, destination up: ``--clients`` concurrent senders post
   ``--notifications`` notifications of ``--alerts`` alerts each (every alert
   new, so every one is queued and forwarded) while the relay forwards them:
   notifications accepted per second, accept latency (p50, p99: from sending a
   request to its 200, that is until the notification is committed to disk),
   and the relay's CPU time per notification accepted and forwarded (utime +
   stime, which the machine's other load changes far less than the rates).
2. accept, destination down: the same, with nothing listening at the
   destination, so that every alert stays queued (the relay reloaded first
   with a 10 s backoff: one refused attempt per alert, the next 10 s away).
3. drain: the destination comes back; from its first retried alert (which
   makes the whole queue due at once) to the last: alerts forwarded per
   second.

and the relay's resident memory (VmRSS) after each phase and at its peak
(VmHWM). The figures of every run are printed, then their medians. Nothing is
asserted: this prints figures.

``--queued N --watch SECONDS`` measures something else, once: a relay at its
default retry settings (1 s doubling to 5 m, max_age 24 h) and log level
(info), with nothing listening at its destination (connection refused), is
given N alerts (N/2 notifications of 2); once every alert has had its first
attempt, its CPU time (utime + stime from /proc/<pid>/stat, as a percentage of
one core) and the bytes it logs are measured for SECONDS, minute by minute,
the log extrapolated to an hour.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PYTHONPATH = os.pathsep.join(
    (str(ROOT / "alert_relay" / "src"), str(ROOT / "exporter_web" / "src"))
)
TOKEN = "bench-token"

CONFIG = """
global:
  retry: {{initial_backoff: {backoff}, max_backoff: {backoff}, max_age: 2h}}
  history_retention: 1d
receivers:
  bench:
    bearer_token_file: token
    destinations: [sink]
destinations:
  sink:
    url: http://127.0.0.1:{sink_port}/alerts
    max_concurrency: 16
    timeout: 5s
"""

# The destination stand-in: answers 200 to every POST, counts them at GET /count.
SINK = """
import sys
from aiohttp import web
count = 0
async def post(request):
    global count
    await request.read()
    count += 1
    return web.Response(text="ok")
async def get(request):
    return web.Response(text=str(count))
app = web.Application()
app.router.add_post("/alerts", post)
app.router.add_get("/count", get)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def notification(run: int, n: int, alerts: int) -> bytes:
    items = [
        {
            "status": "firing",
            "labels": {"alertname": "BenchAlert", "instance": f"r{run}-n{n}-a{a}", "job": "bench"},
            "annotations": {"summary": "A benchmark alert", "description": "x" * 200},
            "startsAt": "2024-05-01T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
        }
        for a in range(alerts)
    ]
    document = {
        "version": "4",
        "groupKey": f"bench-{n}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "bench",
        "groupLabels": {"alertname": "BenchAlert"},
        "commonLabels": {"alertname": "BenchAlert", "job": "bench"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": items,
    }
    return json.dumps(document).encode()


async def send_all(url: str, bodies: list[bytes], clients: int) -> tuple[float, list[float]]:
    """Post every body with ``clients`` concurrent senders; (seconds, latencies)."""
    latencies: list[float] = []
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    async def sender(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise SystemExit(f"relay answered {response.status}: {await response.text()}")
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(sender(session) for _ in range(clients)))
        return time.perf_counter() - started, latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# The queued phase: the relay's defaults (retry, concurrency, timeout), a destination that
# refuses connections.
QUEUED_CONFIG = """
receivers:
  bench:
    bearer_token_file: token
    destinations: [sink]
destinations:
  sink:
    url: http://127.0.0.1:{sink_port}/alerts
"""


class Relay:
    def __init__(
        self,
        directory: Path,
        sink_port: int,
        config: str | None = None,
        log_level: str = "warn",
        log: Any = None,
    ) -> None:
        self.directory = directory
        self.sink_port = sink_port
        (directory / "token").write_text(TOKEN + "\n")
        if config is None:
            self.write_config("50ms")
        else:
            (directory / "relay.yml").write_text(config.format(sink_port=sink_port))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "alert_relay",
                f"--config.file={directory / 'relay.yml'}",
                f"--storage.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--log.level={log_level}",
            ],
            env={**os.environ, "PYTHONPATH": PYTHONPATH},
            stderr=log,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                urlopen_text(self.url + "/-/ready")
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit("the relay did not start") from None
                time.sleep(0.05)

    def write_config(self, backoff: str) -> None:
        text = CONFIG.format(backoff=backoff, sink_port=self.sink_port)
        (self.directory / "relay.yml").write_text(text)

    def reload(self, backoff: str) -> None:
        self.write_config(backoff)
        request = urllib.request.Request(self.url + "/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def failed_attempts(self) -> float:
        text = urlopen_text(self.url + "/metrics")
        found = re.findall(
            r'^alert_relay_forward_attempts_total\{.*result="(\w+)"\} (\S+)$', text, re.M
        )
        return sum(float(value) for result, value in found if result != "success")

    def queue_depth(self) -> float:
        text = urlopen_text(self.url + "/metrics")
        match = re.search(r'^alert_relay_queue_depth\{target="sink"\} (\S+)$', text, re.M)
        return float(match.group(1)) if match else 0.0

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


def urlopen_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def start_sink(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", SINK, str(port)])
    deadline = time.monotonic() + 20
    while True:
        try:
            urlopen_text(f"http://127.0.0.1:{port}/count")
            return process
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("the sink did not start") from None
            time.sleep(0.05)


def sink_count(port: int) -> int:
    return int(urlopen_text(f"http://127.0.0.1:{port}/count"))


def wait_until(condition: Any, timeout: float) -> float:
    started = time.perf_counter()
    while not condition():
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"timed out after {timeout:g} s")
        time.sleep(0.02)
    return time.perf_counter() - started


def one_run(run: int, args: argparse.Namespace) -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        sink_port = free_port()
        sink = start_sink(sink_port)
        relay = Relay(Path(tmp), sink_port)
        try:
            url = relay.url + "/webhooks/bench"
            total_alerts = args.notifications * args.alerts
            # 1. Destination up: accepting while forwarding.
            bodies = [notification(run, n, args.alerts) for n in range(args.notifications)]
            cpu_before = cpu_seconds(relay.process.pid)
            seconds, latencies = asyncio.run(send_all(url, bodies, args.clients))
            figures["up_per_s"] = len(bodies) / seconds
            figures["up_p50_ms"] = percentile(latencies, 0.5) * 1000
            figures["up_p99_ms"] = percentile(latencies, 0.99) * 1000
            drained = wait_until(lambda: sink_count(sink_port) >= total_alerts, 300)
            figures["up_forwarded_per_s"] = total_alerts / (seconds + drained)
            # The relay's own CPU time: what the machine's other load does not change.
            cpu = cpu_seconds(relay.process.pid) - cpu_before
            figures["up_cpu_ms_per_notification"] = 1000 * cpu / len(bodies)
            figures["rss_after_up_mib"] = memory(relay.process.pid)[0]
            figures["up_failed_attempts"] = relay.failed_attempts()

            # 2. Destination down: everything queues.
            relay.reload("10s")
            sink.terminate()
            sink.wait(10)
            bodies = [
                notification(run, n, args.alerts)
                for n in range(args.notifications, 2 * args.notifications)
            ]
            seconds, latencies = asyncio.run(send_all(url, bodies, args.clients))
            figures["down_per_s"] = len(bodies) / seconds
            figures["down_p50_ms"] = percentile(latencies, 0.5) * 1000
            figures["down_p99_ms"] = percentile(latencies, 0.99) * 1000
            wait_until(lambda: relay.queue_depth() >= total_alerts, 60)
            figures["rss_queued_mib"] = memory(relay.process.pid)[0]

            # 3. The destination is back: drain the queue.
            sink = start_sink(sink_port)
            wait_until(lambda: sink_count(sink_port) > 0, 60)
            first = sink_count(sink_port)
            drained = wait_until(lambda: sink_count(sink_port) >= total_alerts, 600)
            figures["drain_per_s"] = (total_alerts - first) / drained
            figures["rss_after_drain_mib"], figures["peak_rss_mib"] = memory(relay.process.pid)
        finally:
            relay.stop()
            sink.terminate()
            sink.wait(10)
    return figures


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (/proc/<pid>/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def queued_run(args: argparse.Namespace) -> None:
    """The queued phase (see the module's docstring); prints its figures."""
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        log_path = Path(tmp) / "relay.log"
        with open(log_path, "wb") as log:
            relay = Relay(Path(tmp), free_port(), QUEUED_CONFIG, log_level="info", log=log)
        pid = relay.process.pid
        try:
            url = relay.url + "/webhooks/bench"
            bodies = [notification(0, n, 2) for n in range(args.queued // 2)]
            alerts = 2 * len(bodies)
            started, cpu_started = time.perf_counter(), cpu_seconds(pid)
            seconds, _latencies = asyncio.run(send_all(url, bodies, args.clients))
            print(f"{alerts} alerts accepted in {seconds:.1f} s")
            waited = wait_until(lambda: relay.failed_attempts() >= alerts, 1800)
            print(
                f"every alert's first attempt made {waited:.1f} s later; accepting and first"
                f" attempts: {cpu_seconds(pid) - cpu_started:.1f} s of CPU in"
                f" {time.perf_counter() - started:.1f} s"
            )
            # The window: the queue full, the destination still down.
            start = (time.perf_counter(), cpu_seconds(pid), log_path.stat().st_size)
            attempts_before = relay.failed_attempts()
            for minute in range(max(1, round(args.watch / 60))):
                mark = (time.perf_counter(), cpu_seconds(pid), log_path.stat().st_size)
                time.sleep(min(60.0, args.watch))
                cpu = 100 * (cpu_seconds(pid) - mark[1]) / (time.perf_counter() - mark[0])
                logged = log_path.stat().st_size - mark[2]
                print(f"minute {minute + 1}: CPU {cpu:.2f} % of a core, log {logged} bytes")
            elapsed = time.perf_counter() - start[0]
            cpu = 100 * (cpu_seconds(pid) - start[1]) / elapsed
            log_per_hour = (log_path.stat().st_size - start[2]) * 3600 / elapsed
            attempts = (relay.failed_attempts() - attempts_before) / elapsed
            print(
                f"over {elapsed:.0f} s: CPU {cpu:.2f} % of a core, {attempts:.2f} attempts/s,"
                f" log {log_per_hour / 1e6:.3f} MB/hour (extrapolated),"
                f" RSS {memory(pid)[0]:.1f} MiB, queue depth {relay.queue_depth():.0f}"
            )
        finally:
            relay.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notifications", type=int, default=3000)
    parser.add_argument("--alerts", type=int, default=2, help="alerts per notification")
    parser.add_argument("--clients", type=int, default=16, help="concurrent senders")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--queued", type=int, default=0, help="instead: alerts queued for a destination down"
    )
    parser.add_argument("--watch", type=float, default=180, help="seconds the queued phase lasts")
    args = parser.parse_args()
    if args.queued:
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        queued_run(args)
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        return
    print(
        f"{args.notifications} notifications of {args.alerts} alerts, {args.clients} senders, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    runs = []
    for run in range(args.runs):
        figures = one_run(run, args)
        runs.append(figures)
        print(f"run {run + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()))
    print("median: ")
    for key in runs[0]:
        print(f"  {key:22} {statistics.median(r[key] for r in runs):9.1f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
