#!/usr/bin/env python3
"""Benchmark: scrape latency, series count and RSS of the exporter with N containers.

Starts N containers from debian:bookworm running ``sleep infinity`` (named
``dxbench-<run>-NNN``, labelled ``dxtest=1``; all removed at the end, also on
Ctrl-C or SIGTERM), runs the exporter as a separate process
(``python -m docker_exporter``), scrapes it over HTTP and prints the figures.
Not a test: it asserts nothing, it measures.

    .venv/bin/python docker_exporter/bench/bench.py [--containers 100] [--scrapes 30]
        [--memory-source auto stats] [--max-concurrency 16] [--exporter-src DIR ...]

``--exporter-src`` runs other versions of the exporter (their ``src``
directories, e.g. a ``git worktree`` of an earlier commit) one after the
other against the same containers, so that a change is measured before and
after on the same engine in the same minutes. The exporter's CPU time per
scrape (user + system, from ``/proc/<pid>/stat``) is the figure that depends
least on what else the machine does.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from types import FrameType

import docker
import requests
from docker.errors import NotFound

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
# The web config handling the exporter shares with the alert relay.
EXPORTER_WEB_SRC = os.path.join(os.path.dirname(os.path.dirname(HERE)), "exporter_web", "src")
IMAGE = "debian:bookworm"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--scrapes", type=int, default=30)
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between scrapes")
    parser.add_argument(
        "--memory-source",
        nargs="+",
        default=["auto", "stats"],
        choices=["auto", "cgroup", "stats"],
        help="exporter runs to measure, one per memory source (default: auto stats)",
    )
    parser.add_argument("--max-concurrency", type=int, default=16)
    parser.add_argument(
        "--exporter-src",
        nargs="+",
        default=[SRC],
        metavar="DIR",
        help="the exporter's src directories to measure, one run each (default: this one)",
    )
    parser.add_argument("--docker-host", default="unix:///var/run/docker.sock")
    return parser.parse_args()


def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def containers(client: docker.DockerClient, count: int) -> Iterator[list[str]]:
    run = uuid.uuid4().hex[:8]
    ids: list[str] = []

    def start(n: int) -> str:
        container = client.containers.run(
            IMAGE,
            ["sleep", "infinity"],
            name=f"dxbench-{run}-{n:03d}",
            labels={"dxtest": "1", "dxbench.run": run},
            detach=True,
        )
        ids.append(container.id)
        return container.id

    def remove(container_id: str) -> None:
        with suppress(NotFound):
            client.api.remove_container(container_id, force=True)

    try:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(start, range(count)))
        print(f"started {count} containers in {time.monotonic() - started:.1f} s", flush=True)
        yield ids
    finally:
        # Also whatever a failed or interrupted start left behind.
        leftovers = client.api.containers(all=True, filters={"label": f"dxbench.run={run}"})
        todo = sorted({*ids, *(c["Id"] for c in leftovers)})
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(remove, todo))
        print(f"removed {len(todo)} containers in {time.monotonic() - started:.1f} s", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def measure(args: argparse.Namespace, memory_source: str, src: str) -> dict[str, float]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "docker_exporter",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--docker.host={args.docker_host}",
        f"--docker.max-concurrency={args.max_concurrency}",
        f"--docker.memory-source={memory_source}",
        "--log.level=warn",
    ]
    path = os.pathsep.join((src, EXPORTER_WEB_SRC, os.environ.get("PYTHONPATH", "")))
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.Popen(command, env=env)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        with requests.Session() as session:
            deadline = time.monotonic() + 30
            while True:
                try:
                    first = time.monotonic()
                    text = session.get(url, timeout=30).text
                    first = time.monotonic() - first
                    break
                except requests.ConnectionError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            if "docker_engine_up 1.0" not in text:
                raise RuntimeError("the exporter does not reach the engine")
            latencies, reported = [], []
            cpu_before = cpu_seconds(proc.pid)
            for _ in range(args.scrapes):
                time.sleep(args.pause)
                start = time.monotonic()
                response = session.get(url, timeout=30)
                latencies.append(time.monotonic() - start)
                text = response.text
                for line in text.splitlines():
                    if line.startswith("docker_exporter_scrape_duration_seconds "):
                        reported.append(float(line.split()[1]))
                if "docker_engine_up 1.0" not in text:
                    raise RuntimeError("a scrape failed (docker_engine_up 0)")
            cpu_per_scrape = (cpu_seconds(proc.pid) - cpu_before) / args.scrapes
        series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        containers_seen = text.count("docker_container_exit_code{")
        return {
            "first": first,
            "median": statistics.median(latencies),
            "p90": percentile(latencies, 0.9),
            "max": max(latencies),
            "collect_median": statistics.median(reported),
            "cpu_ms": cpu_per_scrape * 1000,
            "series": series,
            "containers": containers_seen,
            "rss_mib": rss_kib(proc.pid) / 1024,
            "hwm_mib": rss_kib(proc.pid, "VmHWM") / 1024,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    client = docker.DockerClient(base_url=args.docker_host, version="auto", timeout=120)
    version = client.version()
    print(
        f"machine: {os.cpu_count()} cores, Docker {version.get('Version')} "
        f"(API {version.get('ApiVersion')}), cgroup v{client.info().get('CgroupVersion', '?')}, "
        f"Python {platform.python_version()}",
        flush=True,
    )
    results = []
    try:
        with containers(client, args.containers):
            for src in args.exporter_src:
                for source in args.memory_source:
                    print(f"measuring {src} --docker.memory-source={source} ...", flush=True)
                    results.append((src, source, measure(args, source, os.path.abspath(src))))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print()
    print(
        f"{args.containers} containers (+ any others on the engine), {args.scrapes} scrapes, "
        f"--docker.max-concurrency={args.max_concurrency}"
    )
    header = (
        "exporter src",
        "memory source",
        "first s",
        "median s",
        "p90 s",
        "max s",
        "collect med s",
        "CPU ms/scrape",
        "containers",
        "series",
        "RSS MiB",
        "peak RSS MiB",
    )
    print(" | ".join(header))
    for src, source, r in results:
        print(
            f"{src} | {source} | {r['first']:.3f} | {r['median']:.3f} | {r['p90']:.3f} "
            f"| {r['max']:.3f} | {r['collect_median']:.3f} | {r['cpu_ms']:.1f} "
            f"| {r['containers']:.0f} | {r['series']:.0f} | {r['rss_mib']:.1f} | {r['hwm_mib']:.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
