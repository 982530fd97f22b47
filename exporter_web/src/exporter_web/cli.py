"""The command line the services share: the web flags, the log level and logging."""

from __future__ import annotations

import argparse
import logging
import sys

LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def add_listen_address_flag(parser: argparse.ArgumentParser, default: str) -> None:
    """``--web.listen-address``, ``default`` a ``host:port`` whose port the help repeats."""
    port = default.rpartition(":")[2]
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=default,
        metavar="HOST:PORT",
        help=f"address to listen on; [::1]:{port} for IPv6, :{port} for all interfaces "
        "(default: %(default)s)",
    )


def add_web_config_flag(parser: argparse.ArgumentParser) -> None:
    """``--web.config.file``: exporter-toolkit's web config (exporter_web.webconfig)."""
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        default=None,
        metavar="FILE",
        help="exporter-toolkit web config (TLS, basic auth); plain HTTP without it. "
        "Re-read when it or the files it names change",
    )


def add_log_level_flag(parser: argparse.ArgumentParser) -> None:
    """``--log.level``, one of LOG_LEVELS."""
    parser.add_argument(
        "--log.level",
        dest="log_level",
        choices=sorted(LOG_LEVELS),
        default="info",
        help="log level (default: %(default)s)",
    )


def setup_logging(level: str, quiet: tuple[str, ...] = ()) -> None:
    """Log to stderr at ``level``; the loggers named in ``quiet`` (libraries that log a
    line per broken connection) only their errors, unless ``level`` is debug."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S%z")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LOG_LEVELS[level])
    if LOG_LEVELS[level] > logging.DEBUG:
        for name in quiet:
            logging.getLogger(name).setLevel(logging.ERROR)
