"""Command line: flags, logging, start, reload on SIGHUP, graceful stop on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Sequence

from exporter_web.cli import (
    add_listen_address_flag,
    add_log_level_flag,
    add_web_config_flag,
    setup_logging,
)
from exporter_web.listen import listening_socket
from exporter_web.webconfig import WebConfigError, WebConfigWatcher

from alert_relay import __version__
from alert_relay.config import ConfigError, load_config
from alert_relay.server import Relay, serve
from alert_relay.store import StorageError, Store

log = logging.getLogger("alert_relay")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alert-relay",
        description="Takes Alertmanager's webhook notifications, stores them durably and "
        "forwards each alert to its destinations.",
    )
    add = parser.add_argument
    add_listen_address_flag(parser, "127.0.0.1:9097")
    add_web_config_flag(parser)
    add(
        "--config.file",
        dest="config_file",
        default="alert-relay.yml",
        metavar="FILE",
        help="receivers, destinations, hooks (default: %(default)s); "
        "reloaded on SIGHUP and POST /-/reload",
    )
    add(
        "--storage.path",
        dest="storage_path",
        default="data/",
        metavar="DIR",
        help="directory of the database (default: %(default)s)",
    )
    add(
        "--config.check",
        dest="check_only",
        action="store_true",
        help="check --config.file (and --web.config.file), the files they name included, "
        "and exit: 0 when they load, 2 with the reason",
    )
    add_log_level_flag(parser)
    add("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


async def _run(relay: Relay, sock_address: str) -> int:
    loop = asyncio.get_running_loop()
    try:
        sock = listening_socket(sock_address, backlog=512)
    except (OSError, ValueError) as err:
        log.error("cannot listen on %s: %s", sock_address, err)
        return 1
    stop = asyncio.Event()

    def on_stop(signum: int) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    def on_hup() -> None:
        # A failure is logged by reload(); the running configuration stays.
        with contextlib.suppress(ConfigError):
            relay.reload()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_stop, signum)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await serve(relay, sock, stop)
    finally:
        sock.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, quiet=("aiohttp",))
    try:
        config = load_config(args.config_file)
    except ConfigError as err:
        log.error("invalid --config.file %s: %s", args.config_file, err)
        return 2
    try:
        web_config = WebConfigWatcher(
            args.web_config_file or None, logger=logging.getLogger("alert_relay.webconfig")
        )
    except WebConfigError as err:
        log.error("invalid --web.config.file %s: %s", args.web_config_file, err)
        return 2
    if args.check_only:
        print(
            f"{args.config_file}: OK ({len(config.receivers)} receivers, "
            f"{len(config.destinations)} destinations, {len(config.hooks)} hooks)"
        )
        return 0
    try:
        store = Store(args.storage_path)
    except StorageError as err:
        log.error("%s", err)
        return 1
    if not web_config.current().auth.enabled:
        for receiver in config.receivers.values():
            if receiver.token_file is None:
                log.warning("receiver %s takes notifications without credentials", receiver.name)
    if config.hooks and os.geteuid() == 0:
        log.warning("running as root: hooks run as root too; run the relay as its own user")
    relay = Relay(args.config_file, config, store, web_config)
    try:
        code = asyncio.run(_run(relay, args.listen_address))
    finally:
        store.close()
    log.info("stopped")
    return code
