"""Helpers of the fault tests: file systems that fill up or break under the relay, a wall
clock that jumps, history written with old timestamps.

Mounting needs root (the tests fail, not skip, without it: they back the relay's
claims about faults); so does a loop device.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alert_relay.payload import parse_notification
from alert_relay.store import Store

from .support import alert, notification

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.fail(f"{what} needs root (mount, losetup)")


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)


def unmount(path: Path, timeout: float = 30.0) -> None:
    """umount, tried again while the mount is busy: a process that still holds a file there
    lets go of it only when it notices."""
    deadline = time.monotonic() + timeout
    while True:
        result = run("umount", str(path))
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"cannot unmount {path} after {timeout:g} s: {result.stderr.strip()}")
        time.sleep(0.2)


def _cleanup_mount(path: Path) -> None:
    """After a test: unmount whatever is still mounted at ``path`` (lazily, as a last resort)."""
    while run("mountpoint", "-q", str(path)).returncode == 0:
        if run("umount", str(path)).returncode != 0:
            run("umount", "-l", str(path))


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path``, unmounted afterwards."""
    _need_root("a small tmpfs")
    path.mkdir(exist_ok=True)
    result = run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    assert result.returncode == 0, result.stderr
    try:
        yield path
    finally:
        _cleanup_mount(path)


def fill(directory: Path) -> Path:
    """A filler file that takes every free byte of ``directory``'s file system."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as handle:
        while True:
            try:
                handle.write(chunk)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
    return filler


class Ext4Image:
    """An ext4 file system in an image on a loop device, mounted with errors=remount-ro:
    ``abort()`` makes it read-only under the processes that use it, as a failing disk
    would; ``repair()`` does what an operator does then (unmount, fsck, mount again)."""

    def __init__(self, image: Path, mountpoint: Path, size: str = "32M") -> None:
        _need_root("an ext4 image on a loop device")
        self.mountpoint = mountpoint
        mountpoint.mkdir(exist_ok=True)
        assert run("truncate", "-s", size, str(image)).returncode == 0
        made = run("mkfs.ext4", "-q", "-F", str(image))
        assert made.returncode == 0, made.stderr
        attached = run("losetup", "--find", "--show", str(image))
        assert attached.returncode == 0, attached.stderr
        self.device = attached.stdout.strip()
        self.mount()

    def mount(self) -> None:
        mounted = run("mount", "-o", "errors=remount-ro", self.device, str(self.mountpoint))
        assert mounted.returncode == 0, mounted.stderr

    def abort(self) -> None:
        result = run("mount", "-o", "remount,abort", str(self.mountpoint))
        assert result.returncode == 0, result.stderr

    def repair(self) -> None:
        unmount(self.mountpoint)
        checked = run("e2fsck", "-fy", self.device)
        assert checked.returncode in (0, 1), checked.stdout + checked.stderr  # 1: corrected
        self.mount()

    def close(self) -> None:
        _cleanup_mount(self.mountpoint)
        run("losetup", "-d", self.device)


def faketime_env(timestamp_file: Path) -> dict[str, str]:
    """The environment of a process whose wall clock is the offset in ``timestamp_file``
    (``+0``, ``+1d``, ``-1d``: read again within a second), CLOCK_MONOTONIC and
    CLOCK_BOOTTIME untouched."""
    if not os.path.exists(LIBFAKETIME):
        pytest.fail(f"{LIBFAKETIME} missing (Debian package libfaketime)")
    timestamp_file.write_text("+0\n")
    return {
        "LD_PRELOAD": LIBFAKETIME,
        "FAKETIME_TIMESTAMP_FILE": str(timestamp_file),
        "FAKETIME_CACHE_DURATION": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def write_history(storage: Path, received: list[float], alerts: int = 2) -> None:
    """Notifications received at the given times (old ones: a month of history), each of
    ``alerts`` alerts with 200-character annotations, queued to the destination ``sink``
    through the relay's own store and delivered a second later."""

    async def write() -> None:
        store = Store(str(storage))
        try:
            accepts = []
            for n, at in enumerate(received):
                items = [alert(instance=f"old-{n}-{a}") for a in range(alerts)]
                for item in items:
                    item["annotations"]["description"] = "x" * 200
                parsed = parse_notification(json.dumps(notification(*items)).encode())
                accepts.append(
                    store.accept("critical", parsed, [["sink"]] * alerts, at, False, 3600.0)
                )
            await asyncio.gather(*accepts)
            await store.write(
                lambda conn: conn.execute(
                    "UPDATE deliveries SET state = 'delivered', attempts = 1, next_attempt_at"
                    " = NULL, last_attempt_at = created_at + 1, done_at = created_at + 1,"
                    " last_status = 200 WHERE state = 'pending'"
                )
            )
        finally:
            store.close()

    asyncio.run(write())


def database_figures(storage: Path) -> dict[str, int]:
    """Pages, free pages and bytes on disk (the database and its write-ahead log)."""
    path = storage / "relay.db"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    finally:
        conn.close()
    wal = path.with_name("relay.db-wal")
    size = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    return {"pages": pages, "free_pages": free, "bytes": size}
