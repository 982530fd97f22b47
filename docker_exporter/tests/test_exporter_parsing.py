"""Pure functions: timestamps, memory arithmetic, labels from inspect payloads."""

from __future__ import annotations

import calendar

import pytest

from docker_exporter.parsing import (
    container_from_inspect,
    memory_usage,
    parse_docker_time,
)

EPOCH_2024_05_01_12 = calendar.timegm((2024, 5, 1, 12, 0, 0))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", EPOCH_2024_05_01_12),
        ("2024-05-01T12:00:00.123456789Z", EPOCH_2024_05_01_12 + 0.123456789),
        ("2024-05-01T12:00:00.5Z", EPOCH_2024_05_01_12 + 0.5),
        ("2024-05-01T12:00:00.000000001Z", EPOCH_2024_05_01_12 + 1e-9),
        ("2024-05-01T14:00:00.25+02:00", EPOCH_2024_05_01_12 + 0.25),
        ("2024-05-01T07:30:00-04:30", EPOCH_2024_05_01_12),
        ("2024-05-01t12:00:00z", EPOCH_2024_05_01_12),
        ("1970-01-01T00:00:00Z", 0.0),
    ],
)
def test_parse_docker_time(text: str, expected: float) -> None:
    assert parse_docker_time(text) == pytest.approx(expected, abs=1e-6)


def test_parse_docker_time_keeps_nanosecond_order() -> None:
    earlier = parse_docker_time("2024-05-01T12:00:00.100000000Z")
    later = parse_docker_time("2024-05-01T12:00:00.100001000Z")
    assert earlier is not None and later is not None
    # float64 near 1.7e9 resolves about 0.24 microseconds.
    assert later - earlier == pytest.approx(1e-6, abs=3e-7)


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00Z", "", None])
def test_parse_docker_time_never(text: str | None) -> None:
    assert parse_docker_time(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "2024-05-01 12:00:00",  # no zone
        "2024-13-01T12:00:00Z",
        "2024-02-30T12:00:00Z",
        "2024-05-01T12:00:00.Z",
        "2024-05-01T12:00:00Zjunk",
    ],
)
def test_parse_docker_time_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_docker_time(text)


# Trimmed from real `GET /containers/{id}/stats?stream=false&one-shot=true` answers.
CGROUP_V1_MEMORY = {
    "usage": 10_485_760,
    "max_usage": 12_000_000,
    "limit": 67_108_864,
    "stats": {
        "active_file": 1_000_000,
        "inactive_file": 2_000_000,
        "total_active_file": 1_000_000,
        "total_inactive_file": 3_000_000,
        "total_rss": 5_000_000,
    },
}
CGROUP_V2_MEMORY = {
    "usage": 10_485_760,
    "limit": 9_223_372_036_854_771_712,
    "stats": {"anon": 5_000_000, "file": 4_000_000, "inactive_file": 2_500_000},
}


def test_memory_usage_cgroup_v1_subtracts_total_inactive_file() -> None:
    assert memory_usage(CGROUP_V1_MEMORY) == 10_485_760 - 3_000_000


def test_memory_usage_cgroup_v2_subtracts_inactive_file() -> None:
    assert memory_usage(CGROUP_V2_MEMORY) == 10_485_760 - 2_500_000


def test_memory_usage_without_cache_figures_is_usage() -> None:
    assert memory_usage({"usage": 4096, "stats": {}}) == 4096
    assert memory_usage({"usage": 4096}) == 4096


def test_memory_usage_ignores_cache_larger_than_usage() -> None:
    # The Docker CLI's guards: a cache figure at or above usage is not subtracted.
    assert memory_usage({"usage": 100, "stats": {"total_inactive_file": 100}}) == 100
    v1_falls_back = {"usage": 100, "stats": {"total_inactive_file": 500, "inactive_file": 30}}
    assert memory_usage(v1_falls_back) == 70
    assert memory_usage({"usage": 100, "stats": {"inactive_file": 150}}) == 100


@pytest.mark.parametrize("payload", [None, {}, {"stats": {"inactive_file": 1}}])
def test_memory_usage_unknown(payload: dict | None) -> None:
    # What the Engine sends for stopped containers or when its collector failed.
    assert memory_usage(payload) is None


FULL_ID = "3f4e1c2a9b8d" + "0" * 52


def inspect_payload(**overrides: object) -> dict:
    payload = {
        "Id": FULL_ID,
        "Name": "/web-1",
        "RestartCount": 4,
        "State": {
            "Status": "running",
            "Running": True,
            "OOMKilled": False,
            "Pid": 4242,
            "ExitCode": 0,
            "StartedAt": "2024-05-01T12:00:00.123456789Z",
            "FinishedAt": "0001-01-01T00:00:00Z",
            "Health": {"Status": "healthy", "FailingStreak": 0, "Log": []},
        },
        "Config": {
            "Image": "redis:7",
            "Labels": {
                "com.docker.compose.project": "shop",
                "com.docker.compose.service": "cache",
                "other": "x",
            },
        },
        "Image": "sha256:" + "a" * 64,
        "HostConfig": {"Memory": 67_108_864},
        "Mounts": [{"Type": "volume"}, {"Type": "bind"}, {"Type": "tmpfs"}],
    }
    payload.update(overrides)
    return payload


def test_container_from_inspect() -> None:
    container = container_from_inspect(inspect_payload())
    assert container.labels == ("web-1", "3f4e1c2a9b8d", "redis:7", "shop", "cache")
    assert container.full_id == FULL_ID
    assert container.state == "running" and container.running
    assert container.health == "healthy"
    assert container.restart_count == 4
    assert container.started_at == pytest.approx(EPOCH_2024_05_01_12 + 0.123456789)
    assert container.finished_at is None
    assert container.mounts == 3
    assert container.memory_limit == 67_108_864
    assert container.pid == 4242
    assert container.exit_code == 0 and not container.oom_killed


def test_container_from_inspect_without_compose_labels_or_healthcheck() -> None:
    payload = inspect_payload(
        Config={"Image": "debian:bookworm", "Labels": None},
        State={
            "Status": "exited",
            "ExitCode": 137,
            "OOMKilled": True,
            "StartedAt": "2024-05-01T12:00:00Z",
            "FinishedAt": "2024-05-01T12:00:05.5Z",
        },
        HostConfig={"Memory": 0},
        Mounts=None,
    )
    container = container_from_inspect(payload)
    assert container.compose_project == "" and container.compose_service == ""
    assert container.health == "none"
    assert container.exit_code == 137 and container.oom_killed
    assert container.finished_at == pytest.approx(EPOCH_2024_05_01_12 + 5.5)
    assert container.memory_limit == 0 and container.mounts == 0
    assert not container.running


def test_container_from_inspect_tolerates_a_sparse_payload() -> None:
    container = container_from_inspect({"Id": FULL_ID, "State": {"StartedAt": "garbage"}})
    assert container.name == "" and container.image == ""
    assert container.state == "" and container.started_at is None
