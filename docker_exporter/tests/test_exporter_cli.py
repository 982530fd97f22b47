"""The command line: ``python -m docker_exporter`` as a process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import requests

from docker_exporter.cli import build_parser

from . import PYTHONPATH
from .support import DOCKER_HOST, wait_for

FLAGS = (
    "--web.listen-address",
    "--web.telemetry-path",
    "--web.config.file",
    "--docker.host",
    "--docker.timeout",
    "--docker.max-concurrency",
    "--docker.stats-concurrency",
    "--docker.memory-source",
    "--scrape.deadline",
    "--log.level",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def exporter_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "docker_exporter", *args]


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": PYTHONPATH}


@pytest.fixture
def process() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_defaults() -> None:
    args = build_parser().parse_args([])
    assert args.listen_address == "127.0.0.1:9417"
    assert args.telemetry_path == "/metrics"
    assert args.web_config_file is None
    assert args.docker_host == "unix:///var/run/docker.sock"
    assert args.docker_timeout == 3.0
    assert args.max_concurrency == 16
    assert args.stats_concurrency == 128
    assert args.scrape_deadline == 8.0
    assert args.memory_source == "auto"
    assert args.log_level == "info"


def test_help_lists_every_flag() -> None:
    text = build_parser().format_help()
    for flag in FLAGS:
        assert flag in text


@pytest.mark.parametrize(
    "args",
    [
        ["--docker.timeout", "0"],
        ["--docker.max-concurrency", "0"],
        ["--docker.stats-concurrency", "0"],
        ["--docker.memory-source", "psychic"],
        ["--scrape.deadline", "-1"],
        ["--log.level", "loud"],
        ["--web.telemetry-path", "metrics"],
        ["--docker.host", "ftp://example"],
    ],
)
def test_bad_flags(args: list[str]) -> None:
    result = subprocess.run(
        exporter_command(*args),
        check=False,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr


def test_bad_web_config(tmp_path: Path) -> None:
    config = tmp_path / "web.yml"
    config.write_text("basic_auth_users: {alice: plaintext}\n")
    result = subprocess.run(
        exporter_command("--web.config.file", str(config), "--web.listen-address", "127.0.0.1:0"),
        check=False,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "not a bcrypt hash" in result.stderr


@pytest.mark.engine
def test_serves_and_stops_on_sigterm(process: list[subprocess.Popen[str]]) -> None:
    port = free_port()
    proc = subprocess.Popen(
        exporter_command("--web.listen-address", f"127.0.0.1:{port}", "--docker.host", DOCKER_HOST),
        env=environment(),
        stderr=subprocess.PIPE,
        text=True,
    )
    process.append(proc)
    url = f"http://127.0.0.1:{port}/metrics"

    def answers() -> str | None:
        assert proc.poll() is None, "the exporter exited"
        try:
            return requests.get(url, timeout=10).text
        except requests.ConnectionError:
            return None

    text = wait_for(answers, 30, "the exporter to answer")
    assert "docker_engine_up 1.0" in str(text)
    proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    assert proc.wait(10) == 0
    assert time.monotonic() - start < 5
    assert proc.stderr is not None
    log = proc.stderr.read()
    assert "listening on http://127.0.0.1" in log
    assert "received SIGTERM, shutting down" in log
    # One line per event: no line per scrape at info level.
    assert len(log.strip().splitlines()) <= 5, log


def test_rereads_its_web_config_without_restart(
    process: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    """New credentials in --web.config.file work in the running process."""
    old_hash = bcrypt.hashpw(b"old", bcrypt.gensalt(rounds=4)).decode()
    new_hash = bcrypt.hashpw(b"new", bcrypt.gensalt(rounds=4)).decode()
    config = tmp_path / "web-config.yml"
    config.write_text(f"basic_auth_users:\n  prometheus: '{old_hash}'\n")
    port = free_port()
    proc = subprocess.Popen(
        exporter_command(
            "--web.listen-address",
            f"127.0.0.1:{port}",
            "--web.config.file",
            str(config),
            "--docker.host",
            "unix:///nonexistent/docker.sock",  # the engine does not matter here
        ),
        env=environment(),
        stderr=subprocess.PIPE,
        text=True,
    )
    process.append(proc)
    url = f"http://127.0.0.1:{port}/metrics"

    def status(password: str) -> int | None:
        assert proc.poll() is None, "the exporter exited"
        try:
            return requests.get(url, auth=("prometheus", password), timeout=10).status_code
        except requests.ConnectionError:
            return None

    assert wait_for(lambda: status("old"), 30, "the exporter to answer") == 200
    partial = tmp_path / ".partial"
    partial.write_text(f"basic_auth_users:\n  prometheus: '{new_hash}'\n")
    os.replace(partial, config)

    assert status("new") == 200
    assert status("old") == 401
    text = requests.get(url, auth=("prometheus", "new"), timeout=10).text
    assert "docker_exporter_web_config_last_reload_successful 1.0" in text

    time.sleep(0.05)  # not the same timestamp tick as the previous rewrite
    partial.write_text("basic_auth_users: [\n")
    os.replace(partial, config)
    text = requests.get(url, auth=("prometheus", "new"), timeout=10).text
    assert "docker_exporter_web_config_last_reload_successful 0.0" in text
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert proc.stderr is not None
    log = proc.stderr.read()
    assert f"reloaded --web.config.file {config}" in log
    assert "cannot reload --web.config.file" in log and "invalid YAML" in log
