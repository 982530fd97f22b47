"""Fixtures of the relay's tests: destination stand-ins and relays run as processes,
with short backoffs so that retries and dead letters take seconds, not hours."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .support import BASE_CONFIG, TOKEN, RelayProcess, Sink, start_sink


@pytest.fixture
def sink() -> Iterator[Sink]:
    started = start_sink()
    yield started
    started.close()


@pytest.fixture
def start_relay(tmp_path: Path) -> Iterator[Callable[..., RelayProcess]]:
    """Factory: start_relay(config_text, *flags) -> a running RelayProcess in tmp_path,
    with the file ``token`` holding TOKEN; stopped afterwards."""
    started: list[RelayProcess] = []
    (tmp_path / "token").write_text(TOKEN + "\n")

    def start(
        config: str, *flags: str, log_level: str = "info", env: dict[str, str] | None = None
    ) -> RelayProcess:
        relay = RelayProcess(tmp_path, config, *flags, log_level=log_level, env=env)
        started.append(relay)
        return relay

    yield start
    for relay in started:
        relay.stop()


@pytest.fixture
def relay(start_relay: Callable[..., RelayProcess], sink: Sink) -> RelayProcess:
    """A relay with BASE_CONFIG, forwarding to ``sink``."""
    return start_relay(BASE_CONFIG.format(url=sink.url))
