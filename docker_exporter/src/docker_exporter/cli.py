"""Command line: flags, logging, start, graceful stop."""

from __future__ import annotations

import argparse
import logging
import math
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from docker.errors import DockerException
from exporter_web.cli import (
    add_listen_address_flag,
    add_log_level_flag,
    add_web_config_flag,
    setup_logging,
)
from exporter_web.webconfig import WebConfigError, WebConfigWatcher
from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.registry import CollectorRegistry

from docker_exporter import __version__
from docker_exporter.collector import DockerCollector, WebConfigCollector
from docker_exporter.engine import MEMORY_SOURCES, EngineScraper, check_docker_host
from docker_exporter.server import ExporterServer

log = logging.getLogger("docker_exporter")


def _positive_float(text: str) -> float:
    value = float(text)
    if math.isnan(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0: {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="docker-exporter",
        description="Prometheus exporter for per-container Docker state.",
    )
    add = parser.add_argument
    add_listen_address_flag(parser, "127.0.0.1:9417")
    add(
        "--web.telemetry-path",
        dest="telemetry_path",
        default="/metrics",
        metavar="PATH",
        help="path of the metrics (default: %(default)s)",
    )
    add_web_config_flag(parser)
    add(
        "--docker.host",
        dest="docker_host",
        default="unix:///var/run/docker.sock",
        metavar="URL",
        help="Docker Engine API address (default: %(default)s)",
    )
    add(
        "--docker.timeout",
        dest="docker_timeout",
        type=_positive_float,
        default=3.0,
        metavar="SECONDS",
        help="timeout of each Engine API call (default: %(default)s)",
    )
    add(
        "--docker.max-concurrency",
        dest="max_concurrency",
        type=_positive_int,
        default=16,
        metavar="N",
        help="list and inspect calls in flight at once (default: %(default)s)",
    )
    add(
        "--docker.stats-concurrency",
        dest="stats_concurrency",
        type=_positive_int,
        default=128,
        metavar="N",
        help="stats calls in flight at once, when memory comes from stats calls; each "
        "waits for the engine's once-a-second stats collector (default: %(default)s)",
    )
    add(
        "--docker.memory-source",
        dest="memory_source",
        choices=MEMORY_SOURCES,
        default="auto",
        help="where running containers' memory usage comes from: cgroup files on this "
        "host, Engine stats calls, or auto: cgroup files when the engine is on a local Unix "
        "socket, a stats call for a container whose cgroup cannot be read (default: "
        "%(default)s)",
    )
    add(
        "--scrape.deadline",
        dest="scrape_deadline",
        type=_positive_float,
        default=8.0,
        metavar="SECONDS",
        help="give up a scrape after this long and report docker_engine_up 0 "
        "(default: %(default)s)",
    )
    add_log_level_flag(parser)
    add("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def build_registry(
    scraper: EngineScraper, web: WebConfigWatcher | None = None
) -> CollectorRegistry:
    """The registry /metrics renders: the Docker collector and process metrics."""
    registry = CollectorRegistry()
    registry.register(DockerCollector(scraper))
    registry.register(WebConfigCollector(web or WebConfigWatcher()))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, quiet=("urllib3",))
    if not args.telemetry_path.startswith("/"):
        parser.error("--web.telemetry-path must start with /")
    if args.docker_timeout > args.scrape_deadline:
        log.warning("--docker.timeout is above --scrape.deadline: slow calls end scrapes")
    try:
        check_docker_host(args.docker_host)
    except DockerException as err:
        parser.error(f"--docker.host: {err}")

    try:
        # Reloads logged under the exporter's name, as before the module was shared.
        web = WebConfigWatcher(
            args.web_config_file or None, logger=logging.getLogger("docker_exporter.webconfig")
        )
    except WebConfigError as err:
        log.error("invalid --web.config.file %s: %s", args.web_config_file, err)
        return 2

    scraper = EngineScraper(
        args.docker_host,
        timeout=args.docker_timeout,
        max_concurrency=args.max_concurrency,
        stats_concurrency=args.stats_concurrency,
        deadline=args.scrape_deadline,
        memory_source=args.memory_source,
    )
    try:
        server = ExporterServer(
            args.listen_address,
            build_registry(scraper, web),
            telemetry_path=args.telemetry_path,
            web_config=web,
        )
    except (OSError, ValueError, WebConfigError) as err:
        log.error("cannot listen on %s: %s", args.listen_address, err)
        scraper.close()
        return 1

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    log.info(
        "docker-exporter %s listening on %s%s, Docker engine %s",
        __version__,
        server.url,
        args.telemetry_path,
        args.docker_host,
    )
    while not stop.wait(3600):
        pass
    server.shutdown()
    server.server_close()
    scraper.close()
    log.info("stopped")
    return 0
